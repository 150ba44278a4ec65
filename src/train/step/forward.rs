//! The forward pass of a step: per-task batches, predictions and losses.

use candle_core::{DType, Tensor, Var};

use super::task_name;
use crate::encoder::Representation;
use crate::error::{Error, Result};
use crate::model::{representation_for, MultiTaskModel};
use crate::train::StepBatch;

/// Forward pass of one step over the tasks it trains: losses (in the order of those tasks),
/// plus what the representation path needs.
pub(crate) struct Forward {
    /// One loss per trained task, with graph.
    pub losses: Vec<Tensor>,
    /// Representation path: encoder outputs (with graph) and their detached leaves.
    pub representation: Option<(Vec<Tensor>, Vec<Var>)>,
}

/// Inputs, target and label mask (if any) of task `k` in `batch`.
pub(crate) fn task_batch<'b>(
    model: &MultiTaskModel,
    batch: &'b StepBatch,
    k: usize,
) -> Result<(&'b Tensor, &'b Tensor, Option<&'b Tensor>)> {
    let name = model.tasks()[k].name();
    let b = match batch {
        StepBatch::Shared(b) => b,
        StepBatch::PerTask(bs) => bs.get(k).ok_or_else(|| {
            Error::DataMismatch(format!(
                "{} per-task batches for {} tasks",
                bs.len(),
                model.tasks().len()
            ))
        })?,
        StepBatch::Task { task, batch } if *task == k => batch,
        StepBatch::Task { task, .. } => {
            return Err(Error::DataMismatch(format!(
                "the step trains task '{name}' but the batch is for task index {task}"
            )))
        }
    };
    let target = b.target(name).ok_or_else(|| {
        Error::DataMismatch(format!(
            "batch has no target for task '{name}' (targets: {})",
            b.targets
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    Ok((&b.inputs, target, b.label_mask(name)))
}

/// Forward pass of the tasks `active`. With `detach_representation`, heads read detached
/// leaves of the representation (the representation-gradient path).
pub(crate) fn forward(
    model: &MultiTaskModel,
    batch: &StepBatch,
    active: &[usize],
    train: bool,
    detach_representation: bool,
) -> Result<Forward> {
    let mut losses = Vec::with_capacity(active.len());
    let mut encoded = Vec::new();
    let mut leaves = Vec::new();
    let shared_rep = match batch {
        StepBatch::Shared(b) if !model.has_stems() => Some(model.encode(&b.inputs, train)?),
        _ => None,
    };
    let mut shared_leaf: Option<Var> = None;
    for &k in active {
        let (inputs, target, mask) = task_batch(model, batch, k)?;
        let own_rep;
        let rep = match &shared_rep {
            Some(r) => r,
            None => {
                own_rep = model.encode_for_task(inputs, k, train)?;
                &own_rep
            }
        };
        let z = representation_for(rep, k)?;
        let head_input = if detach_representation {
            match rep {
                Representation::Shared(_) if shared_rep.is_some() => {
                    if shared_leaf.is_none() {
                        let leaf = Var::from_tensor(&z.detach())?;
                        encoded.push(z.clone());
                        leaves.push(leaf.clone());
                        shared_leaf = Some(leaf);
                    }
                    shared_leaf
                        .as_ref()
                        .map(|v| v.as_tensor().clone())
                        .unwrap_or_else(|| z.clone())
                }
                _ => {
                    let leaf = Var::from_tensor(&z.detach())?;
                    encoded.push(z.clone());
                    leaves.push(leaf.clone());
                    leaf.as_tensor().clone()
                }
            }
        } else {
            z.clone()
        };
        let task = &model.tasks()[k];
        let pred = model.predict_with_target(k, &head_input, target, mask, train)?;
        let loss = match mask {
            Some(m) => task
                .spec()
                .loss
                .compute_masked(task.name(), &pred, target, m)?,
            None => task.spec().loss.compute(task.name(), &pred, target)?,
        };
        losses.push(loss);
    }
    Ok(Forward {
        losses,
        representation: detach_representation.then_some((encoded, leaves)),
    })
}

/// The losses' values, each checked finite (the error names the task and the step).
pub(crate) fn loss_values(
    model: &MultiTaskModel,
    losses: &[Tensor],
    active: &[usize],
    step: u64,
) -> Result<Vec<f64>> {
    let mut values = Vec::with_capacity(losses.len());
    for (j, l) in losses.iter().enumerate() {
        let v = f64::from(l.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        if !v.is_finite() {
            return Err(Error::NonFinite {
                quantity: "loss",
                task: task_name(model, active, j),
                step,
                value: v,
            });
        }
        values.push(v);
    }
    Ok(values)
}

/// The sum of `terms` (`None` when empty).
pub(crate) fn sum_terms(terms: impl IntoIterator<Item = Result<Tensor>>) -> Result<Option<Tensor>> {
    let mut total: Option<Tensor> = None;
    for term in terms {
        let term = term?;
        total = Some(match total {
            Some(t) => (t + term)?,
            None => term,
        });
    }
    Ok(total)
}

/// The squared L2 norm of `t` as f64.
pub(crate) fn squared_norm(t: &Tensor) -> Result<f64> {
    Ok(f64::from(
        t.sqr()?
            .sum_all()?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?,
    ))
}
