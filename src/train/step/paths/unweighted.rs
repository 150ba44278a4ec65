//! Task alternation: the step's task (or tasks) on their own loss, no strategy consulted.

use candle_core::backprop::GradStore;

use crate::error::Result;
use crate::train::setup::SetupFacts;
use crate::train::step::forward::{sum_terms, Forward};
use crate::train::step::path::{GradientPath, PathOutput};
use crate::train::step::StepContext;
use crate::train::StepBatch;

/// One backward pass of the plain sum of the step's losses, weights 1.
pub(crate) struct Unweighted;

impl Unweighted {
    /// Alternation trains one task per step on its own loss: only a loss-based strategy
    /// that takes one batch and no validation set is accepted (and not consulted).
    pub fn admits(facts: &SetupFacts<'_>) -> Result<()> {
        if !facts.needs.is_loss_only() || facts.needs.meta_validation || facts.batches_per_step > 1
        {
            return Err(facts.refuse(
                "alternating training trains one task per step on its own loss and does not \
                 consult the strategy; use a loss-based strategy such as 'equal'",
            ));
        }
        Ok(())
    }
}

impl GradientPath for Unweighted {
    fn consults_strategy(&self) -> bool {
        false
    }

    fn gradients(
        &mut self,
        _cx: &mut StepContext<'_>,
        _batch: &StepBatch,
        _extra: &[&StepBatch],
        fwd: &Forward,
        _losses: &[f64],
    ) -> Result<PathOutput> {
        let grads = match sum_terms(fwd.losses.iter().map(|l| Ok(l.clone())))? {
            Some(t) => t.backward()?,
            None => GradStore::default(),
        };
        Ok(PathOutput {
            grads,
            weights: Some(vec![1.0; fwd.losses.len()]),
        })
    }
}
