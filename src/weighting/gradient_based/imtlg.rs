//! IMTL-G: impartial multi-task learning, gradient part.

use super::method::GramianWeighting;
use crate::solvers::matrix::{check_gramian, mat_vec};
use crate::solvers::pinv_sym;

/// IMTL-G: weights such that the update has equal projections onto every unit task gradient.
///
/// `v = pinv(G G^T) sqrt(diag(G G^T))`, `w = v / sum(v)` (all zero if `|sum v| < 1e-12`). The
/// pseudo-inverse drops eigenvalues below `K * eps * lambda_max` (torch.linalg.pinv's default), so
/// linearly dependent gradients are supported.
///
/// Papers: L. Liu, Y. Li, Z. Kuang, J.-H. Xue, Y. Chen, W. Yang, Q. Liao and W. Zhang, "Towards
/// Impartial Multi-task Learning", ICLR 2021; generalised to dependent rows by Quinton & Rey,
/// "Jacobian Descent for Multi-Objective Optimization", 2024.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | (none) | | | |
///
/// Needs: the Gramian only. Solver: Jacobi eigendecomposition ([`crate::solvers::pinv_sym`]).
/// Cost per step: O(K^2 d) for the Gramian + O(K^3) per Jacobi sweep.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Imtlg;

impl GramianWeighting for Imtlg {
    fn name(&self) -> &str {
        "imtl-g"
    }

    fn weights(&self, gramian: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let k = check_gramian(gramian)?;
        let d: Vec<f64> = (0..k).map(|i| gramian[i][i].max(0.0).sqrt()).collect();
        let pinv = pinv_sym(gramian, k as f64 * f64::EPSILON)?;
        let v = mat_vec(&pinv, &d);
        let total: f64 = v.iter().sum();
        if total.abs() < 1e-12 {
            return Ok(vec![0.0; k]);
        }
        Ok(v.iter().map(|x| x / total).collect())
    }
}
