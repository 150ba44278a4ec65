//! The gradient path: how a step turns its losses into gradients. One implementation per way
//! of consulting the strategy (see [`super::paths`]); the setup composes them once, when the
//! trainer is built, so the step loop never asks what kind of strategy it runs.

use candle_core::backprop::GradStore;
use candle_core::Tensor;

use super::forward::Forward;
use super::StepContext;
use crate::error::Result;
use crate::train::StepBatch;

/// What a path computed: gradients of every parameter it touched, and the task weights it
/// used (in the order of the step's tasks; `None` when the strategy gave a direction).
pub(crate) struct PathOutput {
    pub grads: GradStore,
    pub weights: Option<Vec<f64>>,
}

/// One way of computing a step's gradients.
pub(crate) trait GradientPath: Send {
    /// Batches one step takes (2 for cross-batch strategies).
    fn batches(&self) -> usize {
        1
    }

    /// Whether heads read a detached copy of the representation.
    fn detaches_representation(&self) -> bool {
        false
    }

    /// Whether the strategy is consulted at all (false for task alternation, where each step
    /// trains one task on its own loss).
    fn consults_strategy(&self) -> bool {
        true
    }

    /// The gradients of one step: `batch` is the step's batch, `extra` the further batches of
    /// a cross-batch step, `fwd` its forward pass and `losses` the loss values.
    fn gradients(
        &mut self,
        cx: &mut StepContext<'_>,
        batch: &StepBatch,
        extra: &[&StepBatch],
        fwd: &Forward,
        losses: &[f64],
    ) -> Result<PathOutput>;

    /// Runs after the update pipeline, before the optimiser step, with the final gradients
    /// (the meta-validated path takes its virtual step here).
    fn before_apply(
        &mut self,
        _cx: &mut StepContext<'_>,
        _batch: &StepBatch,
        _grads: &GradStore,
    ) -> Result<()> {
        Ok(())
    }

    /// Run state the path owns (a generator, say), saved in checkpoints.
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }

    /// Restores what [`state_tensors`](Self::state_tensors) saved; `get` looks a name up in
    /// the checkpoint, `path` names the file in errors.
    fn load_state_tensors(
        &mut self,
        _get: &dyn Fn(&str) -> Option<Tensor>,
        _path: &std::path::Path,
    ) -> Result<()> {
        Ok(())
    }
}
