//! ConFIG (conflict-free gradient), as in torchjd 0.18.0.

use super::method::{Aggregate, GradientMethod, GradientStep};
use crate::solvers::matrix::{check_rows, dot, norm};

/// One-sided Jacobi SVD of the `d x K` matrix whose columns are `cols` (each of length `d`).
/// Returns the rotated columns `A V` (column `k` has norm `sigma_k`) and `V` (`K x K`, by rows).
fn jacobi_svd(mut cols: Vec<Vec<f64>>) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let k = cols.len();
    let mut v: Vec<Vec<f64>> = (0..k)
        .map(|i| (0..k).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for _sweep in 0..100 {
        let mut rotated = false;
        for p in 0..k {
            for q in p + 1..k {
                let alpha = dot(&cols[p], &cols[p]);
                let beta = dot(&cols[q], &cols[q]);
                let gamma = dot(&cols[p], &cols[q]);
                if gamma == 0.0 || gamma.abs() <= f64::EPSILON * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                let (cp, cq) = (cols[p].clone(), cols[q].clone());
                for i in 0..cp.len() {
                    cols[p][i] = c * cp[i] - s * cq[i];
                    cols[q][i] = s * cp[i] + c * cq[i];
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    (cols, v)
}

/// ConFIG: find the direction `u` whose cosine with every unit task gradient is equal,
/// `u = normalize(pinv(U) 1)` with `U` the matrix of unit rows `g_k / |g_k|` (zero rows stay 0),
/// and scale it by the total projection: `d = (sum_k g_k . u) u`.
///
/// Paper: Q. Liu, M. Chu and N. Thuerey, "ConFIG: Towards Conflict-free Training of Physics
/// Informed Neural Networks", ICLR 2025.
///
/// The pseudo-inverse uses a one-sided Jacobi SVD with torch's default cut-off (singular values
/// below `max(K, d) * f64::EPSILON * sigma_max` are dropped), so rank-deficient inputs (`K > d`,
/// duplicated tasks) are handled as in the reference. Only the default preference vector (all
/// ones) is implemented.
///
/// No hyper-parameters. Needs: full per-task gradients. Cost per step: `O(K^2 d)` per Jacobi
/// sweep (a few sweeps).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConFig;

impl ConFig {
    /// The ConFIG direction for `rows`.
    pub fn direction(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let (k, d) = check_rows(rows)?;
        let units: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                let n = norm(r);
                if n > 0.0 {
                    r.iter().map(|x| x / n).collect()
                } else {
                    vec![0.0; d]
                }
            })
            .collect();
        let (av, v) = jacobi_svd(units);
        let sig: Vec<f64> = av.iter().map(|c| norm(c)).collect();
        let smax = sig.iter().cloned().fold(0.0, f64::max);
        let cutoff = f64::EPSILON * (k.max(d) as f64) * smax;
        let mut best = vec![0.0; d];
        for j in 0..k {
            if sig[j] > cutoff && sig[j] > 0.0 {
                let coef: f64 = v.iter().map(|row| row[j]).sum::<f64>() / (sig[j] * sig[j]);
                for (b, x) in best.iter_mut().zip(&av[j]) {
                    *b += coef * x;
                }
            }
        }
        let bn = norm(&best).max(1e-12);
        let unit: Vec<f64> = best.iter().map(|x| x / bn).collect();
        let length: f64 = rows.iter().map(|r| dot(r, &unit)).sum();
        Ok(unit.iter().map(|x| length * x).collect())
    }
}

impl GradientMethod for ConFig {
    fn name(&self) -> &str {
        "config"
    }

    fn combine(&mut self, step: &GradientStep) -> crate::Result<Aggregate> {
        let d = ConFig::direction(self, &step.rows()?).map_err(|e| step.fail(e))?;
        Ok(Aggregate::Direction(d))
    }
}
