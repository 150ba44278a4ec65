use candle_core::Tensor;

use super::ParamState;
use crate::error::{Error, Result};

/// Hyper-parameters of SGD, with PyTorch's momentum formulation
/// (`b = momentum * b + g`, `theta -= lr * b`, or `theta -= lr * (g + momentum * b)` with
/// Nesterov).
///
/// | field | default | range |
/// |---|---|---|
/// | `lr` | 0.01 | > 0 |
/// | `momentum` | 0 | [0, 1) |
/// | `weight_decay` | 0 | >= 0 (L2 added to the gradient) |
/// | `nesterov` | false | needs momentum > 0 |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor.
    pub momentum: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

impl SgdConfig {
    pub(super) fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config("sgd lr", self.lr, "must be > 0"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::config(
                "sgd momentum",
                self.momentum,
                "must be in [0, 1)",
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::config(
                "sgd weight_decay",
                self.weight_decay,
                "must be >= 0",
            ));
        }
        if self.nesterov && self.momentum == 0.0 {
            return Err(Error::config("sgd nesterov", true, "needs momentum > 0"));
        }
        Ok(())
    }
}

/// One SGD update of `theta` with gradient `grad`; returns the new value.
pub(super) fn update(
    c: &SgdConfig,
    theta: &Tensor,
    grad: &Tensor,
    state: &mut ParamState,
) -> Result<Tensor> {
    let mut grad = if c.weight_decay > 0.0 {
        (grad + theta.affine(c.weight_decay, 0.0)?)?
    } else {
        grad.clone()
    };
    if c.momentum > 0.0 {
        let buf = match &state.first {
            Some(b) => (b.affine(c.momentum, 0.0)? + &grad)?,
            None => grad.clone(),
        };
        grad = if c.nesterov {
            (grad + buf.affine(c.momentum, 0.0)?)?
        } else {
            buf.clone()
        };
        state.first = Some(buf);
    }
    state.steps += 1;
    Ok((theta - grad.affine(c.lr, 0.0)?)?)
}
