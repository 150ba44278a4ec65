//! Task weighting: how the per-task losses of a step become one update.
//!
//! A [`TaskWeighting`] strategy *decides*; the trainer *acts*. Each step the trainer hands the
//! strategy a [`StepInput`] (the detached task losses and, when the strategy asked for them,
//! the per-task gradients) and gets back a [`Decision`]: weights on the tasks, or a combined
//! gradient. Only the trainer calls `backward` and the optimiser, so every strategy can be
//! tested on fixed numbers without a model.
//!
//! What a strategy needs is declared up front in [`Needs`]; [`check_compatible`] (called when
//! a [`Trainer`](crate::train::Trainer) is built) refuses a setup that cannot provide it,
//! naming both the strategy and what is missing.
//!
//! Strategies with state or randomness use the hooks with default bodies:
//! [`seed`](TaskWeighting::seed), [`parameters`](TaskWeighting::parameters) and
//! [`auxiliary_loss`](TaskWeighting::auxiliary_loss) for learnable parameters,
//! [`after_step`](TaskWeighting::after_step) and [`end_epoch`](TaskWeighting::end_epoch) for
//! state that follows the optimiser step or the epoch.
//!
//! Built-in loss-based strategies live in [`loss_based`], one per file.

pub mod gradient_based;
mod hyper;
pub mod loss_based;
mod registry;
pub(crate) mod support;

pub use crate::grad::{GradientSource, TaskGradients};
pub use gradient_based::{
    AlignedMtl, CaGrad, CrMogm, DualProj, FairGrad, Imtlg, Mgda, MgdaSolver, MoDo, NashMtl,
    ScaleMode, SdmGrad, UPGrad,
};
pub use loss_based::{
    AutoLambda, Cosmos, Dwa, Equal, Famo, Fixed, GeometricMean, ImtlL, InverseLoss,
    InverseLossNormalization, Pbi, Rlw, Scalarized, Stch, Uncertainty,
};
pub use registry::{by_name, markdown_table, strategy_list, Entry, REGISTRY, STRATEGIES};
pub use support::StrategyRng;

use candle_core::{Tensor, Var};

use crate::error::{Error, Result};

/// How the trainer feeds batches to the tasks.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputMode {
    /// One batch feeds every head (for example MNIST digit class and value).
    #[default]
    SingleInput,
    /// Each task has its own dataset and input shape; one batch per task per step.
    MultiInput,
}

/// What a strategy needs from the trainer.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// Gradient sources the strategy can work with, preferred first; empty for strategies that
    /// read only the losses.
    pub gradients: Vec<GradientSource>,
    /// The fewest tasks the strategy makes sense for.
    pub min_tasks: usize,
    /// Batches per task per step (2 or more for cross-batch strategies).
    pub batches_per_step: usize,
    /// Whether [`AfterStep::losses_after`] must hold the losses re-evaluated on the step's
    /// batch after the optimiser step (an extra forward pass).
    pub losses_after_step: bool,
    /// Whether the strategy learns from a held-out validation batch after a virtual step
    /// (meta-learning, Auto-Lambda); the trainer then needs a validation set
    /// ([`Trainer::with_meta_validation`](crate::train::Trainer::with_meta_validation)) and
    /// calls [`TaskWeighting::meta_gradient`] each step.
    pub meta_validation: bool,
}

impl Needs {
    /// Losses only, any number of tasks, one batch per step.
    pub fn losses_only() -> Self {
        Self {
            gradients: Vec::new(),
            min_tasks: 1,
            batches_per_step: 1,
            losses_after_step: false,
            meta_validation: false,
        }
    }

    /// Per-task gradients from any of `sources` (preferred first), at least two tasks.
    pub fn gradients(sources: Vec<GradientSource>) -> Self {
        Self {
            gradients: sources,
            min_tasks: 2,
            batches_per_step: 1,
            losses_after_step: false,
            meta_validation: false,
        }
    }

    /// True when the strategy reads only losses.
    pub fn is_loss_only(&self) -> bool {
        self.gradients.is_empty()
    }
}

/// The setup a strategy is checked against when a trainer is built.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightingSetup {
    /// Task names, in model order.
    pub task_names: Vec<String>,
    /// Gradient source the trainer was configured with, if any.
    pub gradient_source: Option<GradientSource>,
    /// How batches reach the tasks.
    pub input_mode: InputMode,
    /// Batches per task per step the trainer provides.
    pub batches_per_step: usize,
}

/// What a strategy sees at each step.
#[derive(Debug, Clone, Copy)]
pub struct StepInput<'a> {
    /// Global step number, from 0.
    pub step: u64,
    /// Epoch number, from 0.
    pub epoch: usize,
    /// Detached task losses, in task order.
    pub losses: &'a [f64],
    /// Per-task gradients, present when [`Needs::gradients`] is not empty.
    pub gradients: Option<&'a TaskGradients>,
    /// For cross-batch strategies ([`Needs::batches_per_step`] = 2): the per-task gradients of
    /// a second, independent batch of the same step.
    pub second_gradients: Option<&'a TaskGradients>,
}

