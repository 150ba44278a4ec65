//! Per-task input stems: small modules that bring each task's inputs to the shape the shared
//! encoder reads, when tasks have inputs of different shapes (MNIST 1x28x28 and CIFAR-10
//! 3x32x32, for example).

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::layers::Conv2d;
use crate::params::ParamPath;

/// Maps one task's inputs to the shared encoder's input; its parameters belong to the task
/// (`stems.<task>.*`), not to the shared encoder.
pub trait InputStem: Send + Sync {
    /// Applies the stem. `train` is true during training steps.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor>;
}

impl<S: InputStem + ?Sized> InputStem for Box<S> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        (**self).forward_t(xs, train)
    }
}

/// A convolution stem: conv `kernel x kernel` from `in_channels` to `out_channels` with
/// `padding`, then ReLU. Choose the padding so that the output has the encoder's image size:
/// a 3x3 kernel with padding 3 turns 28x28 into 32x32, with padding 1 keeps 32x32.
///
/// Parameters: `stems.<task>.conv.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct ConvStem {
    conv: Conv2d,
    in_channels: usize,
}

impl ConvStem {
    /// Builds the stem's parameters under `path`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
        path: &ParamPath,
    ) -> Result<Self> {
        Ok(Self {
            conv: Conv2d::new(
                in_channels,
                out_channels,
                kernel,
                padding,
                1,
                &path.pp("conv"),
            )?,
            in_channels,
        })
    }
}

impl InputStem for ConvStem {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let dims = xs.dims();
        if dims.len() != 4 || dims[1] != self.in_channels {
            return Err(Error::DataMismatch(format!(
                "ConvStem expects inputs (N, {}, H, W), got {dims:?}",
                self.in_channels
            )));
        }
        self.conv.forward_fused(xs, true, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;
    use candle_core::{DType, Device};

    #[test]
    fn padding_brings_mnist_and_cifar_to_one_shape() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 0);
        let grey = ConvStem::new(1, 8, 3, 3, &store.path("stems.mnist"))?;
        let rgb = ConvStem::new(3, 8, 3, 1, &store.path("stems.cifar"))?;
        let a = grey.forward_t(
            &Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?,
            true,
        )?;
        let b = rgb.forward_t(
            &Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu)?,
            true,
        )?;
        assert_eq!(a.dims(), &[2, 8, 32, 32]);
        assert_eq!(b.dims(), &[2, 8, 32, 32]);
        let err = grey
            .forward_t(
                &Tensor::zeros((2, 3, 28, 28), DType::F32, &Device::Cpu)?,
                true,
            )
            .unwrap_err();
        assert!(err.to_string().contains("(N, 1, H, W)"), "{err}");
        Ok(())
    }
}
