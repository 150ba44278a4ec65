use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Input normalisation `x' = (x - mean[c]) / std[c]` per channel `c`, applied when a batch is
/// made. u8 pixels are first scaled to `[0, 1]` (divided by 255), as torchvision's `ToTensor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl Normalize {
    /// One `(mean, std)` pair per channel, or a single pair for every channel.
    pub fn new(mean: Vec<f64>, std: Vec<f64>) -> Result<Self> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(Error::config(
                "Normalize",
                format!("mean {mean:?}, std {std:?}"),
                "needs as many standard deviations as means, at least one",
            ));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::config("Normalize std", s, "must be finite and > 0"));
        }
        Ok(Self { mean, std })
    }

    /// MNIST's usual constants: mean 0.1307, std 0.3081.
    pub fn mnist() -> Self {
        Self {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// Fashion-MNIST's constants: mean 0.2860, std 0.3530.
    pub fn fashion_mnist() -> Self {
        Self {
            mean: vec![0.2860],
            std: vec![0.3530],
        }
    }

    /// Converts `xs` (`(N, C, ...)`, u8 or float) to normalised f32.
    pub fn apply(&self, xs: &Tensor) -> Result<Tensor> {
        let scale = if xs.dtype() == DType::U8 {
            1.0 / 255.0
        } else {
            1.0
        };
        let xs = xs.to_dtype(DType::F32)?;
        if self.mean.len() == 1 {
            let s = self.std[0];
            return Ok(xs.affine(scale / s, -self.mean[0] / s)?);
        }
        let c = self.mean.len();
        if xs.rank() < 2 || xs.dims()[1] != c {
            return Err(Error::DataMismatch(format!(
                "Normalize has {c} channel constants but inputs have shape {:?}",
                xs.dims()
            )));
        }
        let mut shape = vec![1usize; xs.rank()];
        shape[1] = c;
        let mul: Vec<f32> = self.std.iter().map(|s| (scale / s) as f32).collect();
        let add: Vec<f32> = self
            .mean
            .iter()
            .zip(&self.std)
            .map(|(m, s)| (-m / s) as f32)
            .collect();
        let dev = xs.device();
        let mul = Tensor::from_vec(mul, shape.as_slice(), &Device::Cpu)?.to_device(dev)?;
        let add = Tensor::from_vec(add, shape.as_slice(), &Device::Cpu)?.to_device(dev)?;
        Ok(xs.broadcast_mul(&mul)?.broadcast_add(&add)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn scales_pixels_then_normalises() -> Result<()> {
        let x = Tensor::new(&[[0u8, 255]], &Device::Cpu)?;
        let y = Normalize::mnist().apply(&x)?.to_vec2::<f32>()?;
        assert_abs_diff_eq!(y[0][0], -0.1307 / 0.3081, epsilon = 1e-5);
        assert_abs_diff_eq!(y[0][1], (1.0 - 0.1307) / 0.3081, epsilon = 1e-5);
        let rgb = Tensor::ones((1, 2, 1, 1), DType::F32, &Device::Cpu)?;
        let n = Normalize::new(vec![0.5, 0.0], vec![0.5, 2.0])?;
        let y = n.apply(&rgb)?.flatten_all()?.to_vec1::<f32>()?;
        assert_abs_diff_eq!(y[0], 1.0, epsilon = 1e-6);
        assert_abs_diff_eq!(y[1], 0.5, epsilon = 1e-6);
        assert!(Normalize::new(vec![0.0], vec![0.0]).is_err());
        Ok(())
    }
}
