//! Fast Adaptive Multitask Optimization (FAMO).

use super::scalarize::{check_finite, check_same_len, sized_for, softmax, Adam, Scalarized};
use crate::error::Result as CrateResult;
use crate::weighting::hyper::{check, Rule};
use crate::weighting::support::solver_error;
use crate::weighting::{AfterStep, Decision, Needs, StepInput, TaskWeighting, WeightingSetup};

/// Small constant added inside FAMO's logarithms (`ε` below), as in the reference.
pub const FAMO_EPSILON: f64 = 1e-8;

/// FAMO: balances the rate at which every task loss decreases, using only loss values.
///
/// With logits `w`, task weights `z = softmax(w)`, lower bounds `b` and shifted losses
/// `ℓ̃_k = L_k - b_k + ε`, the scalar is
/// `S(L) = Σ_k (z_k / c) log ℓ̃_k`, with `c = Σ_i z_i / ℓ̃_i` held constant (stop-gradient),
/// so the loss weights are `∂S/∂L_k = z_k / (c ℓ̃_k)`, a convex combination (they sum to 1).
/// `z` and `c` receive no gradient from `S`.
///
/// After the model step, the logits are learned from the change in log-losses on the same batch,
/// `δ_k = log ℓ̃_k(before) - log ℓ̃_k(after)`: the gradient fed to the optimiser is the
/// vector-Jacobian product of softmax with `δ`, `g_j = z_j (δ_j - Σ_i z_i δ_i)`
/// ([`Famo::logit_gradient`]), and one step of an internal [`Adam`] (learning rate `lr`, L2 weight
/// decay `weight_decay`, β = (0.9, 0.999), eps 1e-8) is taken on `w` ([`Famo::update`]).
///
/// Paper: Liu, Feng, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023.
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `lr` | `0.025` | `[0, ∞)` | learning rate of the Adam step on the logits |
/// | `weight_decay` | `0.001` | `[0, ∞)` | L2 regularisation of the logits (Adam weight decay) |
/// | `min_losses` | `None` (zeros) | `b_k < L_k` | lower bound `b_k` of each loss |
/// | `logits` | zeros of length K ([`Famo::new`]) | any finite reals | task-weighting logits `w` (state) |
///
/// [`Famo::default`] has empty `logits`, sized to the tasks (zeros) when a trainer is built; the
/// trainer re-evaluates the batch after each step and calls [`Famo::update`].
///
/// Needs: the current losses, and for [`Famo::update`] the same batch's losses recomputed after
/// the optimiser step. Cost: O(K) time and memory per call, plus one extra forward pass of the
/// model per step to obtain the losses after the step.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Famo {
    /// Task-weighting logits `w` (the task weights are `softmax(w)`).
    pub logits: Vec<f64>,
    /// Per-task lower bounds `b`; `None` means zeros (losses must then be strictly positive).
    pub min_losses: Option<Vec<f64>>,
    /// Learning rate of the internal Adam.
    pub lr: f64,
    /// Weight decay (L2) of the internal Adam.
    pub weight_decay: f64,
    /// Internal Adam state; `None` until the first [`Famo::update`] (then created fresh).
    pub optimizer: Option<Adam>,
}

impl Default for Famo {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Famo {
    /// `k` tasks, zero logits (uniform weights), zero lower bounds, `lr = 0.025`,
    /// `weight_decay = 1e-3`, no optimiser state yet.
    pub fn new(k: usize) -> Self {
        Self {
            logits: vec![0.0; k],
            min_losses: None,
            lr: 0.025,
            weight_decay: 1e-3,
            optimizer: None,
        }
    }

    /// Sets the per-task lower bounds `b`.
    pub fn set_min_losses(&mut self, min_losses: Vec<f64>) {
        self.min_losses = Some(min_losses);
    }

    /// Sets the logits `w` (e.g. restoring a checkpoint).
    pub fn set_logits(&mut self, logits: Vec<f64>) {
        self.logits = logits;
    }

