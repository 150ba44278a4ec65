//! IMTL (Impartial Multi-Task Learning), as in LibMTL 1.1.5 (IMTL-L loss scales + IMTL-G weights).

use super::method::{Aggregate, GradientMethod, GradientStep};
use candle_core::{Tensor, Var};

use crate::solvers::matrix::{check_rows, check_vector, dot, norm};
use crate::solvers::solve_linear_with;
use crate::weighting::WeightingSetup;

/// Everything one IMTL step produces.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct ImtlOutput {
    /// IMTL-G weights `alpha` on the scaled gradients `h_k = exp(s_k) g_k` (what LibMTL returns).
    pub alpha: Vec<f64>,
    /// Coefficients on the raw gradients: `alpha_k exp(s_k)`. The update is `sum_k coef_k g_k`.
    pub coefficients: Vec<f64>,
    /// Gradient of the scaled loss `sum_k (exp(s_k) L_k - s_k)` with respect to `s`:
    /// `exp(s_k) L_k - 1` (what LibMTL's backward leaves in `loss_scale.grad`).
    pub grad_loss_scale: Vec<f64>,
}

/// IMTL: each loss is rescaled as `exp(s_k) L_k - s_k` with learnable `s` (IMTL-L), and the
/// gradients `h_k = exp(s_k) g_k` of the scaled losses are combined with the IMTL-G weights that
/// give the update equal projections on every unit gradient `u_k = h_k / |h_k|`:
/// with `D = [h_1 - h_k]_{k>=2}`, `U = [u_1 - u_k]_{k>=2}`,
/// `alpha_{2..K} = h_1 U^T (D U^T)^{-1}`, `alpha_1 = 1 - sum_{k>=2} alpha_k`, and
/// `d = sum_k alpha_k h_k`.
///
/// Paper: L. Liu, Y. Li, Z. Kuang, J.-H. Xue, Y. Chen, W. Yang, Q. Liao and W. Zhang,
/// "Towards Impartial Multi-task Learning", ICLR 2021.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `loss_scale` | empty (= zeros) | finite, length `K` | learnable log-scales `s` (state; LibMTL initialises to 0) |
///
/// The `(K-1) x (K-1)` system is singular when `K - 1 > d` (or gradients are dependent): an error
/// is returned then, where LibMTL's `torch.inverse` fails too.
///
/// Needs: full per-task gradients and the losses (the losses only for `grad_loss_scale`).
/// Cost per step: `O(K^2 d + K^3)`. Optimise `loss_scale` with your optimiser using
/// `grad_loss_scale`.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Imtl {
    /// Learnable log-scales `s` (empty means all zeros).
    pub loss_scale: Vec<f64>,
    /// The trainer-held copy of `loss_scale` (a candle variable), once prepared.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub(crate) learned: crate::weighting::support::LearnedParameters,
    /// Gradient of the strategy's own objective with respect to `loss_scale`, from the last step.
    pub(crate) pending_gradient: Vec<f64>,
}

impl Imtl {
    /// Sets the log-scales (e.g. a golden case's `state_before.loss_scale`).
    pub fn set_loss_scale(&mut self, s: Vec<f64>) -> Result<(), String> {
        check_vector(&s, s.len(), "loss_scale")?;
        self.loss_scale = s;
        Ok(())
    }

    /// One IMTL step. `losses` may be empty, in which case `grad_loss_scale` is empty.
    pub fn step(&self, rows: &[Vec<f64>], losses: &[f64]) -> Result<ImtlOutput, String> {
        let (k, _) = check_rows(rows)?;
        let s = if self.loss_scale.is_empty() {
            vec![0.0; k]
        } else {
            check_vector(&self.loss_scale, k, "loss_scale")?;
            self.loss_scale.clone()
        };
        let scale: Vec<f64> = s.iter().map(|v| v.exp()).collect();
        let h: Vec<Vec<f64>> = rows
            .iter()
            .zip(&scale)
            .map(|(r, e)| r.iter().map(|x| x * e).collect())
            .collect();
        let mut u = Vec::with_capacity(k);
        for (i, hk) in h.iter().enumerate() {
            let n = norm(hk);
            if n == 0.0 {
                return Err(format!(
                    "IMTL: gradient of task {i} is zero (cannot normalise it)"
                ));
            }
            u.push(hk.iter().map(|x| x / n).collect::<Vec<f64>>());
        }
        let alpha = if k == 1 {
            vec![1.0]
        } else {
            let dm: Vec<Vec<f64>> = (1..k)
                .map(|j| h[0].iter().zip(&h[j]).map(|(a, b)| a - b).collect())
                .collect();
            let um: Vec<Vec<f64>> = (1..k)
                .map(|j| u[0].iter().zip(&u[j]).map(|(a, b)| a - b).collect())
                .collect();
            // alpha^T (D U^T) = h_1 U^T  <=>  (D U^T)^T alpha = U h_1
            let mt: Vec<Vec<f64>> = (0..k - 1)
                .map(|b| (0..k - 1).map(|a| dot(&dm[a], &um[b])).collect())
                .collect();
            let rhs: Vec<f64> = um.iter().map(|ub| dot(&h[0], ub)).collect();
            let tail = solve_linear_with(&mt, &rhs, 0.0).map_err(|e| {
                format!("IMTL: D U^T is singular (K - 1 > d or dependent gradients): {e}")
            })?;
            let mut a = Vec::with_capacity(k);
            a.push(1.0 - tail.iter().sum::<f64>());
            a.extend(tail);
            a
        };
        let coefficients = alpha.iter().zip(&scale).map(|(a, e)| a * e).collect();
        let grad_loss_scale = if losses.is_empty() {
            Vec::new()
        } else {
            check_vector(losses, k, "losses")?;
            losses
                .iter()
                .zip(&scale)
                .map(|(l, e)| e * l - 1.0)
                .collect()
        };
        Ok(ImtlOutput {
            alpha,
            coefficients,
            grad_loss_scale,
        })
    }
}

impl GradientMethod for Imtl {
    fn name(&self) -> &str {
        "imtl"
    }

    fn prepare(&mut self, setup: &WeightingSetup) -> crate::Result<()> {
        self.learned
            .prepare(&mut self.loss_scale, setup.task_names.len(), 0.0)
    }

    fn parameters(&self) -> Vec<(String, Var)> {
        self.learned.named("loss_scale")
    }

    fn combine(&mut self, step: &GradientStep) -> crate::Result<Aggregate> {
        self.learned.refresh(&mut self.loss_scale)?;
        let out = self
            .step(&step.rows()?, step.losses())
            .map_err(|e| step.fail(e))?;
        self.pending_gradient = out.grad_loss_scale;
        Ok(Aggregate::Weights(out.coefficients))
    }

    fn auxiliary_loss(&self, _detached_losses: &[Tensor]) -> crate::Result<Option<Tensor>> {
        self.learned.surrogate(&self.pending_gradient)
    }
}
