//! The weights on the simplex that the cross-batch methods (MoDo, SDMGrad) carry from one
//! step to the next: `1/K` until the first step, checkpointed under `weights`.

use std::collections::HashMap;

use crate::solvers::matrix::{check_vector, uniform};

/// Weights kept between steps; `None` until the first step (start: `1/K`).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SimplexState(Option<Vec<f64>>);

impl SimplexState {
    /// The kept weights.
    pub fn get(&self) -> Option<&[f64]> {
        self.0.as_deref()
    }

    /// Replaces the kept weights (`None`: start again from `1/K`).
    pub fn set(&mut self, weights: Option<Vec<f64>>) {
        self.0 = weights;
    }

    /// The weights a step over `k` tasks starts from; `what` names the state in the error
    /// when the kept weights are for another number of tasks.
    pub fn start(&self, k: usize, what: &str) -> Result<Vec<f64>, String> {
        match &self.0 {
            Some(w) => {
                check_vector(w, k, &format!("{what} (call reset() when K changes)"))?;
                Ok(w.clone())
            }
            None => Ok(uniform(k)),
        }
    }

    /// The checkpoint entries (none before the first step).
    pub fn to_entries(&self) -> Vec<(String, Vec<f64>)> {
        self.0
            .iter()
            .map(|w| ("weights".to_string(), w.clone()))
            .collect()
    }

    /// Restores from checkpoint entries.
    pub fn load(&mut self, state: &HashMap<String, Vec<f64>>) {
        self.0 = state.get("weights").cloned();
    }
}

/// The public `reset`, `state` and `set_state` of a strategy whose [`SimplexState`] is the
/// field `$field`, inside the strategy's `impl` block; `$what` names the weights in the docs
/// (without an article: `weights`).
macro_rules! simplex_state_accessors {
    ($field:ident, $what:literal) => {
        #[doc = concat!("Forgets the ", $what, "; the next call starts from `1/K`.")]
        pub fn reset(&mut self) {
            self.$field.set(None);
        }

        #[doc = concat!("The current ", $what, " (`None` before the first call: `1/K`).")]
        pub fn state(&self) -> Option<&[f64]> {
            self.$field.get()
        }

        #[doc = concat!("Sets the ", $what, " the next call starts from (`None` = `1/K`).")]
        pub fn set_state(&mut self, weights: Option<Vec<f64>>) {
            self.$field.set(weights);
        }

        /// Same as `weights` with the cross matrix formed from two independent batches of
        /// gradient rows.
        pub fn weights_from_batches(
            &mut self,
            rows1: &[Vec<f64>],
            rows2: &[Vec<f64>],
        ) -> Result<Vec<f64>, String> {
            self.weights(&$crate::solvers::matrix::cross_matrix(rows1, rows2)?)
        }
    };
}

/// The `combine`, `state` and `load_state` of a cross-batch
/// [`GradientMethod`](super::GradientMethod) whose `weights(&mut self, a)` maps the cross
/// matrix to weights and whose [`SimplexState`] is the field `$field`, inside its
/// `impl GradientMethod` block.
macro_rules! simplex_state_method {
    ($field:ident) => {
        fn combine(
            &mut self,
            step: &$crate::weighting::gradient_based::GradientStep,
        ) -> $crate::Result<$crate::weighting::gradient_based::Aggregate> {
            step.weigh_cross_gramian(|a| self.weights(a))
        }

        fn state(&self) -> $crate::Result<Vec<(String, Vec<f64>)>> {
            Ok(self.$field.to_entries())
        }

        fn load_state(
            &mut self,
            state: &std::collections::HashMap<String, Vec<f64>>,
        ) -> $crate::Result<()> {
            self.$field.load(state);
            Ok(())
        }
    };
}

pub(crate) use {simplex_state_accessors, simplex_state_method};
