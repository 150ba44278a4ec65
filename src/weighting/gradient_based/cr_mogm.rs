//! CR-MOGM: exponential smoothing of the weights of another method.

use super::common::{check_vector, gramian, Aggregate, GramianWeighting};
use super::upgrad::UPGrad;

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
        CrMogm::new(UPGrad::default(), 0.9, None)
    }
}

impl<W: GramianWeighting> CrMogm<W> {
    /// Wraps `inner` with smoothing coefficient `alpha` and optional initial weights.
    pub fn new(inner: W, alpha: f64, initial_weights: Option<Vec<f64>>) -> Self {
        CrMogm {
            alpha,
            inner,
            initial_weights,
            lambda: None,
        }
    }

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
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(format!(
                "CR-MOGM alpha must be in [0, 1], got {}",
                self.alpha
            ));
        }
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
