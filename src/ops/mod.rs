//! Fast CPU kernels for the layers candle is slow at, as candle custom ops with their own
//! backward passes.
//!
//! candle 0.11 runs a convolution's forward pass at about a third of its own gemm's speed,
//! computes the gradient with respect to the input with a direct loop of dot products,
//! differentiates with respect to the input images, and takes four elementwise ops (each a
//! fresh allocation) for a max-pool backward. The ops here replace those on the CPU:
//!
//! | op | forward | backward |
//! |---|---|---|
//! | [`conv2d`] (+ bias, + optional ReLU, + optional max-pool) | im2col + gemm per image; bias, ReLU and pooling in one pass over the gemm's output | the pooled gradient goes straight to each window's winner; one gemm for the weight gradient, one gemm + col2im for the input gradient, the bias gradient from the same pass; nothing for inputs that are data or frozen |
//! | [`linear`] (+ bias, + optional ReLU) | one gemm, bias and ReLU in the same pass | two gemms; nothing for inputs that need no gradient |
//! | [`max_pool2d`] | one pass per plane | the gradient goes to each window's first winner in one pass |
//!
//! They run in candle's CPU thread pool (`RAYON_NUM_THREADS` threads), in parallel over the
//! batch, and are tested against candle's own ops, values and gradients, on random shapes with
//! odd sizes, strides and padding. On other devices (CUDA, Metal), for other dtypes, or after
//! [`set_fast_cpu_ops(false)`](set_fast_cpu_ops), the same functions run candle's ops, so a
//! model written with them works everywhere. The crate's Adam has a fused CPU update too
//! ([`crate::optim`]). Measurements: `docs/performance.md`.

mod batch_norm;
mod buffers;
mod conv2d;
mod cpu;
mod gemm;
mod im2col;
mod linear;
mod max_pool;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use conv2d::Conv2dOp;
pub(crate) use cpu::CpuSlice;
use im2col::ConvGeometry;
use linear::LinearOp;
use max_pool::MaxPool2dOp;

static FAST_CPU_OPS: AtomicBool = AtomicBool::new(true);

/// Switches the fast CPU ops on (the default) or off for the whole process; off, every op
/// here runs candle's reference implementation. For comparisons and debugging.
pub fn set_fast_cpu_ops(enabled: bool) {
    FAST_CPU_OPS.store(enabled, Ordering::Relaxed);
}

/// Whether the fast CPU ops are switched on (see [`set_fast_cpu_ops`]).
pub fn fast_cpu_ops() -> bool {
    FAST_CPU_OPS.load(Ordering::Relaxed)
}

fn use_fast_path(tensors: &[&Tensor]) -> bool {
    fast_cpu_ops()
        && tensors
            .iter()
            .all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32)
}

/// Options of [`conv2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvOptions {
    /// Zero padding on every side.
    pub padding: usize,
    /// Step between windows.
    pub stride: usize,
    /// Apply `max(x, 0)` to the output (fused into the same pass).
    pub relu: bool,
    /// Then max-pool over `k x k` windows every `k` pixels (`Some(k)`, fused too; the output
    /// is `floor(H' / k) x floor(W' / k)`), as [`max_pool2d`] with `kernel == stride == k`.
    pub pool: Option<usize>,
}

impl Default for ConvOptions {
    fn default() -> Self {
        Self {
            padding: 0,
            stride: 1,
            relu: false,
            pool: None,
        }
    }
}

/// `relu?(conv2d(xs, weight) + bias)`: input `(N, C_in, H, W)`, kernel `weight`
/// `(C_out, C_in, kh, kw)`, `bias` `(C_out)`, output `(N, C_out, H', W')` with
/// `H' = (H + 2 * padding - kh) / stride + 1`, `W' = (W + 2 * padding - kw) / stride + 1`.
///
/// On the CPU in f32 this is one fused op (see the [module docs](self)); elsewhere it is
/// candle's `conv2d` + `broadcast_add` (+ `relu`). Shapes that do not fit are an error
/// naming them.
pub fn conv2d(xs: &Tensor, weight: &Tensor, bias: &Tensor, options: ConvOptions) -> Result<Tensor> {
    let geometry = conv_geometry(xs, weight, bias, options)?;
    if !use_fast_path(&[xs, weight, bias]) {
        let ys = xs.conv2d(weight, options.padding, options.stride, 1, 1)?;
        let ys = ys.broadcast_add(&bias.reshape((1, geometry.out_channels, 1, 1))?)?;
        let ys = if options.relu { ys.relu()? } else { ys };
        return match options.pool {
            Some(k) => max_pool2d(&ys, k, k),
            None => Ok(ys),
        };
    }
    let op = Conv2dOp::new(geometry, options.relu, options.pool, weight.track_op());
    Ok(xs
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?)
}

