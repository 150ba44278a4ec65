use candle_core::Tensor;

use super::ParamState;
use crate::error::{Error, Result};

/// Hyper-parameters of Adam and AdamW.
///
/// | field | default | range |
/// |---|---|---|
/// | `lr` | 1e-3 | > 0 |
/// | `beta1` | 0.9 | [0, 1) |
/// | `beta2` | 0.999 | [0, 1) |
/// | `eps` | 1e-8 | > 0 |
/// | `weight_decay` | 0 | >= 0 |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// L2 penalty (Adam) or decoupled decay (AdamW).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamConfig {
    pub(super) fn validate(&self) -> Result<()> {
        let checks = [
            ("lr", self.lr, self.lr > 0.0, "must be > 0"),
            (
                "beta1",
                self.beta1,
                (0.0..1.0).contains(&self.beta1),
                "must be in [0, 1)",
            ),
            (
                "beta2",
                self.beta2,
                (0.0..1.0).contains(&self.beta2),
                "must be in [0, 1)",
            ),
            ("eps", self.eps, self.eps > 0.0, "must be > 0"),
            (
                "weight_decay",
                self.weight_decay,
                self.weight_decay >= 0.0,
                "must be >= 0",
            ),
        ];
        for (field, value, ok, reason) in checks {
            if !(ok && value.is_finite()) {
                return Err(Error::config(format!("adam {field}"), value, reason));
            }
        }
        Ok(())
    }
}

/// One Adam(W) update of `theta` with gradient `grad`; returns the new value.
pub(super) fn update(
    c: &AdamConfig,
    decoupled: bool,
    theta: &Tensor,
    grad: &Tensor,
    state: &mut ParamState,
) -> Result<Tensor> {
    let grad = if !decoupled && c.weight_decay > 0.0 {
        (grad + theta.affine(c.weight_decay, 0.0)?)?
    } else {
        grad.clone()
    };
    let first = match &state.first {
        Some(m) => (m.affine(c.beta1, 0.0)? + grad.affine(1.0 - c.beta1, 0.0)?)?,
        None => grad.affine(1.0 - c.beta1, 0.0)?,
    };
    let sq = grad.sqr()?;
    let second = match &state.second {
        Some(v) => (v.affine(c.beta2, 0.0)? + sq.affine(1.0 - c.beta2, 0.0)?)?,
        None => sq.affine(1.0 - c.beta2, 0.0)?,
    };
    state.steps += 1;
    let t = state.steps as i32;
    let bias1 = 1.0 - c.beta1.powi(t);
    let bias2 = 1.0 - c.beta2.powi(t);
    let denom = second
        .affine(1.0 / bias2, 0.0)?
        .sqrt()?
        .affine(1.0, c.eps)?;
    let step = (first.affine(c.lr / bias1, 0.0)? / denom)?;
    let theta = if decoupled && c.weight_decay > 0.0 {
        theta.affine(1.0 - c.lr * c.weight_decay, 0.0)?
    } else {
        theta.clone()
    };
    state.first = Some(first);
    state.second = Some(second);
    Ok((theta - step)?)
}
