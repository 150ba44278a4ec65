//! One training step in parts: the forward pass ([`forward`]), the gradient path chosen at
//! build time ([`path::GradientPath`] and its implementations in [`paths`]), and the update
//! pipeline ([`update`]). The trainer composes them; none of them names a strategy.

pub(crate) mod forward;
pub(crate) mod path;
pub(crate) mod paths;
pub(crate) mod update;

use candle_core::Var;

use crate::error::{Error, Result};
use crate::grad::{GradientStats, TaskGradients};
use crate::model::MultiTaskModel;
use crate::weighting::{Decision, StepInput, TaskWeighting};

/// What a gradient path may read and write during one step.
pub(crate) struct StepContext<'a> {
    /// The model being trained.
    pub model: &'a MultiTaskModel,
    /// The weighting strategy (decides, keeps its own state).
    pub weighting: &'a mut dyn TaskWeighting,
    /// Global step (0-based).
    pub step: u64,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// The tasks this step trains, in model order.
    pub active: &'a [usize],
    /// The learning rate of this step.
    pub learning_rate: f64,
    /// The training batch size (for paths that draw batches of their own).
    pub batch_size: usize,
    /// Per-task gradients of a second batch (cross-batch strategies), filled by
    /// [`paths::CrossBatch`] before the inner path runs.
    pub second_gradients: Option<TaskGradients>,
    /// Statistics of this step's per-task gradients, for the report.
    pub stats: Option<GradientStats>,
}

impl StepContext<'_> {
    /// Name of the `j`-th task of the step.
    pub fn task_name(&self, j: usize) -> String {
        task_name(self.model, self.active, j)
    }

    /// An invalid-decision error of the strategy.
    pub fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidDecision {
            strategy: self.weighting.name().to_string(),
            reason: reason.into(),
        }
    }

    /// Checks per-task gradients are finite (from the Gramian's diagonal) and records their
    /// statistics for the step report.
    pub fn check_gradients(&mut self, gradients: &TaskGradients) -> Result<()> {
        let stats = GradientStats::from_gramian(&gradients.gramian()?);
        if let Some((j, v)) = stats.norms.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                quantity: "gradient",
                task: self.task_name(j),
                step: self.step,
                value: *v,
            });
        }
        self.stats = Some(stats);
        Ok(())
    }

    /// The strategy's decision on this step's `losses` and, for gradient-based paths, the
    /// per-task `gradients` (and those of a second batch).
    pub fn decide(
        &mut self,
        losses: &[f64],
        gradients: Option<&TaskGradients>,
        second_gradients: Option<&TaskGradients>,
    ) -> Result<Decision> {
        self.weighting.decide(&StepInput {
            step: self.step,
            epoch: self.epoch,
            losses,
            gradients,
            second_gradients,
        })
    }

    /// A combined gradient given by the strategy must be finite.
    pub fn check_direction(&self, d: &candle_core::Tensor) -> Result<()> {
        let norm = forward::squared_norm(d)?;
        if !norm.is_finite() {
            return Err(self.invalid(format!(
                "the combined gradient has a non-finite norm ({norm})"
            )));
        }
        Ok(())
    }

    /// The shared parameters that are not frozen; an error when the whole encoder is.
    pub fn trainable_shared(&self) -> Result<Vec<(String, Var)>> {
        let shared = self.model.trainable_shared_vars();
        if shared.is_empty() {
            return Err(Error::IncompatibleWeighting {
                strategy: self.weighting.name().to_string(),
                reason: "it compares shared-parameter gradients but the whole encoder is frozen; \
                         unfreeze a layer or use a loss-based strategy while it is frozen"
                    .into(),
            });
        }
        Ok(shared)
    }
}

/// Name of the `j`-th task of `active`.
pub(crate) fn task_name(model: &MultiTaskModel, active: &[usize], j: usize) -> String {
    active
        .get(j)
        .and_then(|&k| model.tasks().get(k))
        .map_or_else(|| format!("#{j}"), |t| t.name().to_string())
}
