//! Gradient-based strategies on the shared representation (MGDA-UB style): heads read a
//! detached copy of the representation, one cheap backward per task to it, then one encoder
//! backward of the combined gradient through a surrogate `sum <z, g>`.

use candle_core::backprop::GradStore;

use crate::error::{Error, Result};
use crate::grad::{GradientSource, TaskGradients};
use crate::train::setup::SetupFacts;
use crate::train::step::forward::{sum_terms, Forward};
use crate::train::step::path::{GradientPath, PathOutput};
use crate::train::step::StepContext;
use crate::train::StepBatch;
use crate::weighting::InputMode;
use crate::weighting::{validate_weights, Decision};

/// The representation-Jacobian path.
pub(crate) struct RepresentationJacobian;

impl RepresentationJacobian {
    /// One representation of one batch: single-input mode, one batch per step.
    pub fn admits(facts: &SetupFacts<'_>) -> Result<()> {
        if facts.input_mode == InputMode::MultiInput {
            return Err(facts.refuse(
                "representation gradients need single-input mode (one representation of one batch); \
                 in multi-input mode use shared-parameter gradients",
            ));
        }
        if facts.batches_per_step > 1 {
            return Err(facts.refuse(
                "cross-batch strategies compare shared-parameter gradients of two batches; \
                 representation gradients of different batches are not comparable",
            ));
        }
        Ok(())
    }
}

impl GradientPath for RepresentationJacobian {
    fn detaches_representation(&self) -> bool {
        true
    }

    fn gradients(
        &mut self,
        cx: &mut StepContext<'_>,
        _batch: &StepBatch,
        _extra: &[&StepBatch],
        fwd: &Forward,
        losses: &[f64],
    ) -> Result<PathOutput> {
        let Some((encoded, leaves)) = &fwd.representation else {
            return Err(cx.invalid("representation path without a representation"));
        };
        let k_tasks = cx.active.len();
        let stores = fwd
            .losses
            .iter()
            .map(|l| Ok(l.backward()?))
            .collect::<Result<Vec<_>>>()?;
        // One shared leaf, or one per task.
        let pick = |k: usize| if leaves.len() == 1 { 0 } else { k };
        // Row k: dL_k / d(representation task k reads).
        let rows = (0..k_tasks)
            .map(|k| match stores[k].get(&leaves[pick(k)]) {
                // Detached: candle leaves the graph of the heads on gradients of leaves.
                Some(g) => Ok(g.detach().flatten_all()?),
                None => Ok(leaves[pick(k)].as_tensor().zeros_like()?.flatten_all()?),
            })
            .collect::<Result<Vec<_>>>()?;
        if rows.iter().any(|r| r.dims() != rows[0].dims()) {
            return Err(Error::DataMismatch(
                "per-task representations differ in size; representation gradients need equal sizes".into(),
            ));
        }
        let gradients = TaskGradients::new(
            GradientSource::Representation,
            candle_core::Tensor::stack(&rows, 0)?,
        )?;
        cx.check_gradients(&gradients)?;
        let decision = cx.decide(losses, Some(&gradients), None)?;
        let (head_weights, surrogate) = match &decision {
            Decision::Weights(w) => {
                validate_weights(cx.weighting.name(), w, k_tasks)?;
                let surrogate = sum_terms(w.iter().enumerate().map(|(k, &wk)| {
                    let z = &encoded[pick(k)];
                    let g = rows[k].affine(wk, 0.0)?.reshape(z.shape())?;
                    Ok((z * g)?.sum_all()?)
                }))?;
                (w.clone(), surrogate)
            }
            Decision::Direction(d) => {
                cx.check_direction(d)?;
                if encoded.len() != 1 {
                    return Err(cx.invalid(
                        "a combined representation gradient needs one shared representation, \
                         the encoder gives one per task",
                    ));
                }
                let z = &encoded[0];
                if d.elem_count() != z.elem_count() {
                    return Err(cx.invalid(format!(
                        "direction has {} values, the representation {}",
                        d.elem_count(),
                        z.elem_count()
                    )));
                }
                let term = (z * d.detach().reshape(z.shape())?)?.sum_all()?;
                (vec![1.0; k_tasks], Some(term))
            }
        };
        let mut combined = match surrogate {
            Some(s) => s.backward()?,
            None => GradStore::default(),
        };
        for leaf in leaves {
            combined.remove(leaf.as_tensor());
        }
        for (j, (store, &k)) in stores.iter().zip(cx.active).enumerate() {
            for (_, var) in cx.model.task_vars(k) {
                if let Some(g) = store.get(&var) {
                    let g = g.affine(head_weights[j], 0.0)?;
                    let g = match combined.remove(var.as_tensor()) {
                        Some(prev) => (prev + g)?,
                        None => g,
                    };
                    combined.insert(var.as_tensor(), g);
                }
            }
        }
        let weights = match decision {
            Decision::Weights(w) => Some(w),
            Decision::Direction(_) => None,
        };
        Ok(PathOutput {
            grads: combined,
            weights,
        })
    }
}