/// What a strategy decides for a step.
#[derive(Debug, Clone)]
pub enum Decision {
    /// One weight per task: the update is the gradient of `sum_k w_k L_k` (for gradient-based
    /// strategies, `sum_k w_k g_k`, the same thing computed from the per-task gradients).
    Weights(Vec<f64>),
    /// A combined gradient, flattened like the rows of [`TaskGradients::matrix`], for the shared
    /// parameters or the representation (whichever the gradients came from). Task heads then
    /// receive the plain gradient of their own loss.
    Direction(Tensor),
}

/// What a strategy sees after the optimiser step.
#[derive(Debug, Clone, Copy)]
pub struct AfterStep<'a> {
    /// Global step number of the step just taken.
    pub step: u64,
    /// The losses the step's decision was made on.
    pub losses_before: &'a [f64],
    /// The same batch's losses after the update, when [`Needs::losses_after_step`] is set.
    pub losses_after: Option<&'a [f64]>,
}

/// A task-weighting strategy. See the [module docs](self) for the protocol.
///
/// ```
/// use candle_mtl::weighting::{Decision, StepInput, TaskWeighting};
/// /// Weights each task by its loss's share of the total.
/// struct Proportional;
/// impl TaskWeighting for Proportional {
///     fn name(&self) -> &str { "proportional" }
///     fn decide(&mut self, input: &StepInput) -> candle_mtl::Result<Decision> {
///         let total: f64 = input.losses.iter().sum();
///         Ok(Decision::Weights(input.losses.iter().map(|l| l / total).collect()))
///     }
/// }
/// let mut s = Proportional;
/// let input = StepInput { step: 0, epoch: 0, losses: &[1.0, 3.0], gradients: None, second_gradients: None };
/// let d = s.decide(&input)?;
/// assert!(matches!(d, Decision::Weights(w) if w == vec![0.25, 0.75]));
/// # Ok::<(), candle_mtl::Error>(())
/// ```
pub trait TaskWeighting: Send {
    /// Short name used in errors and logs (`equal`, `inverse-loss`, ...).
    fn name(&self) -> &str;

    /// What the strategy needs; losses only by default.
    fn needs(&self) -> Needs {
        Needs::losses_only()
    }

    /// Checks specific to the strategy (for example the number of fixed weights), beyond
    /// [`needs`](TaskWeighting::needs). Called once when the trainer is built.
    fn check(&self, setup: &WeightingSetup) -> Result<()> {
        let _ = setup;
        Ok(())
    }

    /// Sizes the strategy for the setup it will run in (one weight, logit or log-variance per
    /// task), after [`check_compatible`] accepted it and before
    /// [`parameters`](TaskWeighting::parameters) is read. The default does nothing.
    fn prepare(&mut self, setup: &WeightingSetup) -> Result<()> {
        let _ = setup;
        Ok(())
    }

    /// Re-seeds the strategy's random generator (the trainer calls this with a seed derived
    /// from its own). Deterministic strategies ignore it.
    fn seed(&mut self, seed: u64) {
        let _ = seed;
    }

    /// The strategy's own learnable parameters, `(name, var)`; the trainer optimises them
    /// with the model under `weighting.<name>`.
    fn parameters(&self) -> Vec<(String, Var)> {
        Vec::new()
    }

    /// Decides the step's update from the losses (and gradients, if requested).
    fn decide(&mut self, input: &StepInput) -> Result<Decision>;

    /// A scalar loss on the strategy's own parameters, built from the detached task losses
    /// (for example uncertainty weighting's `sum_k exp(-s_k) L_k + s_k`). Its gradient updates
    /// only [`parameters`](TaskWeighting::parameters).
    fn auxiliary_loss(&self, detached_losses: &[Tensor]) -> Result<Option<Tensor>> {
        let _ = detached_losses;
        Ok(None)
    }

    /// Called after the optimiser step.
    fn after_step(&mut self, info: &AfterStep) -> Result<()> {
        let _ = info;
        Ok(())
    }

    /// For strategies with [`Needs::meta_validation`]: the gradient of the validation loss after
    /// a virtual step, with respect to each task's weight used in that step (first order,
    /// finite differences; see [`AutoLambda`]). The default ignores it.
    fn meta_gradient(&mut self, gradient: &[f64]) -> Result<()> {
        let _ = gradient;
        Ok(())
    }

    /// For strategies with [`Needs::meta_validation`]: the tasks whose validation loss is the
    /// meta-objective (`None`: every task).
    fn meta_objective_tasks(&self) -> Option<Vec<usize>> {
        None
    }

