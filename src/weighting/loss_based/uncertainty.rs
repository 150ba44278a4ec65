//! Uncertainty weighting (UW).

use super::learned_scales::learned_scale_weighting;
use super::scalarize::{check_finite, check_same_len, LearnedParameters, Scalarized};

/// Uncertainty Weighting: each task gets a learnable log-variance `s_k = log σ_k²` and
/// `S(L, s) = Σ_k ( ½ e^{-s_k} L_k + ½ s_k )`.
///
/// Loss weights: `∂S/∂L_k = ½ e^{-s_k}`. Parameter gradient: `∂S/∂s_k = ½ (1 - e^{-s_k} L_k)`, so
/// at the optimum `e^{s_k} = L_k` (noisier tasks get smaller weights). In a
/// [`Trainer`](crate::train::Trainer) the `s_k` are parameters (`weighting.log_var`) updated by
/// the model's optimiser with this gradient.
///
/// Paper: Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
/// Geometry and Semantics", CVPR 2018.
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `log_var` | zeros of length K ([`Uncertainty::new`]) | any finite reals | learnable log-variances `s_k` (initial value) |
///
/// [`Uncertainty::default`] has an empty `log_var`, sized to the tasks (zeros) when a trainer is built.
///
/// Needs: the current losses. Cost: O(K) time and memory, K extra learnable parameters.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Uncertainty {
    /// Learnable log-variances `s_k`, one per task (their initial values before training).
    pub log_var: Vec<f64>,
    #[cfg_attr(feature = "serde", serde(skip))]
    learned: LearnedParameters,
}

impl Uncertainty {
    /// `k` tasks with log-variances initialised to zero (all weights ½).
    pub fn new(k: usize) -> Self {
        Self {
            log_var: vec![0.0; k],
            learned: LearnedParameters::default(),
        }
    }

    /// Returns `Σ (½ e^{-s_k} L_k + ½ s_k)` and the weights `½ e^{-s_k}`.
    ///
    /// # Errors
    /// If `losses` is empty or non-finite, or `log_var` is non-finite or of another length.
    pub fn scalarize(&self, losses: &[f64]) -> Result<Scalarized, String> {
        check_finite(losses, "UW: losses")?;
        check_same_len(&self.log_var, losses, "UW: log_var")?;
        let w: Vec<f64> = self.log_var.iter().map(|s| 0.5 * (-s).exp()).collect();
        let value = losses
            .iter()
            .zip(&w)
            .zip(&self.log_var)
            .map(|((l, c), s)| c * l + 0.5 * s)
            .sum();
        Ok(Scalarized {
            value,
            loss_weights: w,
        })
    }

    /// `∂S/∂s_k = ½ - ½ e^{-s_k} L_k`.
    ///
    /// # Errors
    /// As [`Uncertainty::scalarize`].
    pub fn parameter_gradient(&self, losses: &[f64]) -> Result<Vec<f64>, String> {
        check_finite(losses, "UW: losses")?;
        check_same_len(&self.log_var, losses, "UW: log_var")?;
        Ok(self
            .log_var
            .iter()
            .zip(losses)
            .map(|(s, l)| 0.5 - 0.5 * (-s).exp() * l)
            .collect())
    }
}

learned_scale_weighting!(
    Uncertainty,
    "uncertainty",
    log_var,
    "log_var",
    "log-variances"
);
