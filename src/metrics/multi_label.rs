//! Multi-label metrics: micro-averaged F1 and mean average precision, per-label masks
//! honoured.

use candle_core::{DType, Tensor};

use super::task_metric::MetricState;
use crate::error::{Error, Result};
use crate::task::regression_prediction;

/// Logits, 0/1 targets and the present-label mask of a batch as host rows `(N, L)`.
struct LabelRows {
    scores: Vec<Vec<f32>>,
    labels: Vec<Vec<f32>>,
    present: Vec<Vec<bool>>,
}

fn label_rows(
    task: &str,
    pred: &Tensor,
    target: &Tensor,
    mask: Option<&Tensor>,
) -> Result<LabelRows> {
    let pred = regression_prediction(task, pred, target)?;
    let as_rows = |t: &Tensor| -> Result<Vec<Vec<f32>>> {
        let t = t.to_dtype(DType::F32)?;
        Ok(match t.rank() {
            1 => t.to_vec1::<f32>()?.into_iter().map(|v| vec![v]).collect(),
            2 => t.to_vec2::<f32>()?,
            _ => t.flatten_from(1)?.to_vec2::<f32>()?,
        })
    };
    let scores = as_rows(&pred)?;
    let labels = as_rows(target)?;
    let present = match mask {
        Some(m) if m.dims() == target.dims() => as_rows(m)?
            .into_iter()
            .map(|r| r.into_iter().map(|v| v != 0.0).collect())
            .collect(),
        Some(m) => {
            return Err(Error::DataMismatch(format!(
                "task '{task}': label mask {:?} does not match the targets {:?}",
                m.dims(),
                target.dims()
            )))
        }
        None => labels.iter().map(|r| vec![true; r.len()]).collect(),
    };
    for (i, (row, keep)) in labels.iter().zip(&present).enumerate() {
        for (j, (&y, &k)) in row.iter().zip(keep).enumerate() {
            if k && y != 0.0 && y != 1.0 {
                return Err(Error::DataMismatch(format!(
                    "task '{task}': multi-label target [{i}, {j}] of the batch is {y}, not 0 or 1"
                )));
            }
        }
    }
    Ok(LabelRows {
        scores,
        labels,
        present,
    })
}

/// True positives, false positives and false negatives of `logit > 0` over present labels.
#[derive(Default)]
pub(super) struct F1State {
    tp: f64,
    fp: f64,
    fn_: f64,
    seen: usize,
}

