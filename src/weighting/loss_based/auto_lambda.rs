//! Auto-Lambda: task weights meta-learned against a validation batch.

use super::scalarize::Adam;
use crate::error::{Error, Result};
use crate::weighting::hyper::{check, refuse, Rule};
use crate::weighting::support::solver_error;
use crate::weighting::{Decision, Needs, StepInput, TaskWeighting, WeightingSetup};

/// Auto-Lambda (first order): the loss weights `λ` are learned so that one training step with
/// them lowers the loss of the *primary* tasks on held-out data.
///
/// Each step, with training losses `L_k` and weights `λ`, the trainer
/// 1. takes a virtual step `θ' = θ - α ∇_θ Σ_k λ_k L_k(θ)` (α = the model optimiser's
///    learning rate);
/// 2. evaluates the validation loss of the primary tasks `V(θ') = Σ_{k ∈ P} L_k(θ'; x_val)` and
///    its gradient `v = ∇_θ' V`;
/// 3. estimates `∂V/∂λ_k = -α ∇_θ L_k(θ)·v` by central finite differences of the training
///    losses, `-α (L_k(θ + εv) - L_k(θ - εv)) / (2ε)` with `ε = 0.01 / ||v||` (DARTS's
///    approximation of the Hessian-vector product, which here only needs two forward passes);
/// 4. hands that gradient to [`TaskWeighting::meta_gradient`], where an Adam step updates `λ`
///    (kept `≥ 0`), and then takes the real step with the weights it used.
///
/// Paper: Liu, Johns & Davison, "Auto-Lambda: Disentangling Dynamic Task Relationships",
/// TMLR 2022. Only the first-order variant is implemented (candle has no second-order
/// gradients).
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `initial_weight` | 0.1 | `> 0` | starting `λ_k` (the paper's default) |
/// | `meta_lr` | 1e-4 | `> 0` | Adam learning rate of `λ` |
/// | `primary` | `None` (all tasks) | task indices | tasks whose validation loss is optimised; the others are auxiliary |
///
/// Needs: losses, a validation set (`Trainer::with_meta_validation`). Cost per step: one extra
/// backward pass and three extra forward passes.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct AutoLambda {
    /// Starting weight of every task.
    pub initial_weight: f64,
    /// Learning rate of the weights' Adam.
    pub meta_lr: f64,
    /// Primary tasks (indices); `None` means every task.
    pub primary: Option<Vec<usize>>,
    weights: Vec<f64>,
    optimizer: Adam,
}

impl Default for AutoLambda {
    fn default() -> Self {
        Self {
            initial_weight: 0.1,
            meta_lr: 1e-4,
            primary: None,
            weights: Vec::new(),
            optimizer: Adam::new(1e-4, 0.0),
        }
    }
}

impl AutoLambda {
    /// Defaults with the given learning rate of the weights; refused with
    /// [`Error::InvalidHyperParameter`] unless it is finite and `> 0`.
    pub fn with_meta_lr(meta_lr: f64) -> Result<Self> {
        Self::new(0.1, meta_lr, None)
    }

    /// Auto-Lambda with the given starting weight, learning rate and primary tasks (`None`:
    /// every task); refused with [`Error::InvalidHyperParameter`] unless both numbers are
    /// finite and `> 0` and `primary`, if given, is not empty. That the primary indices name
    /// tasks of the model is checked when the trainer is built.
    pub fn new(initial_weight: f64, meta_lr: f64, primary: Option<Vec<usize>>) -> Result<Self> {
        let s = Self {
            initial_weight,
            meta_lr,
            primary,
            optimizer: Adam::new(meta_lr, 0.0),
            ..Self::default()
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<()> {
        check(
            "auto-lambda",
            "initial_weight",
            self.initial_weight,
            Rule::Positive,
        )?;
        check("auto-lambda", "meta_lr", self.meta_lr, Rule::Positive)?;
        match &self.primary {
            Some(p) if p.is_empty() => Err(refuse(
                "auto-lambda",
                "primary",
                "[]",
                "a non-empty list of task indices",
            )),
            _ => Ok(()),
        }
    }

    /// The current weights `λ` (empty before the trainer is built).
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
}

impl TaskWeighting for AutoLambda {
    fn name(&self) -> &str {
        "auto-lambda"
    }

    fn needs(&self) -> Needs {
        Needs {
            meta_validation: true,
            ..Needs::losses_only()
        }
    }

    /// The hyper-parameters, and that the primary tasks are tasks of the model.
    fn check(&self, setup: &WeightingSetup) -> Result<()> {
        self.validate()?;
        let k = setup.task_names.len();
        if let Some(p) = &self.primary {
            if p.iter().any(|&i| i >= k) {
                return Err(Error::IncompatibleWeighting {
                    strategy: "auto-lambda".into(),
                    reason: format!(
                        "primary tasks {p:?} must be indices of the {k} tasks (0..{k}: {})",
                        setup.task_names.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    fn prepare(&mut self, setup: &WeightingSetup) -> Result<()> {
        let k = setup.task_names.len();
        self.weights = vec![self.initial_weight; k];
        self.optimizer = Adam::new(self.meta_lr, 0.0);
        Ok(())
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        if self.weights.len() != input.losses.len() {
            self.weights = vec![self.initial_weight; input.losses.len()];
        }
        Ok(Decision::Weights(self.weights.clone()))
    }

    fn meta_objective_tasks(&self) -> Option<Vec<usize>> {
        self.primary.clone()
    }

    fn meta_gradient(&mut self, gradient: &[f64]) -> Result<()> {
        self.optimizer
            .step(&mut self.weights, gradient)
            .map_err(solver_error("auto-lambda"))?;
        for w in &mut self.weights {
            *w = w.max(0.0);
        }
        Ok(())
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        let mut out = vec![("weights".to_string(), self.weights.clone())];
        out.extend(super::scalarize::adam_state("adam", &self.optimizer));
        Ok(out)
    }

    fn load_state(&mut self, state: &std::collections::HashMap<String, Vec<f64>>) -> Result<()> {
        if let Some(w) = state.get("weights") {
            self.weights = w.clone();
        }
        super::scalarize::load_adam_state("adam", state, &mut self.optimizer);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_gradient_moves_weights_against_it_and_keeps_them_non_negative() {
        let mut a = AutoLambda::with_meta_lr(0.05).unwrap();
        let setup = WeightingSetup {
            task_names: vec!["a".into(), "b".into()],
            gradient_source: None,
            input_mode: crate::weighting::InputMode::SingleInput,
            batches_per_step: 1,
        };
        a.prepare(&setup).unwrap();
        assert_eq!(a.weights(), &[0.1, 0.1]);
        // Raising task a's weight lowers the validation loss (negative gradient): it grows.
        a.meta_gradient(&[-1.0, 1.0]).unwrap();
        assert!(a.weights()[0] > 0.1 && a.weights()[1] < 0.1);
        for _ in 0..10 {
            a.meta_gradient(&[0.0, 1.0]).unwrap();
        }
        assert_eq!(a.weights()[1], 0.0);
        let bad = AutoLambda::new(0.1, 0.01, Some(vec![5])).unwrap();
        assert!(bad.check(&setup).is_err());
    }
}
