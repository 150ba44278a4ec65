//! Evaluation metrics per task, accumulated over batches.

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::task::{check_class_shapes, match_regression_shape};

/// A metric reported by evaluation.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Fraction of samples whose arg-max prediction is the target class.
    Accuracy,
    /// Mean squared error.
    Mse,
    /// Mean absolute error.
    Mae,
    /// Root mean squared error.
    Rmse,
}

impl Metric {
    /// Short lower-case name (`accuracy`, `mse`, `mae`, `rmse`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Mse => "mse",
            Metric::Mae => "mae",
            Metric::Rmse => "rmse",
        }
    }

    /// True when larger values are better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::Accuracy)
    }

    /// True for metrics on class predictions.
    pub fn is_classification(self) -> bool {
        matches!(self, Metric::Accuracy)
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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
    for &(metric, value, baseline) in entries {
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

    /// Number of samples seen.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The value of `metric` over everything added so far (NaN before any sample).
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
