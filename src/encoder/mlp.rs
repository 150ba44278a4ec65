use candle_core::Tensor;

use super::SharedEncoder;
use crate::error::Result;
use crate::layers::{Activation, DenseStack};
use crate::params::ParamPath;

/// Configuration of an [`Mlp`] encoder.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `input_dim` | 784 | features per sample (inputs of more dimensions are flattened) |
/// | `hidden` | `[256, 128]` | width of each layer; the last one is the output size |
/// | `activation` | ReLU | applied after every layer, the last included |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct MlpConfig {
    /// Number of input features.
    pub input_dim: usize,
    /// Layer widths; the last is the representation size.
    pub hidden: Vec<usize>,
    /// Non-linearity after each layer.
    pub activation: Activation,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            input_dim: 784,
            hidden: vec![256, 128],
            activation: Activation::Relu,
        }
    }
}

/// A multi-layer perceptron encoder: `(N, ...)` is flattened to `(N, input_dim)` and mapped to
/// `(N, hidden.last())`. Parameters: `encoder.layer<i>.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct Mlp {
    stack: DenseStack,
}

impl Mlp {
    /// Builds the encoder's parameters under `path`.
    pub fn new(config: &MlpConfig, path: &ParamPath) -> Result<Self> {
        let mut widths = vec![config.input_dim];
        widths.extend_from_slice(&config.hidden);
        Ok(Self {
            stack: DenseStack::new(&widths, config.activation, true, path)?,
        })
    }
}

impl SharedEncoder for Mlp {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let xs = if xs.rank() > 2 {
            xs.flatten_from(1)?
        } else {
            xs.clone()
        };
        self.stack.forward(&xs)
    }

    fn output_dim(&self) -> usize {
        self.stack.out_dim()
    }

    fn layer_groups(&self) -> Vec<String> {
        (0..self.stack.len()).map(|i| format!("layer{i}")).collect()
    }
}

impl super::StagedEncoder for Mlp {
    fn num_stages(&self) -> usize {
        self.stack.len()
    }

    fn forward_stage(&self, stage: usize, h: &Tensor, _train: bool) -> Result<Tensor> {
        let h = if stage == 0 && h.rank() > 2 {
            h.flatten_from(1)?
        } else {
            h.clone()
        };
        self.stack.forward_layer(stage, &h)
    }
}
