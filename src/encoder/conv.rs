use candle_core::Tensor;

use super::SharedEncoder;
use crate::error::{Error, Result};
use crate::layers::{Conv2d, Dense};
use crate::params::ParamPath;

/// Configuration of a [`ConvNet`] encoder.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `in_channels` | 1 | image channels (1 grey, 3 RGB) |
/// | `height`, `width` | 28, 28 | image size |
/// | `channels` | `[32, 64]` | output channels of each conv + ReLU + max-pool 2 stage |
/// | `kernels` | `[]` (3 for every stage) | kernel size of each stage (odd sizes keep the image size with `same_padding`) |
/// | `same_padding` | true | pad by `kernel / 2` (true) or not at all (false, "valid" convolutions as in LeNet) |
/// | `hidden` | 128 | size of the final linear layer (+ ReLU): the representation size; 0: no linear layer, the representation is the last feature map `(C, H, W)` flattened (for a [`GraphHead`](crate::head::GraphHead) over its grid) |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct ConvNetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Input height in pixels.
    pub height: usize,
    /// Input width in pixels.
    pub width: usize,
    /// Channels of each convolution stage.
    pub channels: Vec<usize>,
    /// Kernel size of each stage; empty means 3 for every stage.
    pub kernels: Vec<usize>,
    /// Pad by `kernel / 2` ("same") instead of not at all ("valid").
    pub same_padding: bool,
    /// Width of the final fully connected layer (0: none, the flattened feature map).
    pub hidden: usize,
}

impl Default for ConvNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            height: 28,
            width: 28,
            channels: vec![32, 64],
            kernels: Vec::new(),
            same_padding: true,
            hidden: 128,
        }
    }
}

impl ConvNetConfig {
    /// The LeNet of the Pareto-MTL / Multi-MNIST recipe on 36x36 grey images: conv 1->10
    /// (9x9), pool, conv 10->20 (5x5), pool, linear 500->50.
    pub fn lenet_36() -> Self {
        Self {
            in_channels: 1,
            height: 36,
            width: 36,
            channels: vec![10, 20],
            kernels: vec![9, 5],
            same_padding: false,
            hidden: 50,
        }
    }
}

/// The classic small CNN: per stage conv 3x3 (padding 1) / ReLU / max-pool 2x2, then flatten,
/// linear to `hidden`, ReLU.
///
/// With the defaults on 1x28x28 images this is conv 1->32, pool, conv 32->64, pool,
/// linear 3136->128: the shared feature extractor of PyTorch's "MultiTaskNet" MNIST example.
/// Input `(N, in_channels, height, width)`, output `(N, hidden)` (with `hidden: 0`, the last
/// feature map flattened, `(N, C * H * W)`). Parameters: `encoder.conv<i>.{weight,bias}` and,
/// unless `hidden` is 0, `encoder.fc.{weight,bias}`. With `hidden: 0` the last stage's output
/// is that wide flattened map: architectures acting between stages (MTAN's attention modules)
/// then build layers of that width.
#[derive(Debug, Clone)]
pub struct ConvNet {
    convs: Vec<Conv2d>,
    fc: Option<Dense>,
    input_shape: [usize; 3],
    feature_map: [usize; 3],
}

impl ConvNet {
    /// Builds the encoder's parameters under `path`; refuses images too small for the stages.
    pub fn new(config: &ConvNetConfig, path: &ParamPath) -> Result<Self> {
        if config.channels.is_empty() {
            return Err(Error::config(
                "ConvNetConfig::channels",
                "[]",
                "needs at least one convolution stage",
            ));
        }
        if !config.kernels.is_empty() && config.kernels.len() != config.channels.len() {
            return Err(Error::config(
                "ConvNetConfig::kernels",
                format!("{:?}", config.kernels),
                format!(
                    "needs one kernel size per stage ({} stages) or none",
                    config.channels.len()
                ),
            ));
        }
        let mut convs = Vec::with_capacity(config.channels.len());
        let (mut c, mut h, mut w) = (config.in_channels, config.height, config.width);
        for (i, &out) in config.channels.iter().enumerate() {
            let kernel = config.kernels.get(i).copied().unwrap_or(3);
            let padding = if config.same_padding { kernel / 2 } else { 0 };
            let conv = Conv2d::new(c, out, kernel, padding, 1, &path.pp(&format!("conv{i}")))?;
            let (ch, cw) = (conv.output_size(h), conv.output_size(w));
            match (ch, cw) {
                (Some(ch), Some(cw)) if ch >= 2 && cw >= 2 => {
                    h = ch / 2;
                    w = cw / 2;
                }
                _ => {
                    return Err(Error::config(
                        "ConvNetConfig image size",
                        format!("{}x{}", config.height, config.width),
                        format!(
                            "too small for {} conv + pool stages (stage {i} sees {h}x{w})",
                            config.channels.len()
                        ),
                    ))
                }
            }
            convs.push(conv);
            c = out;
        }
        let fc = match config.hidden {
            0 => None,
            hidden => Some(Dense::new(c * h * w, hidden, &path.pp("fc"))?),
        };
        Ok(Self {
            convs,
            fc,
            input_shape: [config.in_channels, config.height, config.width],
            feature_map: [c, h, w],
        })
    }

