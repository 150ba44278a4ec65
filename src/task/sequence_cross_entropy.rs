//! Cross-entropy over token sequences, padding left out.

use candle_core::{DType, Tensor};

use super::loss::{masked_mean, TargetForm, TaskLoss};
use super::{check_class_shapes, steps_as_samples};
use crate::error::{Error, Result};
use crate::metrics::Metric;

/// Softmax cross-entropy of token logits `(N, T, V)` against token targets `(N, T)`, averaged
/// over the steps whose target is not `pad` (PyTorch's `ignore_index`): the loss of a
/// sequence decoder such as [`GruDecoderHead`](crate::head::GruDecoderHead), whose targets end
/// with an end-of-sequence token and are padded to a common length. A per-sample label mask
/// leaves out whole sequences.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceCrossEntropy {
    pad: u32,
}

impl SequenceCrossEntropy {
    /// Ignores the steps whose target is `pad`.
    pub fn new(pad: u32) -> Self {
        Self { pad }
    }

    /// The padding token.
    pub fn pad(&self) -> u32 {
        self.pad
    }

    /// Non-pad steps `(N, T)` (u8), combined with a per-sample mask when given.
    fn steps(&self, task: &str, target: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        if target.rank() != 2 {
            return Err(Error::DataMismatch(format!(
                "task '{task}': sequence targets must be tokens (N, T), got {:?}",
                target.dims()
            )));
        }
        let real = target.to_dtype(DType::U32)?.ne(self.pad)?;
        Ok(match mask {
            None => real,
            Some(m) => {
                let n = target.dim(0)?;
                if m.dims() != [n] && m.dims() != target.dims() {
                    return Err(Error::DataMismatch(format!(
                        "task '{task}': the label mask has shape {:?}; it must be ({n},) or {:?}",
                        m.dims(),
                        target.dims()
                    )));
                }
                let keep = m.to_dtype(DType::F32)?.ne(0f32)?;
                let keep = if keep.rank() == 1 {
                    keep.unsqueeze(1)?.broadcast_as(target.shape())?
                } else {
                    keep
                };
                (real.to_dtype(DType::F32)? * keep.to_dtype(DType::F32)?)?.ne(0f32)?
            }
        })
    }
}

impl TaskLoss for SequenceCrossEntropy {
    fn name(&self) -> String {
        format!("sequence-cross-entropy(pad={})", self.pad)
    }

    fn targets(&self) -> TargetForm {
        TargetForm::Classes
    }

    fn default_metrics(&self) -> Vec<Metric> {
        vec![
            Metric::SequenceAccuracy { pad: self.pad },
            Metric::TokenAccuracy { pad: self.pad },
        ]
    }

    /// One value per step `(N, T)`, pad steps included.
    fn per_sample(&self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let (flat, tokens) = steps_as_samples(pred, target)?;
        if flat.dims() == pred.dims() || target.rank() != 2 {
            return Err(Error::DataMismatch(format!(
                "task '{task}': a sequence loss needs logits (N, T, V) and tokens (N, T), got \
                 predictions {:?} and targets {:?}",
                pred.dims(),
                target.dims()
            )));
        }
        check_class_shapes(task, &flat, &tokens)?;
        let vocab = flat.dim(1)? as u32;
        // The pad token may lie outside the vocabulary (gathered as 0, weighted 0); any other
        // token there is an error.
        let tokens = tokens.to_dtype(DType::U32)?;
        let outside = tokens
            .to_vec1::<u32>()?
            .into_iter()
            .find(|&t| t >= vocab && t != self.pad);
        if let Some(t) = outside {
            return Err(Error::DataMismatch(format!(
                "task '{task}': target token {t} is outside the {vocab} tokens of the predictions \
                 (and is not the pad token {})",
                self.pad
            )));
        }
        let safe = tokens
            .lt(vocab)?
            .where_cond(&tokens, &tokens.zeros_like()?)?;
        let log_p = candle_nn::ops::log_softmax(&flat, 1)?;
        let nll = log_p.gather(&safe.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
        Ok(nll.reshape(target.shape())?)
    }

    fn compute(&self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let steps = self.steps(task, target, None)?;
        masked_mean(self, task, pred, target, &steps)
    }

    fn compute_masked(
        &self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        let steps = self.steps(task, target, Some(mask))?;
        masked_mean(self, task, pred, target, &steps)
    }
}
