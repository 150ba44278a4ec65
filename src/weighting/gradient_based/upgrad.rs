//! UPGrad: unconflicting projection of gradients.

use super::method::GramianWeighting;
use crate::error::Result;
use crate::solvers::dual_cone_weights;
use crate::solvers::matrix::{add_ridge, check_gramian, normalize_by_trace, pref_or_uniform};
use crate::weighting::hyper::{check, check_all, Rule};

/// UPGrad: projects each task gradient onto the dual cone of all task gradients and combines
/// the projections with the preference weights.
///
/// With `J` the K x d gradient matrix and `p` the preference vector (default `1/K`), the update is
/// `sum_i p_i * pi_J(g_i)`, where `pi_J` is the Euclidean projection onto the dual cone
/// `{x : J x >= 0}`. In weight space, `pi_J(J^T u) = J^T v` with `v = argmin v^T H v` s.t. `v >= u`,
/// so the weights are `w = sum_i v(p_i e_i)`. As in torchjd, `H` is the Gramian divided by its trace
/// (replaced by 0 when the trace is below `norm_eps`) plus `reg_eps * I`; without that ridge the
/// weights differ from the reference at the 1e-4 level.
///
/// Paper: P. Quinton and V. Rey, "Jacobian Descent for Multi-Objective Optimization", 2024
/// (arXiv:2406.16232).
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `pref_vector` | `None` (= `1/K`) | K finite reals | weights used to combine the projected gradients |
/// | `norm_eps` | `1e-4` | `>= 0` | trace below which the Gramian is treated as zero |
/// | `reg_eps` | `1e-4` | `> 0` | ridge added to the normalised Gramian (makes the QP strictly convex) |
///
/// Needs: the Gramian only. Solver: K exact non-negative QPs ([`crate::solvers::nonneg_qp`],
/// primal active set). Cost per step: O(K^2 d) for the Gramian + O(K * K^4) worst case for the K
/// QPs (microseconds for K = 10).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct UPGrad {
    /// Preference vector combining the projected gradients; `None` means uniform `1/K`.
    pub pref_vector: Option<Vec<f64>>,
    /// Trace threshold below which the Gramian is replaced by zero before solving.
    pub norm_eps: f64,
    /// Ridge added to the diagonal of the trace-normalised Gramian.
    pub reg_eps: f64,
}

impl Default for UPGrad {
    fn default() -> Self {
        UPGrad {
            pref_vector: None,
            norm_eps: 1e-4,
            reg_eps: 1e-4,
        }
    }
}

impl UPGrad {
    /// UPGrad with the given preference vector (`None`: `1/K`) and regularisation; refused
    /// with [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) outside the
    /// ranges of the table above.
    pub fn new(pref_vector: Option<Vec<f64>>, norm_eps: f64, reg_eps: f64) -> Result<Self> {
        let s = UPGrad {
            pref_vector,
            norm_eps,
            reg_eps,
        };
        GramianWeighting::validate(&s)?;
        Ok(s)
    }
}

/// Checks torchjd's regularisation parameters and preference vector (UPGrad, DualProj).
pub(crate) fn check_regularisation(
    strategy: &str,
    pref_vector: &Option<Vec<f64>>,
    norm_eps: f64,
    reg_eps: f64,
) -> Result<()> {
    if let Some(p) = pref_vector {
        check_all(strategy, "pref_vector", p, Rule::Finite)?;
    }
    check(strategy, "norm_eps", norm_eps, Rule::NonNegative)?;
    check(strategy, "reg_eps", reg_eps, Rule::Positive)
}

/// torchjd's regularised Gramian `normalize(G) + reg_eps I`.
pub(crate) fn regularised_gramian(
    gramian: &[Vec<f64>],
    norm_eps: f64,
    reg_eps: f64,
) -> Vec<Vec<f64>> {
    add_ridge(&normalize_by_trace(gramian, norm_eps), reg_eps)
}

impl GramianWeighting for UPGrad {
    fn name(&self) -> &str {
        "upgrad"
    }

    fn validate(&self) -> Result<()> {
        check_regularisation("upgrad", &self.pref_vector, self.norm_eps, self.reg_eps)
    }

    fn weights(&self, gramian: &[Vec<f64>]) -> std::result::Result<Vec<f64>, String> {
        let k = check_gramian(gramian)?;
        let pref = pref_or_uniform(&self.pref_vector, k)?;
        let h = regularised_gramian(gramian, self.norm_eps, self.reg_eps);
        let mut w = vec![0.0; k];
        let mut u = vec![0.0; k];
        for i in 0..k {
            u.iter_mut().for_each(|x| *x = 0.0);
            u[i] = pref[i];
            let v = dual_cone_weights(&h, &u)?;
            for (a, b) in w.iter_mut().zip(&v) {
                *a += b;
            }
        }
        Ok(w)
    }
}
