//! Geometric mean of the task losses (Geometric Loss Strategy, GLS).

use super::scalarize::{check_finite, Scalarized};
use crate::error::Result as CrateResult;
use crate::weighting::support::solver_error;
use crate::weighting::{Decision, StepInput, TaskWeighting};

/// Geometric mean scalarisation (Geometric Loss Strategy, GLS):
/// `S(L) = (Π_k L_k)^{1/K} = exp((1/K) Σ_k log L_k)`.
///
/// Its loss weights are `w_k = S / (K L_k)`: tasks with a small loss get a large weight, which
/// makes the objective invariant to a rescaling of any single loss (only the direction of the
/// gradient changes with loss scale, not the balance between tasks).
///
/// Paper: Chennupati, Sistu, Yogamani & Rawashdeh, "MultiNet++: Multi-Stream Feature Aggregation
/// and Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019.
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | — | — | — | no hyper-parameters |
///
/// Needs: the current losses, strictly positive. Cost: O(K) time and memory.
///
/// Unlike the torchjd reference, which accepts a zero loss (value `0`, undefined weights), a zero
/// loss is rejected here because the weights `S/(K L_k)` are undefined there.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeometricMean;

impl GeometricMean {
    /// Returns `exp(mean(log L))` and the weights `S / (K L_k)`.
    ///
    /// # Errors
    /// If `losses` is empty, non-finite, or has an entry `<= 0`.
    pub fn scalarize(&self, losses: &[f64]) -> Result<Scalarized, String> {
        check_finite(losses, "GeometricMean: losses")?;
        if let Some(i) = losses.iter().position(|&l| l <= 0.0) {
            return Err(format!(
                "GeometricMean: needs strictly positive losses, found losses[{i}] = {}",
                losses[i]
            ));
        }
        let k = losses.len() as f64;
        let value = (losses.iter().map(|l| l.ln()).sum::<f64>() / k).exp();
        Ok(Scalarized {
            value,
            loss_weights: losses.iter().map(|l| value / (k * l)).collect(),
        })
    }
}

impl TaskWeighting for GeometricMean {
    fn name(&self) -> &str {
        "geometric-mean"
    }

    fn decide(&mut self, input: &StepInput) -> CrateResult<Decision> {
        let s = self
            .scalarize(input.losses)
            .map_err(solver_error("geometric-mean"))?;
        Ok(Decision::Weights(s.loss_weights))
    }
}
