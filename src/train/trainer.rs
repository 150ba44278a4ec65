//! The built-in trainer: a thin front over the parts in this module (setup, gradient paths,
//! update pipeline, task schedule, epochs, evaluation, run state, epoch policies).

use candle_core::Var;

use super::freezing::FreezePlan;
use super::policy::{self, EpochAction, EpochPolicy, PolicyContext};
use super::run_state::{derive_seed, RunState};
use super::setup::{resolve, Resolved};
use super::step::forward::{forward, loss_values};
use super::step::path::GradientPath;
use super::step::update::Pipeline;
use super::step::StepContext;
use super::tasks::TaskSchedule;
use super::{
    EpochReport, EvalReport, FitReport, MultiTaskTrainer, NonFinitePolicy, Observer, StepBatch,
    StepReport, TaskData, TrainerBuilder, TrainerConfig,
};
use crate::data::{Batch, Dataset};
use crate::error::{Error, Result};
use crate::grad::GradientSource;
use crate::model::MultiTaskModel;
use crate::optim::Optimizer;
use crate::weighting::{check_compatible, AfterStep, TaskWeighting, WeightingSetup};

/// The built-in trainer: joint training of every task at every step (or the tasks the
/// [`TrainingMode`](super::TrainingMode) picks).
///
/// Per step: forward the tasks, check the losses are finite, compute the gradients along the
/// path chosen when the trainer was built from the strategy's needs, run the update pipeline
/// (auxiliary loss, head penalty, frozen filter, clipping), take one optimiser step.
/// - loss-based strategies: one backward pass of `sum_k w_k L_k`;
/// - [`GradientSource::SharedParameters`]: one backward pass per task, the `(K, d)` matrix of
///   encoder gradients handed to the strategy;
/// - [`GradientSource::Representation`]: heads run on a detached copy of the representation,
///   one cheap backward per task to it, then one encoder backward of the combined gradient.
///
/// Reproducible on the CPU: parameters come from the model's seed, the data order and the
/// strategy's generator from [`TrainerConfig::seed`]; the same seed gives bit-identical
/// results on any number of threads, and a checkpoint taken after any step resumes exactly.
pub struct Trainer {
    pub(super) model: MultiTaskModel,
    pub(super) weighting: Box<dyn TaskWeighting>,
    pub(super) optimizer: Optimizer,
    pub(super) config: TrainerConfig,
    pub(super) losses_after_step: bool,
    pub(super) weighting_vars: Vec<(String, Var)>,
    pub(super) path: Box<dyn GradientPath>,
    pub(super) weighting_setup: WeightingSetup,
    pub(super) schedule: TaskSchedule,
    pub(super) freezing: FreezePlan,
    pub(super) state: RunState,
    pub(super) policies: Vec<Box<dyn EpochPolicy>>,
    pub(super) observers: Vec<Box<dyn Observer>>,
    /// `(key, value)` pairs describing the run (data, model), stored in checkpoints and
    /// compared when one is loaded.
    pub(super) description: Vec<(String, String)>,
}

/// Salt of the seed handed to the weighting strategy, so that its generator and the data
/// order's are independent.
const WEIGHTING_SEED_STREAM: u64 = 1;

/// Salt of the seed that draws meta-validation batches.
const META_SEED_STREAM: u64 = 2;

impl Trainer {
    /// A builder: `Trainer::builder(model, weighting).config(c).build()`.
    pub fn builder(model: MultiTaskModel, weighting: Box<dyn TaskWeighting>) -> TrainerBuilder {
        TrainerBuilder::new(model, weighting)
    }

    /// A trainer for `model` with `weighting`; refuses invalid configuration and a strategy
    /// whose needs the setup cannot meet, naming both.
    pub fn new(
        model: MultiTaskModel,
        weighting: Box<dyn TaskWeighting>,
        config: TrainerConfig,
    ) -> Result<Self> {
        Self::builder(model, weighting).config(config).build()
    }

    /// A trainer whose strategy learns its weights on `validation` (strategies with
    /// [`Needs::meta_validation`](crate::weighting::Needs::meta_validation), such as
    /// [`AutoLambda`](crate::weighting::AutoLambda)): each step draws a batch of it, seeded.
    /// `validation` must hold a target for every task and should not overlap the training set.
    pub fn with_meta_validation(
        model: MultiTaskModel,
        weighting: Box<dyn TaskWeighting>,
        config: TrainerConfig,
        validation: impl Dataset + 'static,
    ) -> Result<Self> {
        Self::builder(model, weighting)
            .config(config)
            .meta_validation(validation)
            .build()
    }

