//! The [`TaskMetric`] trait, and its implementation for the built-in [`Metric`]s.

use candle_core::Tensor;

use super::multi_label::{AveragePrecisionState, F1State};
use super::sequence::SequenceState;
use super::top_k::TopKState;
use super::{Metric, MetricAccumulator};
use crate::error::{Error, Result};
use crate::task::TargetForm;

/// A metric computed over a whole evaluation: [`start`](TaskMetric::start) gives a fresh
/// [`MetricState`], every batch is [`add`](MetricState::add)ed to it, and its
/// [`value`](MetricState::value) is reported under the key [`metric`](TaskMetric::metric),
/// whose direction serves Delta-m, early stopping and the best checkpoint.
///
/// A user's metric returns a [`Metric::Custom`] key and is given to
/// [`TaskSpec::with_metric`](crate::task::TaskSpec::with_metric):
///
/// ```
/// use candle_core::Tensor;
/// use candle_mtl::metrics::{Metric, MetricState, TaskMetric};
///
/// /// The largest absolute error seen.
/// #[derive(Debug)]
/// struct MaxError;
///
/// #[derive(Default)]
/// struct MaxErrorState(f64);
///
/// impl TaskMetric for MaxError {
///     fn metric(&self) -> Metric { Metric::custom("max_error", false) }
///     fn start(&self) -> candle_mtl::Result<Box<dyn MetricState>> {
///         Ok(Box::new(MaxErrorState::default()))
///     }
/// }
///
/// impl MetricState for MaxErrorState {
///     fn add(&mut self, task: &str, pred: &Tensor, target: &Tensor, _mask: Option<&Tensor>)
///         -> candle_mtl::Result<()> {
///         let pred = candle_mtl::task::regression_prediction(task, pred, target)?;
///         let worst = (pred - target)?.abs()?.max_all()?.to_scalar::<f32>()?;
///         self.0 = self.0.max(f64::from(worst));
///         Ok(())
///     }
///     fn value(&self) -> f64 { self.0 }
/// }
/// ```
pub trait TaskMetric: std::fmt::Debug + Send + Sync {
    /// The key its value is reported under: name and direction.
    fn metric(&self) -> Metric;

    /// The kind of targets it reads (`None`: any); a model refuses a metric whose kind differs
    /// from its task's loss.
    fn targets(&self) -> Option<TargetForm> {
        None
    }

    /// A fresh state for one evaluation; an error when the metric cannot be computed (the
    /// model's builder calls it once, so the error comes before training).
    fn start(&self) -> Result<Box<dyn MetricState>>;
}

/// The running state of one [`TaskMetric`] over one evaluation.
pub trait MetricState: Send {
    /// Adds a batch of predictions against targets. Unlabelled samples of a per-sample label
    /// mask have been removed already; `mask` is a per-label mask of the targets' shape when
    /// the data has one (non-zero where the label is present).
    fn add(
        &mut self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<()>;

    /// The metric over everything added (NaN before anything was).
    fn value(&self) -> f64;
}

impl TaskMetric for Metric {
    fn metric(&self) -> Metric {
        self.clone()
    }

    fn targets(&self) -> Option<TargetForm> {
        match self {
            Metric::Accuracy
            | Metric::TopKAccuracy(_)
            | Metric::TokenAccuracy { .. }
            | Metric::SequenceAccuracy { .. } => Some(TargetForm::Classes),
            Metric::Mse
            | Metric::Mae
            | Metric::Rmse
            | Metric::MultiLabelF1
            | Metric::MeanAveragePrecision => Some(TargetForm::Values),
            Metric::Custom { .. } => None,
        }
    }

    fn start(&self) -> Result<Box<dyn MetricState>> {
        Ok(match self {
            Metric::Accuracy | Metric::Mse | Metric::Mae | Metric::Rmse => Box::new(Accumulated {
                metric: self.clone(),
                sums: MetricAccumulator::default(),
            }),
            Metric::TopKAccuracy(k) => Box::new(TopKState::new(*k)?),
            Metric::MultiLabelF1 => Box::new(F1State::default()),
            Metric::MeanAveragePrecision => Box::new(AveragePrecisionState::default()),
            Metric::TokenAccuracy { pad } => Box::new(SequenceState::tokens(*pad)),
            Metric::SequenceAccuracy { pad } => Box::new(SequenceState::sequences(*pad)),
            Metric::Custom { name, .. } => {
                return Err(Error::config(
                    "metric",
                    name,
                    "is a custom metric's name only; give its TaskMetric implementation to \
                     TaskSpec::with_metric",
                ))
            }
        })
    }
}

/// Accuracy, MSE, MAE and RMSE from the sums of a [`MetricAccumulator`].
struct Accumulated {
    metric: Metric,
    sums: MetricAccumulator,
}

impl MetricState for Accumulated {
    fn add(
        &mut self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<()> {
        match mask {
            Some(m) if !self.metric.is_classification() => {
                self.sums.add_regression_masked(task, pred, target, m)
            }
            _ => {
                refuse_label_mask(task, &self.metric, mask)?;
                if self.metric.is_classification() {
                    self.sums.add_classification(task, pred, target)
                } else {
                    self.sums.add_regression(task, pred, target)
                }
            }
        }
    }

    fn value(&self) -> f64 {
        self.sums.value(self.metric.clone())
    }
}

/// The error of a metric that reads no per-label mask when it is given one.
pub(super) fn refuse_label_mask(task: &str, metric: &Metric, mask: Option<&Tensor>) -> Result<()> {
    match mask {
        None => Ok(()),
        Some(m) => Err(Error::DataMismatch(format!(
            "task '{task}': metric '{metric}' does not read per-label masks (mask {:?}); \
             the multi-label and regression metrics do",
            m.dims()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn regression_errors_count_only_present_labels() -> Result<()> {
        let dev = Device::Cpu;
        let pred = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &dev)?;
        let target = Tensor::new(&[[0f32, f32::NAN], [3.0, 6.0]], &dev)?;
        let mask = Tensor::new(&[[1u8, 0], [1, 1]], &dev)?;
        let mut mae = Metric::Mae.start()?;
        mae.add("pose", &pred, &target, Some(&mask))?;
        assert_eq!(mae.value(), (1.0 + 0.0 + 2.0) / 3.0);
        let mut acc = Metric::Accuracy.start()?;
        let err = acc.add("pose", &pred, &target, Some(&mask)).unwrap_err();
        assert!(err.to_string().contains("'pose'"), "{err}");
        Ok(())
    }
}