    /// Clears logits to zero and drops the optimiser state.
    pub fn reset(&mut self) {
        self.logits.iter_mut().for_each(|w| *w = 0.0);
        self.optimizer = None;
    }

    /// The current task weights `z = softmax(w)`.
    pub fn task_weights(&self) -> Vec<f64> {
        softmax(&self.logits)
    }

    /// Shifted losses `L_k - b_k + ε`, checked to be strictly positive.
    fn shifted(&self, losses: &[f64], what: &str) -> Result<Vec<f64>, String> {
        check_finite(losses, what)?;
        check_same_len(&self.logits, losses, "FAMO: logits")?;
        let out: Vec<f64> = match &self.min_losses {
            Some(b) => {
                check_same_len(b, losses, "FAMO: min_losses")?;
                losses
                    .iter()
                    .zip(b)
                    .map(|(l, b)| l - b + FAMO_EPSILON)
                    .collect()
            }
            None => losses.iter().map(|l| l + FAMO_EPSILON).collect(),
        };
        if let Some(i) = out.iter().position(|&s| s <= 0.0) {
            return Err(format!(
                "FAMO: {what}[{i}] = {} is not above its lower bound (shifted value {})",
                losses[i], out[i]
            ));
        }
        Ok(out)
    }

    /// The normaliser `c = Σ_k z_k / (L_k - b_k + ε)` at `losses`.
    ///
    /// # Errors
    /// As [`Famo::scalarize`].
    pub fn normalizer(&self, losses: &[f64]) -> Result<f64, String> {
        let s = self.shifted(losses, "FAMO: losses")?;
        check_finite(&self.logits, "FAMO: logits")?;
        Ok(self.task_weights().iter().zip(&s).map(|(z, s)| z / s).sum())
    }

    /// `Σ_k (z_k / c) log(L_k - b_k + ε)` with a caller-given normaliser `c`: the function whose
    /// plain derivative in `L` is [`Scalarized::loss_weights`] when `c` is frozen at
    /// [`Famo::normalizer`]`(losses)`.
    ///
    /// # Errors
    /// As [`Famo::scalarize`], or if `normalizer` is not finite and positive.
    pub fn value_with_normalizer(&self, losses: &[f64], normalizer: f64) -> Result<f64, String> {
        if !(normalizer > 0.0 && normalizer.is_finite()) {
            return Err(format!(
                "FAMO: normalizer = {normalizer} must be finite and > 0"
            ));
        }
        let s = self.shifted(losses, "FAMO: losses")?;
        check_finite(&self.logits, "FAMO: logits")?;
        Ok(self
            .task_weights()
            .iter()
            .zip(&s)
            .map(|(z, s)| z / normalizer * s.ln())
            .sum())
    }

    /// Returns `S = Σ (z_k/c) log ℓ̃_k` and the weights `z_k / (c ℓ̃_k)` (with `z`, `c` constant).
    ///
    /// # Errors
    /// If `losses` is empty or non-finite, `logits`/`min_losses` have another length or are
    /// non-finite, or a loss is not above its lower bound.
    pub fn scalarize(&self, losses: &[f64]) -> Result<Scalarized, String> {
        let s = self.shifted(losses, "FAMO: losses")?;
        check_finite(&self.logits, "FAMO: logits")?;
        let z = self.task_weights();
        let c: f64 = z.iter().zip(&s).map(|(z, s)| z / s).sum();
        let value = z.iter().zip(&s).map(|(z, s)| z / c * s.ln()).sum();
        let loss_weights = z.iter().zip(&s).map(|(z, s)| z / c / s).collect();
        Ok(Scalarized {
            value,
            loss_weights,
        })
    }

