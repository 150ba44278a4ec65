//! Loss-based strategies: one backward pass of the weighted sum of the losses.

use candle_core::backprop::GradStore;

use crate::error::Result;
use crate::train::step::forward::{sum_terms, Forward};
use crate::train::step::path::{GradientPath, PathOutput};
use crate::train::step::StepContext;
use crate::train::StepBatch;
use crate::weighting::{validate_weights, Decision};

/// The strategy sees the losses and gives weights; one backward pass of `sum_k w_k L_k`.
pub(crate) struct LossWeighted;

impl GradientPath for LossWeighted {
    fn gradients(
        &mut self,
        cx: &mut StepContext<'_>,
        _batch: &StepBatch,
        _extra: &[&StepBatch],
        fwd: &Forward,
        losses: &[f64],
    ) -> Result<PathOutput> {
        let weights = match cx.decide(losses, None, None)? {
            Decision::Weights(w) => w,
            Decision::Direction(_) => {
                return Err(cx.invalid(
                    "returned a combined gradient but asked for no gradients (Needs::gradients is empty)",
                ))
            }
        };
        validate_weights(cx.weighting.name(), &weights, fwd.losses.len())?;
        let total = sum_terms(
            fwd.losses
                .iter()
                .zip(&weights)
                .map(|(l, &w)| Ok(l.affine(w, 0.0)?)),
        )?;
        let grads = match total {
            Some(t) => t.backward()?,
            None => GradStore::default(),
        };
        Ok(PathOutput {
            grads,
            weights: Some(weights),
        })
    }
}