fn conv_geometry(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    options: ConvOptions,
) -> Result<ConvGeometry> {
    let mismatch = |reason: &str| {
        Error::DataMismatch(format!(
            "conv2d: input {:?}, weight {:?}, bias {:?}, padding {}, stride {}: {reason}",
            xs.dims(),
            weight.dims(),
            bias.dims(),
            options.padding,
            options.stride
        ))
    };
    let (&[batch, in_channels, height, width], &[out_channels, w_in, kh, kw]) =
        (xs.dims(), weight.dims())
    else {
        return Err(mismatch("input and weight must have 4 dimensions"));
    };
    if w_in != in_channels {
        return Err(mismatch(
            "the weight's input channels differ from the input's",
        ));
    }
    if kh == 0 || kw == 0 || in_channels == 0 || out_channels == 0 {
        return Err(mismatch("the kernel and the channels must not be empty"));
    }
    if bias.dims() != [out_channels] {
        return Err(mismatch("the bias needs one value per output channel"));
    }
    if options.stride == 0 {
        return Err(mismatch("the stride must be positive"));
    }
    if options.pool == Some(0) {
        return Err(mismatch("the pooling window must be positive"));
    }
    let out = |size: usize, kernel: usize| {
        (size + 2 * options.padding)
            .checked_sub(kernel)
            .map(|s| s / options.stride + 1)
    };
    let (Some(out_height), Some(out_width)) = (out(height, kh), out(width, kw)) else {
        return Err(mismatch("the kernel is larger than the padded input"));
    };
    if let Some(k) = options.pool {
        if k > out_height || k > out_width {
            return Err(mismatch(&format!(
                "the pooling window {k} is larger than the {out_height}x{out_width} output"
            )));
        }
    }
    Ok(ConvGeometry {
        batch,
        in_channels,
        height,
        width,
        out_channels,
        kernel_h: kh,
        kernel_w: kw,
        padding: options.padding,
        stride: options.stride,
        out_height,
        out_width,
    })
}

/// `relu?(xs W^T + b)` for `xs` `(rows, in)`, `weight` `(out, in)`, `bias` `(out)`: output
/// `(rows, out)`. On the CPU in f32 one fused op (one gemm forward, two backward, bias and
/// ReLU in the same passes, no gradient work for inputs that are data or frozen); elsewhere
/// candle's `matmul` + `broadcast_add` (+ `relu`).
pub fn linear(xs: &Tensor, weight: &Tensor, bias: &Tensor, relu: bool) -> Result<Tensor> {
    let (&[rows, inputs], &[outputs, w_in]) = (xs.dims(), weight.dims()) else {
        return Err(Error::DataMismatch(format!(
            "linear: input {:?} and weight {:?} must have 2 dimensions",
            xs.dims(),
            weight.dims()
        )));
    };
    if w_in != inputs || bias.dims() != [outputs] {
        return Err(Error::DataMismatch(format!(
            "linear: input {:?}, weight {:?}, bias {:?}: the weight must be (out, {inputs}) and the bias (out)",
            xs.dims(),
            weight.dims(),
            bias.dims()
        )));
    }
    if !use_fast_path(&[xs, weight, bias]) {
        let ys = xs.matmul(&weight.t()?)?.broadcast_add(bias)?;
        return Ok(if relu { ys.relu()? } else { ys });
    }
    let op = LinearOp {
        rows,
        inputs,
        outputs,
        relu,
    };
    Ok(xs
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?)
}

/// Batch normalisation of `xs` `(N, C, ...)` with per-channel `weight` and `bias` `(C)`:
/// with `running = None` by the batch's own statistics (returned, mean and biased variance,
/// for the caller's running averages), else by the given `(mean, var)`. On the CPU in f32 one
/// fused op (forward one pass, backward two, per-channel sums in index order in f64);
/// elsewhere candle's elementwise ops.
pub fn batch_norm(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running: Option<(&Tensor, &Tensor)>,
    eps: f64,
) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
    let dims = xs.dims().to_vec();
    let c = weight.elem_count();
    if dims.len() < 2 || dims[1] != c || bias.elem_count() != c {
        return Err(Error::DataMismatch(format!(
            "batch norm: input {dims:?}, weight {:?}, bias {:?}: the input's dimension 1 must be the channels",
            weight.dims(),
            bias.dims()
        )));
    }
    let n = dims[0];
    let plane: usize = dims[2..].iter().product();
    if !use_fast_path(&[xs, weight, bias]) {
        return reference_batch_norm(xs, weight, bias, running, eps);
    }
    let xs = xs.contiguous()?;
    let (mean, var, batch_statistics) = match running {
        Some((m, v)) => (m.to_vec1::<f32>()?, v.to_vec1::<f32>()?, false),
        None => {
            let x = cpu::CpuSlice::new(&xs, "batch norm input")?;
            let (m, v) = batch_norm::channel_statistics(x.as_slice(), n, c, plane);
            (m, v, true)
        }
    };
    let inv_std = var
        .iter()
        .map(|v| (1.0 / (f64::from(*v) + eps).sqrt()) as f32)
        .collect();
    let stats = if batch_statistics {
        Some((
            Tensor::from_slice(&mean, c, &Device::Cpu)?,
            Tensor::from_slice(&var, c, &Device::Cpu)?,
        ))
    } else {
        None
    };
    let op = batch_norm::BatchNormOp {
        n,
        c,
        plane,
        mean,
        inv_std,
        batch_statistics,
    };
    let ys = xs.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    Ok((ys, stats))
}

