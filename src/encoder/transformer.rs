use std::sync::Mutex;

use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::recurrent::{masked_mean, trailing_padding_mask};
use super::{SequenceOutput, SharedEncoder};
use crate::error::{Error, Result};
use crate::layers::Dense;
use crate::params::{Param, ParamPath};

/// Configuration of [`TransformerEncoder`].
///
/// | field | default | meaning |
/// |---|---|---|
/// | `input_dim` | 28 | features per step |
/// | `model_dim` | 64 | width of the residual stream |
/// | `heads` | 4 | attention heads (`model_dim` must be a multiple) |
/// | `layers` | 2 | encoder blocks |
/// | `ff_dim` | 128 | hidden width of each block's feed-forward part |
/// | `dropout` | 0.1 | dropout rate on attention and feed-forward outputs, training only |
/// | `output` | mean | mean over valid steps, last valid step, or every step |
/// | `pad_value` | `None` | trailing steps whose features all equal this value are padding (masked keys) |
/// | `dropout_seed` | 0 | seed of the dropout masks (candle cannot seed its own) |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerConfig {
    /// Features per step.
    pub input_dim: usize,
    /// Width of the residual stream.
    pub model_dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// Encoder blocks.
    pub layers: usize,
    /// Feed-forward hidden width.
    pub ff_dim: usize,
    /// Dropout rate (training only).
    pub dropout: f64,
    /// What the encoder returns.
    pub output: SequenceOutput,
    /// Trailing-padding marker.
    pub pad_value: Option<f32>,
    /// Seed of the dropout masks.
    pub dropout_seed: u64,
}

impl Default for TransformerConfig {
    fn default() -> Self {
        Self {
            input_dim: 28,
            model_dim: 64,
            heads: 4,
            layers: 2,
            ff_dim: 128,
            dropout: 0.1,
            output: SequenceOutput::Mean,
            pad_value: None,
            dropout_seed: 0,
        }
    }
}

/// Layer normalisation over the last dimension (written with primitive operations, so that it
/// is differentiable on every backend).
#[derive(Debug, Clone)]
struct LayerNorm {
    gain: Param,
    bias: Param,
}

