//! Top-k accuracy.

use candle_core::{DType, Tensor};

use super::task_metric::{refuse_label_mask, MetricState};
use super::Metric;
use crate::error::{Error, Result};
use crate::task::{check_class_shapes, steps_as_samples};

/// Counts the samples whose target class is among the `k` highest logits: fewer than `k`
/// logits are strictly above the target's (ties count in the sample's favour).
pub(super) struct TopKState {
    k: usize,
    hits: f64,
    samples: usize,
}

impl TopKState {
    pub(super) fn new(k: usize) -> Result<Self> {
        if k == 0 {
            return Err(Error::config("top-k accuracy: k", k, "must be at least 1"));
        }
        Ok(Self {
            k,
            hits: 0.0,
            samples: 0,
        })
    }
}

impl MetricState for TopKState {
    fn add(
        &mut self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<()> {
        refuse_label_mask(task, &Metric::TopKAccuracy(self.k), mask)?;
        let (logits, target) = steps_as_samples(pred, target)?;
        check_class_shapes(task, &logits, &target)?;
        let logits = logits.to_dtype(DType::F32)?;
        let classes = logits.dim(1)?;
        let target = target.to_dtype(DType::U32)?;
        if let Some(bad) = target
            .to_vec1::<u32>()?
            .iter()
            .find(|&&c| c as usize >= classes)
        {
            return Err(Error::DataMismatch(format!(
                "task '{task}': target class {bad} but the predictions have {classes} classes"
            )));
        }
        let own = logits.gather(&target.unsqueeze(1)?, 1)?;
        let above = logits
            .broadcast_gt(&own)?
            .to_dtype(DType::F32)?
            .sum(1)?
            .to_vec1::<f32>()?;
        self.hits += above.iter().filter(|&&a| (a as usize) < self.k).count() as f64;
        self.samples += above.len();
        Ok(())
    }

    fn value(&self) -> f64 {
        if self.samples == 0 {
            f64::NAN
        } else {
            self.hits / self.samples as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::{Metric, TaskMetric};
    use candle_core::{Device, Tensor};

    #[test]
    fn top_k_counts_targets_among_the_k_highest() -> crate::Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(
            &[[0.1f32, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]],
            &dev,
        )?;
        // Ranks of the targets: 2nd, 2nd (tied with the 3rd: counts as 2nd), 3rd.
        let classes = Tensor::new(&[2u32, 1, 0], &dev)?;
        let value = |k| -> crate::Result<f64> {
            let mut s = Metric::TopKAccuracy(k).start()?;
            s.add("digit", &logits, &classes, None)?;
            Ok(s.value())
        };
        assert_eq!(value(1)?, 0.0);
        assert_eq!(value(2)?, 2.0 / 3.0);
        assert_eq!(value(3)?, 1.0);
        assert!(Metric::TopKAccuracy(0).start().is_err());
        let mut s = Metric::TopKAccuracy(1).start()?;
        let err = s
            .add("digit", &logits, &Tensor::new(&[5u32, 0, 0], &dev)?, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("'digit'") && err.contains('5'), "{err}");
        Ok(())
    }
}
