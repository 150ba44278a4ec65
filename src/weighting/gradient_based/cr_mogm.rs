//! CR-MOGM: exponential smoothing of the weights of another method.

use super::method::{Aggregate, GradientMethod, GradientStep};
use std::collections::HashMap;

use super::method::lambda_state;
use super::method::GramianWeighting;
use super::upgrad::UPGrad;
use crate::solvers::matrix::{check_vector, gramian};
use crate::weighting::hyper::{check, check_all, Rule};

/// CR-MOGM: smooths the weights of an inner Gramian weighting over steps,
/// `lambda_t = alpha * lambda_{t-1} + (1 - alpha) * lambda_hat_t`, where `lambda_hat_t` are the
/// inner method's weights at step t. On the first call `lambda_{t-1}` is `initial_weights` if given,
/// otherwise `lambda_hat_1` itself.
///
/// Paper: Zhou, S. et al., "On the Convergence of Stochastic Multi-Objective Gradient
/// Manipulation and Beyond", NeurIPS 2022 (correlation-reduced MOGM).
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `alpha` | `0.9` | `[0, 1]` | weight of the previous smoothed weights |
/// | `inner` | `UPGrad::default()` | any [`GramianWeighting`] | method giving `lambda_hat` |
/// | `initial_weights` | `None` | K finite reals | `lambda_0`; `None` uses the first `lambda_hat` |
///
/// Needs: whatever the inner method needs (the Gramian). Cost per step: the inner method's + O(K).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct CrMogm<W: GramianWeighting = UPGrad> {
    /// Smoothing coefficient in `[0, 1]`.
    pub alpha: f64,
    /// The inner weighting whose weights are smoothed.
    pub inner: W,
    /// Weights used as `lambda_0` on the first call (or after [`CrMogm::reset`]).
    pub initial_weights: Option<Vec<f64>>,
    lambda: Option<Vec<f64>>,
}

impl Default for CrMogm<UPGrad> {
    fn default() -> Self {
        CrMogm {
            alpha: 0.9,
            inner: UPGrad::default(),
            initial_weights: None,
            lambda: None,
        }
    }
}

impl<W: GramianWeighting + Send> CrMogm<W> {
    /// Wraps `inner` with smoothing coefficient `alpha` and optional initial weights; refused
    /// with [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) outside the
    /// ranges of the table above (or when `inner` refuses its own).
    pub fn new(inner: W, alpha: f64, initial_weights: Option<Vec<f64>>) -> crate::Result<Self> {
        let s = CrMogm {
            alpha,
            inner,
            initial_weights,
            lambda: None,
        };
        GradientMethod::validate(&s)?;
        Ok(s)
    }
}

impl<W: GramianWeighting> CrMogm<W> {
    /// Forgets the smoothed weights; the next call starts from `initial_weights` again.
    pub fn reset(&mut self) {
        self.lambda = None;
    }

    /// The current smoothed weights (`None` before the first call).
    pub fn state(&self) -> Option<&[f64]> {
        self.lambda.as_deref()
    }

    /// Overwrites the smoothed weights `lambda_{t-1}` used by the next call.
    pub fn set_state(&mut self, lambda: Option<Vec<f64>>) {
        self.lambda = lambda;
    }

    /// Smoothed weights for the Gramian of the current step; updates the state.
    pub fn weights(&mut self, gram: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let hat = self.inner.weights(gram)?;
        let k = hat.len();
        let prev = match (&self.lambda, &self.initial_weights) {
            (Some(l), _) => {
                check_vector(l, k, "CR-MOGM state (call reset() when K changes)")?;
                l.clone()
            }
            (None, Some(init)) => {
                check_vector(init, k, "CR-MOGM initial_weights")?;
                init.clone()
            }
            (None, None) => hat.clone(),
        };
        let new: Vec<f64> = prev
            .iter()
            .zip(&hat)
            .map(|(p, h)| self.alpha * p + (1.0 - self.alpha) * h)
            .collect();
        self.lambda = Some(new.clone());
        Ok(new)
    }

    /// Forms the Gramian of `rows` (K x d) and returns [`Aggregate::Weights`].
    pub fn aggregate(&mut self, rows: &[Vec<f64>]) -> Result<Aggregate, String> {
        let g = gramian(rows)?;
        Ok(Aggregate::Weights(self.weights(&g)?))
    }
}

impl<W: GramianWeighting + Send> GradientMethod for CrMogm<W> {
    fn name(&self) -> &str {
        "cr-mogm"
    }

    fn validate(&self) -> crate::Result<()> {
        check("cr-mogm", "alpha", self.alpha, Rule::UnitClosed)?;
        if let Some(init) = &self.initial_weights {
            check_all("cr-mogm", "initial_weights", init, Rule::Finite)?;
        }
        self.inner.validate()
    }

    fn combine(&mut self, step: &GradientStep) -> crate::Result<Aggregate> {
        let w = self.weights(&step.gramian()?).map_err(|e| step.fail(e))?;
        Ok(Aggregate::Weights(w))
    }

    fn state(&self) -> crate::Result<Vec<(String, Vec<f64>)>> {
        Ok(lambda_state("lambda", CrMogm::state(self)))
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> crate::Result<()> {
        self.set_state(state.get("lambda").cloned());
        Ok(())
    }
}
