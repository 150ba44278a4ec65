//! Tasks: a name, a loss and the metrics reported for it.
//!
//! A task pairs a [`TaskHead`](crate::head::TaskHead) (added through
//! [`MultiTaskModelBuilder::task`](crate::model::MultiTaskModelBuilder::task)) with a
//! [`TaskSpec`]: the loss it is trained on and the metrics it is evaluated with.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::metrics::Metric;

/// The training loss of a task. Every loss is the mean over the batch.
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
    /// True for losses whose targets are class indices.
    pub fn is_classification(self) -> bool {
        matches!(self, Loss::CrossEntropy | Loss::Nll)
    }

    /// The loss of `pred` against `target` for task `task` (named in errors).
    pub fn compute(self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
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
            let diff = (pred - target)?;
            Ok(match self {
                Loss::Mse => diff.sqr()?.mean_all()?,
                _ => diff.abs()?.mean_all()?,
            })
        }
    }
}

impl Loss {
    /// The loss of `pred` against `target` over the samples whose `mask` entry is non-zero:
    /// the sum of per-sample losses over those samples divided by their number. With no such
    /// sample the loss is 0 (a constant: no gradient), never NaN. Masked-out targets may hold
    /// any value (a placeholder class index out of range included).
    pub fn compute_masked(
        self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        let n = pred.dims().first().copied().unwrap_or(0);
        if mask.dims() != [n] {
            return Err(Error::DataMismatch(format!(
                "task '{task}': the label mask has shape {:?}, the batch {n} samples",
                mask.dims()
            )));
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
            let log_p = match self {
                Loss::CrossEntropy => candle_nn::ops::log_softmax(pred, 1)?,
                _ => pred.clone(),
            };
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
            let diff = (pred - target)?;
            let err = match self {
                Loss::Mse => diff.sqr()?,
                _ => diff.abs()?,
            };
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

/// Per-step classification (tagging): predictions `(N, T, C)` against classes `(N, T)` become
/// `(N*T, C)` against `(N*T,)`; anything else is returned unchanged.
pub(crate) fn steps_as_samples(pred: &Tensor, target: &Tensor) -> Result<(Tensor, Tensor)> {
    let (pd, td) = (pred.dims(), target.dims());
    if pd.len() == 3 && td.len() == 2 && pd[..2] == td[..] {
        Ok((
            pred.reshape((pd[0] * pd[1], pd[2]))?,
            target.reshape(pd[0] * pd[1])?,
        ))
    } else {
        Ok((pred.clone(), target.clone()))
    }
}

pub(crate) fn check_class_shapes(task: &str, pred: &Tensor, target: &Tensor) -> Result<()> {
    let (pd, td) = (pred.dims(), target.dims());
    if pd.len() != 2 || td.len() != 1 || pd[0] != td[0] {
        return Err(Error::DataMismatch(format!(
            "task '{task}': classification needs predictions (N, C) and class indices (N,), \
             got predictions {pd:?} and targets {td:?}"
        )));
    }
    Ok(())
}

/// Brings a regression prediction to the target's shape: `(N, 1)` against `(N,)` (or
/// `(N, T, 1)` against `(N, T)`) is squeezed.
pub(crate) fn match_regression_shape(task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    let (pd, td) = (pred.dims(), target.dims());
    if pd == td {
        return Ok(pred.clone());
    }
    if pd.len() == td.len() + 1 && pd.last() == Some(&1) && pd[..td.len()] == td[..] {
        return Ok(pred.squeeze(td.len())?);
    }
    Err(Error::DataMismatch(format!(
        "task '{task}': regression predictions {pd:?} do not match targets {td:?}"
    )))
}

/// What a task is trained on and evaluated with; its head is given separately.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// Unique task name; also the parameter path `heads.<name>` and the dataset target name.
    pub name: String,
    /// Training loss.
    pub loss: Loss,
    /// Metrics reported by evaluation, the first being the task's main metric.
    pub metrics: Vec<Metric>,
}

impl TaskSpec {
    /// Classification: cross-entropy loss, accuracy metric.
    pub fn classification(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            loss: Loss::CrossEntropy,
            metrics: vec![Metric::Accuracy],
        }
    }

    /// Regression: MSE loss; MAE, MSE and RMSE metrics (MAE the main one).
    pub fn regression(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            loss: Loss::Mse,
            metrics: vec![Metric::Mae, Metric::Mse, Metric::Rmse],
        }
    }

