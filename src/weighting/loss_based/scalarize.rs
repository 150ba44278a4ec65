//! Shared types and helpers of the loss-based strategies: the [`Scalarized`] result, input
//! validation, the small [`Adam`] optimiser used by FAMO, and the
//! bridge between a strategy's own f64 parameters and the trainer's optimiser.

use crate::error::{Error, Result as CrateResult};
pub use crate::solvers::matrix::{dot, norm, softmax};

/// The output of a scalariser: the scalar loss and its derivative with respect to each task loss.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Scalarized {
    /// The scalarised loss `S(L)`.
    pub value: f64,
    /// The effective loss weights `w_k = ∂S/∂L_k`, one per task. The gradient of `S` with respect
    /// to shared parameters θ is `Σ_k w_k ∂L_k/∂θ`. Where a strategy treats part of its formula as
    /// a constant (stop-gradient, e.g. FAMO's normaliser), these are the weights with that part
    /// held fixed, as an autograd framework would report them.
    pub loss_weights: Vec<f64>,
}

impl Scalarized {
    /// The update direction `Σ_k w_k g_k` for per-task gradients `grads[k]` (all of one length `d`).
    ///
    /// # Errors
    /// If the number of gradient rows differs from the number of weights, or rows differ in length.
    pub fn direction(&self, grads: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        if grads.len() != self.loss_weights.len() {
            return Err(format!(
                "direction: got {} gradient rows for {} loss weights",
                grads.len(),
                self.loss_weights.len()
            ));
        }
        let d = grads.first().map_or(0, Vec::len);
        let mut out = vec![0.0; d];
        for (k, (row, w)) in grads.iter().zip(&self.loss_weights).enumerate() {
            if row.len() != d {
                return Err(format!(
                    "direction: gradient row {k} has length {}, expected {d}",
                    row.len()
                ));
            }
            for (o, g) in out.iter_mut().zip(row) {
                *o += w * g;
            }
        }
        Ok(out)
    }
}

/// Checks that `values` is non-empty and every entry is finite. `what` names the vector in errors.
///
/// # Errors
/// Names the first offending index and value.
pub fn check_finite(values: &[f64], what: &str) -> Result<(), String> {
    if values.is_empty() {
        return Err(format!("{what} is empty: at least one task is required"));
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!("{what}[{i}] = {} is not finite", values[i])),
        None => Ok(()),
    }
}

/// Checks that `other` (named `what`) has the same length as `losses` and is finite.
///
/// # Errors
/// On a length mismatch or a non-finite entry.
pub fn check_same_len(other: &[f64], losses: &[f64], what: &str) -> Result<(), String> {
    if other.len() != losses.len() {
        return Err(format!(
            "{what} has length {} but there are {} losses",
            other.len(),
            losses.len()
        ));
    }
    check_finite(other, what)
}

/// Adam (Kingma & Ba 2015) with L2-style weight decay added to the gradient, matching
/// `torch.optim.Adam` (non-AMSGrad, non-decoupled): with `g ← g + λ θ`,
/// `m ← β1 m + (1-β1) g`, `v ← β2 v + (1-β2) g²`,
/// `θ ← θ - (lr / (1-β1^t)) · m / (√v / √(1-β2^t) + ε)`.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    /// Learning rate (step size), ≥ 0.
    pub lr: f64,
    /// Exponential decay of the first-moment estimate, in `[0, 1)`. Default `0.9`.
    pub beta1: f64,
    /// Exponential decay of the second-moment estimate, in `[0, 1)`. Default `0.999`.
    pub beta2: f64,
    /// Added to the bias-corrected root second moment to avoid division by zero. Default `1e-8`.
    pub eps: f64,
    /// L2 penalty coefficient `λ` added to the gradient as `λ θ`, ≥ 0.
    pub weight_decay: f64,
    /// Number of steps taken so far.
    pub step_count: u64,
    /// First-moment estimate (empty until the first step).
    pub exp_avg: Vec<f64>,
    /// Second-moment estimate (empty until the first step).
    pub exp_avg_sq: Vec<f64>,
}

