//! GradNorm, as in LibMTL 1.1.5.

use super::method::{Aggregate, GradientMethod, GradientStep};
use std::collections::HashMap;

use candle_core::{Tensor, Var};

use crate::solvers::matrix::{check_positive, check_rows, check_vector, norm, softmax};
use crate::weighting::hyper::{check, Rule};
use crate::weighting::WeightingSetup;

/// Everything one GradNorm step produces.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct GradNormOutput {
    /// Loss weights `w = K softmax(s)` (what LibMTL returns; also the gradient coefficients).
    pub weights: Vec<f64>,
    /// The GradNorm loss `sum_k | w_k |g_k| - mean_j(w_j |g_j|) r_k^alpha |` (target detached).
    pub gradnorm_loss: f64,
    /// Gradient of the GradNorm loss with respect to `s` (the target term held constant).
    pub grad_loss_scale: Vec<f64>,
}

/// GradNorm: learn loss weights so that every task's weighted gradient norm moves towards a common
/// value scaled by its relative inverse training rate. With `w = K softmax(s)`, `n_k = |g_k|`,
/// `Gbar = mean_k(w_k n_k)`, `r_k = (L_k / L0_k) / mean_j(L_j / L0_j)`, the weight loss is
/// `L_grad = sum_k |w_k n_k - Gbar r_k^alpha|` with the target `Gbar r_k^alpha` held constant, and
/// `s` follows its gradient. The update uses `d = sum_k w_k g_k` (the weights multiply the losses).
///
/// `dL_grad/ds_j = a_j w_j - p_j sum_k a_k w_k`, `a_k = sign(w_k n_k - target_k) n_k`, `p = softmax(s)`.
///
/// Paper: Z. Chen, V. Badrinarayanan, C.-Y. Lee and A. Rabinovich, "GradNorm: Gradient
/// Normalization for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018.
///
/// LibMTL applies this from epoch 1 on (epoch 0 uses equal weights `1`); this struct always does
/// the GradNorm step.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `alpha` | 1.5 | >= 0 | strength of the restoring force towards a common training rate |
/// | `loss_scale` | empty (= 1 each, LibMTL's init) | finite, length `K` | learnable logits `s` (state) |
/// | `initial_losses` | empty | > 0, length `K` | `L0`, losses at the first epoch (state; required) |
///
/// Needs: full per-task gradients (their norms) and the losses. Cost per step: `O(K d)`.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct GradNorm {
    /// Restoring-force exponent.
    pub alpha: f64,
    /// Learnable logits `s` (empty means 1 for every task).
    pub loss_scale: Vec<f64>,
    /// Reference losses `L0` (LibMTL's `train_loss_buffer[:, 0]`).
    pub initial_losses: Vec<f64>,
    /// The trainer-held copy of `loss_scale` (a candle variable), once prepared.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub(crate) learned: crate::weighting::support::LearnedParameters,
    /// Gradient of the strategy's own objective with respect to `loss_scale`, from the last step.
    pub(crate) pending_gradient: Vec<f64>,
}

impl Default for GradNorm {
    fn default() -> Self {
        Self {
            alpha: 1.5,
            loss_scale: Vec::new(),
            initial_losses: Vec::new(),
            learned: Default::default(),
            pending_gradient: Vec::new(),
        }
    }
}

impl GradNorm {
    /// GradNorm with restoring-force exponent `alpha`; refused with
    /// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) unless finite.
    pub fn new(alpha: f64) -> crate::Result<Self> {
        let s = GradNorm {
            alpha,
            ..Self::default()
        };
        GradientMethod::validate(&s)?;
        Ok(s)
    }

    /// Sets the logits and the reference losses (e.g. a golden case's state).
    pub fn set_state(
        &mut self,
        loss_scale: Vec<f64>,
        initial_losses: Vec<f64>,
    ) -> Result<(), String> {
        check_vector(&loss_scale, loss_scale.len(), "loss_scale")?;
        check_positive(&initial_losses, initial_losses.len(), "initial_losses")?;
        self.loss_scale = loss_scale;
        self.initial_losses = initial_losses;
        Ok(())
    }

