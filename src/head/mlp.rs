use candle_core::Tensor;

use super::TaskHead;
use crate::error::Result;
use crate::layers::{Activation, DenseStack};
use crate::params::ParamPath;

/// A small MLP head: hidden layers with an activation, then a linear output layer.
///
/// Parameters: `heads.<task>.layer<i>.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct MlpHead {
    stack: DenseStack,
}

impl MlpHead {
    /// `input_dim -> hidden[0] -> ... -> output_dim`, with `activation` after each hidden layer.
    pub fn new(
        input_dim: usize,
        hidden: &[usize],
        output_dim: usize,
        activation: Activation,
        path: &ParamPath,
    ) -> Result<Self> {
        let mut widths = vec![input_dim];
        widths.extend_from_slice(hidden);
        widths.push(output_dim);
        Ok(Self {
            stack: DenseStack::new(&widths, activation, false, path)?,
        })
    }
}

impl TaskHead for MlpHead {
    fn forward_t(&self, z: &Tensor, _train: bool) -> Result<Tensor> {
        self.stack.forward(z)
    }
    fn input_dim(&self) -> usize {
        self.stack.in_dim()
    }
    fn output_dim(&self) -> usize {
        self.stack.out_dim()
    }
}