    /// Replaces the loss.
    pub fn with_loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }

    /// Replaces the metrics.
    pub fn with_metrics(mut self, metrics: Vec<Metric>) -> Self {
        self.metrics = metrics;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use candle_core::Device;

    #[test]
    fn losses_match_hand_computed_values() -> Result<()> {
        let dev = Device::Cpu;
        let pred = Tensor::new(&[[1.0f32], [3.0]], &dev)?;
        let target = Tensor::new(&[2.0f32, 1.0], &dev)?;
        let mse = Loss::Mse.compute("r", &pred, &target)?.to_scalar::<f32>()?;
        assert_abs_diff_eq!(mse, 2.5, epsilon = 1e-6);
        let l1 = Loss::L1.compute("r", &pred, &target)?.to_scalar::<f32>()?;
        assert_abs_diff_eq!(l1, 1.5, epsilon = 1e-6);
        let logits = Tensor::new(&[[0.0f32, 0.0], [10.0, 0.0]], &dev)?;
        let classes = Tensor::new(&[1u32, 0], &dev)?;
        let ce = Loss::CrossEntropy
            .compute("c", &logits, &classes)?
            .to_scalar::<f32>()?;
        let expected = (2f32.ln() + (1.0 + (-10f32).exp()).ln()) / 2.0;
        assert_abs_diff_eq!(ce, expected, epsilon = 1e-5);
        Ok(())
    }

    #[test]
    fn masked_losses_skip_unlabelled_samples_and_never_give_nan() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[0.0f32, 0.0], [10.0, 0.0], [1.0, 2.0]], &dev)?;
        // The third sample carries a placeholder class far out of range.
        let classes = Tensor::new(&[1u32, 0, u32::MAX], &dev)?;
        let mask = Tensor::new(&[1u8, 1, 0], &dev)?;
        let masked = Loss::CrossEntropy
            .compute_masked("c", &logits, &classes, &mask)?
            .to_scalar::<f32>()?;
        let first_two = Loss::CrossEntropy
            .compute("c", &logits.narrow(0, 0, 2)?, &classes.narrow(0, 0, 2)?)?
            .to_scalar::<f32>()?;
        assert_abs_diff_eq!(masked, first_two, epsilon = 1e-6);
        let none = Tensor::new(&[0u8, 0, 0], &dev)?;
        let zero = Loss::CrossEntropy
            .compute_masked("c", &logits, &classes, &none)?
            .to_scalar::<f32>()?;
        assert_eq!(zero, 0.0);
        let pred = Tensor::new(&[[1.0f32], [3.0], [0.0]], &dev)?;
        let target = Tensor::new(&[2.0f32, 1.0, f32::NAN], &dev)?;
        let mse = Loss::Mse
            .compute_masked("r", &pred, &target, &mask)?
            .to_scalar::<f32>()?;
        assert_abs_diff_eq!(mse, 2.5, epsilon = 1e-6);
        let all = Tensor::new(&[1u8, 1, 1], &dev)?;
        let full = Loss::Mse
            .compute_masked(
                "r",
                &pred.narrow(0, 0, 2)?,
                &target.narrow(0, 0, 2)?,
                &all.narrow(0, 0, 2)?,
            )?
            .to_scalar::<f32>()?;
        assert_abs_diff_eq!(full, 2.5, epsilon = 1e-6);
        Ok(())
    }

    #[test]
    fn shape_mismatch_names_the_task() {
        let dev = Device::Cpu;
        let pred = Tensor::zeros((4, 2), DType::F32, &dev).unwrap();
        let target = Tensor::zeros(3, DType::F32, &dev).unwrap();
        let err = Loss::Mse.compute("age", &pred, &target).unwrap_err();
        assert!(err.to_string().contains("'age'"), "{err}");
    }
}