impl LayerNorm {
    fn new(dim: usize, path: &ParamPath) -> Result<Self> {
        Ok(Self {
            gain: path.constant("weight", &[dim], 1.0)?,
            bias: path.constant("bias", &[dim], 0.0)?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centred = xs.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(self.gain.tensor())?
            .broadcast_add(self.bias.tensor())?)
    }
}

/// One pre-norm block: `x + drop(attn(LN(x)))`, then `x + drop(ff(LN(x)))`.
struct Block {
    norm1: LayerNorm,
    qkv: Dense,
    out: Dense,
    norm2: LayerNorm,
    ff1: Dense,
    ff2: Dense,
}

/// A Transformer encoder (Vaswani et al., *Attention Is All You Need*, NeurIPS 2017) in the
/// pre-norm arrangement (Xiong et al., 2020): input projection, sinusoidal positional
/// encoding, `layers` blocks of multi-head self-attention and a GELU feed-forward part, each
/// preceded by layer normalisation and followed by dropout and a residual connection, and a
/// final layer normalisation. Padded steps (`pad_value`) are masked out as keys and excluded
/// from the mean.
///
/// Inputs `(N, T, F)` or `(N, 1, T, F)`; output `(N, D)` (mean or last valid step) or
/// `(N, T, D)`, `D = model_dim`. Parameters: `encoder.input.*`,
/// `encoder.block<l>.{norm1, qkv, out, norm2, ff1, ff2}.*`, `encoder.norm.*`.
pub struct TransformerEncoder {
    config: TransformerConfig,
    input: Dense,
    blocks: Vec<Block>,
    norm: LayerNorm,
    /// The dropout generator's exact state (56 bytes as f32), a buffer `<path>.dropout_rng`
    /// when dropout is on: saved in checkpoints, so a resumed run draws the same masks.
    rng_state: Option<Var>,
    /// Serialises the read-draw-write of `rng_state`.
    rng_lock: Mutex<()>,
}

impl TransformerEncoder {
    /// Builds the encoder's parameters under `path`.
    pub fn new(config: &TransformerConfig, path: &ParamPath) -> Result<Self> {
        if config.heads == 0 || config.model_dim % config.heads != 0 || config.layers == 0 {
            return Err(Error::config(
                "TransformerConfig",
                format!(
                    "model_dim {}, heads {}, layers {}",
                    config.model_dim, config.heads, config.layers
                ),
                "model_dim must be a positive multiple of heads, with at least one layer",
            ));
        }
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(Error::config(
                "TransformerConfig::dropout",
                config.dropout,
                "must be in [0, 1)",
            ));
        }
        let d = config.model_dim;
        let blocks = (0..config.layers)
            .map(|l| {
                let p = path.pp(&format!("block{l}"));
                Ok(Block {
                    norm1: LayerNorm::new(d, &p.pp("norm1"))?,
                    qkv: Dense::new(d, 3 * d, &p.pp("qkv"))?,
                    out: Dense::new(d, d, &p.pp("out"))?,
                    norm2: LayerNorm::new(d, &p.pp("norm2"))?,
                    ff1: Dense::new(d, config.ff_dim, &p.pp("ff1"))?,
                    ff2: Dense::new(config.ff_dim, d, &p.pp("ff2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let rng_state = if config.dropout > 0.0 {
            let state = path.buffer("dropout_rng", &[56], 0.0)?;
            store_rng(&state, &ChaCha8Rng::seed_from_u64(config.dropout_seed))?;
            Some(state)
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            input: Dense::new(config.input_dim, d, &path.pp("input"))?,
            blocks,
            norm: LayerNorm::new(d, &path.pp("norm"))?,
            rng_state,
            rng_lock: Mutex::new(()),
        })
    }

    /// Sinusoidal positional encoding `(T, D)`.
    fn positions(t: usize, d: usize, device: &Device) -> Result<Tensor> {
        let mut values = Vec::with_capacity(t * d);
        for pos in 0..t {
            for i in 0..d {
                let rate = 1.0 / 10_000f64.powf((2 * (i / 2)) as f64 / d as f64);
                let angle = pos as f64 * rate;
                values.push(if i % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
            }
        }
        Ok(Tensor::from_vec(values, (t, d), device)?)
    }

    /// Inverted dropout from the encoder's seeded generator.
    fn dropout(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let p = self.config.dropout;
        let (true, Some(state)) = (train && p > 0.0, &self.rng_state) else {
            return Ok(xs.clone());
        };
        let _guard = match self.rng_lock.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut rng = load_rng(state)?;
        let scale = (1.0 / (1.0 - p)) as f32;
        let mask: Vec<f32> = (0..xs.elem_count())
            .map(|_| if rng.random::<f64>() < p { 0.0 } else { scale })
            .collect();
        store_rng(state, &rng)?;
        let mask = Tensor::from_vec(mask, xs.dims(), &Device::Cpu)?.to_device(xs.device())?;
        Ok((xs * mask.to_dtype(xs.dtype())?)?)
    }

    fn attention(&self, block: &Block, xs: &Tensor, key_bias: Option<&Tensor>) -> Result<Tensor> {
        let (n, t, d) = xs.dims3()?;
        let h = self.config.heads;
        let dk = d / h;
        let qkv = block.qkv.forward(xs)?; // (N, T, 3D)
        let split = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(2, i * d, d)?
                .reshape((n, t, h, dk))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (dk as f64).sqrt())?;
        let scores = match key_bias {
            Some(b) => scores.broadcast_add(b)?,
            None => scores,
        };
        let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let context = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((n, t, d))?;
        block.out.forward(&context)
    }
}

/// Writes `rng`'s exact state into the buffer `state`.
fn store_rng(state: &Var, rng: &ChaCha8Rng) -> Result<()> {
    let bytes: Vec<f32> = crate::weighting::support::chacha_to_bytes(rng)
        .into_iter()
        .map(f32::from)
        .collect();
    state.set(&Tensor::from_vec(bytes, 56, &Device::Cpu)?.to_device(state.device())?)?;
    Ok(())
}

/// The generator whose state the buffer `state` holds.
fn load_rng(state: &Var) -> Result<ChaCha8Rng> {
    let bytes: Vec<u8> = state
        .as_tensor()
        .to_vec1::<f32>()?
        .into_iter()
        .map(|b| b as u8)
        .collect();
    crate::weighting::support::chacha_from_bytes(&bytes).ok_or_else(|| {
        Error::DataMismatch("the Transformer's dropout generator state is damaged".into())
    })
}

impl SharedEncoder for TransformerEncoder {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let xs = match xs.dims() {
            [_, 1, _, _] => xs.squeeze(1)?,
            [_, _, _] => xs.clone(),
            d => {
                return Err(Error::DataMismatch(format!(
                    "a Transformer encoder reads (N, T, {}) or (N, 1, T, {}), got {d:?}",
                    self.config.input_dim, self.config.input_dim
                )))
            }
        };
        let (n, t, f) = xs.dims3()?;
        if f != self.config.input_dim || t == 0 {
            return Err(Error::DataMismatch(format!(
                "a Transformer encoder reads (N, T >= 1, {}) steps, got {:?}",
                self.config.input_dim,
                xs.dims()
            )));
        }
        let mask = match self.config.pad_value {
            Some(pad) => Some(trailing_padding_mask(&xs, pad)?), // (N, T, 1)
            None => None,
        };
        // Padded keys get -1e9 before the softmax: (N, 1, 1, T).
        let key_bias = match &mask {
            Some(m) => Some(
                ((m.squeeze(2)? - 1.0)? * 1e9)?
                    .reshape((n, 1, 1, t))?
                    .to_dtype(xs.dtype())?,
            ),
            None => None,
        };
        let d = self.config.model_dim;
        let mut h = self
            .input
            .forward(&xs)?
            .broadcast_add(&Self::positions(t, d, xs.device())?.to_dtype(xs.dtype())?)?;
        for block in &self.blocks {
            let a = self.attention(block, &block.norm1.forward(&h)?, key_bias.as_ref())?;
            h = (&h + self.dropout(&a, train)?)?;
            let ff = block
                .ff2
                .forward(&block.ff1.forward(&block.norm2.forward(&h)?)?.gelu()?)?;
            h = (&h + self.dropout(&ff, train)?)?;
        }
        let h = self.norm.forward(&h)?;
        match self.config.output {
            SequenceOutput::AllSteps => Ok(match &mask {
                Some(m) => h.broadcast_mul(m)?,
                None => h,
            }),
            SequenceOutput::Mean => masked_mean(&h, mask.as_ref()),
            SequenceOutput::Last => {
                let last = match &mask {
                    // Index of the last valid step: (number of valid steps) - 1, at least 0.
                    Some(m) => m
                        .squeeze(2)?
                        .sum(1)?
                        .to_dtype(DType::F32)?
                        .to_vec1::<f32>()?
                        .iter()
                        .map(|c| (*c as u32).max(1) - 1)
                        .collect::<Vec<u32>>(),
                    None => vec![(t - 1) as u32; n],
                };
                let idx = Tensor::from_vec(last, (n, 1, 1), xs.device())?
                    .broadcast_as((n, 1, d))?
                    .contiguous()?;
                Ok(h.gather(&idx, 1)?.squeeze(1)?)
            }
        }
    }

    fn output_dim(&self) -> usize {
        self.config.model_dim
    }

    fn layer_groups(&self) -> Vec<String> {
        let mut groups = vec!["input".to_string()];
        groups.extend((0..self.config.layers).map(|l| format!("block{l}")));
        groups.push("norm".into());
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;

    fn encoder(
        output: SequenceOutput,
        pad: Option<f32>,
        dropout: f64,
    ) -> Result<TransformerEncoder> {
        let store = ParamStore::new(&Device::Cpu, 0);
        let config = TransformerConfig {
            input_dim: 3,
            model_dim: 8,
            heads: 2,
            layers: 2,
            ff_dim: 16,
            dropout,
            output,
            pad_value: pad,
            dropout_seed: 1,
        };
        TransformerEncoder::new(&config, &store.path("encoder"))
    }

    #[test]
    fn shapes_and_padding() -> Result<()> {
        let short = Tensor::randn(0f32, 1.0, (1, 3, 3), &Device::Cpu)?;
        let padded = Tensor::cat(
            &[&short, &Tensor::zeros((1, 2, 3), DType::F32, &Device::Cpu)?],
            1,
        )?;
        for output in [SequenceOutput::Mean, SequenceOutput::Last] {
            let enc = encoder(output, Some(0.0), 0.0)?;
            let a = enc.forward_t(&short, false)?;
            let b = enc.forward_t(&padded, false)?;
            assert_eq!(a.dims(), &[1, 8]);
            let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(
                diff < 1e-4,
                "{output:?}: padding changed the output by {diff}"
            );
        }
        let all = encoder(SequenceOutput::AllSteps, None, 0.0)?;
        assert_eq!(all.forward_t(&padded, false)?.dims(), &[1, 5, 8]);
        Ok(())
    }

    #[test]
    fn dropout_is_seeded_and_off_in_evaluation() -> Result<()> {
        let xs = Tensor::randn(0f32, 1.0, (2, 4, 3), &Device::Cpu)?;
        let a = encoder(SequenceOutput::Mean, None, 0.5)?;
        let b = encoder(SequenceOutput::Mean, None, 0.5)?;
        let ta = a.forward_t(&xs, true)?.to_vec2::<f32>()?;
        let tb = b.forward_t(&xs, true)?.to_vec2::<f32>()?;
        assert_eq!(ta, tb, "same seed, same masks");
        let e1 = a.forward_t(&xs, false)?.to_vec2::<f32>()?;
        let e2 = a.forward_t(&xs, false)?.to_vec2::<f32>()?;
        assert_eq!(e1, e2);
        assert_ne!(ta, e1);
        Ok(())
    }
}
