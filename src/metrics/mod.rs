//! Evaluation metrics per task, accumulated over batches: the [`Metric`] keys of reports,
//! the [`TaskMetric`] trait a metric implements (built-in or a user's own), and Delta-m.

mod multi_label;
mod sequence;
mod task_metric;
mod top_k;

pub use task_metric::{MetricState, TaskMetric};

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::task::{check_class_shapes, match_regression_shape};

/// A metric reported by evaluation: its name and direction, the key of its value in every
/// report. The built-in ones are computed by their [`TaskMetric`] implementation on this
/// enum; [`Metric::Custom`] names a user's [`TaskMetric`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Fraction of samples whose arg-max prediction is the target class.
    Accuracy,
    /// Mean squared error.
    Mse,
    /// Mean absolute error.
    Mae,
    /// Root mean squared error.
    Rmse,
    /// Fraction of samples whose target class is among the `k` highest logits (ties count
    /// in the sample's favour).
    TopKAccuracy(usize),
    /// Micro-averaged F1 of multi-label predictions (logit > 0, probability > ½) against 0/1
    /// targets `(N, L)`: `2 TP / (2 TP + FP + FN)` over every present label.
    MultiLabelF1,
    /// Mean over labels of the average precision of the logits' ranking (labels without a
    /// positive sample are left out), multi-label targets `(N, L)`.
    MeanAveragePrecision,
    /// Share of non-`pad` target tokens of sequences `(N, T)` predicted right (arg-max of
    /// logits `(N, T, V)`).
    TokenAccuracy {
        /// The padding token, left out.
        pad: u32,
    },
    /// Share of sequences whose every non-`pad` token (end-of-sequence included) is right.
    SequenceAccuracy {
        /// The padding token, left out.
        pad: u32,
    },
    /// A user's metric, computed by its own [`TaskMetric`]: its name and direction.
    Custom {
        /// Name in reports and logs.
        name: String,
        /// True when larger values are better (for Delta-m, early stopping, best checkpoint).
        higher_is_better: bool,
    },
}

impl Metric {
    /// The key of a user's metric called `name`.
    pub fn custom(name: impl Into<String>, higher_is_better: bool) -> Self {
        Metric::Custom {
            name: name.into(),
            higher_is_better,
        }
    }

    /// Short lower-case name (`accuracy`, `mse`, `mae`, `rmse`, `top5_accuracy`, `f1`, `map`,
    /// `token_accuracy`, `sequence_accuracy`, or a custom metric's own).
    pub fn name(&self) -> String {
        match self {
            Metric::Accuracy => "accuracy".into(),
            Metric::Mse => "mse".into(),
            Metric::Mae => "mae".into(),
            Metric::Rmse => "rmse".into(),
            Metric::TopKAccuracy(k) => format!("top{k}_accuracy"),
            Metric::MultiLabelF1 => "f1".into(),
            Metric::MeanAveragePrecision => "map".into(),
            Metric::TokenAccuracy { .. } => "token_accuracy".into(),
            Metric::SequenceAccuracy { .. } => "sequence_accuracy".into(),
            Metric::Custom { name, .. } => name.clone(),
        }
    }

    /// True when larger values are better.
    pub fn higher_is_better(&self) -> bool {
        match self {
            Metric::Accuracy
            | Metric::TopKAccuracy(_)
            | Metric::MultiLabelF1
            | Metric::MeanAveragePrecision
            | Metric::TokenAccuracy { .. }
            | Metric::SequenceAccuracy { .. } => true,
            Metric::Mse | Metric::Mae | Metric::Rmse => false,
            Metric::Custom {
                higher_is_better, ..
            } => *higher_is_better,
        }
    }

    /// True for metrics on class predictions.
    pub fn is_classification(&self) -> bool {
        matches!(
            self,
            Metric::Accuracy
                | Metric::TopKAccuracy(_)
                | Metric::TokenAccuracy { .. }
                | Metric::SequenceAccuracy { .. }
        )
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Delta-m, the mean relative improvement of a multi-task model over single-task baselines
/// (Maninis, Radosavovic & Kokkinos, 2019; Vandenhende et al., 2021):
///
/// `Δm = (1/T) Σ_i s_i (M_i - B_i) / B_i`, with `s_i = +1` when higher is better and `-1`
/// when lower is better, over every `(metric, multi-task value M_i, baseline value B_i)`.
/// Positive means better than the baselines; multiply by 100 for percent.
///
/// ```
/// use candle_mtl::metrics::{delta_m, Metric};
/// // Accuracy 0.95 vs 0.90 (+5.6%), MAE 0.8 vs 1.0 (+20%): mean +12.8%.
/// let d = delta_m(&[(Metric::Accuracy, 0.95, 0.90), (Metric::Mae, 0.8, 1.0)]).unwrap();
/// assert!((d - 0.12778).abs() < 1e-4);
/// ```
pub fn delta_m(entries: &[(Metric, f64, f64)]) -> Option<f64> {
    if entries.is_empty() {
        return None;
    }
    let mut total = 0.0;
    for (metric, value, baseline) in entries {
        let (value, baseline) = (*value, *baseline);
        if baseline == 0.0 || !baseline.is_finite() || !value.is_finite() {
            return None;
        }
        let sign = if metric.higher_is_better() { 1.0 } else { -1.0 };
        total += sign * (value - baseline) / baseline;
    }
    Some(total / entries.len() as f64)
}

/// Running sums from which every [`Metric`] is computed at the end of an evaluation.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricAccumulator {
    samples: usize,
    correct: f64,
    values: usize,
    squared_error: f64,
    absolute_error: f64,
}

impl MetricAccumulator {
    /// Adds a batch of class predictions `(N, C)` against class indices `(N,)`.
    pub fn add_classification(
        &mut self,
        task: &str,
        logits: &Tensor,
        target: &Tensor,
    ) -> Result<()> {
        let (logits, target) = crate::task::steps_as_samples(logits, target)?;
        let (logits, target) = (&logits, &target);
        check_class_shapes(task, logits, target)?;
        let predicted = logits.argmax(1)?;
        let target = target.to_dtype(DType::U32)?;
        let correct = predicted
            .eq(&target)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        self.correct += f64::from(correct);
        self.samples += target.dims()[0];
        Ok(())
    }

