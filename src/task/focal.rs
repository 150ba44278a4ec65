//! Focal loss for class imbalance.

use candle_core::{DType, Tensor};

use super::loss::{TargetForm, TaskLoss};
use super::{check_class_shapes, steps_as_samples};
use crate::error::{Error, Result};
use crate::metrics::Metric;

/// Focal loss on class logits `(N, C)` against class indices `(N,)`: with `p_t` the softmax
/// probability of the target class, `-α (1 - p_t)^γ log p_t`, which down-weights the samples
/// already classified well (Lin, Goyal, Girshick, He & Dollár, "Focal Loss for Dense Object
/// Detection", ICCV 2017; here on the softmax, as their multi-class form). `γ = 0`, `α = 1`
/// is cross-entropy.
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `gamma` | 2.0 | finite, >= 0 | focusing exponent |
/// | `alpha` | 1.0 | finite, > 0 | one scale for every class (the paper's `α_t` with the same value for all classes; scale-invariant strategies such as UPGrad ignore it) |
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FocalLoss {
    gamma: f64,
    alpha: f64,
}

impl Default for FocalLoss {
    fn default() -> Self {
        Self {
            gamma: 2.0,
            alpha: 1.0,
        }
    }
}

impl FocalLoss {
    /// Focal loss with exponent `gamma` and scale `alpha`; refused outside the ranges above.
    pub fn new(gamma: f64, alpha: f64) -> Result<Self> {
        if !(gamma.is_finite() && gamma >= 0.0) {
            return Err(Error::config(
                "focal loss: gamma",
                gamma,
                "must be finite and >= 0",
            ));
        }
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(Error::config(
                "focal loss: alpha",
                alpha,
                "must be finite and > 0",
            ));
        }
        Ok(Self { gamma, alpha })
    }
}

impl TaskLoss for FocalLoss {
    fn name(&self) -> String {
        format!("focal(gamma={}, alpha={})", self.gamma, self.alpha)
    }

    fn targets(&self) -> TargetForm {
        TargetForm::Classes
    }

    fn default_metrics(&self) -> Vec<Metric> {
        vec![Metric::Accuracy]
    }

    /// One value per sample (per step when tagging).
    fn per_sample(&self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let (pred, target) = steps_as_samples(pred, target)?;
        check_class_shapes(task, &pred, &target)?;
        let target = target.to_dtype(DType::U32)?;
        let log_pt = candle_nn::ops::log_softmax(&pred, 1)?
            .gather(&target.unsqueeze(1)?, 1)?
            .squeeze(1)?;
        let focus = if self.gamma == 0.0 {
            log_pt.ones_like()?
        } else {
            // (1 - p_t)^γ, with 1 - p_t clamped away from 0 so that the power stays finite
            // in the backward pass.
            log_pt
                .exp()?
                .affine(-1.0, 1.0)?
                .clamp(1e-12, 1.0)?
                .powf(self.gamma)?
        };
        Ok(((focus * log_pt)? * -self.alpha)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Loss;
    use approx::assert_abs_diff_eq;
    use candle_core::{Device, Var};

    #[test]
    fn focal_matches_its_formula_and_reduces_to_cross_entropy() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[2.0f32, 0.0, -1.0], [0.1, 0.2, 0.3]], &dev)?;
        let classes = Tensor::new(&[0u32, 2], &dev)?;
        let ce = Loss::CrossEntropy
            .compute("c", &logits, &classes)?
            .to_scalar::<f32>()?;
        let gamma0 = FocalLoss::new(0.0, 1.0)?.compute("c", &logits, &classes)?;
        assert_abs_diff_eq!(gamma0.to_scalar::<f32>()?, ce, epsilon = 1e-6);
        let rows = [[2.0f64, 0.0, -1.0], [0.1, 0.2, 0.3]];
        let mut want = 0.0;
        for (row, t) in rows.iter().zip([0usize, 2]) {
            let z: f64 = row.iter().map(|v| v.exp()).sum();
            let p = row[t].exp() / z;
            want += -0.25 * (1.0 - p).powi(2) * p.ln();
        }
        let focal = FocalLoss::new(2.0, 0.25)?.compute("c", &logits, &classes)?;
        assert_abs_diff_eq!(
            f64::from(focal.to_scalar::<f32>()?),
            want / 2.0,
            epsilon = 1e-6
        );
        assert!(FocalLoss::new(-1.0, 1.0).is_err() && FocalLoss::new(2.0, 0.0).is_err());
        Ok(())
    }

    #[test]
    fn focal_tags_steps_and_masks_whole_samples() -> Result<()> {
        let dev = Device::Cpu;
        // Two sequences of three steps over two classes; the second sequence is unlabelled
        // and holds placeholder classes out of range.
        let logits = Tensor::new(
            &[
                [[1.0f32, 0.0], [0.0, 2.0], [0.5, 0.5]],
                [[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
            ],
            &dev,
        )?;
        let tags = Tensor::new(&[[0u32, 1, 0], [9, 9, 9]], &dev)?;
        let mask = Tensor::new(&[1u8, 0], &dev)?;
        let focal = FocalLoss::default();
        let masked = focal.compute_masked("tags", &logits, &tags, &mask)?;
        let first = focal.compute("tags", &logits.narrow(0, 0, 1)?, &tags.narrow(0, 0, 1)?)?;
        assert_abs_diff_eq!(
            masked.to_scalar::<f32>()?,
            first.to_scalar::<f32>()?,
            epsilon = 1e-7
        );
        Ok(())
    }

    #[test]
    fn focal_gradient_is_finite_for_a_confident_sample() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Var::new(&[[60.0f32, 0.0], [0.0, 1.0]], &dev)?;
        let classes = Tensor::new(&[0u32, 0], &dev)?;
        let loss = FocalLoss::default().compute("c", logits.as_tensor(), &classes)?;
        let grad = loss
            .backward()?
            .get(&logits)
            .unwrap()
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert!(grad.iter().all(|g| g.is_finite()), "{grad:?}");
        Ok(())
    }
}
