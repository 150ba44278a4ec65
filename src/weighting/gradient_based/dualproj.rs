//! DualProj: projection of the averaged gradient onto the dual cone.

use super::method::GramianWeighting;
use super::upgrad::{check_regularisation, regularised_gramian};
use crate::error::Result;
use crate::solvers::dual_cone_weights;
use crate::solvers::matrix::{check_gramian, pref_or_uniform};

/// DualProj: combines the task gradients with the preference weights, then projects the result
/// onto the dual cone of the task gradients.
///
/// Update `pi_J(J^T p)` with `p` the preference vector (default `1/K`); weights
/// `w = argmin w^T H w` s.t. `w >= p`, with `H` = trace-normalised Gramian + `reg_eps * I` (torchjd's
/// regularisation, see [`UPGrad`](crate::weighting::UPGrad)).
///
/// Paper: D. Lopez-Paz and M. Ranzato, "Gradient Episodic Memory for Continual Learning",
/// NeurIPS 2017 (Equation 11); as packaged by Quinton & Rey, "Jacobian Descent for
/// Multi-Objective Optimization", 2024.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `pref_vector` | `None` (= `1/K`) | K finite reals | weights of the combination that is projected |
/// | `norm_eps` | `1e-4` | `>= 0` | trace below which the Gramian is treated as zero |
/// | `reg_eps` | `1e-4` | `> 0` | ridge added to the normalised Gramian |
///
/// Needs: the Gramian only. Solver: one exact non-negative QP ([`crate::solvers::nonneg_qp`]).
/// Cost per step: O(K^2 d) for the Gramian + O(K^4) worst case for the QP.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct DualProj {
    /// Preference vector combining the gradients before projection; `None` means `1/K`.
    pub pref_vector: Option<Vec<f64>>,
    /// Trace threshold below which the Gramian is replaced by zero before solving.
    pub norm_eps: f64,
    /// Ridge added to the diagonal of the trace-normalised Gramian.
    pub reg_eps: f64,
}

impl Default for DualProj {
    fn default() -> Self {
        DualProj {
            pref_vector: None,
            norm_eps: 1e-4,
            reg_eps: 1e-4,
        }
    }
}

impl DualProj {
    /// DualProj with the given preference vector (`None`: `1/K`) and regularisation; refused
    /// with [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) outside the
    /// ranges of the table above.
    pub fn new(pref_vector: Option<Vec<f64>>, norm_eps: f64, reg_eps: f64) -> Result<Self> {
        let s = DualProj {
            pref_vector,
            norm_eps,
            reg_eps,
        };
        GramianWeighting::validate(&s)?;
        Ok(s)
    }
}

impl GramianWeighting for DualProj {
    fn name(&self) -> &str {
        "dualproj"
    }

    fn validate(&self) -> Result<()> {
        check_regularisation("dualproj", &self.pref_vector, self.norm_eps, self.reg_eps)
    }

    fn weights(&self, gramian: &[Vec<f64>]) -> std::result::Result<Vec<f64>, String> {
        let k = check_gramian(gramian)?;
        let pref = pref_or_uniform(&self.pref_vector, k)?;
        let h = regularised_gramian(gramian, self.norm_eps, self.reg_eps);
        dual_cone_weights(&h, &pref)
    }
}