    fn weights_for(&self, k: usize) -> Result<Vec<f64>, String> {
        let s = if self.loss_scale.is_empty() {
            vec![1.0; k]
        } else {
            check_vector(&self.loss_scale, k, "loss_scale")?;
            self.loss_scale.clone()
        };
        Ok(softmax(&s).into_iter().map(|p| p * k as f64).collect())
    }

    /// One GradNorm step.
    pub fn step(&self, rows: &[Vec<f64>], losses: &[f64]) -> Result<GradNormOutput, String> {
        let (k, _) = check_rows(rows)?;
        check_vector(losses, k, "losses")?;
        check_positive(&self.initial_losses, k, "initial_losses")?;
        let w = self.weights_for(k)?;
        let p: Vec<f64> = w.iter().map(|v| v / k as f64).collect();
        let n: Vec<f64> = rows.iter().map(|r| norm(r)).collect();
        let gper: Vec<f64> = w.iter().zip(&n).map(|(a, b)| a.abs() * b).collect();
        let gbar = gper.iter().sum::<f64>() / k as f64;
        let li: Vec<f64> = losses
            .iter()
            .zip(&self.initial_losses)
            .map(|(l, l0)| l / l0)
            .collect();
        let li_mean = li.iter().sum::<f64>() / k as f64;
        if li_mean == 0.0 {
            return Err(
                "GradNorm: all relative losses are 0 (cannot form r = L / mean(L))".to_string(),
            );
        }
        let target: Vec<f64> = li
            .iter()
            .map(|v| gbar * (v / li_mean).powf(self.alpha))
            .collect();
        let gradnorm_loss = gper.iter().zip(&target).map(|(g, t)| (g - t).abs()).sum();
        let a: Vec<f64> = gper
            .iter()
            .zip(&target)
            .zip(&n)
            .map(|((g, t), nk)| {
                let diff: f64 = g - t;
                let sgn = if diff > 0.0 {
                    1.0
                } else if diff < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                sgn * nk
            })
            .collect();
        let aw: f64 = a.iter().zip(&w).map(|(x, y)| x * y).sum();
        let grad_loss_scale = (0..k).map(|j| a[j] * w[j] - p[j] * aw).collect();
        Ok(GradNormOutput {
            weights: w,
            gradnorm_loss,
            grad_loss_scale,
        })
    }
}

impl GradientMethod for GradNorm {
    fn name(&self) -> &str {
        "gradnorm"
    }

    fn validate(&self) -> crate::Result<()> {
        check("gradnorm", "alpha", self.alpha, Rule::Finite)
    }

    fn prepare(&mut self, setup: &WeightingSetup) -> crate::Result<()> {
        self.learned
            .prepare(&mut self.loss_scale, setup.task_names.len(), 1.0)
    }

    fn parameters(&self) -> Vec<(String, Var)> {
        self.learned.named("loss_scale")
    }

    fn state(&self) -> crate::Result<Vec<(String, Vec<f64>)>> {
        Ok(vec![("initial_losses".into(), self.initial_losses.clone())])
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> crate::Result<()> {
        if let Some(v) = state.get("initial_losses") {
            self.initial_losses = v.clone();
        }
        Ok(())
    }

    /// The first step's losses become the reference `L_k(0)` of the loss ratios.
    fn combine(&mut self, step: &GradientStep) -> crate::Result<Aggregate> {
        self.learned.refresh(&mut self.loss_scale)?;
        if self.initial_losses.is_empty() {
            self.initial_losses = step.losses().to_vec();
        }
        let out = self
            .step(&step.rows()?, step.losses())
            .map_err(|e| step.fail(e))?;
        self.pending_gradient = out.grad_loss_scale;
        Ok(Aggregate::Weights(out.weights))
    }

    fn auxiliary_loss(&self, _detached_losses: &[Tensor]) -> crate::Result<Option<Tensor>> {
        self.learned.surrogate(&self.pending_gradient)
    }
}
