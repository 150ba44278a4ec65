//! PCD (Priority-Constrained Descent), as in torchjd 0.18.0.

use super::method::{Aggregate, GradientMethod, GradientStep};
use std::collections::HashMap;

use crate::solvers::matrix::check_square_of;
use crate::solvers::solve_linear_with;
use crate::weighting::hyper::{check, check_all, Rule};

/// PCD: row 0 is the primary objective. With normalised gradients `~g_i = s_i g_i`,
/// `s_i = 1 / sqrt(v_i + eps)` (`v_i` the bias-corrected EMA of `|g_i|^2` with decay `beta`),
/// solve `min_d |d - ~g_1|^2 / 2` s.t. `~g_j . d >= tau |~g_j|^2` for every secondary `j`, and
/// rescale `d` to `|g_1|`. The solution is `d = ~g_1 + sum_j mu_j ~g_j` (KKT multipliers
/// `mu >= 0`), so the weights are `w = [1, mu] * s * |g_1| / |d|`.
///
/// Paper: D. Varam et al., "Not All Objectives Are Born Equal: Priority-Constrained Descent for
/// Hierarchical Multi-Objective Optimization", TMLR 2026 (as cited by torchjd 0.18.0).
///
/// The QP is solved on the Gramian with the dual active-set method of Goldfarb and Idnani (1983)
/// for an identity Hessian, replicating torchjd's tolerances (`tol = 1e-9` on constraint
/// violation relative to the largest diagonal entry, dependence tolerance
/// `max(1e-9, 10 f64::EPSILON)`, at most `10 K` iterations). Infeasible constraints are dropped
/// (`w = [1, 0, ...]` before rescaling); `g_1 = 0` or `d = 0` gives zero weights.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `tau` | 0.02 | [0, 1] | guaranteed fraction of normalised progress for every secondary objective |
/// | `taus` | `None` | length `K - 1`, in [0, 1] | per-objective `tau` (overrides `tau`) |
/// | `beta` | 0.999 | [0, 1) | EMA decay of the squared gradient norms |
/// | `eps` | 1e-8 | >= 0 | added to the EMA before the inverse square root |
///
/// State: `sq_norm_ema` and `n_steps` (public; [`Pcd::reset`] clears them; reset when `K` changes).
///
/// Needs: full per-task gradients (only through their Gramian). Cost per step: `O(K^2 d)` for
/// the Gramian plus `O(K^4)` for the active-set solve.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Pcd {
    /// Shared progress fraction.
    pub tau: f64,
    /// Optional per-objective progress fractions (length `K - 1`).
    pub taus: Option<Vec<f64>>,
    /// EMA decay.
    pub beta: f64,
    /// Added to the EMA.
    pub eps: f64,
    /// EMA of the squared norms (state).
    pub sq_norm_ema: Vec<f64>,
    /// Number of EMA updates (state).
    pub n_steps: i32,
}

impl Default for Pcd {
    fn default() -> Self {
        Self {
            tau: 0.02,
            taus: None,
            beta: 0.999,
            eps: 1e-8,
            sq_norm_ema: Vec::new(),
            n_steps: 0,
        }
    }
}

/// Goldfarb-Idnani dual active-set solve of PCD's QP on a (normalised) Gramian.
/// Returns `[1, mu_2, ..., mu_m]`.
fn solve_qp(
    g: &[Vec<f64>],
    taus: &[f64],
    tol: f64,
    dependence_tol: f64,
) -> Result<Vec<f64>, String> {
    let m = g.len();
    let mut weights = vec![0.0; m];
    weights[0] = 1.0;
    if m == 1 {
        return Ok(weights);
    }
    let max_iters = 10 * m;
    let n = m - 1;
    let gs = |a: usize, b: usize| g[a + 1][b + 1];
    let b: Vec<f64> = (0..n).map(|j| taus[j] * gs(j, j) - g[j + 1][0]).collect();
    let mut mu = vec![0.0; n];
    let maxdiag = (0..m).map(|i| g[i][i]).fold(f64::NEG_INFINITY, f64::max);
    let atol = tol * maxdiag.max(f64::MIN_POSITIVE);
    let mut active: Vec<usize> = Vec::new();
    let mut n_iters = 0;
    let slack_of =
        |j: usize, mu: &[f64]| -> f64 { (0..n).map(|l| gs(j, l) * mu[l]).sum::<f64>() - b[j] };
    while n_iters < max_iters {
        let mut slacks: Vec<f64> = (0..n).map(|j| slack_of(j, &mu)).collect();
        for &a in &active {
            slacks[a] = 0.0;
        }
        let mut p = 0;
        for j in 1..n {
            if slacks[j] < slacks[p] {
                p = j;
            }
        }
        if slacks[p] >= -atol {
            break;
        }
        let mut slack_p = slacks[p];
        while n_iters < max_iters {
            n_iters += 1;
            let (r, z_sq, k_idx, partial) = if active.is_empty() {
                (Vec::new(), gs(p, p), None, f64::INFINITY)
            } else {
                let sub: Vec<Vec<f64>> = active
                    .iter()
                    .map(|&a| active.iter().map(|&c| gs(a, c)).collect())
                    .collect();
                let rhs: Vec<f64> = active.iter().map(|&a| gs(a, p)).collect();
                let r = solve_linear_with(&sub, &rhs, 0.0)
                    .map_err(|e| format!("PCD active-set solve: {e}"))?;
                let z = gs(p, p)
                    - active
                        .iter()
                        .zip(&r)
                        .map(|(&a, ri)| gs(p, a) * ri)
                        .sum::<f64>();
                let mut best = f64::INFINITY;
                let mut kk = 0;
                for (idx, (&a, ri)) in active.iter().zip(&r).enumerate() {
                    let ratio = if *ri > 0.0 { mu[a] / ri } else { f64::INFINITY };
                    if ratio < best {
                        best = ratio;
                        kk = idx;
                    }
                }
                (r, z, Some(kk), best)
            };
            let nonzero = z_sq > dependence_tol * gs(p, p);
            let full = if nonzero {
                -slack_p / z_sq
            } else {
                f64::INFINITY
            };
            let step = partial.min(full);
            if step == f64::INFINITY {
                return Ok(weights);
            }
            for (&a, ri) in active.iter().zip(&r) {
                mu[a] -= step * ri;
            }
            mu[p] += step;
            if full <= partial {
                active.push(p);
                break;
            }
            if let Some(kk) = k_idx {
                mu[active[kk]] = 0.0;
                active.remove(kk);
            }
            slack_p = slack_of(p, &mu);
        }
    }
    for j in 0..n {
        weights[j + 1] = mu[j].max(0.0);
    }
    Ok(weights)
}