impl MetricState for F1State {
    fn add(
        &mut self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<()> {
        let rows = label_rows(task, pred, target, mask)?;
        for ((s, y), keep) in rows.scores.iter().zip(&rows.labels).zip(&rows.present) {
            for ((&s, &y), &k) in s.iter().zip(y).zip(keep) {
                if !k {
                    continue;
                }
                self.seen += 1;
                match (s > 0.0, y == 1.0) {
                    (true, true) => self.tp += 1.0,
                    (true, false) => self.fp += 1.0,
                    (false, true) => self.fn_ += 1.0,
                    (false, false) => {}
                }
            }
        }
        Ok(())
    }

    /// `2 TP / (2 TP + FP + FN)`; 1 when there is no positive at all and none predicted.
    fn value(&self) -> f64 {
        if self.seen == 0 {
            return f64::NAN;
        }
        let denom = 2.0 * self.tp + self.fp + self.fn_;
        if denom == 0.0 {
            1.0
        } else {
            2.0 * self.tp / denom
        }
    }
}

/// Every present (score, label) pair per label, ranked at the end.
#[derive(Default)]
pub(super) struct AveragePrecisionState {
    per_label: Vec<Vec<(f32, bool)>>,
}

impl MetricState for AveragePrecisionState {
    fn add(
        &mut self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<()> {
        let rows = label_rows(task, pred, target, mask)?;
        for ((s, y), keep) in rows.scores.iter().zip(&rows.labels).zip(&rows.present) {
            if self.per_label.len() < s.len() {
                self.per_label.resize(s.len(), Vec::new());
            }
            for (j, ((&s, &y), &k)) in s.iter().zip(y).zip(keep).enumerate() {
                if k {
                    self.per_label[j].push((s, y == 1.0));
                }
            }
        }
        Ok(())
    }

    /// Mean over the labels with a positive of `AP = (1/P) Σ_{positives i} precision@rank(i)`,
    /// samples ranked by decreasing score (equal scores in the order they were added).
    fn value(&self) -> f64 {
        let mut total = 0.0;
        let mut labels = 0usize;
        for pairs in &self.per_label {
            let positives = pairs.iter().filter(|(_, y)| *y).count();
            if positives == 0 {
                continue;
            }
            let mut order: Vec<usize> = (0..pairs.len()).collect();
            order.sort_by(|&a, &b| pairs[b].0.total_cmp(&pairs[a].0));
            let (mut hits, mut sum) = (0usize, 0.0);
            for (rank, &i) in order.iter().enumerate() {
                if pairs[i].1 {
                    hits += 1;
                    sum += hits as f64 / (rank + 1) as f64;
                }
            }
            total += sum / positives as f64;
            labels += 1;
        }
        if labels == 0 {
            f64::NAN
        } else {
            total / labels as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metric, TaskMetric};
    use approx::assert_abs_diff_eq;
    use candle_core::Device;

    #[test]
    fn f1_and_map_match_hand_computed_values() -> Result<()> {
        let dev = Device::Cpu;
        // Label 0: scores 3, 1, -2 for truths 1, 0, 1: predicted 1, 1, 0 -> TP 1, FP 1, FN 1.
        // Label 1: scores -1, 2, 0.5 for truths 0, 1, 1: predicted 0, 1, 1 -> TP 2.
        let logits = Tensor::new(&[[3.0f32, -1.0], [1.0, 2.0], [-2.0, 0.5]], &dev)?;
        let truth = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &dev)?;
        let mut f1 = Metric::MultiLabelF1.start()?;
        f1.add("tags", &logits, &truth, None)?;
        assert_abs_diff_eq!(f1.value(), 2.0 * 3.0 / (2.0 * 3.0 + 1.0 + 1.0));
        let mut ap = Metric::MeanAveragePrecision.start()?;
        // Two batches: the ranking is over the whole evaluation.
        ap.add(
            "tags",
            &logits.narrow(0, 0, 2)?,
            &truth.narrow(0, 0, 2)?,
            None,
        )?;
        ap.add(
            "tags",
            &logits.narrow(0, 2, 1)?,
            &truth.narrow(0, 2, 1)?,
            None,
        )?;
        // Label 0 ranking 3 (+), 1 (-), -2 (+): AP = (1/1 + 2/3) / 2. Label 1: 2 (+), 0.5 (+),
        // -1 (-): AP = 1.
        assert_abs_diff_eq!(
            ap.value(),
            ((1.0 + 2.0 / 3.0) / 2.0 + 1.0) / 2.0,
            epsilon = 1e-12
        );
        Ok(())
    }

    #[test]
    fn masked_labels_are_left_out_and_bad_labels_named() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[3.0f32, -1.0], [1.0, 2.0]], &dev)?;
        let truth = Tensor::new(&[[1f32, 7.0], [0.0, 1.0]], &dev)?;
        let mask = Tensor::new(&[[1u8, 0], [0, 1]], &dev)?;
        let mut f1 = Metric::MultiLabelF1.start()?;
        f1.add("tags", &logits, &truth, Some(&mask))?;
        assert_eq!(f1.value(), 1.0);
        let err = f1
            .add("tags", &logits, &truth, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'tags'") && err.contains("[0, 1]") && err.contains('7'),
            "{err}"
        );
        Ok(())
    }
}
