//! COSMOS: linear scalarisation with a cosine-similarity reward.

use super::scalarize::{check_finite, check_same_len, dot, norm, Scalarized};
use crate::error::Result as CrateResult;
use crate::weighting::hyper::{check, Rule};
use crate::weighting::support::solver_error;
use crate::weighting::{Decision, StepInput, TaskWeighting, WeightingSetup};

/// COSMOS scalarisation: `S(L) = r·L - λ cos(r, L)`, `cos(r, L) = r·L / (‖r‖ ‖L‖)`.
///
/// The cosine term pulls the loss vector towards the preference ray `r`, which spreads the
/// solutions obtained for different preferences along the Pareto front.
/// Loss weights: `∂S/∂L = r - λ ( r/(‖r‖ ‖L‖) - cos(r, L) · L / ‖L‖² )`.
///
/// Paper: Ruchte & Grabocka, "Scalable Pareto Front Approximation for Deep Multi-Objective
/// Learning", ICDM 2021. The full method also feeds `r` to the network as an input; only the
/// objective is implemented here. For Pareto-front learning, redraw `r` from a Dirichlet
/// distribution before every call (the caller supplies the draw).
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `lambda` | `2.0` | `[0, ∞)` | weight `λ` of the cosine-similarity reward; `0` gives [`Fixed`](crate::weighting::Fixed) |
/// | `weights` | empty: uniform `1/K` when a trainer is built | finite, not all zero, length K | preference vector `r` |
///
/// Needs: the current losses (not all zero) and a preference vector. Cost: O(K) time and memory.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Cosmos {
    /// Cosine-similarity penalty coefficient `λ` (≥ 0).
    pub lambda: f64,
    /// Preference vector `r`, one entry per task.
    pub weights: Vec<f64>,
}

impl Default for Cosmos {
    fn default() -> Self {
        Self {
            lambda: 2.0,
            weights: Vec::new(),
        }
    }
}

impl Cosmos {
    /// A scalariser with penalty `lambda` and preference `weights`.
    pub fn new(lambda: f64, weights: Vec<f64>) -> Self {
        Self { lambda, weights }
    }

    /// Sets the preference vector (e.g. a fresh Dirichlet draw).
    pub fn set_weights(&mut self, weights: Vec<f64>) {
        self.weights = weights;
    }

    /// Returns `r·L - λ cos(r, L)` and its gradient in `L`.
    ///
    /// # Errors
    /// If `losses` is empty/non-finite or all zero, `weights` has another length, is non-finite or
    /// all zero, or `lambda` is negative or non-finite.
    pub fn scalarize(&self, losses: &[f64]) -> Result<Scalarized, String> {
        check_finite(losses, "COSMOS: losses")?;
        check_same_len(&self.weights, losses, "COSMOS: weights")?;
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(format!(
                "COSMOS: lambda = {} must be finite and >= 0",
                self.lambda
            ));
        }
        let r = &self.weights;
        let (nr, nl) = (norm(r), norm(losses));
        if nr == 0.0 {
            return Err("COSMOS: weights have zero norm; cosine similarity is undefined".into());
        }
        if nl == 0.0 {
            return Err("COSMOS: losses have zero norm; cosine similarity is undefined".into());
        }
        let rl = dot(r, losses);
        let cos = rl / (nr * nl);
        let value = rl - self.lambda * cos;
        let loss_weights = r
            .iter()
            .zip(losses)
            .map(|(ri, li)| ri - self.lambda * (ri / (nr * nl) - cos * li / (nl * nl)))
            .collect();
        Ok(Scalarized {
            value,
            loss_weights,
        })
    }
}

impl TaskWeighting for Cosmos {
    fn name(&self) -> &str {
        "cosmos"
    }

    /// Without a preference, every task gets `1/K`.
    /// Also refuses, before training, a `lambda` that is negative or not finite
    /// ([`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter)).
    fn prepare(&mut self, setup: &WeightingSetup) -> CrateResult<()> {
        check("cosmos", "lambda", self.lambda, Rule::NonNegative)?;
        let k = setup.task_names.len();
        if self.weights.is_empty() {
            self.weights = vec![1.0 / k as f64; k];
        }
        if self.weights.len() != k {
            return Err(crate::Error::IncompatibleWeighting {
                strategy: "cosmos".into(),
                reason: format!(
                    "{} preference weights given for {k} tasks",
                    self.weights.len()
                ),
            });
        }
        Ok(())
    }

    fn decide(&mut self, input: &StepInput) -> CrateResult<Decision> {
        let s = self
            .scalarize(input.losses)
            .map_err(solver_error("cosmos"))?;
        Ok(Decision::Weights(s.loss_weights))
    }
}
