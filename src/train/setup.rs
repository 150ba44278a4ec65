//! Resolves the training setup once, when the trainer is built: the gradient path from the
//! strategy's [`Needs`], the configuration and the model. The only code that reads `Needs`;
//! each refusal rule sits with the part it concerns (an `admits` function on each path).

use super::step::path::GradientPath;
use super::step::paths::{
    CrossBatch, LossWeighted, MetaValidated, RepresentationJacobian, SharedJacobian, Unweighted,
};
use super::tasks::TaskSchedule;
use super::TrainerConfig;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::grad::GradientSource;
use crate::model::MultiTaskModel;
use crate::weighting::{check_compatible, InputMode, Needs, TaskWeighting, WeightingSetup};

/// The most batches per step the trainer gives a cross-batch strategy.
const MAX_BATCHES_PER_STEP: usize = 2;

/// What the refusal rules look at.
pub(crate) struct SetupFacts<'a> {
    pub strategy: &'a str,
    pub needs: &'a Needs,
    pub input_mode: InputMode,
    pub batches_per_step: usize,
    pub has_meta_validation: bool,
    pub shared_parameters: usize,
}

impl SetupFacts<'_> {
    /// The strategy cannot be used here, for `reason`.
    pub fn refuse(&self, reason: impl Into<String>) -> Error {
        Error::IncompatibleWeighting {
            strategy: self.strategy.to_string(),
            reason: reason.into(),
        }
    }
}

/// The resolved setup.
pub(crate) struct Resolved {
    pub losses_after_step: bool,
    pub path: Box<dyn GradientPath>,
    /// What the strategy was prepared for.
    pub weighting_setup: WeightingSetup,
}

/// Chooses and composes the gradient path, checks the strategy against the setup (naming
/// both sides when they do not fit) and prepares the strategy.
pub(crate) fn resolve(
    model: &MultiTaskModel,
    weighting: &mut dyn TaskWeighting,
    config: &TrainerConfig,
    schedule: &TaskSchedule,
    meta_validation: Option<Box<dyn Dataset>>,
    meta_seed: u64,
) -> Result<Resolved> {
    let needs = weighting.needs();
    let gradient_source = config
        .gradient_source
        .or_else(|| needs.gradients.first().copied());
    let batches_per_step = needs.batches_per_step.clamp(1, MAX_BATCHES_PER_STEP);
    let names = model.task_names();
    let weighting_setup = WeightingSetup {
        task_names: schedule
            .active()
            .iter()
            .map(|&k| names[k].clone())
            .collect(),
        gradient_source,
        input_mode: config.input_mode,
        batches_per_step,
    };
    let name = weighting.name().to_string();
    let facts = SetupFacts {
        strategy: &name,
        needs: &needs,
        input_mode: config.input_mode,
        batches_per_step,
        has_meta_validation: meta_validation.is_some(),
        shared_parameters: model.shared_vars().len(),
    };
    if schedule.is_alternating() {
        Unweighted::admits(&facts)?;
    } else {
        check_compatible(weighting, &weighting_setup)?;
    }
    if matches!(config.mode, super::TrainingMode::EncoderDecoder(_))
        && gradient_source == Some(GradientSource::SharedParameters)
    {
        return Err(facts.refuse(
            "encoder/decoder alternation trains no shared parameter in its heads phases, so a \
             strategy comparing shared-parameter gradients has nothing to compare there; use a \
             loss-based or a representation-gradient strategy",
        ));
    }
    if schedule.is_progressive() && (needs.meta_validation || batches_per_step > 1) {
        return Err(facts.refuse(
            "progressive training supports strategies that take one batch and no validation set",
        ));
    }
    let inner: Box<dyn GradientPath> = match gradient_source {
        _ if schedule.is_alternating() => Box::new(Unweighted),
        None => Box::new(LossWeighted),
        Some(GradientSource::Representation) => {
            RepresentationJacobian::admits(&facts)?;
            Box::new(RepresentationJacobian)
        }
        Some(GradientSource::SharedParameters) => {
            SharedJacobian::admits(&facts)?;
            if batches_per_step > 1 && !schedule.is_alternating() {
                Box::new(CrossBatch {
                    inner: Box::new(SharedJacobian),
                })
            } else {
                Box::new(SharedJacobian)
            }
        }
    };
    MetaValidated::admits(&facts)?;
    let path: Box<dyn GradientPath> = match meta_validation {
        Some(validation) => Box::new(MetaValidated::new(inner, validation, meta_seed)),
        None => inner,
    };
    if !schedule.is_alternating() {
        weighting.prepare(&weighting_setup)?;
    }
    Ok(Resolved {
        losses_after_step: needs.losses_after_step,
        path,
        weighting_setup,
    })
}