    /// Builds the trainer (see [`TrainerBuilder::build`]).
    pub(super) fn build(
        model: MultiTaskModel,
        mut weighting: Box<dyn TaskWeighting>,
        config: TrainerConfig,
        meta_validation: Option<Box<dyn Dataset>>,
    ) -> Result<Self> {
        config.validate()?;
        if let Some(v) = &meta_validation {
            super::evaluate::check_data(&model, TaskData::Shared(v.as_ref()), config.input_mode)?;
        }
        let schedule = TaskSchedule::new(&config.mode, &model.task_names())?;
        let freezing = FreezePlan::new(&model, &config.mode, config.unfreeze);
        let Resolved {
            losses_after_step,
            path,
            weighting_setup,
        } = resolve(
            &model,
            weighting.as_mut(),
            &config,
            &schedule,
            meta_validation,
            derive_seed(config.seed, META_SEED_STREAM),
        )?;
        weighting.seed(derive_seed(config.seed, WEIGHTING_SEED_STREAM));
        let weighting_vars: Vec<(String, Var)> = weighting
            .parameters()
            .into_iter()
            .map(|(n, v)| (format!("weighting.{n}"), v))
            .collect();
        if schedule.is_progressive() && !weighting_vars.is_empty() {
            return Err(Error::IncompatibleWeighting {
                strategy: weighting.name().to_string(),
                reason: "it learns parameters per task, which progressive training cannot \
                         extend when a task joins"
                    .into(),
            });
        }
        let mut params = model.params().named_vars();
        params.extend(weighting_vars.iter().cloned());
        let optimizer = Optimizer::new(config.optimizer.clone(), params)?;
        let mut trainer = Self {
            state: RunState::new(config.seed),
            policies: policy::from_config(&config),
            model,
            weighting,
            optimizer,
            config,
            losses_after_step,
            weighting_vars,
            path,
            weighting_setup,
            schedule,
            freezing,
            observers: Vec::new(),
            description: Vec::new(),
        };
        trainer.apply_unfreeze_schedule()?;
        Ok(trainer)
    }

    /// Adds an observer of steps and epochs (metric logs, dashboards); see
    /// [`JsonlLog`](super::JsonlLog) and [`CsvLog`](super::CsvLog).
    pub fn add_observer(&mut self, observer: Box<dyn Observer>) {
        self.observers.push(observer);
    }

