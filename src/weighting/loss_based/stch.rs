//! Smooth Tchebycheff scalarisation (STCH).

use super::scalarize::{check_finite, check_same_len, softmax, Scalarized};
use crate::error::Result as CrateResult;
use crate::weighting::hyper::{check, Rule};
use crate::weighting::support::solver_error;
use crate::weighting::{Decision, StepInput, TaskWeighting, WeightingSetup};

/// Smooth Tchebycheff scalarisation: with `y_k = λ_k (L_k - z*_k)`,
/// `S(L) = μ log Σ_k exp(y_k / μ)`, a smooth upper bound of `max_k y_k` that tightens as `μ → 0`
/// (computed with the maximum subtracted first, so it never overflows).
/// Loss weights: `∂S/∂L_k = λ_k softmax_k(y / μ)`.
///
/// Paper: Lin, Zhang, Yang, Liu, Wang & Zhang, "Smooth Tchebycheff Scalarization for
/// Multi-Objective Optimization", ICML 2024.
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `mu` | `0.5` | `(0, ∞)` | smoothing `μ`; smaller is closer to the weighted max |
/// | `weights` | `None` (uniform `1/K`) | on the simplex, length K | preference `λ` |
/// | `reference` | `None` (no shift) | length K | ideal point `z*` |
/// | `warmup_steps` | 0 | `0..` | steps of equal weighting that estimate `z*` when no reference is set |
///
/// The ideal point can be given ([`Stch::set_reference`]) or estimated by a warm-up, as in the
/// paper's multi-task experiments: with `warmup_steps > 0` and no reference, the first
/// `warmup_steps` training steps use equal weights `1/K` while recording each task's lowest
/// loss, which then becomes the ideal point `z*`.
///
/// Needs: the current losses, optionally a preference and an ideal point. Cost: O(K) time and
/// memory.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Stch {
    /// Smoothing parameter `μ` (> 0).
    pub mu: f64,
    /// Preference vector `λ`; `None` means uniform `1/K`.
    pub weights: Option<Vec<f64>>,
    /// Ideal point `z*`; `None` means no shift.
    pub reference: Option<Vec<f64>>,
    /// Warm-up steps that estimate `z*` (0: none).
    pub warmup_steps: u64,
    steps_seen: u64,
    lowest: Vec<f64>,
}

impl Default for Stch {
    fn default() -> Self {
        Self {
            mu: 0.5,
            weights: None,
            reference: None,
            warmup_steps: 0,
            steps_seen: 0,
            lowest: Vec::new(),
        }
    }
}

impl Stch {
    /// A scalariser with smoothing `mu`, optional preference and optional ideal point.
    pub fn new(mu: f64, weights: Option<Vec<f64>>, reference: Option<Vec<f64>>) -> Self {
        Self {
            mu,
            weights,
            reference,
            ..Self::default()
        }
    }

    /// Sets (or clears) the preference vector.
    pub fn set_weights(&mut self, weights: Option<Vec<f64>>) {
        self.weights = weights;
    }

    /// Sets (or clears) the ideal point, e.g. the one estimated during a warm-up phase.
    pub fn set_reference(&mut self, reference: Option<Vec<f64>>) {
        self.reference = reference;
    }

    /// Returns `μ logsumexp(y/μ)` and the weights `λ_k softmax_k(y/μ)`.
    ///
    /// # Errors
    /// If `losses` is empty/non-finite, `weights`/`reference` have another length or are
    /// non-finite, or `mu` is not finite and positive.
    pub fn scalarize(&self, losses: &[f64]) -> Result<Scalarized, String> {
        check_finite(losses, "STCH: losses")?;
        if !(self.mu > 0.0 && self.mu.is_finite()) {
            return Err(format!("STCH: mu = {} must be finite and > 0", self.mu));
        }
        let k = losses.len();
        let lambda = match &self.weights {
            Some(w) => {
                check_same_len(w, losses, "STCH: weights")?;
                w.clone()
            }
            None => vec![1.0 / k as f64; k],
        };
        let shifted: Vec<f64> = match &self.reference {
            Some(z) => {
                check_same_len(z, losses, "STCH: reference")?;
                losses.iter().zip(z).map(|(l, z)| l - z).collect()
            }
            None => losses.to_vec(),
        };
        let y: Vec<f64> = lambda.iter().zip(&shifted).map(|(a, b)| a * b).collect();
        let max_y = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let scaled: Vec<f64> = y.iter().map(|v| (v - max_y) / self.mu).collect();
        let lse = scaled.iter().map(|v| v.exp()).sum::<f64>().ln();
        let p = softmax(&scaled);
        Ok(Scalarized {
            value: self.mu * lse + max_y,
            loss_weights: lambda.iter().zip(&p).map(|(a, b)| a * b).collect(),
        })
    }
}

impl Stch {
    /// The same scalariser, estimating its ideal point over the first `steps` training steps.
    pub fn with_warmup(mut self, steps: u64) -> Self {
        self.warmup_steps = steps;
        self
    }
}

impl TaskWeighting for Stch {
    fn name(&self) -> &str {
        "stch"
    }

    /// Refuses, before training, a `mu` that is not finite and `> 0`
    /// ([`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter)).
    fn prepare(&mut self, _setup: &WeightingSetup) -> CrateResult<()> {
        check("stch", "mu", self.mu, Rule::Positive)
    }

    fn decide(&mut self, input: &StepInput) -> CrateResult<Decision> {
        let k = input.losses.len();
        if self.reference.is_none() && self.warmup_steps > 0 {
            if self.lowest.len() != k {
                self.lowest = vec![f64::INFINITY; k];
            }
            for (low, l) in self.lowest.iter_mut().zip(input.losses) {
                *low = low.min(*l);
            }
            self.steps_seen += 1;
            if self.steps_seen < self.warmup_steps {
                return Ok(Decision::Weights(vec![1.0 / k as f64; k]));
            }
            self.reference = Some(self.lowest.clone());
        }
        let s = self.scalarize(input.losses).map_err(solver_error("stch"))?;
        Ok(Decision::Weights(s.loss_weights))
    }

    fn state(&self) -> CrateResult<Vec<(String, Vec<f64>)>> {
        let mut out = vec![
            ("steps_seen".to_string(), vec![self.steps_seen as f64]),
            ("lowest".to_string(), self.lowest.clone()),
        ];
        if let Some(r) = &self.reference {
            out.push(("reference".to_string(), r.clone()));
        }
        Ok(out)
    }

    fn load_state(
        &mut self,
        state: &std::collections::HashMap<String, Vec<f64>>,
    ) -> CrateResult<()> {
        self.steps_seen = state
            .get("steps_seen")
            .and_then(|v| v.first())
            .copied()
            .unwrap_or(0.0) as u64;
        self.lowest = state.get("lowest").cloned().unwrap_or_default();
        if let Some(r) = state.get("reference") {
            self.reference = Some(r.clone());
        }
        Ok(())
    }
}
