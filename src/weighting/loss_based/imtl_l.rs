//! Impartial Multi-Task Learning, loss-balance variant (IMTL-L).

use super::scalarize::{
    check_finite, check_same_len, loss_values, sized_for, LearnedParameters, Scalarized,
};
use crate::error::Result as CrateResult;
use crate::weighting::support::solver_error;
use crate::weighting::{Decision, StepInput, TaskWeighting, WeightingSetup};

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

impl TaskWeighting for ImtlL {
    fn name(&self) -> &str {
        "imtl-l"
    }

    fn prepare(&mut self, setup: &WeightingSetup) -> CrateResult<()> {
        sized_for(
            &mut self.log_scale,
            setup.task_names.len(),
            "imtl-l",
            "log-scales",
        )?;
        self.learned.init(&self.log_scale)
    }

    fn parameters(&self) -> Vec<(String, candle_core::Var)> {
        self.learned
            .var()
            .map(|v| ("log_scale".to_string(), v.clone()))
            .into_iter()
            .collect()
    }

    fn decide(&mut self, input: &StepInput) -> CrateResult<Decision> {
        if self.learned.var().is_some() {
            self.log_scale = self.learned.values()?;
        }
        let s = self
            .scalarize(input.losses)
            .map_err(solver_error("imtl-l"))?;
        Ok(Decision::Weights(s.loss_weights))
    }

    fn auxiliary_loss(
        &self,
        detached_losses: &[candle_core::Tensor],
    ) -> CrateResult<Option<candle_core::Tensor>> {
        let losses = loss_values(detached_losses)?;
        let g = self
            .parameter_gradient(&losses)
            .map_err(solver_error("imtl-l"))?;
        self.learned.surrogate(&g)
    }
}
