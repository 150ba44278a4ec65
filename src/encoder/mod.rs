//! Shared encoders: the part of a multi-task model that every task uses.
//!
//! An encoder maps a batch of inputs to a representation that the task heads read. Its
//! parameters live under `encoder.*` and count as *shared parameters*: the ones whose per-task
//! gradients gradient-based weighting strategies compare.

mod conv;
mod graph;
mod mlp;
mod recurrent;
mod resnet;
mod stem;
mod transformer;

pub use conv::{ConvNet, ConvNetConfig};
pub use graph::{GraphEncoder, GraphEncoderConfig};
pub use mlp::{Mlp, MlpConfig};
pub use recurrent::{CellKind, Recurrent, RecurrentConfig, SequenceOutput};
pub use resnet::{ResNet, ResNetConfig, ResNetStem};
pub use stem::{ConvStem, InputStem};
pub use transformer::{TransformerConfig, TransformerEncoder};

use candle_core::Tensor;

use crate::error::Result;

/// What an encoder hands to the task heads.
#[derive(Debug, Clone)]
pub enum Representation {
    /// One representation read by every head (hard parameter sharing).
    Shared(Tensor),
    /// One representation per task, in task order (architectures with per-task gates or
    /// attention, such as mixtures of experts).
    PerTask(Vec<Tensor>),
}

impl Representation {
    /// The representation task `task` reads.
    pub fn for_task(&self, task: usize) -> Option<&Tensor> {
        match self {
            Representation::Shared(z) => Some(z),
            Representation::PerTask(zs) => zs.get(task),
        }
    }
}

/// Maps a batch of inputs to the representation shared by the tasks.
///
/// Implementors need [`forward_t`](SharedEncoder::forward_t) and
/// [`output_dim`](SharedEncoder::output_dim). Encoders that give each task its own
/// representation also override [`forward_tasks`](SharedEncoder::forward_tasks).
///
/// Shapes are the encoder's to define: image encoders take `(N, C, H, W)` and return
/// `(N, D)`; sequence encoders may return `(N, T, D)`. In every case `output_dim()` is the size
/// `D` of the last dimension, which heads are checked against when a model is built.
pub trait SharedEncoder: Send + Sync {
    /// Encodes a batch. `train` is true during training steps (dropout, batch statistics).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor>;

    /// Size of the last dimension of the representation.
    fn output_dim(&self) -> usize;

    /// Encodes a batch for `num_tasks` tasks at once. The default returns one
    /// [`Representation::Shared`] from [`forward_t`](SharedEncoder::forward_t).
    fn forward_tasks(&self, xs: &Tensor, num_tasks: usize, train: bool) -> Result<Representation> {
        let _ = num_tasks;
        Ok(Representation::Shared(self.forward_t(xs, train)?))
    }

    /// The encoder's layers as parameter sub-paths (relative to `encoder`, such as `conv0`),
    /// from the input upwards. Layer-wise unfreezing releases them from the last one down.
    /// The default (empty) treats the whole encoder as one layer.
    fn layer_groups(&self) -> Vec<String> {
        Vec::new()
    }
}

/// An encoder made of stages applied one after the other (convolution blocks, dense layers):
/// what architectures that act between stages need (cross-stitch units).
///
/// `forward_stage(0, x)`, then `forward_stage(1, ...)`, ... up to `num_stages() - 1` must
/// equal `forward_t(x)`.
pub trait StagedEncoder: SharedEncoder {
    /// Number of stages.
    fn num_stages(&self) -> usize;

    /// Applies stage `stage` to the output of the stage before (the input for stage 0).
    fn forward_stage(&self, stage: usize, h: &Tensor, train: bool) -> Result<Tensor>;
}

impl<E: SharedEncoder + ?Sized> SharedEncoder for Box<E> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        (**self).forward_t(xs, train)
    }
    fn output_dim(&self) -> usize {
        (**self).output_dim()
    }
    fn forward_tasks(&self, xs: &Tensor, num_tasks: usize, train: bool) -> Result<Representation> {
        (**self).forward_tasks(xs, num_tasks, train)
    }
    fn layer_groups(&self) -> Vec<String> {
        (**self).layer_groups()
    }
}
