//! MGDA: the minimum-norm element of the convex hull of the task gradients.

use super::method::GramianWeighting;
use crate::error::Result;
use crate::solvers::matrix::check_gramian;
use crate::solvers::{frank_wolfe_min_norm, min_norm_hull};
use crate::weighting::hyper::{at_least, check, Rule};
use crate::weighting::{GradientSource, Needs};

/// Which solver [`Mgda`] uses.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MgdaSolver {
    /// torchjd's early-stopped Frank-Wolfe iteration (reproduces the reference bit for bit up to
    /// rounding; up to ~0.1 away from the exact min-norm point on ill-conditioned inputs).
    #[default]
    FrankWolfe,
    /// Exact min-norm point by Wolfe's algorithm ([`crate::solvers::min_norm_hull`]).
    Exact,
}

/// MGDA: weights on the simplex whose combination has minimum norm,
/// `w = argmin_{w in simplex} || sum_k w_k g_k ||^2 = argmin w^T (G G^T) w`.
///
/// The default solver is the Frank-Wolfe iteration of Algorithm 2 of Sener & Koltun (start at
/// `1/K`, exact line search towards the best vertex, stop when the step `gamma < epsilon` or after
/// `max_iters` steps), as in torchjd; [`MgdaSolver::Exact`] solves the QP exactly instead.
///
/// Papers: J.-A. Desideri, "Multiple-gradient descent algorithm (MGDA) for multiobjective
/// optimization", C. R. Math. 2012; O. Sener and V. Koltun, "Multi-Task Learning as
/// Multi-Objective Optimization", NeurIPS 2018.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `epsilon` | `1e-3` | `> 0` | Frank-Wolfe stops once the line-search step is below this |
/// | `max_iters` | `100` | `>= 1` | maximum Frank-Wolfe iterations |
/// | `solver` | `FrankWolfe` | `FrankWolfe`, `Exact` | reference iteration or exact min-norm point |
/// | `gradient_source` | shared parameters | shared parameters, representation ([`Mgda::upper_bound`]) | which gradients it prefers |
///
/// Needs: the Gramian only. Cost per step: O(K^2 d) for the Gramian + O(K^2 max_iters)
/// (Frank-Wolfe) or O(K^4) worst case (exact).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Mgda {
    /// Frank-Wolfe stopping threshold on the step size gamma.
    pub epsilon: f64,
    /// Maximum number of Frank-Wolfe iterations.
    pub max_iters: usize,
    /// Reference Frank-Wolfe iteration or exact solve.
    pub solver: MgdaSolver,
    /// Gradients it prefers from the trainer: shared parameters (MGDA) or the shared
    /// representation (MGDA-UB, one encoder backward per step).
    pub gradient_source: crate::weighting::GradientSource,
}

impl Default for Mgda {
    fn default() -> Self {
        Mgda {
            epsilon: 1e-3,
            max_iters: 100,
            solver: MgdaSolver::FrankWolfe,
            gradient_source: crate::weighting::GradientSource::SharedParameters,
        }
    }
}

impl Mgda {
    /// MGDA-UB (Sener & Koltun's upper bound): the same problem on the gradients with respect
    /// to the shared representation, so the encoder is differentiated once per step.
    pub fn upper_bound() -> Self {
        Mgda {
            gradient_source: crate::weighting::GradientSource::Representation,
            ..Mgda::default()
        }
    }
}

impl Mgda {
    /// MGDA with the given Frank-Wolfe settings and solver, on shared-parameter gradients;
    /// refused with [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter)
    /// outside the ranges of the table above.
    pub fn new(epsilon: f64, max_iters: usize, solver: MgdaSolver) -> Result<Self> {
        let s = Mgda {
            epsilon,
            max_iters,
            solver,
            ..Mgda::default()
        };
        GramianWeighting::validate(&s)?;
        Ok(s)
    }

    /// The same method with another solver.
    pub fn with_solver(self, solver: MgdaSolver) -> Self {
        Mgda { solver, ..self }
    }
}

impl GramianWeighting for Mgda {
    fn name(&self) -> &str {
        match self.gradient_source {
            GradientSource::SharedParameters => "mgda",
            GradientSource::Representation => "mgda-ub",
        }
    }

    /// The source set by [`Mgda::upper_bound`] first, the other one also accepted.
    fn needs(&self) -> Needs {
        let other = match self.gradient_source {
            GradientSource::SharedParameters => GradientSource::Representation,
            GradientSource::Representation => GradientSource::SharedParameters,
        };
        Needs::gradients(vec![self.gradient_source, other])
    }

    fn validate(&self) -> Result<()> {
        let name = GramianWeighting::name(self);
        check(name, "epsilon", self.epsilon, Rule::Positive)?;
        at_least(name, "max_iters", self.max_iters, 1)
    }

    fn weights(&self, gramian: &[Vec<f64>]) -> std::result::Result<Vec<f64>, String> {
        check_gramian(gramian)?;
        match self.solver {
            MgdaSolver::FrankWolfe => frank_wolfe_min_norm(gramian, self.epsilon, self.max_iters),
            MgdaSolver::Exact => min_norm_hull(gramian),
        }
    }
}
