//! Penalty-based Boundary Intersection (PBI).

use super::scalarize::{check_finite, check_same_len, dot, norm, Scalarized};
use crate::error::Result as CrateResult;
use crate::weighting::hyper::{check, Rule};
use crate::weighting::support::solver_error;
use crate::weighting::{Decision, StepInput, TaskWeighting, WeightingSetup};

/// Constant added under PBI's square root so the perpendicular distance is differentiable on
/// the preference ray (as in the reference).
pub const PBI_EPSILON: f64 = 1e-12;

/// PBI scalarisation: with `f = L - z*` and the unit preference direction `ŵ = w/‖w‖`,
/// `d1 = f·ŵ`, `p = f - d1 ŵ`, `d2 = sqrt(p·p + 1e-12)`, `S(L) = d1 + θ d2`.
///
/// `d1` measures progress along the preference ray, `d2` the distance from it, penalised by `θ`.
/// Loss weights: `∂S/∂L = ŵ + θ p / d2` (note they can be negative).
///
/// Paper: Zhang & Li, "MOEA/D: A Multiobjective Evolutionary Algorithm Based on Decomposition",
/// IEEE Transactions on Evolutionary Computation, 2007.
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `theta` | `5.0` | `[0, ∞)` | penalty `θ` on the distance to the preference ray |
/// | `weights` | empty: uniform `1/K` when a trainer is built | non-negative, not all zero, length K | preference direction `w` |
/// | `reference` | `None` (origin) | lower bound on the losses, length K | ideal point `z*` |
///
/// Needs: the current losses, a preference vector and optionally an ideal point.
/// Cost: O(K) time and memory.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Pbi {
    /// Penalty coefficient `θ` (≥ 0).
    pub theta: f64,
    /// Preference vector `w` (normalised internally).
    pub weights: Vec<f64>,
    /// Ideal point `z*`; `None` means the origin.
    pub reference: Option<Vec<f64>>,
}

impl Default for Pbi {
    fn default() -> Self {
        Self {
            theta: 5.0,
            weights: Vec::new(),
            reference: None,
        }
    }
}

impl Pbi {
    /// A scalariser with penalty `theta`, preference `weights` and optional ideal point.
    pub fn new(theta: f64, weights: Vec<f64>, reference: Option<Vec<f64>>) -> Self {
        Self {
            theta,
            weights,
            reference,
        }
    }

    /// Sets the preference vector.
    pub fn set_weights(&mut self, weights: Vec<f64>) {
        self.weights = weights;
    }

    /// Sets (or clears, with `None`) the ideal point.
    pub fn set_reference(&mut self, reference: Option<Vec<f64>>) {
        self.reference = reference;
    }

    /// Returns `d1 + θ d2` and its gradient in `L`.
    ///
    /// # Errors
    /// If `losses` is empty/non-finite, `weights`/`reference` have another length or are
    /// non-finite, `weights` is all zero, or `theta` is negative or non-finite.
    pub fn scalarize(&self, losses: &[f64]) -> Result<Scalarized, String> {
        check_finite(losses, "PBI: losses")?;
        check_same_len(&self.weights, losses, "PBI: weights")?;
        if !(self.theta >= 0.0 && self.theta.is_finite()) {
            return Err(format!(
                "PBI: theta = {} must be finite and >= 0",
                self.theta
            ));
        }
        let f: Vec<f64> = match &self.reference {
            Some(z) => {
                check_same_len(z, losses, "PBI: reference")?;
                losses.iter().zip(z).map(|(l, z)| l - z).collect()
            }
            None => losses.to_vec(),
        };
        let nw = norm(&self.weights);
        if nw == 0.0 {
            return Err(
                "PBI: weights have zero norm; the preference direction is undefined".into(),
            );
        }
        let u: Vec<f64> = self.weights.iter().map(|w| w / nw).collect();
        let d1 = dot(&f, &u);
        let p: Vec<f64> = f.iter().zip(&u).map(|(fi, ui)| fi - d1 * ui).collect();
        let d2 = (dot(&p, &p) + PBI_EPSILON).sqrt();
        // Chain rule through p = f - (f·u) u: ∂S/∂f = u + g_p - (g_p·u) u with g_p = θ p / d2.
        let gp: Vec<f64> = p.iter().map(|pi| self.theta * pi / d2).collect();
        let gpu = dot(&gp, &u);
        let loss_weights = u
            .iter()
            .zip(&gp)
            .map(|(ui, gi)| ui + gi - gpu * ui)
            .collect();
        Ok(Scalarized {
            value: d1 + self.theta * d2,
            loss_weights,
        })
    }
}

impl TaskWeighting for Pbi {
    fn name(&self) -> &str {
        "pbi"
    }

    /// Without a preference, every task gets `1/K`.
    /// Also refuses, before training, a `theta` that is negative or not finite
    /// ([`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter)).
    fn prepare(&mut self, setup: &WeightingSetup) -> CrateResult<()> {
        check("pbi", "theta", self.theta, Rule::NonNegative)?;
        let k = setup.task_names.len();
        if self.weights.is_empty() {
            self.weights = vec![1.0 / k as f64; k];
        }
        if self.weights.len() != k {
            return Err(crate::Error::IncompatibleWeighting {
                strategy: "pbi".into(),
                reason: format!(
                    "{} preference weights given for {k} tasks",
                    self.weights.len()
                ),
            });
        }
        Ok(())
    }

    fn decide(&mut self, input: &StepInput) -> CrateResult<Decision> {
        let s = self.scalarize(input.losses).map_err(solver_error("pbi"))?;
        Ok(Decision::Weights(s.loss_weights))
    }
}
