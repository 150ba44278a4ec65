//! Huber loss and smooth L1.

use candle_core::Tensor;

use super::loss::{regression_prediction, TargetForm, TaskLoss};
use crate::error::{Error, Result};
use crate::metrics::Metric;

/// Huber loss on real targets: for an error `e`, `½ e²` where `|e| <= δ` and
/// `δ (|e| - ½ δ)` beyond, quadratic near zero and linear for outliers (Huber, "Robust
/// Estimation of a Location Parameter", Ann. Math. Statist. 1964). [`Huber::smooth_l1`] is
/// the same curve divided by `δ` (PyTorch's `SmoothL1Loss` with `beta = δ`, Fast R-CNN).
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `delta` | 1.0 | finite, > 0 | where the loss turns from quadratic to linear |
///
/// Targets as for [`Loss::Mse`](super::Loss::Mse): the prediction's shape, or `(N,)` for a
/// prediction `(N, 1)`.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Huber {
    delta: f64,
    smooth_l1: bool,
}

impl Default for Huber {
    fn default() -> Self {
        Self {
            delta: 1.0,
            smooth_l1: false,
        }
    }
}

impl Huber {
    /// Huber loss with threshold `delta`; refused unless finite and positive.
    pub fn new(delta: f64) -> Result<Self> {
        check_delta("huber", "delta", delta)?;
        Ok(Self {
            delta,
            smooth_l1: false,
        })
    }

    /// Smooth L1 with threshold `beta`: `½ e² / β` where `|e| < β`, `|e| - ½ β` beyond;
    /// refused unless `beta` is finite and positive.
    pub fn smooth_l1(beta: f64) -> Result<Self> {
        check_delta("smooth-l1", "beta", beta)?;
        Ok(Self {
            delta: beta,
            smooth_l1: true,
        })
    }

    /// The threshold.
    pub fn delta(&self) -> f64 {
        self.delta
    }
}

fn check_delta(loss: &str, field: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::config(
            format!("{loss} loss: {field}"),
            value,
            "must be finite and > 0",
        ))
    }
}

impl TaskLoss for Huber {
    fn name(&self) -> String {
        if self.smooth_l1 {
            format!("smooth-l1(beta={})", self.delta)
        } else {
            format!("huber(delta={})", self.delta)
        }
    }

    fn targets(&self) -> TargetForm {
        TargetForm::Values
    }

    fn default_metrics(&self) -> Vec<Metric> {
        vec![Metric::Mae, Metric::Mse, Metric::Rmse]
    }

    /// One value per element of the target.
    fn per_sample(&self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let pred = regression_prediction(task, pred, target)?;
        let error = (&pred - target.to_dtype(pred.dtype())?)?.abs()?;
        // min(|e|, δ) is the quadratic part, the rest linear: ½ q² + δ (|e| - q).
        let quadratic = error.clamp(0.0, self.delta)?;
        let linear = (&error - &quadratic)?;
        let loss = ((quadratic.sqr()? * 0.5)? + (linear * self.delta)?)?;
        Ok(if self.smooth_l1 {
            (loss / self.delta)?
        } else {
            loss
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use candle_core::{Device, Var};

    #[test]
    fn huber_is_quadratic_inside_and_linear_outside() -> Result<()> {
        let dev = Device::Cpu;
        let pred = Tensor::new(&[0.5f32, 3.0, -2.0], &dev)?;
        let target = Tensor::zeros(3, candle_core::DType::F32, &dev)?;
        let h = Huber::new(1.0)?;
        let per = h.per_sample("r", &pred, &target)?.to_vec1::<f32>()?;
        assert_eq!(per, vec![0.125, 2.5, 1.5]);
        let s = Huber::smooth_l1(2.0)?;
        let per = s.per_sample("r", &pred, &target)?.to_vec1::<f32>()?;
        // ½ e²/β inside (0.0625, 1.0), |e| - ½β outside (3 - 1 = 2).
        assert_eq!(per, vec![0.0625, 2.0, 1.0]);
        assert!(Huber::new(0.0).is_err() && Huber::smooth_l1(f64::NAN).is_err());
        Ok(())
    }

    #[test]
    fn huber_gradient_is_the_clipped_error() -> Result<()> {
        let dev = Device::Cpu;
        let pred = Var::new(&[0.5f32, 3.0, -2.0], &dev)?;
        let target = Tensor::zeros(3, candle_core::DType::F32, &dev)?;
        let loss = Huber::new(1.0)?.compute("r", pred.as_tensor(), &target)?;
        let grad = loss.backward()?.get(&pred).unwrap().to_vec1::<f32>()?;
        for (g, want) in grad.iter().zip([0.5f32 / 3.0, 1.0 / 3.0, -1.0 / 3.0]) {
            assert_abs_diff_eq!(*g, want, epsilon = 1e-6);
        }
        Ok(())
    }
}
