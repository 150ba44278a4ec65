//! CAGrad: conflict-averse gradient descent.

use super::method::GramianWeighting;
use crate::error::Result;
use crate::solvers::matrix::{check_gramian, normalize_by_trace, quad_form, uniform};
use crate::solvers::min_norm_hull;
use crate::weighting::hyper::{check, Rule};

/// CAGrad: the update maximises the worst task improvement within a ball around the average
/// gradient, `max_d min_i <g_i, d>` s.t. `||d - g0|| <= c ||g0||`, `g0 = (1/K) sum g_i`.
///
/// Dual form (Algorithm 1 of the paper): with `M` the trace-normalised Gramian,
/// `b = M 1/K`, `sqrt_phi = c ||g0|| = c sqrt(1^T M 1) / K`, solve
/// `w* = argmin_{w in simplex} b^T w + sqrt_phi sqrt(w^T M w)`; the weights are
/// `1/K + sqrt_phi / sqrt(w*^T M w*) * w*` (all zero if that norm is below `norm_eps`, "already
/// Pareto stationary", as torchjd does).
///
/// Solver: the inner problem is solved to machine precision (the reference uses an interior-point
/// SOCP solver with default tolerances). Its optimality conditions are those of the projection
/// `d(mu) = proj_C(-mu g0)` onto the convex hull `C` of the (reduced) gradients with
/// `||d(mu)|| = sqrt_phi * mu`; each projection is an exact min-norm-point problem on the Gramian
/// `M + mu (b 1^T + 1 b^T) + mu^2 ||g0||^2` ([`crate::solvers::min_norm_hull`], Wolfe), and the
/// scalar equation in `mu` is solved by Illinois regula falsi on a guaranteed bracket.
///
/// Paper: B. Liu, X. Liu, X. Jin, P. Stone and Q. Liu, "Conflict-Averse Gradient Descent for
/// Multi-task Learning", NeurIPS 2021.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `c` | `0.5` | `>= 0` (`< 1` for a non-zero update guarantee) | radius of the ball around `g0`, relative to `||g0||` |
/// | `norm_eps` | `1e-4` | `>= 0` | trace threshold of the normalisation and norm threshold of the final rescaling |
///
/// Needs: the Gramian only. Cost per step: O(K^2 d) for the Gramian + about 20-60 exact
/// min-norm solves of O(K^3)-O(K^4) each.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct CaGrad {
    /// Radius of the ball constraint, relative to the norm of the mean gradient.
    pub c: f64,
    /// Threshold used for the trace normalisation and for the final norm test.
    pub norm_eps: f64,
}

impl Default for CaGrad {
    fn default() -> Self {
        CaGrad {
            c: 0.5,
            norm_eps: 1e-4,
        }
    }
}

/// Projection of `-mu g0` onto the hull: simplex weights and `||d||`.
fn project(
    m: &[Vec<f64>],
    b: &[f64],
    g0sq: f64,
    mu: f64,
) -> std::result::Result<(Vec<f64>, f64), String> {
    let k = m.len();
    let p: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            (0..k)
                .map(|j| m[i][j] + mu * (b[i] + b[j]) + mu * mu * g0sq)
                .collect()
        })
        .collect();
    let w = min_norm_hull(&p)?;
    let n = quad_form(m, &w).max(0.0).sqrt();
    Ok((w, n))
}

impl CaGrad {
    /// CAGrad with radius `c` and threshold `norm_eps`; refused with
    /// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) outside the ranges
    /// of the table above.
    pub fn new(c: f64, norm_eps: f64) -> Result<Self> {
        let s = CaGrad { c, norm_eps };
        GramianWeighting::validate(&s)?;
        Ok(s)
    }

