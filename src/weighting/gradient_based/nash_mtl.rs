//! Nash-MTL: multi-task learning as a bargaining game.

use super::method::{Aggregate, GradientMethod, GradientStep};
use std::collections::HashMap;

use crate::solvers::matrix::{check_gramian, check_vector, gramian, quad_form};
use crate::solvers::solve_power_balance;
use crate::weighting::hyper::{at_least, check, Rule};

/// Nash-MTL: the Nash bargaining solution, weights `a > 0` with `M a = 1 / a` (elementwise),
/// `M = G G^T / ||G G^T||_F`, then rescaled so that `||J^T a|| <= max_norm`.
///
/// Solver: the reference (torchjd, following the official code) runs a sequential convex
/// approximation with an interior-point solver, stopping once `||M a - 1/a|| < 1e-3` or after 20
/// iterations. Here the system is solved exactly: it is the stationarity condition of the strictly
/// convex `1/2 a^T M a - sum ln a_i`, minimised by damped Newton
/// ([`crate::solvers::solve_power_balance`]) warm-started from the previous solution. On well
/// conditioned inputs this agrees with the reference to its 1e-3 tolerance; on ill-conditioned ones
/// the reference stops early and differs. No solution exists when 0 is in the convex hull of the
/// task gradients (then `Err`).
///
/// State: `step` (number of calls) and `prvs_alpha` (last solution, unscaled; starts at ones).
/// Weights are recomputed when `step % update_weights_every == 0`, otherwise the previous ones are
/// reused (rescaled for the new gradients).
///
/// Paper: A. Navon, A. Shamsian, I. Achituve, H. Maron, K. Kawaguchi, G. Chechik and E. Fetaya,
/// "Multi-Task Learning as a Bargaining Game", ICML 2022.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `max_norm` | `1.0` | `>= 0` (0 disables) | maximum norm of the update `J^T a` |
/// | `update_weights_every` | `1` | `>= 1` | recompute the weights every this many calls |
///
/// Needs: the Gramian only. Cost per step: O(K^2 d) for the Gramian + O(K^3) per Newton step
/// (typically 5-30 steps).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct NashMtl {
    /// Maximum norm of the aggregated update; 0 disables the clipping.
    pub max_norm: f64,
    /// Recompute the weights every `update_weights_every` calls.
    pub update_weights_every: usize,
    step: usize,
    prvs_alpha: Option<Vec<f64>>,
}

impl Default for NashMtl {
    fn default() -> Self {
        NashMtl {
            max_norm: 1.0,
            update_weights_every: 1,
            step: 0,
            prvs_alpha: None,
        }
    }
}

impl NashMtl {
    /// Creates the method with the given hyper-parameters, fresh state; refused with
    /// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) outside the ranges
    /// of the table above.
    pub fn new(max_norm: f64, update_weights_every: usize) -> crate::Result<Self> {
        let s = NashMtl {
            max_norm,
            update_weights_every,
            step: 0,
            prvs_alpha: None,
        };
        GradientMethod::validate(&s)?;
        Ok(s)
    }

    /// Forgets the state: the next call starts from `a = 1` and recomputes the weights.
    pub fn reset(&mut self) {
        self.step = 0;
        self.prvs_alpha = None;
    }

    /// Current state: number of calls so far and the last unscaled solution (`None` = ones).
    pub fn state(&self) -> (usize, Option<&[f64]>) {
        (self.step, self.prvs_alpha.as_deref())
    }

    /// Sets the state (number of calls so far and last unscaled solution, `None` = ones).
    pub fn set_state(&mut self, step: usize, prvs_alpha: Option<Vec<f64>>) -> Result<(), String> {
        if let Some(a) = &prvs_alpha {
            if let Some(i) = a
                .iter()
                .position(|v| !crate::solvers::matrix::pos_finite(*v))
            {
                return Err(format!(
                    "prvs_alpha[{i}] must be positive and finite, got {}",
                    a[i]
                ));
            }
        }
        self.step = step;
        self.prvs_alpha = prvs_alpha;
        Ok(())
    }

    /// Weights for the Gramian `G G^T` of the current gradients; updates the state.
    pub fn weights(&mut self, gram: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let k = check_gramian(gram)?;
        if let Some(a) = &self.prvs_alpha {
            check_vector(
                a,
                k,
                "Nash-MTL state prvs_alpha (call reset() when K changes)",
            )?;
        }
        let alpha = if self.step % self.update_weights_every == 0 {
            let frob = gram
                .iter()
                .flat_map(|r| r.iter())
                .map(|x| x * x)
                .sum::<f64>()
                .sqrt();
            if frob == 0.0 {
                return Err("Nash-MTL: the Gramian is zero (all task gradients vanish)".to_string());
            }
            let m: Vec<Vec<f64>> = gram
                .iter()
                .map(|r| r.iter().map(|x| x / frob).collect())
                .collect();
            let start = self.prvs_alpha.clone().unwrap_or_else(|| vec![1.0; k]);
            let a = solve_power_balance(&m, 1.0, &start)?;
            self.prvs_alpha = Some(a.clone());
            a
        } else {
            self.prvs_alpha.clone().unwrap_or_else(|| vec![1.0; k])
        };
        self.step += 1;
        let mut alpha = alpha;
        if self.max_norm > 0.0 {
            let norm = quad_form(gram, &alpha).max(0.0).sqrt();
            if norm > self.max_norm {
                alpha.iter_mut().for_each(|x| *x *= self.max_norm / norm);
            }
        }
        Ok(alpha)
    }

    /// Forms the Gramian of `rows` (K x d) and returns [`Aggregate::Weights`].
    pub fn aggregate(&mut self, rows: &[Vec<f64>]) -> Result<Aggregate, String> {
        let g = gramian(rows)?;
        Ok(Aggregate::Weights(self.weights(&g)?))
    }
}

impl GradientMethod for NashMtl {
    fn name(&self) -> &str {
        "nash-mtl"
    }

    fn validate(&self) -> crate::Result<()> {
        check("nash-mtl", "max_norm", self.max_norm, Rule::NonNegative)?;
        at_least(
            "nash-mtl",
            "update_weights_every",
            self.update_weights_every,
            1,
        )
    }

    fn combine(&mut self, step: &GradientStep) -> crate::Result<Aggregate> {
        let w = self.weights(&step.gramian()?).map_err(|e| step.fail(e))?;
        Ok(Aggregate::Weights(w))
    }

    fn state(&self) -> crate::Result<Vec<(String, Vec<f64>)>> {
        let (step, alpha) = NashMtl::state(self);
        let mut out = vec![("step".to_string(), vec![step as f64])];
        if let Some(a) = alpha {
            out.push(("alpha".to_string(), a.to_vec()));
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> crate::Result<()> {
        let step = state
            .get("step")
            .and_then(|v| v.first())
            .copied()
            .unwrap_or(0.0) as usize;
        self.set_state(step, state.get("alpha").cloned())
            .map_err(|reason| crate::Error::InvalidDecision {
                strategy: "nash-mtl".into(),
                reason,
            })
    }
}
