//! MoDo: multi-objective gradient with double sampling.

use super::method::GradientMethod;

use super::method::two_batches;
use super::simplex_state::{simplex_state_accessors, simplex_state_method, SimplexState};
use crate::solvers::matrix::{check_square, mat_vec};
use crate::solvers::project_simplex;
use crate::weighting::hyper::{check, Rule};
use crate::weighting::Needs;

/// MoDo: one projected-gradient step on the MGDA weights per training step, using the product of
/// gradients from two independent mini-batches to get an unbiased estimate of `J J^T lambda`:
/// `lambda <- proj_simplex(lambda - gamma (A lambda + rho lambda))`, `A = J_1 J_2^T`.
/// The returned weights are applied to the gradients of a third batch.
///
/// State: `lambda` (starts at `1/K`).
///
/// Paper: L. Chen, H. Fernando, Y. Ying and T. Chen, "Three-Way Trade-Off in Multi-Objective
/// Learning: Optimization, Generalization and Conflict-Avoidance", NeurIPS 2023 / JMLR 2024.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `gamma` | `0.1` | `> 0` | step size of the weight update |
/// | `rho` | `0.1` | `>= 0` | l2 regularisation of the weights |
///
/// Needs: the K x K cross matrix `A = J_1 J_2^T` of two independent batches (not a Gramian;
/// not symmetric in general), i.e. full gradients of two batches or their cross products.
/// Cost per step: O(K^2 d) for `A` + O(K^2) for the update + O(K log K) for the projection.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct MoDo {
    /// Step size of the weight update.
    pub gamma: f64,
    /// l2 regularisation coefficient of the weights.
    pub rho: f64,
    lambda: SimplexState,
}

impl Default for MoDo {
    fn default() -> Self {
        MoDo {
            gamma: 0.1,
            rho: 0.1,
            lambda: SimplexState::default(),
        }
    }
}

impl MoDo {
    /// Creates the method with the given step size and regularisation, fresh state; refused
    /// with [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) outside the
    /// ranges of the table above.
    pub fn new(gamma: f64, rho: f64) -> crate::Result<Self> {
        let s = MoDo {
            gamma,
            rho,
            lambda: SimplexState::default(),
        };
        GradientMethod::validate(&s)?;
        Ok(s)
    }

    simplex_state_accessors!(lambda, "weights");

    /// One update from the cross matrix `a = J_1 J_2^T` (K x K); returns the new weights.
    pub fn weights(&mut self, a: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let k = check_square(a, "MoDo cross matrix")?;
        let lam = self.lambda.start(k, "MoDo state lambda")?;
        let al = mat_vec(a, &lam);
        let y: Vec<f64> = lam
            .iter()
            .zip(&al)
            .map(|(l, g)| l - self.gamma * (g + self.rho * l))
            .collect();
        let new = project_simplex(&y)?;
        self.lambda.set(Some(new.clone()));
        Ok(new)
    }
}

impl GradientMethod for MoDo {
    fn name(&self) -> &str {
        "modo"
    }

    fn needs(&self) -> Needs {
        two_batches()
    }

    fn validate(&self) -> crate::Result<()> {
        check("modo", "gamma", self.gamma, Rule::Positive)?;
        check("modo", "rho", self.rho, Rule::NonNegative)
    }

    simplex_state_method!(lambda);
}
