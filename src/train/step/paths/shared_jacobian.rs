//! Gradient-based strategies on the shared parameters: one backward pass per task, the
//! `(K, P)` matrix of encoder gradients handed to the strategy.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::Result;
use crate::grad::{flatten, unflatten_into, weighted_sum, GradientSource, TaskGradients};
use crate::train::setup::SetupFacts;
use crate::train::step::forward::Forward;
use crate::train::step::path::{GradientPath, PathOutput};
use crate::train::step::StepContext;
use crate::train::StepBatch;
use crate::weighting::{validate_weights, Decision};

/// Per-task backward passes to the shared parameters, then the strategy's combination
/// (weights of the per-task gradients, or a direction for the shared parameters).
pub(crate) struct SharedJacobian;

impl SharedJacobian {
    /// The encoder must have parameters to differentiate.
    pub fn admits(facts: &SetupFacts<'_>) -> Result<()> {
        if facts.shared_parameters == 0 {
            return Err(facts
                .refuse("it needs shared-parameter gradients but the encoder has no parameters"));
        }
        Ok(())
    }
}

/// One backward pass per loss; the stores and the flattened rows over `shared`.
pub(crate) fn per_task_rows(
    losses: &[Tensor],
    shared: &[(String, Var)],
) -> Result<(Vec<GradStore>, Tensor)> {
    let stores = losses
        .iter()
        .map(|l| Ok(l.backward()?))
        .collect::<Result<Vec<_>>>()?;
    let rows = stores
        .iter()
        .map(|s| flatten(s, shared))
        .collect::<Result<Vec<_>>>()?;
    Ok((stores, Tensor::stack(&rows, 0)?))
}

impl GradientPath for SharedJacobian {
    fn gradients(
        &mut self,
        cx: &mut StepContext<'_>,
        _batch: &StepBatch,
        _extra: &[&StepBatch],
        fwd: &Forward,
        losses: &[f64],
    ) -> Result<PathOutput> {
        let shared = cx.trainable_shared()?;
        let (stores, matrix) = per_task_rows(&fwd.losses, &shared)?;
        let gradients = TaskGradients::new(GradientSource::SharedParameters, matrix)?;
        cx.check_gradients(&gradients)?;
        let second = cx.second_gradients.take();
        let decision = cx.decide(losses, Some(&gradients), second.as_ref())?;
        let all_vars = cx.model.params().named_vars();
        match decision {
            Decision::Weights(w) => {
                validate_weights(cx.weighting.name(), &w, cx.active.len())?;
                Ok(PathOutput {
                    grads: weighted_sum(&stores, &w, &all_vars)?,
                    weights: Some(w),
                })
            }
            Decision::Direction(d) => {
                cx.check_direction(&d)?;
                let mut combined = GradStore::default();
                unflatten_into(&d, &shared, &mut combined)
                    .map_err(|e| cx.invalid(e.to_string()))?;
                for (store, &k) in stores.iter().zip(cx.active) {
                    for (_, var) in cx.model.task_vars(k) {
                        if let Some(g) = store.get(&var) {
                            combined.insert(var.as_tensor(), g.clone());
                        }
                    }
                }
                Ok(PathOutput {
                    grads: combined,
                    weights: None,
                })
            }
        }
    }
}