    /// Records `(key, value)` describing the run (the data, the model, a flag); checkpoints
    /// store it and [`load_checkpoint`](Self::load_checkpoint) refuses one whose description
    /// differs, naming the key.
    pub fn describe_run(&mut self, key: impl Into<String>, value: impl std::fmt::Display) {
        let key = key.into();
        let value = value.to_string();
        match self.description.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.description.push((key, value)),
        }
    }

    fn notify_step(&mut self, report: &StepReport) -> Result<()> {
        let names = self.model.task_names();
        for o in &mut self.observers {
            o.on_step(&names, report)?;
        }
        Ok(())
    }

    /// The model being trained.
    pub fn model(&self) -> &MultiTaskModel {
        &self.model
    }

    /// Gives the model back.
    pub fn into_model(self) -> MultiTaskModel {
        self.model
    }

    /// The weighting strategy.
    pub fn weighting(&self) -> &dyn TaskWeighting {
        self.weighting.as_ref()
    }

    /// The optimiser (learning rate, per-parameter step counts).
    pub fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.optimizer
    }

    /// The gradient source in use (`None` for loss-based strategies).
    pub fn gradient_source(&self) -> Option<GradientSource> {
        self.weighting_setup.gradient_source
    }

    /// Steps taken so far.
    pub fn steps_done(&self) -> u64 {
        self.state.step
    }

    /// Epochs completed so far (an epoch resumed from a checkpoint taken inside it counts
    /// once it ends).
    pub fn epochs_done(&self) -> usize {
        self.state.epoch
    }

    /// Whether the next epoch call continues an epoch a loaded checkpoint was taken inside.
    pub fn is_inside_epoch(&self) -> bool {
        self.state.in_epoch.is_some()
    }

    /// The configuration.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// The tasks that train in the current epoch, in task order.
    pub fn active_tasks(&self) -> Vec<String> {
        let names = self.model.task_names();
        self.schedule
            .active()
            .iter()
            .map(|&k| names[k].clone())
            .collect()
    }

    /// One step of a cross-batch strategy (MoDo, SDMGrad): `second` is an independent batch
    /// whose per-task gradients the strategy compares with those of `batch`
    /// ([`StepInput::second_gradients`](crate::weighting::StepInput::second_gradients)); the
    /// update is computed on `batch`.
    pub fn train_step_pair(&mut self, batch: &StepBatch, second: &StepBatch) -> Result<StepReport> {
        if self.path.batches() != 2 {
            return Err(Error::IncompatibleWeighting {
                strategy: self.weighting.name().to_string(),
                reason: "it takes one batch per step: use train_step".into(),
            });
        }
        self.step(batch, &[second])
    }

    /// One step on `batch` (and `extra` batches for a cross-batch path).
    pub(super) fn step(&mut self, batch: &StepBatch, extra: &[&StepBatch]) -> Result<StepReport> {
        for b in std::iter::once(batch).chain(extra.iter().copied()) {
            self.schedule.check_batch(b, self.config.input_mode)?;
        }
        self.apply_unfreeze_schedule()?;
        let base = self.config.optimizer.lr() * self.state.lr_scale;
        let lr = self.config.lr_schedule.rate(
            base,
            self.state.step,
            self.state.epoch,
            self.state.epoch_progress,
        );
        self.optimizer.set_learning_rate(lr)?;
        let active = self
            .schedule
            .step_tasks(batch, self.state.step, &mut self.state.rng)?;
        let samples = match batch {
            StepBatch::Shared(b) => b.len(),
            StepBatch::PerTask(bs) => active
                .iter()
                .filter_map(|&k| bs.get(k))
                .map(Batch::len)
                .sum(),
            StepBatch::Task { batch, .. } => batch.len(),
        };
        let mut cx = StepContext {
            model: &self.model,
            weighting: self.weighting.as_mut(),
            step: self.state.step,
            epoch: self.state.epoch,
            active: &active,
            learning_rate: lr,
            batch_size: self.config.batch_size,
            second_gradients: None,
            stats: None,
        };
        let path = self.path.as_mut();
        let computed = (|| {
            let fwd = forward(
                cx.model,
                batch,
                cx.active,
                true,
                path.detaches_representation(),
            )?;
            let losses = loss_values(cx.model, &fwd.losses, cx.active, cx.step)?;
            let out = path.gradients(&mut cx, batch, extra, &fwd, &losses)?;
            let pipeline = Pipeline {
                model: cx.model,
                weighting: &*cx.weighting,
                weighting_vars: &self.weighting_vars,
                consults_strategy: path.consults_strategy(),
                head_regularizer: self.config.head_regularizer,
                max_grad_norm: self.config.max_grad_norm,
                step: cx.step,
            };
            let finished = pipeline.run(&fwd.losses, cx.active, out.grads)?;
            Ok((losses, out.weights, finished))
        })();
        if computed.is_err() {
            // The heads forget what they noted for this step (the error, if any, is the
            // step's own).
            let _ = self.model.end_step(false);
        }
        let (losses, weights, finished) = match computed {
            Ok(c) => c,
            Err(Error::NonFinite { .. }) if self.config.non_finite == NonFinitePolicy::Skip => {
                // Nothing was applied: parameters, optimiser and strategy are as before.
                let report = StepReport {
                    step: self.state.step,
                    losses: vec![f64::NAN; self.model.tasks().len()],
                    weights: None,
                    samples,
                    gradient_stats: cx.stats.take(),
                    grad_norm: None,
                    regularization: None,
                    skipped: true,
                };
                self.state.step += 1;
                self.notify_step(&report)?;
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        path.before_apply(&mut cx, batch, &finished.grads)?;
        let gradient_stats = cx.stats.take();
        self.optimizer.step(&finished.grads)?;
        self.model.end_step(true)?;
        if self.path.consults_strategy() {
            let losses_after = if self.losses_after_step {
                let after = forward(&self.model, batch, &active, false, false)?;
                Some(loss_values(
                    &self.model,
                    &after.losses,
                    &active,
                    self.state.step,
                )?)
            } else {
                None
            };
            self.weighting.after_step(&AfterStep {
                step: self.state.step,
                losses_before: &losses,
                losses_after: losses_after.as_deref(),
            })?;
        }
        // Reports are in the model's task order: NaN loss and weight 0 for tasks not trained.
        let k_tasks = self.model.tasks().len();
        let mut all_losses = vec![f64::NAN; k_tasks];
        for (&k, &l) in active.iter().zip(&losses) {
            all_losses[k] = l;
        }
        let weights = weights.map(|w| {
            let mut all = vec![0.0; k_tasks];
            for (&k, &wk) in active.iter().zip(&w) {
                all[k] = wk;
            }
            all
        });
        let report = StepReport {
            step: self.state.step,
            losses: all_losses,
            weights,
            samples,
            gradient_stats,
            grad_norm: finished.grad_norm,
            regularization: finished.regularization,
            skipped: false,
        };
        self.state.step += 1;
        self.notify_step(&report)?;
        Ok(report)
    }

    /// Brings the epoch-dependent state up to date: the tasks that have joined (progressive
    /// mode; the strategy is re-prepared for them when they change) and the encoder layers
    /// released by the unfreezing schedule.
    pub(super) fn begin_epoch(&mut self) -> Result<()> {
        let names = self.model.task_names();
        if let Some(active) = self.schedule.joined_at(self.state.epoch, &names) {
            let setup = WeightingSetup {
                task_names: active.iter().map(|&k| names[k].clone()).collect(),
                ..self.weighting_setup.clone()
            };
            check_compatible(self.weighting.as_ref(), &setup)?;
            self.weighting.prepare(&setup)?;
            self.weighting.seed(derive_seed(
                self.config.seed,
                WEIGHTING_SEED_STREAM + 16 * self.state.epoch as u64,
            ));
            self.schedule.set_active(active);
            self.weighting_setup = setup;
        }
        self.apply_unfreeze_schedule()
    }

    /// Sets what trains now: the layers the unfreezing schedule has released at this epoch
    /// and the encoder/decoder phase of this step.
    fn apply_unfreeze_schedule(&mut self) -> Result<()> {
        self.freezing
            .apply(&self.model, self.state.step, self.state.epoch)
    }

    /// Evaluation of the model on `data`.
    pub(super) fn evaluate_data(&mut self, data: TaskData<'_>) -> Result<EvalReport> {
        super::evaluate::check_data(&self.model, data, self.config.input_mode)?;
        super::evaluate::evaluate(&self.model, data, self.config.eval_batch_size)
    }

    /// Runs the epoch-end policies on `report` and carries out their actions; true when one
    /// asks to stop.
    fn end_of_epoch(&mut self, report: &EpochReport) -> Result<bool> {
        let cx = PolicyContext {
            lr_scale: self.state.lr_scale,
            base_lr: self.config.optimizer.lr(),
        };
        let mut actions = Vec::new();
        for p in &mut self.policies {
            actions.extend(p.on_epoch_end(report, &cx)?);
        }
        let mut stop = false;
        for action in actions {
            match action {
                EpochAction::SetLrScale(scale) => self.state.lr_scale = scale,
                EpochAction::Save(path) => self.save_checkpoint(&path)?,
                EpochAction::Delete(path) => {
                    if path.exists() {
                        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                    }
                }
                EpochAction::Stop => stop = true,
            }
        }
        Ok(stop)
    }
}

impl MultiTaskTrainer for Trainer {
    /// As the trait's default, and the epoch-end policies of the configuration:
    /// reduce-on-plateau, early stopping, and with [`TrainerConfig::checkpoint`] a checkpoint
    /// after every epoch (the oldest beyond `keep_last` deleted) and `best.safetensors` when
    /// the chosen metric improves. After loading a checkpoint taken inside an epoch, the
    /// first epoch run is the rest of that one.
    fn fit(
        &mut self,
        train: TaskData<'_>,
        eval: Option<TaskData<'_>>,
        epochs: usize,
        on_epoch: &mut dyn FnMut(&EpochReport) -> Result<()>,
    ) -> Result<FitReport> {
        let mut fit = FitReport::default();
        for _ in 0..epochs {
            let every = self
                .config
                .eval_every_steps
                .and_then(|n| eval.map(|e| (e, n)));
            let mut report = self.run_epoch(train, every)?;
            if let Some(eval) = eval {
                report.eval = Some(self.evaluate_data(eval)?);
            }
            let stop = self.end_of_epoch(&report)?;
            for o in &mut self.observers {
                o.on_epoch(&report)?;
            }
            on_epoch(&report)?;
            fit.epochs.push(report);
            if stop {
                fit.stopped_early = true;
                break;
            }
        }
        Ok(fit)
    }

    fn train_step(&mut self, batch: &StepBatch) -> Result<StepReport> {
        if self.path.batches() > 1 {
            return Err(Error::IncompatibleWeighting {
                strategy: self.weighting.name().to_string(),
                reason: "it needs two batches per step: use Trainer::train_step_pair, or train_epoch / fit".into(),
            });
        }
        self.step(batch, &[])
    }

    fn train_epoch(&mut self, data: TaskData<'_>) -> Result<EpochReport> {
        self.run_epoch(data, None)
    }

    fn evaluate(&mut self, data: TaskData<'_>) -> Result<EvalReport> {
        self.evaluate_data(data)
    }
}
