//! The [`TaskLoss`] trait: what a task is trained on, built-in or a user's own.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::metrics::Metric;

/// The kind of targets a loss or a metric reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetForm {
    /// Class indices: u32 `(N,)` (or `(N, T)` per step).
    Classes,
    /// Real values of the prediction's shape (regression, multi-label 0/1 indicators).
    Values,
}

/// A task's training loss: from a prediction and a target (and an optional label mask) to a
/// scalar tensor, differentiable in the prediction.
///
/// Implement [`per_sample`](TaskLoss::per_sample), the unreduced loss; the provided
/// [`compute`](TaskLoss::compute) takes its mean and
/// [`compute_masked`](TaskLoss::compute_masked) its mean over the labelled samples (or labels),
/// so a custom loss gets label masks, evaluation, logging, Delta-m, checkpoints and every
/// weighting strategy as a built-in one does. A loss that can reduce faster may override both.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use candle_mtl::metrics::Metric;
/// use candle_mtl::task::{TargetForm, TaskLoss};
///
/// /// Squared error weighted by `weight`.
/// #[derive(Debug)]
/// struct Weighted { weight: f64 }
///
/// impl TaskLoss for Weighted {
///     fn name(&self) -> String { format!("weighted-mse({})", self.weight) }
///     fn targets(&self) -> TargetForm { TargetForm::Values }
///     fn per_sample(&self, task: &str, pred: &Tensor, target: &Tensor) -> candle_mtl::Result<Tensor> {
///         let pred = candle_mtl::task::regression_prediction(task, pred, target)?;
///         Ok(((pred - target)?.sqr()? * self.weight)?)
///     }
///     fn default_metrics(&self) -> Vec<Metric> { vec![Metric::Mae] }
/// }
///
/// let pred = Tensor::new(&[[1f32], [3.0]], &Device::Cpu)?;
/// let target = Tensor::new(&[2f32, 1.0], &Device::Cpu)?;
/// let loss = Weighted { weight: 2.0 }.compute("age", &pred, &target)?;
/// assert_eq!(loss.to_scalar::<f32>()?, 5.0);
/// # Ok::<(), candle_mtl::Error>(())
/// ```
pub trait TaskLoss: std::fmt::Debug + Send + Sync {
    /// Short name with its parameters (`huber(delta=1)`), shown in errors and recorded in
    /// saved models, whose loader compares it.
    fn name(&self) -> String;

    /// Whether the targets are class indices or real values.
    fn targets(&self) -> TargetForm;

    /// The unreduced loss: one value per sample `(N,)`, or per element of the target (for
    /// example `(N, L)`, one per label). The error names `task` and both shapes when the
    /// prediction and target do not fit.
    fn per_sample(&self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor>;

    /// The metrics that make sense for this loss's task, the main one first
    /// ([`TaskSpec::new`](super::TaskSpec::new) reports these).
    fn default_metrics(&self) -> Vec<Metric>;

    /// True for losses whose targets are class indices.
    fn is_classification(&self) -> bool {
        self.targets() == TargetForm::Classes
    }

    /// The mean of [`per_sample`](TaskLoss::per_sample) over the batch.
    fn compute(&self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        Ok(self.per_sample(task, pred, target)?.mean_all()?)
    }

    /// The mean loss over the labelled part of the batch: `mask` is `(N,)` (one entry per
    /// sample) or of the target's shape (one per label), non-zero where a label is present.
    /// Unlabelled targets may hold any placeholder (NaN included): they are replaced by 0
    /// (class 0) before [`per_sample`](TaskLoss::per_sample) sees them, and their losses are
    /// weighted by 0, so a loss that is finite at that zero target keeps NaN out of the loss
    /// and its gradient. With nothing labelled the loss is 0 (a constant).
    fn compute_masked(
        &self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        masked_mean(self, task, pred, target, mask)
    }
}

/// The provided [`TaskLoss::compute_masked`]: placeholders replaced by zeros (class 0 or
/// value 0), the unreduced loss weighted by the mask, summed and divided by the number of
/// labelled entries.
pub(crate) fn masked_mean<L: TaskLoss + ?Sized>(
    loss: &L,
    task: &str,
    pred: &Tensor,
    target: &Tensor,
    mask: &Tensor,
) -> Result<Tensor> {
    let n = pred.dims().first().copied().unwrap_or(0);
    let per_label = mask.dims() == target.dims() && target.rank() > 1;
    if mask.dims() != [n] && !per_label {
        return Err(Error::DataMismatch(format!(
            "task '{task}': the label mask has shape {:?}; it must be ({n},) for the batch or \
             the targets' shape {:?}",
            mask.dims(),
            target.dims()
        )));
    }
    let keep = mask.to_dtype(DType::F32)?.ne(0f32)?;
    let keep_target = broadcast_over(&keep, target)?;
    let safe_target = keep_target.where_cond(target, &target.zeros_like()?)?;
    let per = loss.per_sample(task, pred, &safe_target)?;
    let weights = if per.dims() == keep.dims() {
        keep.to_dtype(per.dtype())?
    } else if per.dims().first() == Some(&n) && !per_label {
        broadcast_over(&keep, &per)?.to_dtype(per.dtype())?
    } else if per.dims() == target.dims() {
        keep_target.to_dtype(per.dtype())?
    } else if per.elem_count() == keep_target.elem_count() {
        // Per-step losses flattened `(N*T,)` against targets `(N, T)` (tagging).
        keep_target.reshape(per.shape())?.to_dtype(per.dtype())?
    } else {
        return Err(Error::DataMismatch(format!(
            "task '{task}': loss '{}' gives losses of shape {:?}, which a label mask {:?} does \
             not cover",
            loss.name(),
            per.dims(),
            mask.dims()
        )));
    };
    let count = weights.sum_all()?;
    let total = (per * &weights)?.sum_all()?;
    Ok(total.broadcast_div(&count.maximum(1.0)?)?)
}

/// A per-sample mask `(N,)` broadcast over `like` `(N, ...)`; a mask of `like`'s shape as is.
fn broadcast_over(keep: &Tensor, like: &Tensor) -> Result<Tensor> {
    if keep.dims() == like.dims() {
        return Ok(keep.clone());
    }
    let shape: Vec<usize> = std::iter::once(keep.dims()[0])
        .chain(std::iter::repeat_n(1, like.rank().saturating_sub(1)))
        .collect();
    Ok(keep.reshape(shape)?.broadcast_as(like.shape())?)
}

/// A regression prediction brought to the target's shape for `task`: `(N, 1)` against `(N,)`
/// is squeezed; any other difference is an error naming the task and both shapes. For the
/// [`TaskLoss::per_sample`] of a user's regression loss.
pub fn regression_prediction(task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    super::match_regression_shape(task, pred, target)
}