    /// The strategy's state for checkpoints (loss history, moving averages, generator state,
    /// ...), as named vectors. Learned parameters are saved separately (they are
    /// [`parameters`](TaskWeighting::parameters)). Stateful strategies implement this and
    /// [`load_state`](TaskWeighting::load_state) so that a resumed run continues exactly.
    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        Ok(Vec::new())
    }

    /// Restores what [`state`](TaskWeighting::state) returned.
    fn load_state(&mut self, state: &std::collections::HashMap<String, Vec<f64>>) -> Result<()> {
        let _ = state;
        Ok(())
    }

    /// Called at the end of each training epoch with the epoch's mean task losses.
    fn end_epoch(&mut self, epoch: usize, mean_losses: &[f64]) -> Result<()> {
        let _ = (epoch, mean_losses);
        Ok(())
    }
}

/// Checks that `setup` provides what `strategy` needs; the error names both.
///
/// Refused: fewer tasks than the strategy needs; a loss-only strategy given a gradient source
/// (its gradients would be computed and never used); a gradient source the strategy cannot use;
/// more batches per step than the setup gives; and whatever
/// [`TaskWeighting::check`] refuses.
pub fn check_compatible(strategy: &dyn TaskWeighting, setup: &WeightingSetup) -> Result<()> {
    let needs = strategy.needs();
    let refuse = |reason: String| Error::IncompatibleWeighting {
        strategy: strategy.name().to_string(),
        reason,
    };
    let k = setup.task_names.len();
    if k < needs.min_tasks {
        return Err(refuse(format!(
            "it needs at least {} tasks, the model has {k} ({})",
            needs.min_tasks,
            setup.task_names.join(", ")
        )));
    }
    match (needs.is_loss_only(), setup.gradient_source) {
        (true, Some(source)) => {
            return Err(refuse(format!(
                "it weights losses only, but the trainer is configured for {source} gradients, \
                 which it would never use; remove the gradient source or pick a gradient-based strategy"
            )))
        }
        (false, Some(source)) if !needs.gradients.contains(&source) => {
            return Err(refuse(format!(
                "it works on {} gradients, the trainer is configured for {source} gradients",
                join(&needs.gradients)
            )))
        }
        _ => {}
    }
    if needs.batches_per_step > setup.batches_per_step {
        return Err(refuse(format!(
            "it needs {} batches per task per step, the trainer provides {}",
            needs.batches_per_step, setup.batches_per_step
        )));
    }
    strategy.check(setup)
}

fn join(sources: &[GradientSource]) -> String {
    sources
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Checks that a weights decision has one finite weight per task.
pub(crate) fn validate_weights(strategy: &str, weights: &[f64], num_tasks: usize) -> Result<()> {
    if weights.len() != num_tasks {
        return Err(Error::InvalidDecision {
            strategy: strategy.to_string(),
            reason: format!("{} weights for {num_tasks} tasks", weights.len()),
        });
    }
    if let Some((k, w)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite()) {
        return Err(Error::InvalidDecision {
            strategy: strategy.to_string(),
            reason: format!("weight {k} is {w}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(k: usize, source: Option<GradientSource>) -> WeightingSetup {
        WeightingSetup {
            task_names: (0..k).map(|i| format!("t{i}")).collect(),
            gradient_source: source,
            input_mode: InputMode::SingleInput,
            batches_per_step: 1,
        }
    }

    struct NeedsGrads;
    impl TaskWeighting for NeedsGrads {
        fn name(&self) -> &str {
            "needs-grads"
        }
        fn needs(&self) -> Needs {
            Needs::gradients(vec![GradientSource::SharedParameters])
        }
        fn decide(&mut self, _: &StepInput) -> Result<Decision> {
            Ok(Decision::Weights(vec![1.0, 1.0]))
        }
    }

    #[test]
    fn impossible_combinations_are_refused_naming_both() {
        let msg = check_compatible(
            &Equal::sum(),
            &setup(2, Some(GradientSource::Representation)),
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("'equal'") && msg.contains("representation"),
            "{msg}"
        );

        let msg = check_compatible(&NeedsGrads, &setup(2, Some(GradientSource::Representation)))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("needs-grads") && msg.contains("shared-parameter"),
            "{msg}"
        );

        let msg = check_compatible(&NeedsGrads, &setup(1, None))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("at least 2 tasks"), "{msg}");

        assert!(check_compatible(&NeedsGrads, &setup(2, None)).is_ok());
        assert!(check_compatible(&Equal::sum(), &setup(1, None)).is_ok());
    }

    #[test]
    fn bad_weight_vectors_are_caught() {
        assert!(validate_weights("s", &[1.0], 2).is_err());
        assert!(validate_weights("s", &[1.0, f64::NAN], 2).is_err());
        assert!(validate_weights("s", &[1.0, 0.0], 2).is_ok());
    }
}
