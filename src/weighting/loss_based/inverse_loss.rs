use crate::error::Result;
use crate::weighting::hyper::{check, Rule};
use crate::weighting::{Decision, StepInput, TaskWeighting};

/// How [`InverseLoss`] scales its raw weights `r_k = 1/(L_k + eps)`.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InverseLossNormalization {
    /// `w_k = K r_k / sum_j r_j`: weights average 1, so equal losses give the plain sum.
    #[default]
    MeanOne,
    /// `w_k = r_k / sum_j r_j`: weights sum to 1.
    SumOne,
    /// `w_k = r_k`: every weighted loss `w_k L_k` is close to 1.
    None,
}

/// Dynamic inverse-loss weighting: `w_k ∝ 1/(L_k + eps)` from the current step's detached
/// losses, so a task with a large loss is scaled down and each task contributes about equally.
///
/// The weights are computed from the loss *values* (no gradient flows through them) and, by
/// default, normalised to average 1 ([`InverseLossNormalization::MeanOne`]):
/// `w_k = K (1/(L_k+eps)) / sum_j 1/(L_j+eps)`. With an optimiser such as Adam the overall scale
/// barely matters; the ratios between tasks do. `eps` (default `1e-8`) keeps a zero loss finite.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InverseLoss {
    eps: f64,
    normalization: InverseLossNormalization,
}

impl Default for InverseLoss {
    fn default() -> Self {
        Self {
            eps: 1e-8,
            normalization: InverseLossNormalization::MeanOne,
        }
    }
}

impl InverseLoss {
    /// Inverse-loss weighting with `eps = 1e-8`, weights averaging 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `eps` (> 0).
    pub fn with_eps(mut self, eps: f64) -> Result<Self> {
        check("inverse-loss", "eps", eps, Rule::Positive)?;
        self.eps = eps;
        Ok(self)
    }

    /// Sets the normalisation.
    pub fn with_normalization(mut self, normalization: InverseLossNormalization) -> Self {
        self.normalization = normalization;
        self
    }

    /// The weights for `losses`.
    pub fn weights(&self, losses: &[f64]) -> Vec<f64> {
        let raw: Vec<f64> = losses
            .iter()
            .map(|l| 1.0 / (l.max(0.0) + self.eps))
            .collect();
        let total: f64 = raw.iter().sum();
        let scale = match self.normalization {
            InverseLossNormalization::MeanOne => losses.len() as f64 / total,
            InverseLossNormalization::SumOne => 1.0 / total,
            InverseLossNormalization::None => 1.0,
        };
        raw.into_iter().map(|r| r * scale).collect()
    }
}

impl TaskWeighting for InverseLoss {
    fn name(&self) -> &str {
        "inverse-loss"
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        Ok(Decision::Weights(self.weights(input.losses)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn weights_are_inverse_to_losses() {
        let w = InverseLoss::new().weights(&[2.0, 0.5]);
        assert_abs_diff_eq!(w[0] + w[1], 2.0, epsilon = 1e-12);
        assert_abs_diff_eq!(w[1] / w[0], 4.0, epsilon = 1e-6);
        assert_abs_diff_eq!(w[0] * 2.0, w[1] * 0.5, epsilon = 1e-6);
        let s = InverseLoss::new()
            .with_normalization(InverseLossNormalization::SumOne)
            .weights(&[1.0, 1.0, 2.0]);
        assert_abs_diff_eq!(s.iter().sum::<f64>(), 1.0, epsilon = 1e-12);
        let raw = InverseLoss::new()
            .with_normalization(InverseLossNormalization::None)
            .weights(&[4.0, 0.0]);
        assert_abs_diff_eq!(raw[0], 0.25, epsilon = 1e-9);
        assert!(raw[1].is_finite() && raw[1] > 1e7);
        assert!(InverseLoss::new().with_eps(0.0).is_err());
    }
}