impl Adam {
    /// A fresh optimiser with PyTorch's default betas `(0.9, 0.999)` and `eps = 1e-8`.
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step_count: 0,
            exp_avg: Vec::new(),
            exp_avg_sq: Vec::new(),
        }
    }

    /// Applies one step to `params` in place given their gradient `grad`.
    ///
    /// # Errors
    /// If lengths differ (from each other or from the stored moments), a gradient entry is not
    /// finite, or a hyper-parameter is out of range.
    pub fn step(&mut self, params: &mut [f64], grad: &[f64]) -> Result<(), String> {
        if params.len() != grad.len() {
            return Err(format!(
                "Adam: {} parameters but gradient of length {}",
                params.len(),
                grad.len()
            ));
        }
        check_finite(grad, "Adam gradient")?;
        check_finite(params, "Adam parameters")?;
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return Err(format!("Adam: lr = {} must be finite and >= 0", self.lr));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(format!(
                "Adam: weight_decay = {} must be finite and >= 0",
                self.weight_decay
            ));
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(format!("Adam: eps = {} must be finite and > 0", self.eps));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(format!("Adam: {name} = {b} must lie in [0, 1)"));
            }
        }
        if self.step_count == 0 {
            self.exp_avg = vec![0.0; params.len()];
            self.exp_avg_sq = vec![0.0; params.len()];
        } else if self.exp_avg.len() != params.len() || self.exp_avg_sq.len() != params.len() {
            return Err(format!(
                "Adam: state holds {} / {} moments, but there are {} parameters",
                self.exp_avg.len(),
                self.exp_avg_sq.len(),
                params.len()
            ));
        }
        self.step_count += 1;
        let t = i32::try_from(self.step_count).unwrap_or(i32::MAX);
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        let step_size = self.lr / bc1;
        for i in 0..params.len() {
            let g = grad[i] + self.weight_decay * params[i];
            self.exp_avg[i] += (g - self.exp_avg[i]) * (1.0 - self.beta1);
            self.exp_avg_sq[i] = self.exp_avg_sq[i] * self.beta2 + (1.0 - self.beta2) * g * g;
            let denom = self.exp_avg_sq[i].sqrt() / bc2_sqrt + self.eps;
            params[i] -= step_size * self.exp_avg[i] / denom;
        }
        Ok(())
    }
}

pub(crate) use crate::weighting::support::{loss_values, LearnedParameters};

/// A per-task vector sized for `k` tasks: zeros when empty, an error naming `what` when it was
/// given with another length.
pub(crate) fn sized_for(
    values: &mut Vec<f64>,
    k: usize,
    strategy: &str,
    what: &str,
) -> CrateResult<()> {
    if values.is_empty() {
        *values = vec![0.0; k];
    }
    if values.len() != k {
        return Err(Error::IncompatibleWeighting {
            strategy: strategy.to_string(),
            reason: format!("{} {what} given for {k} tasks", values.len()),
        });
    }
    Ok(())
}

/// The state of an [`Adam`] as named vectors under `prefix`, for checkpoints.
pub(crate) fn adam_state(prefix: &str, adam: &Adam) -> Vec<(String, Vec<f64>)> {
    vec![
        (format!("{prefix}.step_count"), vec![adam.step_count as f64]),
        (format!("{prefix}.exp_avg"), adam.exp_avg.clone()),
        (format!("{prefix}.exp_avg_sq"), adam.exp_avg_sq.clone()),
    ]
}

/// Restores what [`adam_state`] saved (missing entries leave the optimiser fresh).
pub(crate) fn load_adam_state(
    prefix: &str,
    state: &std::collections::HashMap<String, Vec<f64>>,
    adam: &mut Adam,
) {
    if let Some(c) = state
        .get(&format!("{prefix}.step_count"))
        .and_then(|v| v.first())
    {
        adam.step_count = *c as u64;
    }
    if let Some(v) = state.get(&format!("{prefix}.exp_avg")) {
        adam.exp_avg = v.clone();
    }
    if let Some(v) = state.get(&format!("{prefix}.exp_avg_sq")) {
        adam.exp_avg_sq = v.clone();
    }
}