    /// The gradient given to Adam for the logits: with
    /// `δ_k = log ℓ̃_k(before) - log ℓ̃_k(after)`, `g_j = z_j (δ_j - Σ_i z_i δ_i)`.
    ///
    /// The scalar `S` itself carries no gradient to the logits (they are detached there), so this,
    /// not `∂S/∂w`, is FAMO's parameter gradient.
    ///
    /// # Errors
    /// As [`Famo::scalarize`], for either loss vector.
    pub fn logit_gradient(
        &self,
        losses_before: &[f64],
        losses_after: &[f64],
    ) -> Result<Vec<f64>, String> {
        let before = self.shifted(losses_before, "FAMO: losses_before")?;
        let after = self.shifted(losses_after, "FAMO: losses_after")?;
        check_finite(&self.logits, "FAMO: logits")?;
        let delta: Vec<f64> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| b.ln() - a.ln())
            .collect();
        let z = self.task_weights();
        let mean: f64 = z.iter().zip(&delta).map(|(z, d)| z * d).sum();
        Ok(z.iter().zip(&delta).map(|(z, d)| z * (d - mean)).collect())
    }

    /// One FAMO weight update: computes [`Famo::logit_gradient`] and takes one step of the internal
    /// Adam on the logits (creating a fresh Adam with `lr`, `weight_decay` on the first call and
    /// reusing its moments afterwards).
    ///
    /// # Errors
    /// As [`Famo::logit_gradient`], or if `lr`/`weight_decay` are negative or non-finite. On error
    /// the logits and optimiser state are unchanged.
    pub fn update(&mut self, losses_before: &[f64], losses_after: &[f64]) -> Result<(), String> {
        let grad = self.logit_gradient(losses_before, losses_after)?;
        let mut opt = match &self.optimizer {
            Some(o) => o.clone(),
            None => Adam::new(self.lr, self.weight_decay),
        };
        opt.lr = self.lr;
        opt.weight_decay = self.weight_decay;
        let mut logits = self.logits.clone();
        opt.step(&mut logits, &grad)?;
        self.logits = logits;
        self.optimizer = Some(opt);
        Ok(())
    }
}

impl TaskWeighting for Famo {
    fn name(&self) -> &str {
        "famo"
    }

    fn needs(&self) -> Needs {
        Needs {
            losses_after_step: true,
            ..Needs::losses_only()
        }
    }

    /// Also refuses, before training, a learning rate that is not finite and `> 0` or a weight
    /// decay that is negative or not finite
    /// ([`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter)).
    fn prepare(&mut self, setup: &WeightingSetup) -> CrateResult<()> {
        check("famo", "lr", self.lr, Rule::Positive)?;
        check("famo", "weight_decay", self.weight_decay, Rule::NonNegative)?;
        sized_for(&mut self.logits, setup.task_names.len(), "famo", "logits")
    }

    fn decide(&mut self, input: &StepInput) -> CrateResult<Decision> {
        let s = self.scalarize(input.losses).map_err(solver_error("famo"))?;
        Ok(Decision::Weights(s.loss_weights))
    }

    fn after_step(&mut self, info: &AfterStep) -> CrateResult<()> {
        match info.losses_after {
            Some(after) => self
                .update(info.losses_before, after)
                .map_err(solver_error("famo")),
            None => Err(solver_error("famo")(
                "the trainer gave no losses after the step".into(),
            )),
        }
    }

    fn state(&self) -> CrateResult<Vec<(String, Vec<f64>)>> {
        let mut out = vec![("logits".to_string(), self.logits.clone())];
        if let Some(opt) = &self.optimizer {
            out.extend(super::scalarize::adam_state("adam", opt));
        }
        Ok(out)
    }

    fn load_state(
        &mut self,
        state: &std::collections::HashMap<String, Vec<f64>>,
    ) -> CrateResult<()> {
        if let Some(l) = state.get("logits") {
            self.logits = l.clone();
        }
        if state.contains_key("adam.step_count") {
            let mut opt = Adam::new(self.lr, self.weight_decay);
            super::scalarize::load_adam_state("adam", state, &mut opt);
            self.optimizer = Some(opt);
        }
        Ok(())
    }
}
