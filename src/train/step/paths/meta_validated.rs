//! Meta-learned weights (Auto-Lambda): the inner path computes the step's gradients; before
//! they are applied, a virtual step along them, the validation gradient there and finite
//! differences of the training losses give the gradient of the validation loss with respect
//! to each task weight, handed to the strategy.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{shuffled_batches, Dataset};
use crate::error::Result;
use crate::train::checkpoint::{rng_from_tensor, rng_to_tensor};
use crate::train::setup::SetupFacts;
use crate::train::step::forward::{forward, loss_values, squared_norm, sum_terms, Forward};
use crate::train::step::path::{GradientPath, PathOutput};
use crate::train::step::StepContext;
use crate::train::StepBatch;
use crate::weighting::InputMode;

/// Checkpoint name of the generator of validation batches (as in earlier checkpoints).
const RNG_NAME: &str = "trainer.meta_rng";

/// Wraps the path that computes the step's gradients; owns the validation data and the
/// seeded generator that draws its batches.
pub(crate) struct MetaValidated {
    pub inner: Box<dyn GradientPath>,
    validation: Box<dyn Dataset>,
    rng: ChaCha8Rng,
}

impl MetaValidated {
    /// A validation set exactly when the strategy learns from one; loss-based weighting in
    /// single-input mode only.
    pub fn admits(facts: &SetupFacts<'_>) -> Result<()> {
        let needs = facts.needs;
        if !needs.meta_validation && facts.has_meta_validation {
            return Err(facts.refuse(
                "it does not learn from a validation set; build the trainer with Trainer::new",
            ));
        }
        if needs.meta_validation && !facts.has_meta_validation {
            return Err(facts.refuse(
                "it learns its weights on a validation set: build the trainer with \
                 Trainer::with_meta_validation",
            ));
        }
        if needs.meta_validation
            && (!needs.is_loss_only() || facts.input_mode != InputMode::SingleInput)
        {
            return Err(facts.refuse(
                "meta-learned weights are supported for loss-based weighting in single-input mode",
            ));
        }
        Ok(())
    }

    pub fn new(inner: Box<dyn GradientPath>, validation: Box<dyn Dataset>, seed: u64) -> Self {
        Self {
            inner,
            validation,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl GradientPath for MetaValidated {
    fn batches(&self) -> usize {
        self.inner.batches()
    }

    fn gradients(
        &mut self,
        cx: &mut StepContext<'_>,
        batch: &StepBatch,
        extra: &[&StepBatch],
        fwd: &Forward,
        losses: &[f64],
    ) -> Result<PathOutput> {
        self.inner.gradients(cx, batch, extra, fwd, losses)
    }

    fn before_apply(
        &mut self,
        cx: &mut StepContext<'_>,
        batch: &StepBatch,
        grads: &GradStore,
    ) -> Result<()> {
        self.inner.before_apply(cx, batch, grads)?;
        let gradient = self.weight_gradient(cx, batch, grads)?;
        cx.weighting.meta_gradient(&gradient)
    }

    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut state = self.inner.state_tensors()?;
        state.push((RNG_NAME.into(), rng_to_tensor(&self.rng)?));
        Ok(state)
    }

    fn load_state_tensors(
        &mut self,
        get: &dyn Fn(&str) -> Option<Tensor>,
        path: &std::path::Path,
    ) -> Result<()> {
        self.inner.load_state_tensors(get, path)?;
        let t = get(RNG_NAME).ok_or_else(|| {
            crate::error::Error::malformed(path, format!("has no entry {RNG_NAME}"))
        })?;
        self.rng = rng_from_tensor(&t, path, RNG_NAME)?;
        Ok(())
    }
}

impl MetaValidated {
    /// d(validation loss after a virtual step with `grads`) / d(task weight), by finite
    /// differences; the parameters are restored before returning, whatever happens.
    fn weight_gradient(
        &mut self,
        cx: &mut StepContext<'_>,
        batch: &StepBatch,
        grads: &GradStore,
    ) -> Result<Vec<f64>> {
        let model = cx.model;
        let vars = model.params().named_vars();
        let saved = vars
            .iter()
            .map(|(_, v)| Ok(v.as_tensor().copy()?))
            .collect::<Result<Vec<_>>>()?;
        let restore = |vars: &[(String, Var)]| -> Result<()> {
            for ((_, v), t) in vars.iter().zip(&saved) {
                v.set(t)?;
            }
            Ok(())
        };
        let alpha = cx.learning_rate;
        let shift = |scale: f64, by: &GradStore| -> Result<()> {
            for ((_, v), t) in vars.iter().zip(&saved) {
                if let Some(g) = by.get(v) {
                    v.set(&(t + g.detach().affine(scale, 0.0)?)?)?;
                }
            }
            Ok(())
        };
        let idx = shuffled_batches(self.validation.len(), cx.batch_size, false, &mut self.rng)
            .into_iter()
            .next()
            .unwrap_or_default();
        let val_batch = StepBatch::Shared(
            self.validation
                .read_batch(&idx)?
                .to_device(model.device())?,
        );
        let all_tasks: Vec<usize> = (0..model.tasks().len()).collect();
        let tasks: Vec<usize> = cx
            .weighting
            .meta_objective_tasks()
            .unwrap_or_else(|| all_tasks.clone());
        let step = cx.step;
        let strategy = cx.weighting.name().to_string();
        // Virtual step, then the validation gradient there.
        shift(-alpha, grads)?;
        let result = (|| -> Result<Vec<f64>> {
            let fwd = forward(model, &val_batch, &all_tasks, true, false)?;
            let objective = sum_terms(tasks.iter().map(|&k| {
                fwd.losses
                    .get(k)
                    .cloned()
                    .ok_or_else(|| crate::error::Error::InvalidDecision {
                        strategy: strategy.clone(),
                        reason: format!("meta task {k} out of range"),
                    })
            }))?;
            let v = match objective {
                Some(o) => o.backward()?,
                None => GradStore::default(),
            };
            restore(&vars)?;
            let norm_sq: f64 = vars
                .iter()
                .filter_map(|(_, var)| v.get(var))
                .map(squared_norm)
                .sum::<Result<f64>>()?;
            if !(norm_sq.is_finite() && norm_sq > 0.0) {
                return Ok(vec![0.0; all_tasks.len()]);
            }
            let eps = 0.01 / norm_sq.sqrt();
            // Evaluation mode for the two passes, so that dropout masks do not differ.
            shift(eps, &v)?;
            let plus = loss_values(
                model,
                &forward(model, batch, &all_tasks, false, false)?.losses,
                &all_tasks,
                step,
            )?;
            shift(-eps, &v)?;
            let minus = loss_values(
                model,
                &forward(model, batch, &all_tasks, false, false)?.losses,
                &all_tasks,
                step,
            )?;
            Ok(plus
                .iter()
                .zip(&minus)
                .map(|(p, m)| -alpha * (p - m) / (2.0 * eps))
                .collect())
        })();
        restore(&vars)?;
        result
    }
}
