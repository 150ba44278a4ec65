//! ResNet-18/34 (basic blocks, batch norm) with torchvision's parameter names, so a PyTorch
//! `state_dict` loads without renaming.

use candle_core::Tensor;

use super::SharedEncoder;
use crate::error::{Error, Result};
use crate::layers::{BatchNorm2d, Conv2d};
use crate::ops;
use crate::params::ParamPath;

/// The first layers of a [`ResNet`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResNetStem {
    /// torchvision's: 7x7 convolution with stride 2, batch norm, ReLU, 3x3 max pool with
    /// stride 2 (for ImageNet-sized inputs, 224x224).
    ImageNet,
    /// 3x3 convolution with stride 1, batch norm, ReLU, no pooling: the usual stem for 32x32
    /// inputs (CIFAR) and 28x28 ones (MNIST).
    Small,
}

/// Configuration of a [`ResNet`] encoder.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `blocks` | `[2, 2, 2, 2]` (ResNet-18) | basic blocks in each of the four stages; `[3, 4, 6, 3]` is ResNet-34 |
/// | `width` | 64 | channels of the first stage; stages double it (64, 128, 256, 512) |
/// | `in_channels` | 3 | image channels |
/// | `stem` | `ImageNet` | first layers, see [`ResNetStem`] |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Basic blocks per stage (four stages).
    pub blocks: [usize; 4],
    /// Channels of the first stage.
    pub width: usize,
    /// Input channels.
    pub in_channels: usize,
    /// First layers.
    pub stem: ResNetStem,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self::resnet18()
    }
}

impl ResNetConfig {
    /// torchvision's ResNet-18: 3-channel input, ImageNet stem, width 64.
    pub fn resnet18() -> Self {
        Self {
            blocks: [2, 2, 2, 2],
            width: 64,
            in_channels: 3,
            stem: ResNetStem::ImageNet,
        }
    }

    /// torchvision's ResNet-34.
    pub fn resnet34() -> Self {
        Self {
            blocks: [3, 4, 6, 3],
            ..Self::resnet18()
        }
    }

    /// A ResNet-18 for small images: `in_channels` channels, 3x3 stem, first stage `width`
    /// channels (16 gives a model of about 0.7 M parameters).
    pub fn small(in_channels: usize, width: usize) -> Self {
        Self {
            blocks: [2, 2, 2, 2],
            width,
            in_channels,
            stem: ResNetStem::Small,
        }
    }
}

