//! The classic losses as one enum, [`Loss`]: cross-entropy, NLL, MSE and L1.

use candle_core::{DType, Tensor};

use super::loss::{masked_mean, TargetForm, TaskLoss};
use super::{check_class_shapes, match_regression_shape, steps_as_samples};
use crate::error::Result;
use crate::metrics::Metric;

/// The classic training losses. Every loss is the mean over the batch.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Softmax cross-entropy on logits `(N, C)` against class indices `(N,)` (u32), or per
    /// step on `(N, T, C)` against `(N, T)` (tagging; the mean over every step).
    CrossEntropy,
    /// Negative log-likelihood on log-probabilities `(N, C)` (for example a head followed by
    /// log-softmax) against class indices `(N,)`.
    Nll,
    /// Mean squared error against real targets of the prediction's shape, or `(N,)` for a
    /// prediction `(N, 1)`.
    Mse,
    /// Mean absolute error (L1), targets as for [`Loss::Mse`].
    L1,
}

impl Loss {
    fn log_probabilities(self, pred: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Loss::CrossEntropy => candle_nn::ops::log_softmax(pred, 1)?,
            _ => pred.clone(),
        })
    }

    fn elementwise(self, diff: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Loss::Mse => diff.sqr()?,
            _ => diff.abs()?,
        })
    }
}

impl TaskLoss for Loss {
    fn name(&self) -> String {
        format!("{self:?}")
    }

    fn targets(&self) -> TargetForm {
        match self {
            Loss::CrossEntropy | Loss::Nll => TargetForm::Classes,
            Loss::Mse | Loss::L1 => TargetForm::Values,
        }
    }

    fn default_metrics(&self) -> Vec<Metric> {
        match self.targets() {
            TargetForm::Classes => vec![Metric::Accuracy],
            TargetForm::Values => vec![Metric::Mae, Metric::Mse, Metric::Rmse],
        }
    }

    /// Classification: the negative log-probability of each sample's class (`(N*T,)` per
    /// step when tagging); regression: the squared or absolute error of each element.
    fn per_sample(&self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        if self.is_classification() {
            let (pred, target) = steps_as_samples(pred, target)?;
            check_class_shapes(task, &pred, &target)?;
            let target = target.to_dtype(DType::U32)?;
            let log_p = self.log_probabilities(&pred)?;
            Ok(log_p.gather(&target.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?)
        } else {
            let pred = match_regression_shape(task, pred, target)?;
            let target = target.to_dtype(pred.dtype())?;
            self.elementwise(&(pred - target)?)
        }
    }

    fn compute(&self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        if self.is_classification() {
            let (pred, target) = steps_as_samples(pred, target)?;
            let (pred, target) = (&pred, &target);
            check_class_shapes(task, pred, target)?;
            let target = target.to_dtype(DType::U32)?;
            Ok(match self {
                Loss::CrossEntropy => candle_nn::loss::cross_entropy(pred, &target)?,
                _ => candle_nn::loss::nll(pred, &target)?,
            })
        } else {
            let pred = match_regression_shape(task, pred, target)?;
            let target = target.to_dtype(pred.dtype())?;
            Ok(self.elementwise(&(pred - target)?)?.mean_all()?)
        }
    }

    /// As the provided method, written so that a per-sample mask never moves data to the
    /// host.
    fn compute_masked(
        &self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        let n = pred.dims().first().copied().unwrap_or(0);
        if mask.dims() != [n] {
            // Per-label masks, or an error naming both shapes.
            return masked_mean(self, task, pred, target, mask);
        }
        let mut keep = mask.to_dtype(DType::F32)?.ne(0f32)?;
        let (pred_steps, target_steps) = steps_as_samples(pred, target)?;
        if self.is_classification() && pred_steps.dims() != pred.dims() {
            // Per-step tagging: a sample's mask covers each of its steps.
            let steps = pred.dim(1)?;
            keep = keep.unsqueeze(1)?.broadcast_as((n, steps))?.flatten_all()?;
        }
        let (pred, target) = if self.is_classification() {
            (&pred_steps, &target_steps)
        } else {
            (pred, target)
        };
        let weights = keep.to_dtype(pred.dtype())?;
        let per_sample = if self.is_classification() {
            check_class_shapes(task, pred, target)?;
            let target = target.to_dtype(DType::U32)?;
            let safe = keep.where_cond(&target, &target.zeros_like()?)?;
            let classes = pred.dim(1)?;
            let too_big = safe.ge(classes as u32)?;
            let safe = too_big.where_cond(&safe.zeros_like()?, &safe)?;
            let log_p = self.log_probabilities(pred)?;
            log_p.gather(&safe.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?
        } else {
            let pred = match_regression_shape(task, pred, target)?;
            let target = target.to_dtype(pred.dtype())?;
            // Placeholders (NaN included) in masked-out targets are replaced before any
            // arithmetic, so that no NaN reaches the loss or its gradient.
            let keep_shape: Vec<usize> = std::iter::once(n)
                .chain(std::iter::repeat_n(1, target.rank().saturating_sub(1)))
                .collect();
            let keep_full = keep.reshape(keep_shape)?.broadcast_as(target.shape())?;
            let target = keep_full.where_cond(&target, &target.zeros_like()?)?;
            let err = self.elementwise(&(pred - target)?)?;
            if err.rank() > 1 {
                err.flatten_from(1)?.mean(1)?
            } else {
                err
            }
        };
        let count = weights.sum_all()?;
        let total = (per_sample * &weights)?.sum_all()?;
        Ok(total.broadcast_div(&count.maximum(1.0)?)?)
    }
}
