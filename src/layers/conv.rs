use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::ops::{self, ConvOptions};
use crate::params::{Param, ParamPath};

/// Refuses a convolution with no channels, no kernel or no stride, naming the layer.
fn check_shape(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    path: &ParamPath,
) -> Result<()> {
    if in_channels == 0 || out_channels == 0 || kernel == 0 || stride == 0 {
        return Err(Error::config(
            path.full_name("shape"),
            format!("in={in_channels} out={out_channels} kernel={kernel} stride={stride}"),
            "channels, kernel and stride must be positive",
        ));
    }
    Ok(())
}

/// A 2-D convolution with square kernels, initialised as PyTorch's `nn.Conv2d`
/// (weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), `fan_in = in_channels * k * k`).
///
/// Shapes: input `(N, C_in, H, W)`, output `(N, C_out, H', W')` with
/// `H' = (H + 2 * padding - kernel) / stride + 1`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Param,
    bias: Option<Param>,
    /// Zeros standing in for the bias of a layer without one (the fused op takes a bias).
    zero_bias: Tensor,
    kernel: usize,
    padding: usize,
    stride: usize,
}

impl Conv2d {
    /// Creates the layer's parameters under `path`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
        path: &ParamPath,
    ) -> Result<Self> {
        check_shape(in_channels, out_channels, kernel, stride, path)?;
        let fan_in = in_channels * kernel * kernel;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let weight = path.uniform(
            "weight",
            &[out_channels, in_channels, kernel, kernel],
            bound,
        )?;
        let bias = path.uniform("bias", &[out_channels], bound)?;
        Self::from_parts(weight, Some(bias), kernel, padding, stride)
    }

    /// A convolution without a bias (followed by batch norm, as in ResNets), its weight drawn
    /// as torchvision initialises ResNet convolutions: Kaiming normal over the fan-out, ReLU
    /// gain. Parameter: `<path>.weight` only.
    pub fn without_bias(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
        path: &ParamPath,
    ) -> Result<Self> {
        check_shape(in_channels, out_channels, kernel, stride, path)?;
        let init = candle_nn::Init::Kaiming {
            dist: candle_nn::init::NormalOrUniform::Normal,
            fan: candle_nn::init::FanInOut::FanOut,
            non_linearity: candle_nn::init::NonLinearity::ReLU,
        };
        let weight = path.init("weight", &[out_channels, in_channels, kernel, kernel], init)?;
        Self::from_parts(weight, None, kernel, padding, stride)
    }

    fn from_parts(
        weight: Param,
        bias: Option<Param>,
        kernel: usize,
        padding: usize,
        stride: usize,
    ) -> Result<Self> {
        let out_channels = weight.tensor().dim(0)?;
        let zero_bias = Tensor::zeros(
            out_channels,
            weight.tensor().dtype(),
            weight.tensor().device(),
        )?;
        Ok(Self {
            weight,
            bias,
            zero_bias,
            kernel,
            padding,
            stride,
        })
    }

    /// Spatial output size for an input of size `size`, or `None` when the kernel does not fit.
    pub fn output_size(&self, size: usize) -> Option<usize> {
        (size + 2 * self.padding)
            .checked_sub(self.kernel)
            .map(|s| s / self.stride + 1)
    }

    /// Applies the convolution (with [`ops::conv2d`]: the fast CPU op, or candle's
    /// convolution on other devices).
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_fused(xs, false, None)
    }

    /// Applies the convolution, then ReLU (`relu`), then max pooling over `k x k` windows every
    /// `k` pixels (`pool == Some(k)`), all in one fused op on the CPU.
    pub fn forward_fused(&self, xs: &Tensor, relu: bool, pool: Option<usize>) -> Result<Tensor> {
        let options = ConvOptions {
            padding: self.padding,
            stride: self.stride,
            relu,
            pool,
        };
        let bias = self.bias.as_ref().map_or(&self.zero_bias, Param::tensor);
        ops::conv2d(xs, self.weight.tensor(), bias, options)
    }
}
