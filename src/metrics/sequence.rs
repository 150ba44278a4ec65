//! Token- and sequence-level accuracy of sequence decoders.

use candle_core::{DType, Tensor};

use super::task_metric::{refuse_label_mask, MetricState};
use super::Metric;
use crate::error::{Error, Result};

/// Right tokens and sequences, `pad` steps left out.
pub(super) struct SequenceState {
    pad: u32,
    whole_sequences: bool,
    right: usize,
    seen: usize,
}

impl SequenceState {
    pub(super) fn tokens(pad: u32) -> Self {
        Self {
            pad,
            whole_sequences: false,
            right: 0,
            seen: 0,
        }
    }

    pub(super) fn sequences(pad: u32) -> Self {
        Self {
            whole_sequences: true,
            ..Self::tokens(pad)
        }
    }

    fn metric(&self) -> Metric {
        if self.whole_sequences {
            Metric::SequenceAccuracy { pad: self.pad }
        } else {
            Metric::TokenAccuracy { pad: self.pad }
        }
    }
}

impl MetricState for SequenceState {
    fn add(
        &mut self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<()> {
        let (pd, td) = (pred.dims(), target.dims());
        // A per-step mask of the targets' shape leaves steps out as padding does.
        let present = match mask {
            Some(m) if m.dims() == td => Some(
                m.to_dtype(DType::F32)?
                    .ne(0f32)?
                    .to_dtype(DType::U32)?
                    .to_vec2::<u32>()?,
            ),
            other => {
                refuse_label_mask(task, &self.metric(), other)?;
                None
            }
        };
        if pd.len() != 3 || td.len() != 2 || pd[..2] != td[..] {
            return Err(Error::DataMismatch(format!(
                "task '{task}': {} needs logits (N, T, V) and tokens (N, T), got predictions \
                 {pd:?} and targets {td:?}",
                self.metric()
            )));
        }
        let predicted = pred.argmax(2)?.to_vec2::<u32>()?;
        let tokens = target.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        for (i, (p, t)) in predicted.iter().zip(&tokens).enumerate() {
            let keep = |j: usize| present.as_ref().is_none_or(|m| m[i][j] != 0);
            let steps = p
                .iter()
                .zip(t)
                .enumerate()
                .filter(|(j, (_, &t))| t != self.pad && keep(*j))
                .map(|(_, pair)| pair);
            if self.whole_sequences {
                self.seen += 1;
                self.right += usize::from(steps.clone().all(|(p, t)| p == t));
            } else {
                for (p, t) in steps {
                    self.seen += 1;
                    self.right += usize::from(p == t);
                }
            }
        }
        Ok(())
    }

    fn value(&self) -> f64 {
        if self.seen == 0 {
            f64::NAN
        } else {
            self.right as f64 / self.seen as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::{Metric, TaskMetric};
    use candle_core::{Device, Tensor};

    #[test]
    fn tokens_and_sequences_leave_padding_out() -> crate::Result<()> {
        let dev = Device::Cpu;
        // Vocabulary of 3; pad = 2. Predicted arg-max tokens: [0, 1, 0] and [1, 1, 1].
        let logits = Tensor::new(
            &[
                [[5f32, 0.0, 0.0], [0.0, 5.0, 0.0], [5.0, 0.0, 0.0]],
                [[0.0, 5.0, 0.0], [0.0, 5.0, 0.0], [0.0, 5.0, 0.0]],
            ],
            &dev,
        )?;
        // First: right on both real tokens (the pad step is wrong but ignored); second: one
        // of two real tokens right.
        let target = Tensor::new(&[[0u32, 1, 2], [0, 1, 2]], &dev)?;
        let value = |m: Metric| -> crate::Result<f64> {
            let mut s = m.start()?;
            s.add("word", &logits, &target, None)?;
            Ok(s.value())
        };
        assert_eq!(value(Metric::TokenAccuracy { pad: 2 })?, 3.0 / 4.0);
        assert_eq!(value(Metric::SequenceAccuracy { pad: 2 })?, 1.0 / 2.0);
        let mut s = Metric::TokenAccuracy { pad: 2 }.start()?;
        let err = s
            .add("word", &logits, &target.narrow(1, 0, 2)?, None)
            .unwrap_err();
        assert!(err.to_string().contains("'word'"), "{err}");
        Ok(())
    }
}