    /// Shape `(C, H, W)` of the last convolution stage's output (the representation, flattened
    /// channel by channel, when `hidden` is 0).
    pub fn feature_map_shape(&self) -> [usize; 3] {
        self.feature_map
    }

    fn finish(&self, h: &Tensor) -> Result<Tensor> {
        match &self.fc {
            Some(fc) => fc.forward_fused(&h.flatten_from(1)?, true),
            None => Ok(h.flatten_from(1)?),
        }
    }
}

impl SharedEncoder for ConvNet {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let dims = xs.dims();
        if dims.len() != 4 || dims[1..] != self.input_shape {
            return Err(Error::DataMismatch(format!(
                "ConvNet expects inputs of shape (N, {}, {}, {}), got {:?}",
                self.input_shape[0], self.input_shape[1], self.input_shape[2], dims
            )));
        }
        let mut h = xs.clone();
        for conv in &self.convs {
            h = conv.forward_fused(&h, true, Some(2))?;
        }
        self.finish(&h)
    }

    fn output_dim(&self) -> usize {
        match &self.fc {
            Some(fc) => fc.out_dim(),
            None => self.feature_map.iter().product(),
        }
    }

    fn layer_groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = (0..self.convs.len()).map(|i| format!("conv{i}")).collect();
        if self.fc.is_some() {
            groups.push("fc".into());
        }
        groups
    }
}

impl super::StagedEncoder for ConvNet {
    /// One stage per convolution block (conv, ReLU, max-pool), then the fully connected one
    /// (without it, the last block's output is flattened).
    fn num_stages(&self) -> usize {
        self.convs.len() + usize::from(self.fc.is_some())
    }

    fn forward_stage(&self, stage: usize, h: &Tensor, _train: bool) -> Result<Tensor> {
        let last = self.num_stages() - 1;
        match (self.convs.get(stage), &self.fc) {
            (Some(conv), None) if stage == last => {
                Ok(conv.forward_fused(h, true, Some(2))?.flatten_from(1)?)
            }
            (Some(conv), _) => conv.forward_fused(h, true, Some(2)),
            (None, Some(_)) if stage == last => self.finish(h),
            _ => Err(Error::DataMismatch(format!(
                "stage {stage} of a ConvNet with {} stages",
                self.num_stages()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;
    use candle_core::{DType, Device};

    #[test]
    fn default_config_is_the_classic_model() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 0);
        let net = ConvNet::new(&ConvNetConfig::default(), &store.path("encoder"))?;
        assert_eq!(store.count("encoder.fc.weight"), 3136 * 128);
        let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
        assert_eq!(net.forward_t(&x, true)?.dims(), &[2, 128]);
        Ok(())
    }

    #[test]
    fn lenet_recipe_has_its_published_shapes() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 0);
        let net = ConvNet::new(&ConvNetConfig::lenet_36(), &store.path("encoder"))?;
        assert_eq!(store.count("encoder.conv0.weight"), 10 * 81);
        assert_eq!(store.count("encoder.fc.weight"), 500 * 50);
        let x = Tensor::zeros((2, 1, 36, 36), DType::F32, &Device::Cpu)?;
        assert_eq!(net.forward_t(&x, false)?.dims(), &[2, 50]);
        Ok(())
    }

    #[test]
    fn odd_sizes_and_rgb_work_and_tiny_images_are_refused() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 0);
        let cfg = ConvNetConfig {
            in_channels: 3,
            height: 32,
            width: 30,
            ..Default::default()
        };
        let net = ConvNet::new(&cfg, &store.path("encoder"))?;
        let x = Tensor::zeros((1, 3, 32, 30), DType::F32, &Device::Cpu)?;
        assert_eq!(net.forward_t(&x, false)?.dims(), &[1, 128]);
        let bad = Tensor::zeros((1, 1, 32, 30), DType::F32, &Device::Cpu)?;
        assert!(net.forward_t(&bad, false).is_err());
        let tiny = ConvNetConfig {
            height: 3,
            width: 3,
            ..Default::default()
        };
        let err = ConvNet::new(&tiny, &ParamStore::new(&Device::Cpu, 0).path("e")).unwrap_err();
        assert!(err.to_string().contains("3x3"), "{err}");
        Ok(())
    }
}