    /// Solves the inner problem and returns its simplex minimiser `w*` for the normalised
    /// Gramian `m`, with `b = m 1/K`, `g0sq = ||g0||^2` and `s = sqrt_phi`.
    fn inner(
        m: &[Vec<f64>],
        b: &[f64],
        g0sq: f64,
        s: f64,
    ) -> std::result::Result<Option<Vec<f64>>, String> {
        let k = m.len();
        let max_norm = (0..k).fold(0.0_f64, |a, i| a.max(m[i][i].max(0.0).sqrt()));
        let f = |mu: f64| -> std::result::Result<(Vec<f64>, f64), String> {
            let (w, n) = project(m, b, g0sq, mu)?;
            Ok((w, n - s * mu))
        };
        // Bracket: F(0) = ||min-norm point|| >= 0 and F(hi) <= 0 since ||d|| <= max ||a_i||.
        let mut hi = 2.0 * max_norm / s;
        let (mut w_hi, mut f_hi) = f(hi)?;
        let (mut w_lo, mut f_lo) = f(0.0)?;
        let mut lo = 0.0;
        let scale = max_norm.max(1e-300);
        if f_lo <= 1e-14 * scale {
            // 0 is (numerically) in the hull: look for a positive value at a small mu.
            let mut mu = hi;
            let mut found = false;
            for _ in 0..80 {
                mu *= 0.5;
                let (w, v) = f(mu)?;
                if v > 1e-14 * scale {
                    lo = mu;
                    w_lo = w;
                    f_lo = v;
                    found = true;
                    break;
                }
                hi = mu;
                w_hi = w;
                f_hi = v;
            }
            if !found {
                return Ok(None);
            }
        }
        if f_hi > 0.0 {
            return Err(format!(
                "CAGrad bracket failed: F(hi = {hi}) = {f_hi} is positive"
            ));
        }
        // Illinois regula falsi.
        let mut side = 0i32;
        let mut best = if f_lo.abs() < f_hi.abs() {
            w_lo.clone()
        } else {
            w_hi.clone()
        };
        for _ in 0..200 {
            if hi - lo <= 1e-15 * hi || f_lo - f_hi <= 0.0 {
                break;
            }
            let mut mu = (lo * f_hi - hi * f_lo) / (f_hi - f_lo);
            if !(mu > lo && mu < hi) {
                mu = 0.5 * (lo + hi);
            }
            let (w, v) = f(mu)?;
            best = w.clone();
            if v.abs() <= 1e-16 * scale {
                break;
            }
            if v > 0.0 {
                lo = mu;
                f_lo = v;
                if side == 1 {
                    f_hi *= 0.5;
                }
                side = 1;
            } else {
                hi = mu;
                f_hi = v;
                if side == -1 {
                    f_lo *= 0.5;
                }
                side = -1;
            }
        }
        Ok(Some(best))
    }
}

impl GramianWeighting for CaGrad {
    fn name(&self) -> &str {
        "cagrad"
    }

    fn validate(&self) -> Result<()> {
        check("cagrad", "c", self.c, Rule::NonNegative)?;
        check("cagrad", "norm_eps", self.norm_eps, Rule::NonNegative)
    }

    fn weights(&self, gramian: &[Vec<f64>]) -> std::result::Result<Vec<f64>, String> {
        let k = check_gramian(gramian)?;
        let m = normalize_by_trace(gramian, self.norm_eps);
        let u = uniform(k);
        let b: Vec<f64> = m
            .iter()
            .map(|r| r.iter().zip(&u).map(|(a, c)| a * c).sum())
            .collect();
        let g0sq = quad_form(&m, &u).max(0.0);
        let s = self.c * g0sq.sqrt();
        if s == 0.0 {
            // The objective no longer depends on the norm term: the update is the mean gradient.
            let zero = (0..k).all(|i| m[i][i] == 0.0);
            return Ok(if zero { vec![0.0; k] } else { u });
        }
        let Some(w) = Self::inner(&m, &b, g0sq, s)? else {
            return Ok(vec![0.0; k]);
        };
        let gw = quad_form(&m, &w).max(0.0).sqrt();
        if gw < self.norm_eps {
            return Ok(vec![0.0; k]);
        }
        Ok(u.iter().zip(&w).map(|(a, x)| a + s / gw * x).collect())
    }
}
