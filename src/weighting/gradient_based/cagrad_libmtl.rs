//! CAGrad (Conflict-Averse Gradient descent), as in LibMTL 1.1.5.

use super::method::{Aggregate, GradientMethod, GradientStep};
use crate::solvers::matrix::{check_rows, check_square_of, check_vector, gramian, mat_vec};
use crate::solvers::min_norm::project_to_simplex;
use crate::weighting::hyper::{check, Rule};

/// How CAGrad rescales its update (LibMTL's `rescale`).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaGradRescale {
    /// `rescale = 0`: no rescaling.
    None,
    /// `rescale = 1` (default): divide by `1 + calpha^2`.
    #[default]
    OnePlusAlphaSquared,
    /// `rescale = 2`: divide by `1 + calpha`.
    OnePlusAlpha,
}

/// Everything one CAGrad step produces.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct CaGradOutput {
    /// Inner-problem weights `w` on the simplex (what LibMTL's `backward` returns).
    pub inner_weights: Vec<f64>,
    /// `lambda = c / (|g_w| + 1e-8)`.
    pub lambda: f64,
    /// Coefficients of the update on the raw gradients: `(1/K + lambda w_k) / rescale`.
    pub coefficients: Vec<f64>,
}

/// CAGrad: the update maximises the worst-task improvement within a ball around the average
/// gradient `g_0`. With `A` the Gramian, `b = 1/K`, `c = calpha sqrt(mean(A) + 1e-8) + 1e-8`,
/// the inner problem is `w = argmin_{w in simplex} w^T A b + c sqrt(w^T A w + 1e-8)`, and
/// `d = (g_0 + lambda g_w) / s` with `g_w = sum_k w_k g_k`, `lambda = c / (|g_w| + 1e-8)`,
/// `s = 1 + calpha^2` (rescale 1), `1 + calpha` (rescale 2) or 1 (rescale 0).
///
/// Paper: B. Liu, X. Liu, X. Jin, P. Stone and Q. Liu, "Conflict-Averse Gradient Descent for
/// Multi-task Learning", NeurIPS 2021.
///
/// LibMTL solves the inner problem with scipy SLSQP (default `ftol` 1e-6), so its weights are only
/// accurate to about 1e-4; this crate solves it to near machine precision with projected gradient
/// descent (Barzilai-Borwein steps with backtracking) on the simplex. LibMTL 1.1.5 only runs with
/// 3 tasks; this implementation accepts any `K >= 1`.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `calpha` | 0.5 | >= 0 | radius of the ball, relative to `|g_0|` |
/// | `rescale` | `OnePlusAlphaSquared` | 3 variants | final rescaling of the update |
/// | `max_iter` | 20000 | >= 1 | projected-gradient iterations for the inner problem |
/// | `tol` | 1e-15 | >= 0 | stop when an iteration moves `w` by less than this (L1) |
///
/// Needs: full per-task gradients (only through their Gramian). Cost per step: `O(K^2 d)` for the
/// Gramian plus `O(K^2)` per inner iteration.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaGradLibMtl {
    /// Radius parameter `c` of the paper (LibMTL `calpha`).
    pub calpha: f64,
    /// Final rescaling.
    pub rescale: CaGradRescale,
    /// Inner-solver iteration cap.
    pub max_iter: usize,
    /// Inner-solver stopping tolerance.
    pub tol: f64,
}

impl Default for CaGradLibMtl {
    fn default() -> Self {
        Self {
            calpha: 0.5,
            rescale: CaGradRescale::OnePlusAlphaSquared,
            max_iter: 20000,
            tol: 1e-15,
        }
    }
}

impl CaGradLibMtl {
    /// LibMTL's CAGrad with radius `calpha` and the given rescaling; refused with
    /// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) unless `calpha` is
    /// finite and `>= 0`.
    pub fn new(calpha: f64, rescale: CaGradRescale) -> crate::Result<Self> {
        let s = CaGradLibMtl {
            calpha,
            rescale,
            ..Self::default()
        };
        GradientMethod::validate(&s)?;
        Ok(s)
    }

    /// The inner objective `w^T A b + c sqrt(w^T A w + 1e-8)` for Gramian `a`, with `b = 1/K` and
    /// `c = calpha sqrt(mean(A) + 1e-8) + 1e-8`; useful to compare inner solutions.
    pub fn inner_objective(&self, a: &[Vec<f64>], w: &[f64]) -> Result<f64, String> {
        let k = a.len();
        check_square_of(a, k, "gramian")?;
        check_vector(w, k, "w")?;
        let c = self.radius(a);
        let b = vec![1.0 / k as f64; k];
        let ab = mat_vec(a, &b);
        let aw = mat_vec(a, w);
        let q: f64 = w.iter().zip(&aw).map(|(u, v)| u * v).sum();
        Ok(w.iter().zip(&ab).map(|(u, v)| u * v).sum::<f64>() + c * (q + 1e-8).max(0.0).sqrt())
    }

