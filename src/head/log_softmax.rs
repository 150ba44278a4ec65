use candle_core::Tensor;

use super::TaskHead;
use crate::error::Result;

/// Any head followed by log-softmax over its last dimension: log-probabilities, for tasks
/// trained with the negative log-likelihood ([`Loss::Nll`](crate::task::Loss::Nll)), as
/// PyTorch models ending in `log_softmax` with `nll_loss` do. Adds no parameters.
///
/// ```
/// use candle_mtl::{params::ParamStore, head::{LinearHead, LogSoftmaxHead, TaskHead}};
/// let store = ParamStore::new(&candle_core::Device::Cpu, 0);
/// let head = LogSoftmaxHead::new(LinearHead::new(8, 2, &store.path("heads.parity"))?);
/// let z = candle_core::Tensor::ones((3, 8), candle_core::DType::F32, &candle_core::Device::Cpu)?;
/// let p = head.forward_t(&z, false)?.exp()?.sum(1)?.to_vec1::<f32>()?;
/// assert!(p.iter().all(|s| (s - 1.0).abs() < 1e-5));
/// # Ok::<(), candle_mtl::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LogSoftmaxHead<H> {
    inner: H,
}

impl<H: TaskHead> LogSoftmaxHead<H> {
    /// Wraps `inner`.
    pub fn new(inner: H) -> Self {
        Self { inner }
    }
}

/// Log-softmax over the last dimension.
fn log_probabilities(logits: Tensor) -> Result<Tensor> {
    let last = logits.rank().saturating_sub(1);
    Ok(candle_nn::ops::log_softmax(&logits, last)?)
}

impl<H: TaskHead> TaskHead for LogSoftmaxHead<H> {
    fn forward_t(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        log_probabilities(self.inner.forward_t(z, train)?)
    }
    fn forward_with_target(
        &self,
        z: &Tensor,
        target: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        log_probabilities(self.inner.forward_with_target(z, target, mask, train)?)
    }
    fn forward_for_target(&self, z: &Tensor, target: &Tensor) -> Result<Tensor> {
        log_probabilities(self.inner.forward_for_target(z, target)?)
    }
    fn end_step(&self, applied: bool) -> Result<()> {
        self.inner.end_step(applied)
    }
    fn input_dim(&self) -> usize {
        self.inner.input_dim()
    }
    fn output_dim(&self) -> usize {
        self.inner.output_dim()
    }
}
