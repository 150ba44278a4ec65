//! Cross-batch strategies (MoDo, SDMGrad): the per-task gradients of a second, independent
//! batch are computed first, then the inner path runs on the first batch.

use crate::error::{Error, Result};
use crate::grad::{GradientSource, TaskGradients};
use crate::train::step::forward::{forward, loss_values, Forward};
use crate::train::step::path::{GradientPath, PathOutput};
use crate::train::step::StepContext;
use crate::train::StepBatch;

use super::per_task_rows;

/// Wraps a path that reads [`StepContext::second_gradients`].
pub(crate) struct CrossBatch {
    pub inner: Box<dyn GradientPath>,
}

impl GradientPath for CrossBatch {
    fn batches(&self) -> usize {
        2
    }

    fn gradients(
        &mut self,
        cx: &mut StepContext<'_>,
        batch: &StepBatch,
        extra: &[&StepBatch],
        fwd: &Forward,
        losses: &[f64],
    ) -> Result<PathOutput> {
        let second = extra
            .first()
            .ok_or_else(|| Error::DataMismatch("a cross-batch step needs a second batch".into()))?;
        let second_fwd = forward(cx.model, second, cx.active, true, false)?;
        loss_values(cx.model, &second_fwd.losses, cx.active, cx.step)?;
        let shared = cx.trainable_shared()?;
        let (_, matrix) = per_task_rows(&second_fwd.losses, &shared)?;
        let gradients = TaskGradients::new(GradientSource::SharedParameters, matrix)?;
        cx.check_gradients(&gradients)?;
        cx.second_gradients = Some(gradients);
        self.inner.gradients(cx, batch, &extra[1..], fwd, losses)
    }

    fn before_apply(
        &mut self,
        cx: &mut StepContext<'_>,
        batch: &StepBatch,
        grads: &candle_core::backprop::GradStore,
    ) -> Result<()> {
        self.inner.before_apply(cx, batch, grads)
    }
}
