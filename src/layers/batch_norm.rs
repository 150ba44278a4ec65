use candle_core::{DType, Tensor, Var};

use crate::error::{Error, Result};
use crate::ops;
use crate::params::{Param, ParamPath};

/// Batch normalisation over the channels of `(N, C, H, W)` (or `(N, C)`) inputs, as PyTorch's
/// `nn.BatchNorm2d`: in training, each channel is normalised by the batch's mean and biased
/// variance and the running statistics move by `momentum` towards the batch's mean and
/// unbiased variance; in evaluation the running statistics are used.
///
/// Parameters `<path>.weight` (ones) and `<path>.bias` (zeros); buffers
/// `<path>.running_mean` (zeros) and `<path>.running_var` (ones), saved with the model and
/// never trained. While the layer's weight is frozen it behaves as in evaluation (a fixed
/// affine map, its running statistics unchanged), as a frozen layer should. On the CPU it
/// runs as one fused op ([`ops::batch_norm`]).
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Param,
    bias: Param,
    running_mean: Var,
    running_var: Var,
    channels: usize,
    eps: f64,
    momentum: f64,
}

impl BatchNorm2d {
    /// PyTorch's defaults: `eps = 1e-5`, `momentum = 0.1`.
    pub fn new(channels: usize, path: &ParamPath) -> Result<Self> {
        Self::with_options(channels, 1e-5, 0.1, path)
    }

    /// A layer with the given `eps` (> 0) and `momentum` (in [0, 1]).
    pub fn with_options(
        channels: usize,
        eps: f64,
        momentum: f64,
        path: &ParamPath,
    ) -> Result<Self> {
        if channels == 0 {
            return Err(Error::config(
                path.full_name("channels"),
                0,
                "must be positive",
            ));
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(Error::config(
                path.full_name("eps"),
                eps,
                "must be finite and > 0",
            ));
        }
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::config(
                path.full_name("momentum"),
                momentum,
                "must be in [0, 1]",
            ));
        }
        Ok(Self {
            weight: path.constant("weight", &[channels], 1.0)?,
            bias: path.constant("bias", &[channels], 0.0)?,
            running_mean: path.buffer("running_mean", &[channels], 0.0)?,
            running_var: path.buffer("running_var", &[channels], 1.0)?,
            channels,
            eps,
            momentum,
        })
    }

    /// Normalises `xs`; `train` selects batch statistics (and updates the running ones).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let dims = xs.dims();
        if dims.len() < 2 || dims[1] != self.channels {
            return Err(Error::DataMismatch(format!(
                "batch norm over {} channels got an input of shape {dims:?}",
                self.channels
            )));
        }
        let per_channel: usize = dims
            .iter()
            .enumerate()
            .filter(|(d, _)| *d != 1)
            .map(|(_, n)| n)
            .product();
        if train && !self.weight.is_frozen() {
            if per_channel < 2 {
                return Err(Error::DataMismatch(format!(
                    "batch norm in training needs more than one value per channel, got an input of shape {dims:?}"
                )));
            }
            let (ys, stats) =
                ops::batch_norm(xs, self.weight.tensor(), self.bias.tensor(), None, self.eps)?;
            if let Some((mean, var)) = stats {
                self.update_running(&mean, &var, per_channel)?;
            }
            Ok(ys)
        } else {
            let running = (self.running_mean.as_tensor(), self.running_var.as_tensor());
            let (ys, _) = ops::batch_norm(
                xs,
                self.weight.tensor(),
                self.bias.tensor(),
                Some(running),
                self.eps,
            )?;
            Ok(ys)
        }
    }

    fn update_running(&self, mean: &Tensor, var: &Tensor, n: usize) -> Result<()> {
        let m = self.momentum;
        let unbiased = n as f64 / (n as f64 - 1.0);
        let mean = mean.detach().flatten_all()?.to_dtype(DType::F32)?;
        let var = var.detach().flatten_all()?.to_dtype(DType::F32)?;
        let rm = self.running_mean.as_tensor().detach();
        let rv = self.running_var.as_tensor().detach();
        self.running_mean.set(&((rm * (1.0 - m))? + (mean * m)?)?)?;
        self.running_var
            .set(&((rv * (1.0 - m))? + (var * (m * unbiased))?)?)?;
        Ok(())
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;
    use candle_core::Device;

    #[test]
    fn normalises_in_training_and_tracks_running_statistics() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 0);
        let bn = BatchNorm2d::new(2, &store.path("bn"))?;
        // Channel 0 holds 0..8, channel 1 holds 10 x that.
        let c0: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let mut values = Vec::new();
        for n in 0..2 {
            values.extend_from_slice(&c0[n * 4..n * 4 + 4]);
            values.extend(c0[n * 4..n * 4 + 4].iter().map(|v| v * 10.0));
        }
        let x = Tensor::from_vec(values, (2, 2, 2, 2), &Device::Cpu)?;
        let y = bn.forward_t(&x, true)?;
        let per_channel = y.transpose(0, 1)?.flatten_from(1)?.to_vec2::<f32>()?;
        for ch in &per_channel {
            let mean: f32 = ch.iter().sum::<f32>() / 8.0;
            let var: f32 = ch.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 8.0;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
                "{mean} {var}"
            );
        }
        // Running mean 0.1 * 3.5, running var 0.9 + 0.1 * unbiased var (6 for 0..8).
        let rm = store
            .get("bn.running_mean")
            .map(|v| v.to_vec1::<f32>())
            .transpose()?;
        let rv = store
            .get("bn.running_var")
            .map(|v| v.to_vec1::<f32>())
            .transpose()?;
        let (rm, rv) = (rm.unwrap_or_default(), rv.unwrap_or_default());
        assert!(
            (rm[0] - 0.35).abs() < 1e-6 && (rm[1] - 3.5).abs() < 1e-5,
            "{rm:?}"
        );
        assert!(
            (rv[0] - 1.5).abs() < 1e-5 && (rv[1] - 60.9).abs() < 1e-3,
            "{rv:?}"
        );
        assert_eq!(store.named_vars().len(), 2, "statistics are not parameters");
        // Evaluation uses the running statistics; a frozen layer does too, in training.
        let eval = bn.forward_t(&x, false)?;
        store.set_frozen("bn", true);
        let frozen = bn.forward_t(&x, true)?;
        assert_eq!(eval.to_vec1::<f32>().ok(), None, "4-d output");
        assert_eq!(
            eval.flatten_all()?.to_vec1::<f32>()?,
            frozen.flatten_all()?.to_vec1::<f32>()?
        );
        let rm_after = store
            .get("bn.running_mean")
            .map(|v| v.to_vec1::<f32>())
            .transpose()?;
        assert_eq!(
            rm_after.unwrap_or_default(),
            rm,
            "a frozen layer keeps its statistics"
        );
        Ok(())
    }
}