    /// Adds a batch of real-valued predictions against targets.
    pub fn add_regression(&mut self, task: &str, pred: &Tensor, target: &Tensor) -> Result<()> {
        let pred = match_regression_shape(task, pred, target)?;
        let diff = (pred.to_dtype(DType::F32)? - target.to_dtype(DType::F32)?)?;
        self.squared_error += f64::from(diff.sqr()?.sum_all()?.to_scalar::<f32>()?);
        self.absolute_error += f64::from(diff.abs()?.sum_all()?.to_scalar::<f32>()?);
        self.values += diff.elem_count();
        self.samples += target.dims().first().copied().unwrap_or(0);
        Ok(())
    }

    /// Adds a batch of real-valued predictions against targets, counting only the entries
    /// whose `mask` (of the targets' shape) is non-zero; masked-out targets may hold any
    /// placeholder.
    pub fn add_regression_masked(
        &mut self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        mask: &Tensor,
    ) -> Result<()> {
        let pred = match_regression_shape(task, pred, target)?.to_dtype(DType::F32)?;
        if mask.dims() != target.dims() {
            return Err(crate::Error::DataMismatch(format!(
                "task '{task}': label mask {:?} does not match the targets {:?}",
                mask.dims(),
                target.dims()
            )));
        }
        let keep = mask.to_dtype(DType::F32)?.ne(0f32)?;
        let target = target.to_dtype(DType::F32)?;
        let diff = keep.where_cond(&(pred - &target)?, &target.zeros_like()?)?;
        self.squared_error += f64::from(diff.sqr()?.sum_all()?.to_scalar::<f32>()?);
        self.absolute_error += f64::from(diff.abs()?.sum_all()?.to_scalar::<f32>()?);
        let present = keep.to_dtype(DType::F32)?;
        self.values += present.sum_all()?.to_scalar::<f32>()? as usize;
        self.samples += present
            .flatten_from(1)?
            .max(1)?
            .sum_all()?
            .to_scalar::<f32>()? as usize;
        Ok(())
    }

    /// Number of samples seen.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The value of `metric` over everything added so far (NaN before any sample, and for
    /// metrics other than accuracy, MSE, MAE and RMSE).
    pub fn value(&self, metric: Metric) -> f64 {
        let per_value = |sum: f64| {
            if self.values == 0 {
                f64::NAN
            } else {
                sum / self.values as f64
            }
        };
        match metric {
            Metric::Accuracy if self.samples == 0 => f64::NAN,
            Metric::Accuracy => self.correct / self.samples as f64,
            Metric::Mse => per_value(self.squared_error),
            Metric::Mae => per_value(self.absolute_error),
            Metric::Rmse => per_value(self.squared_error).sqrt(),
            _ => f64::NAN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use candle_core::Device;

    #[test]
    fn accuracy_and_errors_accumulate_over_batches() -> Result<()> {
        let dev = Device::Cpu;
        let mut acc = MetricAccumulator::default();
        let logits = Tensor::new(&[[0.1f32, 0.9], [0.8, 0.2], [0.3, 0.7]], &dev)?;
        acc.add_classification("c", &logits, &Tensor::new(&[1u32, 1, 1], &dev)?)?;
        acc.add_classification("c", &logits.narrow(0, 0, 1)?, &Tensor::new(&[1u32], &dev)?)?;
        assert_abs_diff_eq!(acc.value(Metric::Accuracy), 0.75);

        let mut reg = MetricAccumulator::default();
        reg.add_regression(
            "r",
            &Tensor::new(&[[1f32], [2.0]], &dev)?,
            &Tensor::new(&[0f32, 4.0], &dev)?,
        )?;
        assert_abs_diff_eq!(reg.value(Metric::Mae), 1.5);
        assert_abs_diff_eq!(reg.value(Metric::Mse), 2.5);
        assert_abs_diff_eq!(reg.value(Metric::Rmse), 2.5f64.sqrt());
        assert!(MetricAccumulator::default().value(Metric::Mae).is_nan());
        Ok(())
    }
}
