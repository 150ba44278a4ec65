use candle_core::Tensor;

use super::TaskHead;
use crate::error::Result;
use crate::layers::Dense;
use crate::params::ParamPath;

/// A single linear layer: the usual head for classification (logits) or regression.
///
/// Parameters: `heads.<task>.linear.{weight,bias}`.
///
/// ```
/// use candle_mtl::{params::ParamStore, head::{LinearHead, TaskHead}};
/// let store = ParamStore::new(&candle_core::Device::Cpu, 0);
/// let head = LinearHead::new(128, 10, &store.path("heads.digit"))?;
/// let z = candle_core::Tensor::zeros((4, 128), candle_core::DType::F32, &candle_core::Device::Cpu)?;
/// assert_eq!(head.forward_t(&z, false)?.dims(), &[4, 10]);
/// # Ok::<(), candle_mtl::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LinearHead {
    layer: Dense,
}

impl LinearHead {
    /// A head reading `input_dim` features and producing `output_dim` values.
    pub fn new(input_dim: usize, output_dim: usize, path: &ParamPath) -> Result<Self> {
        Ok(Self {
            layer: Dense::new(input_dim, output_dim, &path.pp("linear"))?,
        })
    }
}

impl TaskHead for LinearHead {
    fn forward_t(&self, z: &Tensor, _train: bool) -> Result<Tensor> {
        self.layer.forward(z)
    }
    fn input_dim(&self) -> usize {
        self.layer.in_dim()
    }
    fn output_dim(&self) -> usize {
        self.layer.out_dim()
    }
}
