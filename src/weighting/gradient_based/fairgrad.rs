//! FairGrad: alpha-fair gradient weighting.

use super::method::GramianWeighting;
use crate::error::Result;
use crate::solvers::matrix::{check_gramian, uniform};
use crate::solvers::solve_power_balance;
use crate::weighting::hyper::{check, Rule};

/// FairGrad: weights `w > 0` solving `(G G^T) w = w^(-1/alpha)` (elementwise power), i.e. the
/// update `d = J^T w` gives every task the alpha-fair utility balance `g_i . d = w_i^(-1/alpha)`.
/// `alpha = 1` gives proportional fairness (the Nash-MTL system without normalisation); `alpha = 0`
/// returns uniform weights, as torchjd does.
///
/// Solver: the system is the stationarity condition of a strictly convex function and is solved
/// to machine precision by damped Newton ([`crate::solvers::solve_power_balance`]) from `1/K`.
/// torchjd runs scipy's `least_squares` (trust-region reflective, tolerances 1e-8) on the same
/// residual, which reaches the same root to about 1e-8. Returns `Err` if no positive root exists
/// (0 in the convex hull of the task gradients).
///
/// Paper: H. Ban and K. Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `alpha` | `1.0` | `>= 0` | fairness parameter (0: uniform, 1: proportional, large: max-min) |
///
/// Needs: the Gramian only (raw, not normalised). Cost per step: O(K^2 d) for the Gramian +
/// O(K^3) per Newton step (typically 5-30 steps).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct FairGrad {
    /// Fairness parameter alpha.
    pub alpha: f64,
}

impl Default for FairGrad {
    fn default() -> Self {
        FairGrad { alpha: 1.0 }
    }
}

impl FairGrad {
    /// FairGrad with fairness parameter `alpha`; refused with
    /// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) unless finite and
    /// `>= 0`.
    pub fn new(alpha: f64) -> Result<Self> {
        let s = FairGrad { alpha };
        GramianWeighting::validate(&s)?;
        Ok(s)
    }
}

impl GramianWeighting for FairGrad {
    fn name(&self) -> &str {
        "fairgrad"
    }

    fn validate(&self) -> Result<()> {
        check("fairgrad", "alpha", self.alpha, Rule::NonNegative)
    }

    fn weights(&self, gramian: &[Vec<f64>]) -> std::result::Result<Vec<f64>, String> {
        let k = check_gramian(gramian)?;
        if self.alpha == 0.0 {
            return Ok(uniform(k));
        }
        solve_power_balance(gramian, self.alpha, &uniform(k))
    }
}