    fn radius(&self, a: &[Vec<f64>]) -> f64 {
        let k = a.len();
        let mean_a = a.iter().flat_map(|r| r.iter()).sum::<f64>() / (k * k) as f64;
        self.calpha * (mean_a + 1e-8).sqrt() + 1e-8
    }

    /// Inner weights from the Gramian `a` (`K x K`) and `c`.
    fn solve_inner(&self, a: &[Vec<f64>], c: f64) -> Vec<f64> {
        let k = a.len();
        let b = vec![1.0 / k as f64; k];
        let ab = mat_vec(a, &b);
        let f = |x: &[f64]| -> f64 {
            let ax = mat_vec(a, x);
            let q: f64 = x.iter().zip(&ax).map(|(u, v)| u * v).sum();
            x.iter().zip(&ab).map(|(u, v)| u * v).sum::<f64>() + c * (q + 1e-8).max(0.0).sqrt()
        };
        let grad = |x: &[f64]| -> Vec<f64> {
            let ax = mat_vec(a, x);
            let q: f64 = x.iter().zip(&ax).map(|(u, v)| u * v).sum();
            let s = (q + 1e-8).max(1e-300).sqrt();
            ab.iter().zip(&ax).map(|(u, v)| u + c * v / s).collect()
        };
        let mut x = b.clone();
        let mut fx = f(&x);
        let mut gx = grad(&x);
        let scale = a
            .iter()
            .flat_map(|r| r.iter())
            .fold(0.0_f64, |m, v| m.max(v.abs()));
        let mut step = if scale > 0.0 { 1.0 / scale } else { 1.0 };
        for _ in 0..self.max_iter {
            // Backtracking on the projected-gradient arc.
            let mut t = step;
            let mut accepted = None;
            for _ in 0..60 {
                let y: Vec<f64> = x.iter().zip(&gx).map(|(xi, gi)| xi - t * gi).collect();
                let xn = project_to_simplex(&y);
                let fxn = f(&xn);
                let decrease: f64 = gx
                    .iter()
                    .zip(xn.iter().zip(&x))
                    .map(|(g, (n, o))| g * (n - o))
                    .sum();
                let dist2: f64 = xn.iter().zip(&x).map(|(n, o)| (n - o) * (n - o)).sum();
                if fxn <= fx + decrease + dist2 / (2.0 * t) + 1e-16 * fx.abs() {
                    accepted = Some((xn, fxn));
                    break;
                }
                t *= 0.5;
            }
            let Some((xn, fxn)) = accepted else { break };
            let change: f64 = xn.iter().zip(&x).map(|(n, o)| (n - o).abs()).sum();
            let gn = grad(&xn);
            // Barzilai-Borwein step for the next iteration.
            let s: Vec<f64> = xn.iter().zip(&x).map(|(n, o)| n - o).collect();
            let yv: Vec<f64> = gn.iter().zip(&gx).map(|(n, o)| n - o).collect();
            let sy: f64 = s.iter().zip(&yv).map(|(p, q)| p * q).sum();
            let ss: f64 = s.iter().map(|p| p * p).sum();
            step = if sy > 0.0 { ss / sy } else { t * 2.0 };
            x = xn;
            fx = fxn;
            gx = gn;
            if change <= self.tol {
                break;
            }
        }
        x
    }

    /// One CAGrad step.
    pub fn step(&self, rows: &[Vec<f64>]) -> Result<CaGradOutput, String> {
        let (k, _) = check_rows(rows)?;
        let a = gramian(rows)?;
        let c = self.radius(&a);
        let w = self.solve_inner(&a, c);
        let aw = mat_vec(&a, &w);
        let gw_norm = w
            .iter()
            .zip(&aw)
            .map(|(u, v)| u * v)
            .sum::<f64>()
            .max(0.0)
            .sqrt();
        let lambda = c / (gw_norm + 1e-8);
        let s = match self.rescale {
            CaGradRescale::None => 1.0,
            CaGradRescale::OnePlusAlphaSquared => 1.0 + self.calpha * self.calpha,
            CaGradRescale::OnePlusAlpha => 1.0 + self.calpha,
        };
        let coefficients = w
            .iter()
            .map(|wk| (1.0 / k as f64 + lambda * wk) / s)
            .collect();
        Ok(CaGradOutput {
            inner_weights: w,
            lambda,
            coefficients,
        })
    }
}

impl GradientMethod for CaGradLibMtl {
    fn name(&self) -> &str {
        "cagrad-libmtl"
    }

    fn validate(&self) -> crate::Result<()> {
        check("cagrad-libmtl", "calpha", self.calpha, Rule::NonNegative)?;
        check("cagrad-libmtl", "tol", self.tol, Rule::Positive)?;
        if self.max_iter == 0 {
            return Err(crate::weighting::hyper::refuse(
                "cagrad-libmtl",
                "max_iter",
                0,
                "at least 1",
            ));
        }
        Ok(())
    }

    fn combine(&mut self, step: &GradientStep) -> crate::Result<Aggregate> {
        let out = self.step(&step.rows()?).map_err(|e| step.fail(e))?;
        Ok(Aggregate::Weights(out.coefficients))
    }
}
