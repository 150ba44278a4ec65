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

    /// Predicts knowing the batch's targets, as the trainer does in training steps and
    /// evaluation: a sequence decoder uses them for teacher forcing (`train`) or for the
    /// number of steps to decode. The default ignores them.
    fn forward_with_target(&self, z: &Tensor, target: &Tensor, train: bool) -> Result<Tensor> {
        let _ = target;
        self.forward_t(z, train)
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
    fn forward_with_target(&self, z: &Tensor, target: &Tensor, train: bool) -> Result<Tensor> {
        (**self).forward_with_target(z, target, train)
    }
    fn input_dim(&self) -> usize {
        (**self).input_dim()
    }
    fn output_dim(&self) -> usize {
        (**self).output_dim()
    }
}
