//! Tasks: a name, a loss and the metrics reported for it.
//!
//! A task pairs a [`TaskHead`](crate::head::TaskHead) (added through
//! [`MultiTaskModelBuilder::task`](crate::model::MultiTaskModelBuilder::task)) with a
//! [`TaskSpec`]: the loss it is trained on ([`TaskLoss`]: the classic [`Loss`]es,
//! [`Huber`], [`BinaryCrossEntropy`], [`FocalLoss`] or a user's own) and the metrics it is
//! evaluated with ([`TaskMetric`]: the built-in [`Metric`]s or a user's own).
//!
//! A new loss is one file here implementing [`TaskLoss`] and a `mod`/`pub use` line below;
//! `docs/tasks.md` walks through a custom loss and metric.

mod binary_cross_entropy;
mod builtin_loss;
mod focal;
mod huber;
mod loss;
mod sequence_cross_entropy;

use std::sync::Arc;

use candle_core::Tensor;

pub use binary_cross_entropy::BinaryCrossEntropy;
pub use builtin_loss::Loss;
pub use focal::FocalLoss;
pub use huber::Huber;
pub use loss::{regression_prediction, TargetForm, TaskLoss};
pub use sequence_cross_entropy::SequenceCrossEntropy;

use crate::error::{Error, Result};
use crate::metrics::{Metric, TaskMetric};

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
///
/// ```
/// use candle_mtl::metrics::Metric;
/// use candle_mtl::task::{BinaryCrossEntropy, Huber, TaskSpec};
///
/// let age = TaskSpec::new("age", Huber::new(2.0)?); // MAE, MSE, RMSE
/// let tags = TaskSpec::new("tags", BinaryCrossEntropy::new()); // F1, mAP
/// let digit = TaskSpec::classification("digit").with_metrics(vec![Metric::Accuracy, Metric::TopKAccuracy(3)]);
/// assert_eq!(tags.metric_keys(), vec![Metric::MultiLabelF1, Metric::MeanAveragePrecision]);
/// # Ok::<(), candle_mtl::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Unique task name; also the parameter path `heads.<name>` and the dataset target name.
    pub name: String,
    /// Training loss.
    pub loss: Arc<dyn TaskLoss>,
    /// Metrics reported by evaluation, the first being the task's main metric.
    pub metrics: Vec<Arc<dyn TaskMetric>>,
}

impl PartialEq for TaskSpec {
    /// Same name, same loss name and same metric keys.
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.loss.name() == other.loss.name()
            && self.metric_keys() == other.metric_keys()
    }
}

impl TaskSpec {
    /// A task trained on `loss`, reporting the loss's
    /// [`default_metrics`](TaskLoss::default_metrics).
    pub fn new(name: impl Into<String>, loss: impl TaskLoss + 'static) -> Self {
        let metrics = loss
            .default_metrics()
            .into_iter()
            .map(|m| Arc::new(m) as Arc<dyn TaskMetric>)
            .collect();
        Self {
            name: name.into(),
            loss: Arc::new(loss),
            metrics,
        }
    }

    /// Classification: cross-entropy loss, accuracy metric.
    pub fn classification(name: impl Into<String>) -> Self {
        Self::new(name, Loss::CrossEntropy)
    }

    /// Regression: MSE loss; MAE, MSE and RMSE metrics (MAE the main one).
    pub fn regression(name: impl Into<String>) -> Self {
        Self::new(name, Loss::Mse)
    }

    /// Replaces the loss (the metrics stay).
    pub fn with_loss(mut self, loss: impl TaskLoss + 'static) -> Self {
        self.loss = Arc::new(loss);
        self
    }

    /// Replaces the metrics by built-in ones.
    pub fn with_metrics(mut self, metrics: Vec<Metric>) -> Self {
        self.metrics = metrics
            .into_iter()
            .map(|m| Arc::new(m) as Arc<dyn TaskMetric>)
            .collect();
        self
    }

    /// Adds a metric (a user's [`TaskMetric`] or a built-in [`Metric`]) after the others.
    pub fn with_metric(mut self, metric: impl TaskMetric + 'static) -> Self {
        self.metrics.push(Arc::new(metric));
        self
    }

    /// The keys of the metrics, in order: what the reports hold.
    pub fn metric_keys(&self) -> Vec<Metric> {
        self.metrics.iter().map(|m| m.metric()).collect()
    }

    /// Refuses a spec whose metrics do not fit its loss (class metrics on a regression loss,
    /// or the reverse), cannot start (a custom key without its implementation, top-0), repeat
    /// a name, or are named `loss`, `samples` or with characters a log column cannot hold;
    /// each error names the task.
    pub(crate) fn validate(&self) -> Result<()> {
        let task = &self.name;
        let form = self.loss.targets();
        let mut seen = Vec::new();
        for m in &self.metrics {
            let key = m.metric();
            if let Some(reads) = m.targets() {
                if reads != form {
                    return Err(Error::config(
                        format!("metrics of task '{task}'"),
                        &key,
                        format!(
                            "reads {reads:?} targets but the loss {} reads {form:?}",
                            self.loss.name()
                        ),
                    ));
                }
            }
            m.start().map_err(|e| {
                Error::config(format!("metrics of task '{task}'"), &key, e.to_string())
            })?;
            let name = key.name();
            let reason = if seen.contains(&name) {
                Some("is listed twice (metric names must differ: they are the logs' columns)")
            } else if name == "loss" || name == "samples" {
                Some("is a name the reports use for the task's loss or sample count")
            } else if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                Some("must be made of ASCII letters, digits, '_', '-' or '.' (a log column)")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(Error::config(
                    format!("metrics of task '{task}'"),
                    &key,
                    reason,
                ));
            }
            seen.push(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use candle_core::{DType, Device};

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