/// [`batch_norm`] with candle's elementwise ops (other devices and dtypes; the reference the
/// fused op is tested against).
fn reference_batch_norm(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running: Option<(&Tensor, &Tensor)>,
    eps: f64,
) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
    let dims = xs.dims();
    let mut shape = vec![1usize; dims.len()];
    shape[1] = weight.elem_count();
    let (mean, var, stats) = match running {
        Some((m, v)) => (
            m.reshape(shape.as_slice())?,
            v.reshape(shape.as_slice())?,
            None,
        ),
        None => {
            let reduce: Vec<usize> = (0..dims.len()).filter(|d| *d != 1).collect();
            let mean = xs.mean_keepdim(reduce.as_slice())?;
            let var = xs
                .broadcast_sub(&mean)?
                .sqr()?
                .mean_keepdim(reduce.as_slice())?;
            let stats = Some((mean.detach().flatten_all()?, var.detach().flatten_all()?));
            (mean, var, stats)
        }
    };
    let scale = (var + eps)?
        .sqrt()?
        .recip()?
        .broadcast_mul(&weight.reshape(shape.as_slice())?)?;
    let ys = xs
        .broadcast_sub(&mean)?
        .broadcast_mul(&scale)?
        .broadcast_add(&bias.reshape(shape.as_slice())?)?;
    Ok((ys, stats))
}

/// Max pooling over `kernel x kernel` windows every `stride` pixels, no padding: input
/// `(N, C, H, W)`, output `(N, C, (H - kernel) / stride + 1, ...)`. On the CPU in f32 a fused
/// op (forward and backward one pass each); elsewhere candle's `max_pool2d_with_stride`.
pub fn max_pool2d(xs: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    let &[n, c, h, w] = xs.dims() else {
        return Err(Error::DataMismatch(format!(
            "max_pool2d: input {:?} must have 4 dimensions (N, C, H, W)",
            xs.dims()
        )));
    };
    if kernel == 0 || stride == 0 || kernel > h || kernel > w {
        return Err(Error::DataMismatch(format!(
            "max_pool2d: kernel {kernel} / stride {stride} do not fit an input of {h}x{w}"
        )));
    }
    if !use_fast_path(&[xs]) {
        return reference_max_pool2d(xs, kernel, stride);
    }
    let op = MaxPool2dOp {
        kernel,
        stride,
        dims: [n, c, h, w],
    };
    Ok(xs.contiguous()?.apply_op1(op)?)
}

/// Max pooling from candle's ops, for devices without the fast op, with the fast op's (and
/// PyTorch's) gradient: all of a window's gradient goes to its first maximum. With
/// `kernel == stride` the windows are gathered by a reshape; the output is the window's max
/// (NaN propagates) plus a term that is zero in value and carries the gradient to the first
/// winner. candle's own `max_pool2d` backward is not used: it scales the gradient by
/// `winners / kernel^2` (a quarter of it for a 2x2 window with one winner) and has no
/// backward for `kernel != stride`, where it serves the forward pass only.
fn reference_max_pool2d(xs: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    if kernel != stride {
        return Ok(xs.max_pool2d_with_stride(kernel, stride)?);
    }
    let (n, c, h, w) = xs.dims4()?;
    let (oh, ow) = (h / kernel, w / kernel);
    let windows = xs
        .narrow(2, 0, oh * kernel)?
        .narrow(3, 0, ow * kernel)?
        .reshape((n, c, oh, kernel, ow, kernel))?
        .permute((0, 1, 2, 4, 3, 5))?
        .contiguous()?
        .reshape((n, c, oh, ow, kernel * kernel))?;
    let max = windows.max_keepdim(4)?.detach();
    let winners = windows.broadcast_eq(&max)?.to_dtype(xs.dtype())?;
    // Running count of winners along the window: 1 at the first one.
    let first = (winners.cumsum(4)?.le(1.0)?.to_dtype(xs.dtype())? * &winners)?;
    let route = ((&windows - windows.detach())? * first)?.sum(4)?;
    Ok((max.squeeze(4)? + route)?)
}
