//! Binary cross-entropy on logits, for binary and multi-label tasks.

use candle_core::Tensor;

use super::loss::{regression_prediction, TargetForm, TaskLoss};
use crate::error::{Error, Result};
use crate::metrics::Metric;

/// Binary cross-entropy on logits: for a logit `x` and an indicator `y` in `[0, 1]`,
/// `max(x, 0) - x y + log(1 + e^{-|x|})` (the numerically stable form of
/// `-y log σ(x) - (1 - y) log(1 - σ(x))`, PyTorch's `BCEWithLogitsLoss`), averaged over every
/// label of every sample.
///
/// Multi-label tasks: a head with `L` outputs against targets `(N, L)` of 0/1 values; a
/// binary task: one output `(N, 1)` against `(N,)`. Labels missing for some samples are
/// masked per label: give a label mask of the targets' shape
/// ([`TensorDataset::with_label_mask`](crate::data::TensorDataset::with_label_mask)), and
/// only the present labels count, in the loss as in [`Metric::MultiLabelF1`] and
/// [`Metric::MeanAveragePrecision`].
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `pos_weight` | 1.0 | finite, > 0 | weight of the positive term (`-p y log σ(x)`), for rare labels |
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BinaryCrossEntropy {
    pos_weight: f64,
}

impl Default for BinaryCrossEntropy {
    fn default() -> Self {
        Self { pos_weight: 1.0 }
    }
}

impl BinaryCrossEntropy {
    /// The plain loss (`pos_weight = 1`).
    pub fn new() -> Self {
        Self::default()
    }

    /// The positive term weighted by `pos_weight`; refused unless finite and positive.
    pub fn with_pos_weight(pos_weight: f64) -> Result<Self> {
        if !(pos_weight.is_finite() && pos_weight > 0.0) {
            return Err(Error::config(
                "binary cross-entropy: pos_weight",
                pos_weight,
                "must be finite and > 0",
            ));
        }
        Ok(Self { pos_weight })
    }
}

impl TaskLoss for BinaryCrossEntropy {
    fn name(&self) -> String {
        if self.pos_weight == 1.0 {
            "bce".to_string()
        } else {
            format!("bce(pos_weight={})", self.pos_weight)
        }
    }

    fn targets(&self) -> TargetForm {
        TargetForm::Values
    }

    fn default_metrics(&self) -> Vec<Metric> {
        vec![Metric::MultiLabelF1, Metric::MeanAveragePrecision]
    }

    /// One value per label `(N, L)` (or `(N,)` for a binary task).
    fn per_sample(&self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let x = regression_prediction(task, pred, target)?;
        let y = target.to_dtype(x.dtype())?;
        // softplus(x) = -log(1 - σ(x)) = max(x, 0) + log(1 + e^{-|x|}), with |x| written as
        // 2 max(x, 0) - x so that the kinks at 0 cancel and the gradient there is σ(0) = ½;
        // -log σ(x) = softplus(x) - x.
        let relu = x.relu()?;
        let abs = ((&relu * 2.0)? - &x)?;
        let softplus = (&relu + (abs.neg()?.exp()? + 1.0)?.log()?)?;
        let neg_log_p = (&softplus - &x)?;
        let neg_log_not_p = softplus;
        let positive = ((&y * neg_log_p)? * self.pos_weight)?;
        let negative = (y.affine(-1.0, 1.0)? * neg_log_not_p)?;
        Ok((positive + negative)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use candle_core::{Device, Var};

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn matches_the_definition_and_its_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let logits = [[2.0f32, -1.0, 0.0], [-30.0, 30.0, 0.5]];
        let labels = [[1f32, 0.0, 1.0], [1.0, 0.0, 0.0]];
        let x = Var::new(&logits, &dev)?;
        let y = Tensor::new(&labels, &dev)?;
        let loss = BinaryCrossEntropy::new().compute("tags", x.as_tensor(), &y)?;
        let mut want = 0.0;
        for (xr, yr) in logits.iter().zip(&labels) {
            for (&x, &y) in xr.iter().zip(yr) {
                let p = sigmoid(f64::from(x));
                // ln(1 - p) computed as ln(σ(-x)) so that |x| = 30 stays exact.
                want -= f64::from(y) * p.ln() + (1.0 - f64::from(y)) * sigmoid(-f64::from(x)).ln();
            }
        }
        assert_abs_diff_eq!(
            f64::from(loss.to_scalar::<f32>()?),
            want / 6.0,
            epsilon = 1e-5
        );
        // d/dx = (σ(x) - y) / (N L).
        let grad = loss.backward()?.get(&x).unwrap().to_vec2::<f32>()?;
        for i in 0..2 {
            for j in 0..3 {
                let g = (sigmoid(f64::from(logits[i][j])) - f64::from(labels[i][j])) / 6.0;
                assert_abs_diff_eq!(f64::from(grad[i][j]), g, epsilon = 1e-6);
            }
        }
        Ok(())
    }

    #[test]
    fn per_label_masks_count_only_present_labels() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[2.0f32, -1.0], [0.5, 3.0]], &dev)?;
        // The unknown label holds NaN: it must not reach the loss.
        let y = Tensor::new(&[[1f32, f32::NAN], [0.0, 1.0]], &dev)?;
        let mask = Tensor::new(&[[1u8, 0], [1, 1]], &dev)?;
        let bce = BinaryCrossEntropy::new();
        let masked = bce
            .compute_masked("tags", &x, &y, &mask)?
            .to_scalar::<f32>()?;
        let clean = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &dev)?;
        let per = bce.per_sample("tags", &x, &clean)?.to_vec2::<f32>()?;
        assert_abs_diff_eq!(
            masked,
            (per[0][0] + per[1][0] + per[1][1]) / 3.0,
            epsilon = 1e-6
        );
        let weighted = BinaryCrossEntropy::with_pos_weight(3.0)?;
        let plain = bce.compute("tags", &x, &clean)?.to_scalar::<f32>()?;
        assert!(weighted.compute("tags", &x, &clean)?.to_scalar::<f32>()? > plain);
        assert!(BinaryCrossEntropy::with_pos_weight(0.0).is_err());
        Ok(())
    }

    #[test]
    fn wrong_target_shape_names_the_task_and_shapes() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((4, 3), candle_core::DType::F32, &dev).unwrap();
        let y = Tensor::zeros((4, 2), candle_core::DType::F32, &dev).unwrap();
        let err = BinaryCrossEntropy::new()
            .compute("tags", &x, &y)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("'tags'") && msg.contains("[4, 3]") && msg.contains("[4, 2]"),
            "{msg}"
        );
    }
}