/// Two 3x3 convolutions with batch norm and a shortcut (a strided 1x1 convolution with batch
/// norm, `downsample.0` / `downsample.1`, when the shape changes).
#[derive(Debug, Clone)]
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl BasicBlock {
    fn new(in_c: usize, out_c: usize, stride: usize, p: &ParamPath) -> Result<Self> {
        let downsample = if stride != 1 || in_c != out_c {
            let d = p.pp("downsample");
            Some((
                Conv2d::without_bias(in_c, out_c, 1, 0, stride, &d.pp("0"))?,
                BatchNorm2d::new(out_c, &d.pp("1"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            conv1: Conv2d::without_bias(in_c, out_c, 3, 1, stride, &p.pp("conv1"))?,
            bn1: BatchNorm2d::new(out_c, &p.pp("bn1"))?,
            conv2: Conv2d::without_bias(out_c, out_c, 3, 1, 1, &p.pp("conv2"))?,
            bn2: BatchNorm2d::new(out_c, &p.pp("bn2"))?,
            downsample,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.bn1.forward_t(&self.conv1.forward(x)?, train)?.relu()?;
        let h = self.bn2.forward_t(&self.conv2.forward(&h)?, train)?;
        let shortcut = match &self.downsample {
            Some((conv, bn)) => bn.forward_t(&conv.forward(x)?, train)?,
            None => x.clone(),
        };
        Ok((h + shortcut)?.relu()?)
    }
}

/// A residual network of basic blocks (He et al., 2016, "Deep Residual Learning for Image
/// Recognition"), ending in global average pooling: input `(N, in_channels, H, W)`, output
/// `(N, 8 * width)`.
///
/// Parameter names follow torchvision (`encoder.conv1.weight`, `encoder.bn1.running_mean`,
/// `encoder.layer1.0.conv1.weight`, `encoder.layer2.0.downsample.0.weight`, ...), so weights
/// exported from `torchvision.models.resnet18().state_dict()` load with
/// [`MultiTaskModel::load_pretrained`](crate::model::MultiTaskModel::load_pretrained) (drop
/// or map `fc.*`, the classifier). Convolutions run on the crate's fast CPU op; batch norm
/// keeps its running statistics as buffers.
#[derive(Debug, Clone)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    stem: ResNetStem,
    stages: Vec<Vec<BasicBlock>>,
    in_channels: usize,
    out_dim: usize,
}

impl ResNet {
    /// Creates the network's parameters and buffers under `path`.
    pub fn new(config: &ResNetConfig, path: &ParamPath) -> Result<Self> {
        if config.width == 0 || config.in_channels == 0 {
            return Err(Error::config(
                "resnet width / in_channels",
                format!("{} / {}", config.width, config.in_channels),
                "must be positive",
            ));
        }
        if let Some(b) = config.blocks.iter().find(|b| **b == 0) {
            return Err(Error::config(
                "resnet blocks",
                format!("{:?}", config.blocks),
                format!("every stage needs at least one block (found {b})"),
            ));
        }
        let w = config.width;
        let conv1 = match config.stem {
            ResNetStem::ImageNet => {
                Conv2d::without_bias(config.in_channels, w, 7, 3, 2, &path.pp("conv1"))?
            }
            ResNetStem::Small => {
                Conv2d::without_bias(config.in_channels, w, 3, 1, 1, &path.pp("conv1"))?
            }
        };
        let bn1 = BatchNorm2d::new(w, &path.pp("bn1"))?;
        let mut stages = Vec::with_capacity(4);
        let mut in_c = w;
        for (s, &n) in config.blocks.iter().enumerate() {
            let out_c = w << s;
            let stage_path = path.pp(&format!("layer{}", s + 1));
            let mut blocks = Vec::with_capacity(n);
            for b in 0..n {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(
                    in_c,
                    out_c,
                    stride,
                    &stage_path.pp(&b.to_string()),
                )?);
                in_c = out_c;
            }
            stages.push(blocks);
        }
        Ok(Self {
            conv1,
            bn1,
            stem: config.stem,
            stages,
            in_channels: config.in_channels,
            out_dim: in_c,
        })
    }

    /// The feature map before global pooling: `(N, 8 * width, H', W')`.
    pub fn features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        match xs.dims() {
            [_, c, _, _] if *c == self.in_channels => {}
            d => {
                return Err(Error::DataMismatch(format!(
                    "resnet: expected input (N, {}, H, W), got {d:?}",
                    self.in_channels
                )))
            }
        }
        let mut h = self
            .bn1
            .forward_t(&self.conv1.forward(xs)?, train)?
            .relu()?;
        if self.stem == ResNetStem::ImageNet {
            // Max pool 3x3, stride 2, padding 1: after ReLU every value is >= 0, so zero
            // padding is the same as PyTorch's -inf padding.
            let padded = h.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
            h = ops::max_pool2d(&padded, 3, 2)?;
        }
        for stage in &self.stages {
            for block in stage {
                h = block.forward_t(&h, train)?;
            }
        }
        Ok(h)
    }
}

impl SharedEncoder for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.features(xs, train)?.mean((2, 3))?)
    }

    fn output_dim(&self) -> usize {
        self.out_dim
    }

    fn layer_groups(&self) -> Vec<String> {
        let mut groups = vec!["conv1".to_string(), "bn1".to_string()];
        groups.extend((1..=self.stages.len()).map(|s| format!("layer{s}")));
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;
    use candle_core::{DType, Device};

    #[test]
    fn torchvision_names_shapes_and_output() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 0);
        let net = ResNet::new(&ResNetConfig::small(3, 4), &store.path("encoder"))?;
        let names: Vec<String> = store.named_state().into_iter().map(|(n, _)| n).collect();
        for expected in [
            "encoder.conv1.weight",
            "encoder.bn1.running_var",
            "encoder.layer1.0.conv2.weight",
            "encoder.layer2.0.downsample.0.weight",
            "encoder.layer2.0.downsample.1.running_mean",
            "encoder.layer4.1.bn2.bias",
        ] {
            assert!(names.iter().any(|n| n == expected), "missing {expected}");
        }
        assert!(!names
            .iter()
            .any(|n| n.starts_with("encoder.layer1.0.downsample")));
        let x = Tensor::randn(0f32, 1., (2, 3, 16, 16), &Device::Cpu)?;
        let y = net.forward_t(&x, true)?;
        assert_eq!(y.dims(), [2, 32]);
        assert_eq!(net.output_dim(), 32);
        let big = ResNet::new(
            &ResNetConfig {
                width: 2,
                ..ResNetConfig::resnet18()
            },
            &ParamStore::new(&Device::Cpu, 0).path("e"),
        )?;
        let y = big.features(
            &Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu)?,
            false,
        )?;
        assert_eq!(y.dims(), [1, 16, 2, 2], "stride 32 in all");
        Ok(())
    }
}
