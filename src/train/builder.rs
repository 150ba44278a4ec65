//! [`TrainerBuilder`]: the trainer's parts given one by one, validated once in `build`.

use super::{Observer, Trainer, TrainerConfig};
use crate::data::Dataset;
use crate::error::Result;
use crate::model::MultiTaskModel;
use crate::weighting::TaskWeighting;

/// Builds a [`Trainer`]:
///
/// ```no_run
/// # use candle_mtl::prelude::*;
/// # fn demo(model: MultiTaskModel) -> candle_mtl::Result<()> {
/// let trainer = Trainer::builder(model, Box::new(candle_mtl::weighting::Equal::sum()))
///     .config(TrainerConfig { batch_size: 32, ..Default::default() })
///     .describe("data", "mnist")
///     .build()?;
/// # Ok(()) }
/// ```
pub struct TrainerBuilder {
    model: MultiTaskModel,
    weighting: Box<dyn TaskWeighting>,
    config: TrainerConfig,
    validation: Option<Box<dyn Dataset>>,
    observers: Vec<Box<dyn Observer>>,
    description: Vec<(String, String)>,
}

impl TrainerBuilder {
    /// `model` trained with `weighting` under the default configuration.
    pub fn new(model: MultiTaskModel, weighting: Box<dyn TaskWeighting>) -> Self {
        Self {
            model,
            weighting,
            config: TrainerConfig::default(),
            validation: None,
            observers: Vec::new(),
            description: Vec::new(),
        }
    }

    /// The configuration (default: [`TrainerConfig::default`]).
    pub fn config(mut self, config: TrainerConfig) -> Self {
        self.config = config;
        self
    }

    /// The validation set of a strategy that learns its weights on one (see
    /// [`Trainer::with_meta_validation`]); any [`Dataset`].
    pub fn meta_validation(mut self, validation: impl Dataset + 'static) -> Self {
        self.validation = Some(Box::new(validation));
        self
    }

    /// Adds an observer (see [`Trainer::add_observer`]).
    pub fn observer(mut self, observer: Box<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Describes the run (see [`Trainer::describe_run`]).
    pub fn describe(mut self, key: impl Into<String>, value: impl std::fmt::Display) -> Self {
        self.description.push((key.into(), value.to_string()));
        self
    }

    /// Checks the configuration, resolves the gradient path from the strategy's needs and
    /// prepares the strategy; refuses, naming both sides, a strategy the setup cannot serve.
    pub fn build(self) -> Result<Trainer> {
        let mut trainer = Trainer::build(self.model, self.weighting, self.config, self.validation)?;
        for o in self.observers {
            trainer.add_observer(o);
        }
        for (k, v) in self.description {
            trainer.describe_run(k, v);
        }
        Ok(trainer)
    }
}
