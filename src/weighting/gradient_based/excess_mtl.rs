//! ExcessMTL, as in torchjd 0.18.0.

use super::method::{Aggregate, GradientMethod, GradientStep};
use crate::solvers::matrix::{check_rows, softmax};
use crate::weighting::hyper::{check, Rule};

/// ExcessMTL: weights follow an exponentiated-gradient (mirror ascent) step on per-task excess
/// risk estimates. Each call accumulates squared gradients `S += g^2` (elementwise, AdaGrad-like
/// diagonal Hessian `h = sqrt(S + 1e-7)`) and estimates the excess risk of task `k` as
/// `e_k = sum_c g_kc^2 / h_kc`. The first call's `e` becomes the baseline `e0` (used raw that
/// call); later calls use `e / (e0 + 1e-7)`. Then `w <- softmax(log w + eta e)`, starting from
/// `w = 1/K`. With `n_warmup_steps > 0`, the first calls return `1/K`, only collect statistics,
/// and the baseline is the mean warmup `e`.
///
/// Paper: Y. He, S. Zhou, G. Zhang, H. Yun, Y. Xu, B. Zeng, T. Chilimbi and H. Zhao, "Robust
/// Multi-Task Learning with Excess Risks", ICML 2024.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `robust_step_size` | 1.0 | > 0 | step size `eta` of the weight update |
/// | `n_warmup_steps` | 0 | >= 0 | calls that only collect statistics |
///
/// State (public, see [`ExcessMtl::reset`]): `weights`, `sq_grad_sum` (`K x d`), `initial_excess`,
/// `warmup_excess_sum`, `n_steps`; it is re-initialised when `K` or `d` changes.
///
/// Needs: full per-task gradients. Cost per step: `O(K d)` time and `O(K d)` memory.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct ExcessMtl {
    /// Step size of the exponentiated update.
    pub robust_step_size: f64,
    /// Number of warm-up calls.
    pub n_warmup_steps: usize,
    /// Current weights (state; empty before the first call).
    pub weights: Vec<f64>,
    /// Accumulated squared gradients (state).
    pub sq_grad_sum: Vec<Vec<f64>>,
    /// Baseline excess risks (state).
    pub initial_excess: Option<Vec<f64>>,
    /// Sum of the excess risks seen during warm-up (state).
    pub warmup_excess_sum: Vec<f64>,
    /// Number of calls so far (state).
    pub n_steps: usize,
}

impl Default for ExcessMtl {
    fn default() -> Self {
        Self {
            robust_step_size: 1.0,
            n_warmup_steps: 0,
            weights: Vec::new(),
            sq_grad_sum: Vec::new(),
            initial_excess: None,
            warmup_excess_sum: Vec::new(),
            n_steps: 0,
        }
    }
}

impl ExcessMtl {
    /// ExcessMTL with the given step size and warm-up length, fresh state; refused with
    /// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) unless
    /// `robust_step_size` is finite and `> 0`.
    pub fn new(robust_step_size: f64, n_warmup_steps: usize) -> crate::Result<Self> {
        let s = ExcessMtl {
            robust_step_size,
            n_warmup_steps,
            ..Self::default()
        };
        GradientMethod::validate(&s)?;
        Ok(s)
    }

    /// Clears all state.
    pub fn reset(&mut self) {
        self.weights.clear();
        self.sq_grad_sum.clear();
        self.initial_excess = None;
        self.warmup_excess_sum.clear();
        self.n_steps = 0;
    }

    /// One call: updates the state and returns the weights.
    pub fn step(&mut self, rows: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let (k, d) = check_rows(rows)?;
        if self.sq_grad_sum.len() != k
            || self.sq_grad_sum.iter().any(|r| r.len() != d)
            || self.weights.len() != k
        {
            self.sq_grad_sum = vec![vec![0.0; d]; k];
            self.warmup_excess_sum = vec![0.0; k];
            self.weights = vec![1.0 / k as f64; k];
            self.initial_excess = None;
            self.n_steps = 0;
        }
        let mut e = vec![0.0; k];
        for (i, r) in rows.iter().enumerate() {
            for (c, g) in r.iter().enumerate() {
                let sq = g * g;
                self.sq_grad_sum[i][c] += sq;
                e[i] += sq / (self.sq_grad_sum[i][c] + 1e-7).sqrt();
            }
        }
        if self.n_steps < self.n_warmup_steps {
            for (s, v) in self.warmup_excess_sum.iter_mut().zip(&e) {
                *s += v;
            }
            self.n_steps += 1;
            return Ok(self.weights.clone());
        }
        self.n_steps += 1;
        match &self.initial_excess {
            None => {
                if self.n_warmup_steps > 0 {
                    let base: Vec<f64> = self
                        .warmup_excess_sum
                        .iter()
                        .map(|s| s / self.n_warmup_steps as f64)
                        .collect();
                    for (v, b) in e.iter_mut().zip(&base) {
                        *v /= b + 1e-7;
                    }
                    self.initial_excess = Some(base);
                } else {
                    self.initial_excess = Some(e.clone());
                }
            }
            Some(base) => {
                for (v, b) in e.iter_mut().zip(base) {
                    *v /= b + 1e-7;
                }
            }
        }
        let logits: Vec<f64> = self
            .weights
            .iter()
            .zip(&e)
            .map(|(w, v)| w.ln() + v * self.robust_step_size)
            .collect();
        self.weights = softmax(&logits);
        Ok(self.weights.clone())
    }
}

impl GradientMethod for ExcessMtl {
    fn name(&self) -> &str {
        "excess-mtl"
    }

    fn validate(&self) -> crate::Result<()> {
        check(
            "excess-mtl",
            "robust_step_size",
            self.robust_step_size,
            Rule::Positive,
        )
    }

    fn combine(&mut self, step: &GradientStep) -> crate::Result<Aggregate> {
        let w = self.step(&step.rows()?).map_err(|e| step.fail(e))?;
        Ok(Aggregate::Weights(w))
    }
}
