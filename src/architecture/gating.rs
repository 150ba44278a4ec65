//! Softmax gates mixing expert outputs, shared by MMoE and CGC/PLE.

use candle_core::{Tensor, D};

use crate::encoder::SharedEncoder;
use crate::error::{Error, Result};

/// Runs every expert on `xs`; returns their outputs stacked as `(N, E, D)`.
pub(crate) fn run_experts(
    experts: &[Box<dyn SharedEncoder>],
    xs: &Tensor,
    train: bool,
) -> Result<Vec<Tensor>> {
    experts
        .iter()
        .enumerate()
        .map(|(e, expert)| {
            let out = expert.forward_t(xs, train)?;
            if out.rank() != 2 {
                return Err(Error::DataMismatch(format!(
                    "expert {e} returned shape {:?}; mixtures of experts need (N, D) outputs",
                    out.dims()
                )));
            }
            Ok(out)
        })
        .collect()
}

/// `sum_e softmax(logits)_e * outputs_e`: logits `(N, E)`, outputs E tensors `(N, D)`.
pub(crate) fn mix(logits: &Tensor, outputs: &[Tensor]) -> Result<Tensor> {
    let stacked = Tensor::stack(outputs, 1)?;
    let weights = candle_nn::ops::softmax(logits, D::Minus1)?;
    Ok(stacked.broadcast_mul(&weights.unsqueeze(2)?)?.sum(1)?)
}

/// The gate's input: `xs` flattened to `(N, features)`, checked against the gate's width.
pub(crate) fn gate_input(xs: &Tensor, expected: usize, what: &str) -> Result<Tensor> {
    let flat = if xs.rank() > 2 {
        xs.flatten_from(1)?
    } else {
        xs.clone()
    };
    let found = flat.dims().get(1).copied().unwrap_or(0);
    if flat.rank() != 2 || found != expected {
        return Err(Error::DataMismatch(format!(
            "{what} reads {expected} features per sample, the input has shape {:?}",
            xs.dims()
        )));
    }
    Ok(flat)
}

/// Checks that the experts' output sizes `dims` are all equal and returns it.
pub(crate) fn common_output_dim(dims: &[usize], what: &str) -> Result<usize> {
    match dims.first() {
        Some(&d) if dims.iter().all(|&x| x == d) => Ok(d),
        Some(_) => Err(Error::config(
            format!("{what} experts"),
            format!("output sizes {dims:?}"),
            "every expert must give the same output size",
        )),
        None => Err(Error::config(
            format!("{what} experts"),
            0,
            "needs at least one expert",
        )),
    }
}