impl Pcd {
    /// PCD with progress fraction `tau`, optional per-objective fractions `taus`, EMA decay
    /// `beta` and guard `eps`; refused with
    /// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) outside the ranges
    /// of the table above.
    pub fn new(tau: f64, taus: Option<Vec<f64>>, beta: f64, eps: f64) -> crate::Result<Self> {
        let s = Pcd {
            tau,
            taus,
            beta,
            eps,
            ..Self::default()
        };
        GradientMethod::validate(&s)?;
        Ok(s)
    }

    /// Clears the EMA state.
    pub fn reset(&mut self) {
        self.sq_norm_ema.clear();
        self.n_steps = 0;
    }

    /// Weights from a Gramian (row/column 0 = primary objective); updates the EMA state.
    pub fn weights_from_gramian(&mut self, gram: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let m = gram.len();
        check_square_of(gram, m, "gramian")?;
        if m == 0 {
            return Err("PCD: no objectives".to_string());
        }
        let taus = match &self.taus {
            Some(t) => {
                if t.len() != m - 1 {
                    return Err(format!(
                        "PCD: taus has {} values, expected one per secondary objective ({})",
                        t.len(),
                        m - 1
                    ));
                }
                t.clone()
            }
            None => vec![self.tau; m - 1],
        };
        if self.sq_norm_ema.len() != m {
            self.sq_norm_ema = vec![0.0; m];
            self.n_steps = 0;
        }
        let sq: Vec<f64> = (0..m).map(|i| gram[i][i]).collect();
        self.n_steps += 1;
        for (e, s) in self.sq_norm_ema.iter_mut().zip(&sq) {
            *e = self.beta * *e + (1.0 - self.beta) * s;
        }
        let corr = 1.0 - self.beta.powi(self.n_steps);
        let scales: Vec<f64> = self
            .sq_norm_ema
            .iter()
            .map(|e| {
                let den = (e / corr + self.eps).sqrt();
                if den > 0.0 {
                    1.0 / den
                } else {
                    0.0
                }
            })
            .collect();
        let precision = 10.0 * f64::EPSILON;
        let mut weights = vec![0.0; m];
        if sq[0] > 0.0 {
            let ng: Vec<Vec<f64>> = (0..m)
                .map(|i| (0..m).map(|j| gram[i][j] * scales[i] * scales[j]).collect())
                .collect();
            let w = solve_qp(&ng, &taus, 1e-9, precision.max(1e-9))?;
            let mut dsq = 0.0;
            for i in 0..m {
                for j in 0..m {
                    dsq += w[i] * ng[i][j] * w[j];
                }
            }
            let mag: f64 = (0..m)
                .map(|i| w[i].abs() * ng[i][i].max(0.0).sqrt())
                .sum::<f64>()
                .powi(2);
            if dsq > precision * mag {
                let f = (sq[0] / dsq).sqrt();
                for i in 0..m {
                    weights[i] = w[i] * scales[i] * f;
                }
            }
        }
        Ok(weights)
    }
}

impl GradientMethod for Pcd {
    fn name(&self) -> &str {
        "pcd"
    }

    fn validate(&self) -> crate::Result<()> {
        check("pcd", "tau", self.tau, Rule::UnitClosed)?;
        if let Some(t) = &self.taus {
            check_all("pcd", "taus", t, Rule::UnitClosed)?;
        }
        check("pcd", "beta", self.beta, Rule::UnitHalfOpen)?;
        check("pcd", "eps", self.eps, Rule::NonNegative)
    }

    fn combine(&mut self, step: &GradientStep) -> crate::Result<Aggregate> {
        let w = self
            .weights_from_gramian(&step.gramian()?)
            .map_err(|e| step.fail(e))?;
        Ok(Aggregate::Weights(w))
    }

    fn state(&self) -> crate::Result<Vec<(String, Vec<f64>)>> {
        Ok(vec![
            ("sq_norm_ema".into(), self.sq_norm_ema.clone()),
            ("n_steps".into(), vec![f64::from(self.n_steps)]),
        ])
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> crate::Result<()> {
        if let Some(v) = state.get("sq_norm_ema") {
            self.sq_norm_ema = v.clone();
        }
        if let Some(n) = state.get("n_steps").and_then(|v| v.first()) {
            self.n_steps = *n as i32;
        }
        Ok(())
    }
}
