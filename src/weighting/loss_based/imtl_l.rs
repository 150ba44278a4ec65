//! Impartial Multi-Task Learning, loss-balance variant (IMTL-L).

use super::learned_scales::learned_scale_weighting;
use super::scalarize::{check_finite, check_same_len, LearnedParameters, Scalarized};

/// IMTL-L: each task gets a learnable log-scale `s_k` and `S(L, s) = Σ_k ( e^{s_k} L_k - s_k )`.
///
/// Loss weights: `∂S/∂L_k = e^{s_k}`. Parameter gradient: `∂S/∂s_k = e^{s_k} L_k - 1`, so at the
/// optimum every scaled loss `e^{s_k} L_k` equals 1 (losses are balanced to a common scale). The
/// `-s_k` term prevents the trivial solution `s_k → -∞`. Equivalent to 2·UW with `s ↦ -s`.
///
/// Paper: Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task Learning",
/// ICLR 2021.
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `log_scale` | zeros of length K ([`ImtlL::new`]) | any finite reals | learnable log-scales `s_k` (initial value) |
///
/// [`ImtlL::default`] has an empty `log_scale`, sized to the tasks (zeros) when a trainer is
/// built; the trainer's optimiser then learns it (`weighting.log_scale`).
///
/// Needs: the current losses (designed for positive losses). Cost: O(K) time and memory, K extra
/// learnable parameters.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImtlL {
    /// Learnable log-scales `s_k`, one per task (their initial values before training).
    pub log_scale: Vec<f64>,
    #[cfg_attr(feature = "serde", serde(skip))]
    learned: LearnedParameters,
}

impl ImtlL {
    /// `k` tasks with log-scales initialised to zero (the plain sum).
    pub fn new(k: usize) -> Self {
        Self {
            log_scale: vec![0.0; k],
            learned: LearnedParameters::default(),
        }
    }

    /// Returns `Σ (e^{s_k} L_k - s_k)` and the weights `e^{s_k}`.
    ///
    /// # Errors
    /// If `losses` is empty or non-finite, or `log_scale` is non-finite or of another length.
    pub fn scalarize(&self, losses: &[f64]) -> Result<Scalarized, String> {
        check_finite(losses, "IMTLL: losses")?;
        check_same_len(&self.log_scale, losses, "IMTLL: log_scale")?;
        let w: Vec<f64> = self.log_scale.iter().map(|s| s.exp()).collect();
        let value = losses
            .iter()
            .zip(&w)
            .zip(&self.log_scale)
            .map(|((l, c), s)| c * l - s)
            .sum();
        Ok(Scalarized {
            value,
            loss_weights: w,
        })
    }

    /// `∂S/∂s_k = e^{s_k} L_k - 1`.
    ///
    /// # Errors
    /// As [`ImtlL::scalarize`].
    pub fn parameter_gradient(&self, losses: &[f64]) -> Result<Vec<f64>, String> {
        check_finite(losses, "IMTLL: losses")?;
        check_same_len(&self.log_scale, losses, "IMTLL: log_scale")?;
        Ok(self
            .log_scale
            .iter()
            .zip(losses)
            .map(|(s, l)| s.exp() * l - 1.0)
            .collect())
    }
}

learned_scale_weighting!(ImtlL, "imtl-l", log_scale, "log_scale", "log-scales");
