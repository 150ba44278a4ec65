//! Task heads: the task-specific part of a model, reading the shared representation.
//!
//! Each head's parameters live under `heads.<task>.*`. A head only produces predictions; the
//! loss and metrics that go with it are declared by the [`TaskSpec`](crate::task::TaskSpec) it
//! is paired with.

mod adversarial;
mod graph;
mod linear;
mod log_softmax;
mod mlp;
mod seq2seq;

pub use adversarial::{AdversarialConfig, AdversarialHead, AdversarialLink, AdversarialLoss};
pub use graph::{GraphHead, GraphHeadConfig, NodeLayout, Readout};
pub use linear::LinearHead;
pub use log_softmax::LogSoftmaxHead;
pub use mlp::MlpHead;
pub use seq2seq::{GruDecoderHead, Seq2SeqConfig};

use candle_core::Tensor;

use crate::error::Result;

/// Maps the shared representation to one task's prediction.
///
/// Input `(N, ..., input_dim)`, output `(N, ..., output_dim)`: logits for classification,
/// values for regression.
pub trait TaskHead: Send + Sync {
    /// Predicts from a representation. `train` is true during training steps.
    fn forward_t(&self, z: &Tensor, train: bool) -> Result<Tensor>;

    /// Predicts in a training pass knowing the batch's targets (and its per-sample label
    /// mask, when some labels are missing): every forward pass the trainer runs to compute or
    /// compare training losses. A sequence decoder uses the targets for teacher forcing; a
    /// head with state of its own may note the batch here for [`end_step`](Self::end_step).
    /// `train` is the mode (dropout, batch statistics). The default ignores the targets.
    fn forward_with_target(
        &self,
        z: &Tensor,
        target: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let _ = (target, mask);
        self.forward_t(z, train)
    }

    /// Predicts for evaluation, knowing the targets' shape but not reading their values (a
    /// sequence decoder decodes as many steps as the targets have). The default is
    /// `forward_t(z, false)`.
    fn forward_for_target(&self, z: &Tensor, target: &Tensor) -> Result<Tensor> {
        let _ = target;
        self.forward_t(z, false)
    }

    /// Called once per training step after the optimiser's update (`applied`), or after a
    /// step that was skipped or failed (`!applied`): where a head updates state of its own,
    /// such as an adversarial head's discriminator. The default does nothing.
    fn end_step(&self, applied: bool) -> Result<()> {
        let _ = applied;
        Ok(())
    }

    /// Size of the representation this head reads; checked against the encoder at build time.
    fn input_dim(&self) -> usize;

    /// Size of the prediction (number of classes, or of regression outputs).
    fn output_dim(&self) -> usize;
}

impl<H: TaskHead + ?Sized> TaskHead for Box<H> {
    fn forward_t(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        (**self).forward_t(z, train)
    }
    fn forward_with_target(
        &self,
        z: &Tensor,
        target: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        (**self).forward_with_target(z, target, mask, train)
    }
    fn forward_for_target(&self, z: &Tensor, target: &Tensor) -> Result<Tensor> {
        (**self).forward_for_target(z, target)
    }
    fn end_step(&self, applied: bool) -> Result<()> {
        (**self).end_step(applied)
    }
    fn input_dim(&self) -> usize {
        (**self).input_dim()
    }
    fn output_dim(&self) -> usize {
        (**self).output_dim()
    }
}
