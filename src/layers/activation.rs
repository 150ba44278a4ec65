use candle_core::Tensor;

use crate::error::Result;

/// Element-wise non-linearity applied between layers.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// `max(x, 0)`.
    #[default]
    Relu,
    /// Gaussian error linear unit (tanh approximation).
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// No non-linearity.
    Identity,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(self, xs: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => xs.relu()?,
            Activation::Gelu => xs.gelu()?,
            Activation::Tanh => xs.tanh()?,
            Activation::Sigmoid => candle_nn::ops::sigmoid(xs)?,
            Activation::Identity => xs.clone(),
        })
    }
}
