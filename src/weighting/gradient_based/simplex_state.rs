//! The weights on the simplex that the cross-batch methods (MoDo, SDMGrad) carry from one
//! step to the next: `1/K` until the first step, checkpointed under `weights`.

use std::collections::HashMap;

use crate::solvers::matrix::{check_vector, cross_matrix, uniform};

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

/// The cross matrix `A = J_1 J_2^T` of two batches' gradient rows, for the methods' public
/// `weights_from_batches`.
pub(crate) fn cross_of_batches(
    rows1: &[Vec<f64>],
    rows2: &[Vec<f64>],
) -> Result<Vec<Vec<f64>>, String> {
    cross_matrix(rows1, rows2)
}
