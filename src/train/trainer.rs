use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::checkpoint;
use super::schedule::Plateau;
use super::{
    EpochLength, EpochReport, EvalReport, FitReport, MultiTaskTrainer, NonFinitePolicy, StepBatch,
    StepReport, TaskData, TaskEvaluation, TaskOrder, TrainerConfig, TrainingMode,
};
use super::{HeadRegularizer, LrSchedule, Observer};
use crate::data::{prefetch, sequential_batches, shuffled_batches, Batch, TensorDataset};
use crate::encoder::Representation;
use crate::error::{Error, Result};
use crate::grad::{
    flatten, unflatten_into, weighted_sum, GradientSource, GradientStats, TaskGradients,
};
use crate::metrics::Metric;
use crate::metrics::MetricAccumulator;
use crate::model::{representation_for, Component, MultiTaskModel, HEADS_PREFIX};
use crate::optim::Optimizer;
use crate::weighting::{
    check_compatible, validate_weights, AfterStep, Decision, InputMode, StepInput, TaskWeighting,
    WeightingSetup,
};

/// The built-in trainer: joint training of every task at every step.
///
/// Per step: forward every task, check the losses are finite, let the weighting strategy
/// decide, compute the update the decision asks for, and take one optimiser step.
/// - loss-based strategies: one backward pass of `sum_k w_k L_k`;
/// - [`GradientSource::SharedParameters`]: one backward pass per task, the `(K, d)` matrix of
///   encoder gradients handed to the strategy;
/// - [`GradientSource::Representation`]: heads run on a detached copy of the representation,
///   one cheap backward per task to it, then one encoder backward of the combined gradient.
///
/// Reproducible on the CPU: parameters come from the model's seed, the data order and the
/// strategy's generator from [`TrainerConfig::seed`].
pub struct Trainer {
    model: MultiTaskModel,
    weighting: Box<dyn TaskWeighting>,
    optimizer: Optimizer,
    config: TrainerConfig,
    gradient_source: Option<GradientSource>,
    losses_after_step: bool,
    weighting_vars: Vec<(String, Var)>,
    last_gradient_stats: Option<GradientStats>,
    batches_per_step: usize,
    meta_validation: Option<TensorDataset>,
    meta_rng: ChaCha8Rng,
    observers: Vec<Box<dyn Observer>>,
    /// Multiplier of the base learning rate from `ReduceOnPlateau`.
    lr_scale: f64,
    /// Fraction of the current epoch done (for per-step schedules).
    epoch_progress: f64,
    step: u64,
    epoch: usize,
    rng: ChaCha8Rng,
    /// Tasks trained by joint steps (all of them, or those that joined in progressive mode).
    active: Vec<usize>,
}

/// Forward pass of one step over the tasks it trains: losses (in the order of those tasks),
/// plus what the representation path needs.
struct Forward {
    losses: Vec<Tensor>,
    /// Representation path: encoder outputs (with graph) and their detached leaves.
    representation: Option<(Vec<Tensor>, Vec<Var>)>,
}

impl Trainer {
    /// A trainer for `model` with `weighting`; refuses invalid configuration and a strategy
    /// whose needs the setup cannot meet, naming both.
    pub fn new(
        model: MultiTaskModel,
        weighting: Box<dyn TaskWeighting>,
        config: TrainerConfig,
    ) -> Result<Self> {
        Self::build(model, weighting, config, None)
    }

    fn build(
        model: MultiTaskModel,
        mut weighting: Box<dyn TaskWeighting>,
        config: TrainerConfig,
        meta_validation: Option<TensorDataset>,
    ) -> Result<Self> {
        config.validate()?;
        config.mode.validate(&model.task_names())?;
        let active = active_tasks(&config.mode, &model.task_names(), 0);
        let needs = weighting.needs();
        let strategy_name = weighting.name().to_string();
        let refuse = |reason: String| Error::IncompatibleWeighting {
            strategy: strategy_name.clone(),
            reason,
        };
        let gradient_source = match config.gradient_source {
            Some(s) => Some(s),
            None => needs.gradients.first().copied(),
        };
        let batches_per_step = needs.batches_per_step.clamp(1, MAX_BATCHES_PER_STEP);
        let names = model.task_names();
        let setup = WeightingSetup {
            task_names: active.iter().map(|&k| names[k].clone()).collect(),
            gradient_source,
            input_mode: config.input_mode,
            batches_per_step,
        };
        if let TrainingMode::Alternating(_) = config.mode {
            if !needs.is_loss_only() || needs.meta_validation || batches_per_step > 1 {
                return Err(refuse(
                    "alternating training trains one task per step on its own loss and does not consult                      the strategy; use a loss-based strategy such as 'equal'"
                        .into(),
                ));
            }
        } else {
            check_compatible(weighting.as_ref(), &setup)?;
        }
        if matches!(config.mode, TrainingMode::Progressive(_))
            && (needs.meta_validation || batches_per_step > 1)
        {
            return Err(refuse(
                "progressive training supports strategies that take one batch and no validation set"
                    .into(),
            ));
        }
        match gradient_source {
            Some(GradientSource::Representation) if config.input_mode == InputMode::MultiInput => {
                return Err(refuse(
                    "representation gradients need single-input mode (one representation of one batch); \
                     in multi-input mode use shared-parameter gradients"
                        .into(),
                ))
            }
            Some(GradientSource::Representation) if batches_per_step > 1 => {
                return Err(refuse(
                    "cross-batch strategies compare shared-parameter gradients of two batches; \
                     representation gradients of different batches are not comparable"
                        .into(),
                ))
            }
            Some(GradientSource::SharedParameters) if model.shared_vars().is_empty() => {
                return Err(refuse("it needs shared-parameter gradients but the encoder has no parameters".into()))
            }
            _ => {}
        }
        if !needs.meta_validation && meta_validation.is_some() {
            return Err(refuse(
                "it does not learn from a validation set; build the trainer with Trainer::new"
                    .into(),
            ));
        }
        if needs.meta_validation && meta_validation.is_none() {
            return Err(refuse(
                "it learns its weights on a validation set: build the trainer with Trainer::with_meta_validation".into(),
            ));
        }
        if needs.meta_validation
            && (!needs.is_loss_only() || config.input_mode != InputMode::SingleInput)
        {
            return Err(refuse(
                "meta-learned weights are supported for loss-based weighting in single-input mode"
                    .into(),
            ));
        }
        if !matches!(config.mode, TrainingMode::Alternating(_)) {
            weighting.prepare(&setup)?;
        }
        weighting.seed(derive_seed(config.seed, WEIGHTING_SEED_STREAM));
        let weighting_vars: Vec<(String, Var)> = weighting
            .parameters()
            .into_iter()
            .map(|(n, v)| (format!("weighting.{n}"), v))
            .collect();
        if matches!(config.mode, TrainingMode::Progressive(_)) && !weighting_vars.is_empty() {
            return Err(refuse(
                "it learns parameters per task, which progressive training cannot extend when a task joins"
                    .into(),
            ));
        }
        let mut params = model.params().named_vars();
        params.extend(weighting_vars.iter().cloned());
        let optimizer = Optimizer::new(config.optimizer.clone(), params)?;
        let meta_rng = ChaCha8Rng::seed_from_u64(derive_seed(config.seed, META_SEED_STREAM));
        let mut trainer = Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            losses_after_step: needs.losses_after_step,
            model,
            weighting,
            optimizer,
            config,
            gradient_source,
            weighting_vars,
            last_gradient_stats: None,
            batches_per_step,
            meta_validation,
            meta_rng,
            observers: Vec::new(),
            lr_scale: 1.0,
            epoch_progress: 0.0,
            step: 0,
            epoch: 0,
            active,
        };
        trainer.apply_unfreeze_schedule()?;
        Ok(trainer)
    }

    /// A trainer whose strategy learns its weights on `validation` (strategies with
    /// [`Needs::meta_validation`](crate::weighting::Needs::meta_validation), such as
    /// [`AutoLambda`](crate::weighting::AutoLambda)): each step draws a batch of it, seeded.
    /// `validation` must hold a target for every task and should not overlap the training set.
    pub fn with_meta_validation(
        model: MultiTaskModel,
        weighting: Box<dyn TaskWeighting>,
        config: TrainerConfig,
        validation: TensorDataset,
    ) -> Result<Self> {
        let trainer = Self::build(model, weighting, config, Some(validation))?;
        if let Some(v) = &trainer.meta_validation {
            trainer.check_data(TaskData::Shared(v))?;
        }
        Ok(trainer)
    }

    /// Writes a checkpoint of the whole run to `path` (atomically: a crash leaves the previous
    /// file intact): model parameters, the strategy's learned parameters and state, the
    /// optimiser's per-parameter state, the step and epoch counters and the generators of the
    /// data order and meta-validation batches; the metadata records the format, the crate
    /// version, the tasks, the strategy and the configuration.
    ///
    /// Taken between epochs (or between manual steps), it lets
    /// [`load_checkpoint`](Self::load_checkpoint) continue the run exactly.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (name, var) in self.model.params().named_vars() {
            tensors.push((format!("model.{name}"), var.as_tensor().clone()));
        }
        for (name, var) in &self.weighting_vars {
            tensors.push((format!("params.{name}"), var.as_tensor().clone()));
        }
        for (name, t) in self.optimizer.state_tensors()? {
            tensors.push((format!("optim.{name}"), t));
        }
        for (name, values) in self.weighting.state()? {
            let n = values.len();
            tensors.push((
                format!("strategy.{name}"),
                Tensor::from_vec(values, n, &Device::Cpu)?,
            ));
        }
        tensors.push((
            "trainer.counters".into(),
            Tensor::from_vec(vec![self.step as i64, self.epoch as i64], 2, &Device::Cpu)?,
        ));
        tensors.push((
            "trainer.lr_scale".into(),
            Tensor::from_vec(vec![self.lr_scale], 1, &Device::Cpu)?,
        ));
        tensors.push(("trainer.rng".into(), checkpoint::rng_to_tensor(&self.rng)?));
        tensors.push((
            "trainer.meta_rng".into(),
            checkpoint::rng_to_tensor(&self.meta_rng)?,
        ));
        let metadata = HashMap::from([
            ("format".to_string(), checkpoint::FORMAT.to_string()),
            (
                "crate_version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            ("tasks".to_string(), self.model.task_names().join(",")),
            ("weighting".to_string(), self.weighting.name().to_string()),
            ("step".to_string(), self.step.to_string()),
            ("epoch".to_string(), self.epoch.to_string()),
            ("config".to_string(), format!("{:?}", self.config)),
        ]);
        checkpoint::save(path.as_ref(), tensors, metadata)
    }

    /// Restores a checkpoint written by [`save_checkpoint`](Self::save_checkpoint) into this
    /// trainer, which must have been built the same way (same tasks, model and strategy).
    /// Refuses, changing nothing, a checkpoint whose parameters differ in names or shapes,
    /// listing every difference.
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (tensors, metadata) = checkpoint::load(path, self.model.device())?;
        let mut expected: Vec<(String, Var)> = self
            .model
            .params()
            .named_vars()
            .into_iter()
            .map(|(n, v)| (format!("model.{n}"), v))
            .collect();
        expected.extend(
            self.weighting_vars
                .iter()
                .map(|(n, v)| (format!("params.{n}"), v.clone())),
        );
        let mut differences = Vec::new();
        for (name, var) in &expected {
            match tensors.get(name) {
                None => differences.push(format!(
                    "{name} {:?} is missing from the checkpoint",
                    var.dims()
                )),
                Some(t) if t.dims() != var.dims() => differences.push(format!(
                    "{name}: checkpoint {:?}, model {:?}",
                    t.dims(),
                    var.dims()
                )),
                Some(_) => {}
            }
        }
        for (name, t) in &tensors {
            let is_param = name.starts_with("model.") || name.starts_with("params.");
            if is_param && !expected.iter().any(|(n, _)| n == name) {
                differences.push(format!(
                    "{name} {:?} is in the checkpoint but not in the model",
                    t.dims()
                ));
            }
        }
        if let Some(w) = metadata.get("weighting") {
            if w != self.weighting.name() {
                differences.push(format!(
                    "weighting: checkpoint '{w}', trainer '{}'",
                    self.weighting.name()
                ));
            }
        }
        if !differences.is_empty() {
            differences.sort();
            return Err(Error::malformed(
                path,
                format!(
                    "does not match this trainer:\n  {}",
                    differences.join("\n  ")
                ),
            ));
        }
        let get = |name: &str| -> Result<&Tensor> {
            tensors
                .get(name)
                .ok_or_else(|| Error::malformed(path, format!("has no entry {name}")))
        };
        let counters = get("trainer.counters")?
            .to_dtype(DType::I64)?
            .to_vec1::<i64>()?;
        let rng = checkpoint::rng_from_tensor(get("trainer.rng")?, path, "trainer.rng")?;
        let meta_rng =
            checkpoint::rng_from_tensor(get("trainer.meta_rng")?, path, "trainer.meta_rng")?;
        let strategy_state: HashMap<String, Vec<f64>> = tensors
            .iter()
            .filter_map(|(n, t)| n.strip_prefix("strategy.").map(|k| (k.to_string(), t)))
            .map(|(k, t)| Ok((k, t.to_dtype(DType::F64)?.to_vec1::<f64>()?)))
            .collect::<Result<_>>()?;
        // Everything is validated; now write.
        for (name, var) in &expected {
            var.set(&get(name)?.to_dtype(var.dtype())?)?;
        }
        self.optimizer
            .load_state_tensors(&|n| tensors.get(&format!("optim.{n}")).cloned())?;
        self.step = counters.first().copied().unwrap_or(0).max(0) as u64;
        self.epoch = counters.get(1).copied().unwrap_or(0).max(0) as usize;
        self.begin_epoch()?;
        self.weighting.load_state(&strategy_state)?;
        self.rng = rng;
        self.meta_rng = meta_rng;
        if let Some(t) = tensors.get("trainer.lr_scale") {
            self.lr_scale = t
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?
                .first()
                .copied()
                .unwrap_or(1.0);
        }
        Ok(())
    }

    /// Adds an observer of steps and epochs (metric logs, dashboards); see
    /// [`JsonlLog`](super::JsonlLog) and [`CsvLog`](super::CsvLog).
    pub fn add_observer(&mut self, observer: Box<dyn Observer>) {
        self.observers.push(observer);
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
        self.gradient_source
    }

    /// Steps taken so far.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// Epochs completed so far.
    pub fn epochs_done(&self) -> usize {
        self.epoch
    }

    /// The configuration.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    fn num_tasks(&self) -> usize {
        self.model.tasks().len()
    }

    /// Inputs, target and label mask (if any) of task `k` in `batch`.
    fn task_batch<'b>(
        &self,
        batch: &'b StepBatch,
        k: usize,
    ) -> Result<(&'b Tensor, &'b Tensor, Option<&'b Tensor>)> {
        let name = self.model.tasks()[k].name();
        let b = match batch {
            StepBatch::Shared(b) => b,
            StepBatch::PerTask(bs) => bs.get(k).ok_or_else(|| {
                Error::DataMismatch(format!(
                    "{} per-task batches for {} tasks",
                    bs.len(),
                    self.num_tasks()
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

    fn check_batch_mode(&self, batch: &StepBatch) -> Result<()> {
        if let StepBatch::Task { task, .. } = batch {
            if !matches!(self.config.mode, TrainingMode::Alternating(_)) {
                return Err(Error::DataMismatch(
                    "a single-task batch (StepBatch::Task) needs TrainingMode::Alternating".into(),
                ));
            }
            if *task >= self.num_tasks() {
                return Err(Error::DataMismatch(format!(
                    "StepBatch::Task names task index {task}, the model has {} tasks",
                    self.num_tasks()
                )));
            }
            return Ok(());
        }
        match (batch, self.config.input_mode) {
            (StepBatch::Shared(_), InputMode::SingleInput) => Ok(()),
            (StepBatch::PerTask(bs), InputMode::MultiInput) if bs.len() == self.num_tasks() => {
                Ok(())
            }
            (StepBatch::PerTask(bs), InputMode::MultiInput) => Err(Error::DataMismatch(format!(
                "{} per-task batches for {} tasks",
                bs.len(),
                self.num_tasks()
            ))),
            (_, mode) => Err(Error::DataMismatch(format!(
                "the trainer is configured for {mode:?} but got {} batch",
                if matches!(batch, StepBatch::Shared(_)) {
                    "a shared"
                } else {
                    "per-task"
                }
            ))),
        }
    }

    /// Forward pass of every task. With `detach_representation`, heads read detached leaves of
    /// the representation (the representation-gradient path).
    fn forward(
        &self,
        batch: &StepBatch,
        active: &[usize],
        train: bool,
        detach_representation: bool,
    ) -> Result<Forward> {
        let mut losses = Vec::with_capacity(active.len());
        let mut encoded = Vec::new();
        let mut leaves = Vec::new();
        let shared_rep = match batch {
            StepBatch::Shared(b) if !self.model.has_stems() => {
                Some(self.model.encode(&b.inputs, train)?)
            }
            _ => None,
        };
        let mut shared_leaf: Option<Var> = None;
        for &k in active {
            let (inputs, target, mask) = self.task_batch(batch, k)?;
            let own_rep;
            let rep = match &shared_rep {
                Some(r) => r,
                None => {
                    own_rep = self.model.encode_for_task(inputs, k, train)?;
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
            let task = &self.model.tasks()[k];
            let pred = self.model.predict(k, &head_input, train)?;
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

    fn loss_values(&self, losses: &[Tensor], active: &[usize]) -> Result<Vec<f64>> {
        let mut values = Vec::with_capacity(losses.len());
        for (j, l) in losses.iter().enumerate() {
            let v = f64::from(l.to_dtype(DType::F32)?.to_scalar::<f32>()?);
            if !v.is_finite() {
                return Err(Error::NonFinite {
                    quantity: "loss",
                    task: self.task_name(active, j),
                    step: self.step,
                    value: v,
                });
            }
            values.push(v);
        }
        Ok(values)
    }

    /// Checks the per-task gradients are finite (from the Gramian's diagonal) and records
    /// their statistics for the step report.
    fn check_gradients(&mut self, gradients: &TaskGradients, active: &[usize]) -> Result<()> {
        let stats = GradientStats::from_gramian(&gradients.gramian()?);
        if let Some((j, v)) = stats.norms.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                quantity: "gradient",
                task: self.task_name(active, j),
                step: self.step,
                value: *v,
            });
        }
        self.last_gradient_stats = Some(stats);
        Ok(())
    }

    /// A combined gradient must be finite.
    fn check_direction(&self, d: &Tensor) -> Result<()> {
        let norm = f64::from(
            d.sqr()?
                .sum_all()?
                .to_dtype(DType::F32)?
                .to_scalar::<f32>()?,
        );
        if !norm.is_finite() {
            return Err(self.invalid(format!(
                "the combined gradient has a non-finite norm ({norm})"
            )));
        }
        Ok(())
    }

    /// Name of the `j`-th task of `active`.
    fn task_name(&self, active: &[usize], j: usize) -> String {
        active
            .get(j)
            .and_then(|&k| self.model.tasks().get(k))
            .map_or_else(|| format!("#{j}"), |t| t.name().to_string())
    }

    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidDecision {
            strategy: self.weighting.name().to_string(),
            reason: reason.into(),
        }
    }

    /// Gradient of `sum_k w_k L_k` through one backward pass.
    fn loss_based_update(
        &mut self,
        fwd: &Forward,
        input: StepInput,
    ) -> Result<(GradStore, Option<Vec<f64>>)> {
        let weights = match self.weighting.decide(&input)? {
            Decision::Weights(w) => w,
            Decision::Direction(_) => {
                return Err(self.invalid("returned a combined gradient but asked for no gradients (Needs::gradients is empty)"))
            }
        };
        validate_weights(self.weighting.name(), &weights, fwd.losses.len())?;
        let mut total: Option<Tensor> = None;
        for (l, &w) in fwd.losses.iter().zip(&weights) {
            let term = l.affine(w, 0.0)?;
            total = Some(match total {
                Some(t) => (t + term)?,
                None => term,
            });
        }
        let grads = match total {
            Some(t) => t.backward()?,
            None => GradStore::default(),
        };
        Ok((grads, Some(weights)))
    }

    /// Per-task backward passes to the shared parameters, then the strategy's combination.
    fn shared_parameter_update(
        &mut self,
        fwd: &Forward,
        losses: &[f64],
        second: Option<&TaskGradients>,
        active: &[usize],
    ) -> Result<(GradStore, Option<Vec<f64>>)> {
        let shared = self.trainable_shared()?;
        let stores = fwd
            .losses
            .iter()
            .map(|l| Ok(l.backward()?))
            .collect::<Result<Vec<_>>>()?;
        let rows = stores
            .iter()
            .map(|s| flatten(s, &shared))
            .collect::<Result<Vec<_>>>()?;
        let matrix = Tensor::stack(&rows, 0)?;
        let gradients = TaskGradients::new(GradientSource::SharedParameters, matrix)?;
        self.check_gradients(&gradients, active)?;
        let input = StepInput {
            step: self.step,
            epoch: self.epoch,
            losses,
            gradients: Some(&gradients),
            second_gradients: second,
        };
        let all_vars = self.model.params().named_vars();
        match self.weighting.decide(&input)? {
            Decision::Weights(w) => {
                validate_weights(self.weighting.name(), &w, active.len())?;
                Ok((weighted_sum(&stores, &w, &all_vars)?, Some(w)))
            }
            Decision::Direction(d) => {
                self.check_direction(&d)?;
                let mut combined = GradStore::default();
                unflatten_into(&d, &shared, &mut combined)
                    .map_err(|e| self.invalid(e.to_string()))?;
                for (store, &k) in stores.iter().zip(active) {
                    for (_, var) in self.model.task_vars(k) {
                        if let Some(g) = store.get(&var) {
                            combined.insert(var.as_tensor(), g.clone());
                        }
                    }
                }
                Ok((combined, None))
            }
        }
    }

    /// Per-task backward passes to the representation, then one encoder backward.
    fn representation_update(
        &mut self,
        fwd: &Forward,
        losses: &[f64],
        active: &[usize],
    ) -> Result<(GradStore, Option<Vec<f64>>)> {
        let Some((encoded, leaves)) = &fwd.representation else {
            return Err(self.invalid("representation path without a representation"));
        };
        let k_tasks = active.len();
        let stores = fwd
            .losses
            .iter()
            .map(|l| Ok(l.backward()?))
            .collect::<Result<Vec<_>>>()?;
        // Row k: dL_k / d(representation task k reads).
        let leaf_of = |k: usize| {
            if leaves.len() == 1 {
                &leaves[0]
            } else {
                &leaves[k]
            }
        };
        let rows = (0..k_tasks)
            .map(|k| match stores[k].get(leaf_of(k)) {
                // Detached: candle leaves the graph of the heads on gradients of leaves.
                Some(g) => Ok(g.detach().flatten_all()?),
                None => Ok(leaf_of(k).as_tensor().zeros_like()?.flatten_all()?),
            })
            .collect::<Result<Vec<_>>>()?;
        if rows.iter().any(|r| r.dims() != rows[0].dims()) {
            return Err(Error::DataMismatch(
                "per-task representations differ in size; representation gradients need equal sizes".into(),
            ));
        }
        let matrix = Tensor::stack(&rows, 0)?;
        let gradients = TaskGradients::new(GradientSource::Representation, matrix)?;
        self.check_gradients(&gradients, active)?;
        let input = StepInput {
            step: self.step,
            epoch: self.epoch,
            losses,
            gradients: Some(&gradients),
            second_gradients: None,
        };
        let decision = self.weighting.decide(&input)?;
        let (head_weights, surrogate) = match &decision {
            Decision::Weights(w) => {
                validate_weights(self.weighting.name(), w, k_tasks)?;
                let mut surrogate: Option<Tensor> = None;
                for (k, &wk) in w.iter().enumerate() {
                    let z = if encoded.len() == 1 {
                        &encoded[0]
                    } else {
                        &encoded[k]
                    };
                    let g = rows[k].affine(wk, 0.0)?.reshape(z.shape())?;
                    let term = (z * g)?.sum_all()?;
                    surrogate = Some(match surrogate {
                        Some(s) => (s + term)?,
                        None => term,
                    });
                }
                (w.clone(), surrogate)
            }
            Decision::Direction(d) => {
                self.check_direction(d)?;
                if encoded.len() != 1 {
                    return Err(self.invalid(
                        "a combined representation gradient needs one shared representation, \
                         the encoder gives one per task",
                    ));
                }
                let z = &encoded[0];
                if d.elem_count() != z.elem_count() {
                    return Err(self.invalid(format!(
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
        for (j, (store, &k)) in stores.iter().zip(active).enumerate() {
            for (_, var) in self.model.task_vars(k) {
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
        Ok((combined, weights))
    }

    /// Auto-Lambda's meta step (see [`AutoLambda`](crate::weighting::AutoLambda)): a virtual
    /// step with `grads`, the validation gradient there, and finite differences of the training
    /// losses along it give the gradient of the validation loss with respect to each task
    /// weight. Parameters are restored before returning.
    fn meta_step(&mut self, batch: &StepBatch, grads: &GradStore) -> Result<()> {
        let Some(validation) = &self.meta_validation else {
            return Err(self.invalid(
                "it needs a meta-validation set: build the trainer with Trainer::with_meta_validation",
            ));
        };
        let vars = self.model.params().named_vars();
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
        let alpha = self.optimizer.learning_rate();
        let shift = |scale: f64, by: &GradStore| -> Result<()> {
            for ((_, v), t) in vars.iter().zip(&saved) {
                if let Some(g) = by.get(v) {
                    v.set(&(t + g.detach().affine(scale, 0.0)?)?)?;
                }
            }
            Ok(())
        };
        let idx = shuffled_batches(
            validation.len(),
            self.config.batch_size,
            false,
            &mut self.meta_rng,
        )
        .into_iter()
        .next()
        .unwrap_or_default();
        let val_batch = StepBatch::Shared(validation.batch(&idx, self.model.device())?);
        let all_tasks: Vec<usize> = (0..self.num_tasks()).collect();
        let tasks: Vec<usize> = self
            .weighting
            .meta_objective_tasks()
            .unwrap_or_else(|| all_tasks.clone());
        // Virtual step, then the validation gradient there.
        shift(-alpha, grads)?;
        let result = (|| -> Result<Vec<f64>> {
            let fwd = self.forward(&val_batch, &all_tasks, true, false)?;
            let mut objective: Option<Tensor> = None;
            for &k in &tasks {
                let l = fwd
                    .losses
                    .get(k)
                    .ok_or_else(|| self.invalid(format!("meta task {k} out of range")))?;
                objective = Some(match objective {
                    Some(o) => (o + l)?,
                    None => l.clone(),
                });
            }
            let v = match objective {
                Some(o) => o.backward()?,
                None => GradStore::default(),
            };
            restore(&vars)?;
            let norm_sq: f64 = vars
                .iter()
                .filter_map(|(_, var)| v.get(var))
                .map(|g| {
                    Ok(f64::from(
                        g.sqr()?
                            .sum_all()?
                            .to_dtype(DType::F32)?
                            .to_scalar::<f32>()?,
                    ))
                })
                .sum::<Result<f64>>()?;
            if !(norm_sq.is_finite() && norm_sq > 0.0) {
                return Ok(vec![0.0; self.num_tasks()]);
            }
            let eps = 0.01 / norm_sq.sqrt();
            // Evaluation mode for the two passes, so that dropout masks do not differ.
            shift(eps, &v)?;
            let plus = self.loss_values(
                &self.forward(batch, &all_tasks, false, false)?.losses,
                &all_tasks,
            )?;
            shift(-eps, &v)?;
            let minus = self.loss_values(
                &self.forward(batch, &all_tasks, false, false)?.losses,
                &all_tasks,
            )?;
            Ok(plus
                .iter()
                .zip(&minus)
                .map(|(p, m)| -alpha * (p - m) / (2.0 * eps))
                .collect())
        })();
        restore(&vars)?;
        let gradient = result?;
        self.weighting.meta_gradient(&gradient)
    }

    /// The per-task shared-parameter gradients of a second, independent batch.
    fn second_batch_gradients(&mut self, batch: &StepBatch) -> Result<TaskGradients> {
        self.check_batch_mode(batch)?;
        let active = self.active.clone();
        let fwd = self.forward(batch, &active, true, false)?;
        self.loss_values(&fwd.losses, &active)?;
        let shared = self.trainable_shared()?;
        let rows = fwd
            .losses
            .iter()
            .map(|l| flatten(&l.backward()?, &shared))
            .collect::<Result<Vec<_>>>()?;
        let gradients =
            TaskGradients::new(GradientSource::SharedParameters, Tensor::stack(&rows, 0)?)?;
        self.check_gradients(&gradients, &active)?;
        Ok(gradients)
    }

    /// The shared parameters that are not frozen; an error when the whole encoder is.
    fn trainable_shared(&self) -> Result<Vec<(String, Var)>> {
        let shared = self.model.trainable_shared_vars();
        if shared.is_empty() {
            return Err(Error::IncompatibleWeighting {
                strategy: self.weighting.name().to_string(),
                reason: "it compares shared-parameter gradients but the whole encoder is frozen; \
                         unfreeze a layer or use a loss-based strategy while it is frozen"
                    .into(),
            });
        }
        Ok(shared)
    }

    fn check_data(&self, data: TaskData<'_>) -> Result<()> {
        let tasks = self.model.tasks();
        let datasets: Vec<&TensorDataset> = match (data, self.config.input_mode) {
            (TaskData::Shared(ds), InputMode::SingleInput) => vec![ds; tasks.len()],
            (TaskData::PerTask(dss), InputMode::MultiInput) if dss.len() == tasks.len() => dss.iter().collect(),
            (TaskData::PerTask(dss), InputMode::MultiInput) => {
                return Err(Error::DataMismatch(format!(
                    "{} datasets for {} tasks ({}); multi-input mode needs one per task, in task order",
                    dss.len(),
                    tasks.len(),
                    self.model.task_names().join(", ")
                )))
            }
            (_, mode) => {
                return Err(Error::DataMismatch(format!(
                    "the trainer is configured for {mode:?}; give TaskData::{}",
                    if mode == InputMode::SingleInput { "Shared" } else { "PerTask" }
                )))
            }
        };
        for (task, ds) in tasks.iter().zip(datasets) {
            if ds.is_empty() {
                return Err(Error::DataMismatch(format!(
                    "the dataset of task '{}' is empty",
                    task.name()
                )));
            }
            let target = ds.target(task.name()).ok_or_else(|| {
                Error::DataMismatch(format!(
                    "dataset has no target for task '{}' (targets: {})",
                    task.name(),
                    ds.target_names().join(", ")
                ))
            })?;
            if task.spec().loss.is_classification() {
                if !matches!(target.dtype(), DType::U32 | DType::I64 | DType::U8) {
                    return Err(Error::DataMismatch(format!(
                        "targets of classification task '{}' must be class indices (u32), got {:?}",
                        task.name(),
                        target.dtype()
                    )));
                }
                let as_f64 = target.to_dtype(DType::F64)?;
                // Unlabelled samples may hold any placeholder: only labelled ones are checked.
                let as_f64 = match ds.label_mask(task.name()) {
                    Some(m) => m
                        .to_dtype(DType::F64)?
                        .ne(0f64)?
                        .where_cond(&as_f64, &as_f64.zeros_like()?)?,
                    None => as_f64,
                };
                let max = as_f64.max_all()?.to_scalar::<f64>()?;
                let min = as_f64.min_all()?.to_scalar::<f64>()?;
                let classes = task.head().output_dim();
                if min < 0.0 {
                    return Err(Error::DataMismatch(format!(
                        "task '{}' has a negative target class {min}",
                        task.name()
                    )));
                }
                if max as usize >= classes {
                    return Err(Error::DataMismatch(format!(
                        "task '{}' has a target class {max} but its head has {classes} outputs",
                        task.name()
                    )));
                }
            }
        }
        Ok(())
    }

    fn batch_plan(&mut self, len: usize) -> Vec<Vec<u32>> {
        shuffled_batches(
            len,
            self.config.batch_size,
            self.config.drop_last,
            &mut self.rng,
        )
    }
}

impl Trainer {
    /// One step of a cross-batch strategy (MoDo, SDMGrad): `second` is an independent batch
    /// whose per-task gradients the strategy compares with those of `batch`
    /// ([`StepInput::second_gradients`]); the update is computed on `batch`.
    pub fn train_step_pair(&mut self, batch: &StepBatch, second: &StepBatch) -> Result<StepReport> {
        if self.batches_per_step != 2 {
            return Err(Error::IncompatibleWeighting {
                strategy: self.weighting.name().to_string(),
                reason: "it takes one batch per step: use train_step".into(),
            });
        }
        self.step_inner(batch, Some(second))
    }

    fn step_inner(&mut self, batch: &StepBatch, second: Option<&StepBatch>) -> Result<StepReport> {
        self.check_batch_mode(batch)?;
        let base = self.config.optimizer.lr() * self.lr_scale;
        let lr = self
            .config
            .lr_schedule
            .rate(base, self.step, self.epoch, self.epoch_progress);
        self.optimizer.set_learning_rate(lr)?;
        self.last_gradient_stats = None;
        let active = self.step_tasks(batch)?;
        let samples = match batch {
            StepBatch::Shared(b) => b.len(),
            StepBatch::PerTask(bs) => active
                .iter()
                .filter_map(|&k| bs.get(k))
                .map(Batch::len)
                .sum(),
            StepBatch::Task { batch, .. } => batch.len(),
        };
        let computed = self
            .compute_update(batch, second, &active)
            .and_then(|mut update| {
                let grad_norm = match self.config.max_grad_norm {
                    Some(max) => Some(self.clip_gradients(&mut update.grads, max)?),
                    None => None,
                };
                Ok((update, grad_norm))
            });
        let (update, grad_norm) = match computed {
            Ok(c) => c,
            Err(e @ Error::NonFinite { .. }) if self.config.non_finite == NonFinitePolicy::Skip => {
                // Nothing was applied: parameters, optimiser and strategy are as before.
                let _ = e;
                let report = StepReport {
                    step: self.step,
                    losses: vec![f64::NAN; self.num_tasks()],
                    weights: None,
                    samples,
                    gradient_stats: self.last_gradient_stats.take(),
                    grad_norm: None,
                    regularization: None,
                    skipped: true,
                };
                self.step += 1;
                self.notify_step(&report)?;
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        if self.meta_validation.is_some() {
            self.meta_step(batch, &update.grads)?;
        }
        self.apply_update(batch, &active, update, samples, grad_norm)
    }

    /// The tasks a step on `batch` trains.
    fn step_tasks(&mut self, batch: &StepBatch) -> Result<Vec<usize>> {
        let k_tasks = self.num_tasks();
        match (&self.config.mode, batch) {
            (_, StepBatch::Task { task, .. }) => Ok(vec![*task]),
            (TrainingMode::Alternating(TaskOrder::RoundRobin), StepBatch::Shared(_)) => {
                Ok(vec![(self.step % k_tasks as u64) as usize])
            }
            (TrainingMode::Alternating(TaskOrder::Proportional), StepBatch::Shared(_)) => {
                Ok(vec![self.rng.random_range(0..k_tasks)])
            }
            (TrainingMode::Alternating(_), StepBatch::PerTask(_)) => Err(Error::DataMismatch(
                "alternating training in multi-input mode takes one task's batch per step: \
                 give StepBatch::Task"
                    .into(),
            )),
            _ => Ok(self.active.clone()),
        }
    }

    fn is_alternating(&self) -> bool {
        matches!(self.config.mode, TrainingMode::Alternating(_))
    }

    /// Forward, losses (checked finite), the strategy's decision and the gradients it asks for,
    /// head penalties; nothing is applied yet.
    fn compute_update(
        &mut self,
        batch: &StepBatch,
        second: Option<&StepBatch>,
        active: &[usize],
    ) -> Result<Update> {
        let alternating = self.is_alternating();
        let representation =
            !alternating && self.gradient_source == Some(GradientSource::Representation);
        let fwd = self.forward(batch, active, true, representation)?;
        let losses = self.loss_values(&fwd.losses, active)?;
        let source = if alternating {
            None
        } else {
            self.gradient_source
        };
        let (mut grads, weights) = match source {
            None if alternating => {
                let mut total: Option<Tensor> = None;
                for l in &fwd.losses {
                    total = Some(match total {
                        Some(t) => (t + l)?,
                        None => l.clone(),
                    });
                }
                let grads = match total {
                    Some(t) => t.backward()?,
                    None => GradStore::default(),
                };
                (grads, Some(vec![1.0; fwd.losses.len()]))
            }
            None => {
                let input = StepInput {
                    step: self.step,
                    epoch: self.epoch,
                    losses: &losses,
                    gradients: None,
                    second_gradients: None,
                };
                self.loss_based_update(&fwd, input)?
            }
            Some(GradientSource::SharedParameters) => {
                let second_gradients = match second {
                    Some(b) => Some(self.second_batch_gradients(b)?),
                    None => None,
                };
                self.shared_parameter_update(&fwd, &losses, second_gradients.as_ref(), active)?
            }
            Some(GradientSource::Representation) => {
                self.representation_update(&fwd, &losses, active)?
            }
        };
        if !self.weighting_vars.is_empty() && !alternating {
            let detached = fwd.losses.iter().map(Tensor::detach).collect::<Vec<_>>();
            if let Some(aux) = self.weighting.auxiliary_loss(&detached)? {
                let aux_grads = aux.backward()?;
                for (_, var) in &self.weighting_vars {
                    if let Some(g) = aux_grads.get(var) {
                        grads.insert(var.as_tensor(), g.clone());
                    }
                }
            }
        }
        let regularization = match self.config.head_regularizer {
            Some(r) => Some(self.add_head_penalty(&r, active, &mut grads)?),
            None => None,
        };
        // Frozen parameters of layers that do not read them through `Param` may still have
        // received a gradient: they are not updated either way.
        for (name, var) in self.model.params().named_vars() {
            if self.model.is_frozen(&name) {
                grads.remove(var.as_tensor());
            }
        }
        Ok(Update {
            losses,
            grads,
            weights,
            regularization,
        })
    }

    /// Adds the gradient of the head penalties to `grads`; returns the penalty's value.
    fn add_head_penalty(
        &self,
        r: &HeadRegularizer,
        active: &[usize],
        grads: &mut GradStore,
    ) -> Result<f64> {
        // Same-named, same-shaped head parameters are grouped for the pull towards their mean.
        let mut groups: Vec<(String, Vec<Tensor>)> = Vec::new();
        let mut vars = Vec::new();
        let mut l1: Option<Tensor> = None;
        for &k in active {
            let prefix = format!("{HEADS_PREFIX}.{}.", self.model.tasks()[k].name());
            for (name, var) in self.model.head_vars(k) {
                if self.model.is_frozen(&name) {
                    continue;
                }
                let inner = name.strip_prefix(&prefix).unwrap_or(&name).to_string();
                let t = var.as_tensor().clone();
                if r.l1 > 0.0 && inner.ends_with("weight") {
                    let term = t.abs()?.sum_all()?;
                    l1 = Some(match l1 {
                        Some(a) => (a + term)?,
                        None => term,
                    });
                }
                let key = format!("{inner}{:?}", t.dims());
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, members)) => members.push(t),
                    None => groups.push((key, vec![t])),
                }
                vars.push(var);
            }
        }
        let mut penalty: Option<Tensor> = l1.map(|a| a.affine(r.l1, 0.0)).transpose()?;
        if r.mean_l2 > 0.0 {
            for (_, members) in groups.iter().filter(|(_, m)| m.len() > 1) {
                let stacked = Tensor::stack(members, 0)?;
                let mean = stacked.mean_keepdim(0)?;
                let term = stacked
                    .broadcast_sub(&mean)?
                    .sqr()?
                    .sum_all()?
                    .affine(r.mean_l2, 0.0)?;
                penalty = Some(match penalty {
                    Some(p) => (p + term)?,
                    None => term,
                });
            }
        }
        let Some(penalty) = penalty else {
            return Ok(0.0);
        };
        let value = f64::from(penalty.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        let penalty_grads = penalty.backward()?;
        for var in vars {
            if let Some(g) = penalty_grads.get(&var) {
                let g = match grads.remove(var.as_tensor()) {
                    Some(prev) => (prev + g)?,
                    None => g.clone(),
                };
                grads.insert(var.as_tensor(), g);
            }
        }
        Ok(value)
    }

    /// Scales `grads` so that their global L2 norm is at most `max`; returns the norm before.
    fn clip_gradients(&self, grads: &mut GradStore, max: f64) -> Result<f64> {
        let mut vars = self.model.params().named_vars();
        vars.extend(self.weighting_vars.iter().cloned());
        let mut sq = 0.0;
        for (_, v) in &vars {
            if let Some(g) = grads.get(v) {
                sq += f64::from(
                    g.sqr()?
                        .sum_all()?
                        .to_dtype(DType::F32)?
                        .to_scalar::<f32>()?,
                );
            }
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(Error::NonFinite {
                quantity: "gradient",
                task: "(all tasks, global norm)".into(),
                step: self.step,
                value: norm,
            });
        }
        if norm > max {
            let scale = max / norm;
            for (_, v) in &vars {
                if let Some(g) = grads.remove(v.as_tensor()) {
                    grads.insert(v.as_tensor(), g.affine(scale, 0.0)?);
                }
            }
        }
        Ok(norm)
    }

    /// The optimiser step and the strategy's after-step hook.
    fn apply_update(
        &mut self,
        batch: &StepBatch,
        active: &[usize],
        update: Update,
        samples: usize,
        grad_norm: Option<f64>,
    ) -> Result<StepReport> {
        let Update {
            losses,
            grads,
            weights,
            regularization,
        } = update;
        self.optimizer.step(&grads)?;
        if !self.is_alternating() {
            let losses_after = if self.losses_after_step {
                let after = self.forward(batch, active, false, false)?;
                Some(self.loss_values(&after.losses, active)?)
            } else {
                None
            };
            self.weighting.after_step(&AfterStep {
                step: self.step,
                losses_before: &losses,
                losses_after: losses_after.as_deref(),
            })?;
        }
        // Reports are in the model's task order: NaN loss and weight 0 for tasks not trained.
        let k_tasks = self.num_tasks();
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
            step: self.step,
            losses: all_losses,
            weights,
            samples,
            gradient_stats: self.last_gradient_stats.take(),
            grad_norm,
            regularization,
            skipped: false,
        };
        self.step += 1;
        self.notify_step(&report)?;
        Ok(report)
    }
}

impl Trainer {
    /// One epoch; with `eval` (data, every N steps), evaluates every N global steps and keeps
    /// the results in [`EpochReport::step_evals`].
    fn train_epoch_with_eval(
        &mut self,
        data: TaskData<'_>,
        eval: Option<(TaskData<'_>, u64)>,
    ) -> Result<EpochReport> {
        self.check_data(data)?;
        self.begin_epoch()?;
        let device = self.model.device().clone();
        let k_tasks = self.num_tasks();
        let start = Instant::now();
        let mut loss_sums = vec![0.0; k_tasks];
        let mut loss_counts = vec![0usize; k_tasks];
        let mut regularization_sum: Option<f64> = None;
        let mut weight_sums: Option<Vec<f64>> = Some(vec![0.0; k_tasks]);
        let (mut steps, mut samples) = (0usize, 0usize);
        let mut skipped = 0usize;
        let mut step_evals: Vec<(u64, EvalReport)> = Vec::new();
        let mut record = |r: &StepReport| {
            steps += 1;
            samples += r.samples;
            if r.skipped {
                skipped += 1;
                return;
            }
            for ((s, c), l) in loss_sums.iter_mut().zip(&mut loss_counts).zip(&r.losses) {
                if l.is_finite() {
                    *s += l;
                    *c += 1;
                }
            }
            if let Some(p) = r.regularization {
                *regularization_sum.get_or_insert(0.0) += p;
            }
            match (&mut weight_sums, &r.weights) {
                (Some(ws), Some(w)) => ws.iter_mut().zip(w).for_each(|(s, w)| *s += w),
                _ => weight_sums = None,
            }
        };
        // The whole epoch's batch order is fixed here, from the trainer's generator, so that
        // preparing batches on another thread cannot change it.
        let plan: Vec<Vec<Vec<u32>>> = match data {
            TaskData::Shared(ds) => self
                .batch_plan(ds.len())
                .into_iter()
                .map(|b| vec![b])
                .collect(),
            // Alternating multi-input epochs are planned per task by `assign_tasks`.
            TaskData::PerTask(_) if self.is_alternating() => Vec::new(),
            TaskData::PerTask(dss) => {
                let mut plans: Vec<Vec<Vec<u32>>> =
                    dss.iter().map(|ds| self.batch_plan(ds.len())).collect();
                let counts: Vec<usize> = plans.iter().map(Vec::len).collect();
                if let Some(k) = counts.iter().position(|&c| c == 0) {
                    return Err(Error::DataMismatch(format!(
                        "task '{}' has {} samples, not one full batch of {} (drop_last is set)",
                        self.model.tasks()[k].name(),
                        dss[k].len(),
                        self.config.batch_size
                    )));
                }
                let n_steps = match self.config.epoch_length {
                    EpochLength::CycleShorter => counts.iter().copied().max().unwrap_or(0),
                    EpochLength::StopAtShortest => counts.iter().copied().min().unwrap_or(0),
                };
                let mut cursors = vec![0usize; dss.len()];
                let mut steps_plan = Vec::with_capacity(n_steps);
                for _ in 0..n_steps {
                    let mut step = Vec::with_capacity(dss.len());
                    for (k, ds) in dss.iter().enumerate() {
                        if cursors[k] >= plans[k].len() {
                            plans[k] = self.batch_plan(ds.len());
                            cursors[k] = 0;
                        }
                        step.push(std::mem::take(&mut plans[k][cursors[k]]));
                        cursors[k] += 1;
                    }
                    steps_plan.push(step);
                }
                steps_plan
            }
        };
        let (plan, plan_tasks) = self.assign_tasks(plan, data)?;
        if plan.len() < self.batches_per_step {
            return Err(Error::DataMismatch(format!(
                "the epoch has {} batches of {} samples, fewer than the {} a step of '{}' takes",
                plan.len(),
                self.config.batch_size,
                self.batches_per_step,
                self.weighting.name()
            )));
        }
        let datasets: Vec<&TensorDataset> = match data {
            TaskData::Shared(ds) => vec![ds],
            TaskData::PerTask(dss) => dss.iter().collect(),
        };
        let mut augment_rng = if datasets.iter().any(|d| d.has_augment()) {
            Some(ChaCha8Rng::seed_from_u64(self.rng.random()))
        } else {
            None
        };
        let shared = matches!(data, TaskData::Shared(_));
        let produce = |i: usize| -> Result<StepBatch> {
            if let Some(k) = plan_tasks[i] {
                let ds = if shared { datasets[0] } else { datasets[k] };
                let idx = plan[i].first().map(Vec::as_slice).unwrap_or(&[]);
                let batch = match augment_rng.as_mut() {
                    Some(rng) => ds.training_batch(idx, &Device::Cpu, rng)?,
                    None => ds.batch(idx, &Device::Cpu)?,
                };
                return Ok(StepBatch::Task { task: k, batch });
            }
            let batches = plan[i]
                .iter()
                .zip(&datasets)
                .map(|(idx, ds)| match augment_rng.as_mut() {
                    Some(rng) => ds.training_batch(idx, &Device::Cpu, rng),
                    None => ds.batch(idx, &Device::Cpu),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(if shared {
                StepBatch::Shared(
                    batches
                        .into_iter()
                        .next()
                        .ok_or_else(|| Error::DataMismatch("empty batch plan".into()))?,
                )
            } else {
                StepBatch::PerTask(batches)
            })
        };
        // Cross-batch strategies take consecutive batches in groups (the last, incomplete group
        // is dropped); everything else one batch per step.
        let group = self.batches_per_step;
        let mut produce = produce;
        let produce_group = |i: usize| -> Result<Vec<StepBatch>> {
            (i * group..(i + 1) * group).map(&mut produce).collect()
        };
        let to_device = |batch: StepBatch| -> Result<StepBatch> {
            Ok(match batch {
                StepBatch::Shared(b) => StepBatch::Shared(b.to_device(&device)?),
                StepBatch::PerTask(bs) => StepBatch::PerTask(
                    bs.iter()
                        .map(|b| b.to_device(&device))
                        .collect::<Result<Vec<_>>>()?,
                ),
                StepBatch::Task { task, batch } => StepBatch::Task {
                    task,
                    batch: batch.to_device(&device)?,
                },
            })
        };
        let total_groups = (plan.len() / group).max(1);
        let mut done_groups = 0usize;
        for o in &mut self.observers {
            o.on_epoch_start(self.epoch, plan.len() / group)?;
        }
        let stats = prefetch(
            plan.len() / group,
            self.config.prefetch_depth,
            produce_group,
            |batches| {
                let mut batches = batches
                    .into_iter()
                    .map(to_device)
                    .collect::<Result<Vec<_>>>()?;
                self.epoch_progress = done_groups as f64 / total_groups as f64;
                done_groups += 1;
                let r = if batches.len() == 2 {
                    let second = batches
                        .pop()
                        .ok_or_else(|| Error::DataMismatch("empty group".into()))?;
                    self.train_step_pair(&batches[0], &second)?
                } else {
                    self.train_step(&batches[0])?
                };
                record(&r);
                if let Some((eval_data, every)) = eval {
                    if self.step % every == 0 {
                        let e = self.evaluate(eval_data)?;
                        for o in &mut self.observers {
                            o.on_eval(self.step, &e)?;
                        }
                        step_evals.push((self.step, e));
                    }
                }
                Ok(())
            },
        )?;
        let seconds = start.elapsed().as_secs_f64();
        let applied = (steps - skipped).max(1) as f64;
        let mean = |v: Vec<f64>| v.into_iter().map(|s| s / applied).collect::<Vec<_>>();
        let train_losses: Vec<f64> = loss_sums
            .iter()
            .zip(&loss_counts)
            .map(|(s, &c)| if c > 0 { s / c as f64 } else { f64::NAN })
            .collect();
        if !self.is_alternating() {
            let active_means: Vec<f64> = self.active.iter().map(|&k| train_losses[k]).collect();
            self.weighting.end_epoch(self.epoch, &active_means)?;
        }
        let report = EpochReport {
            epoch: self.epoch,
            task_names: self.model.task_names(),
            train_losses,
            mean_regularization: regularization_sum.map(|s| s / applied),
            mean_weights: weight_sums.map(mean),
            steps,
            skipped_steps: skipped,
            step_evals,
            learning_rate: self.optimizer.learning_rate(),
            samples,
            seconds,
            data_seconds: stats.wait_seconds,
            eval: None,
        };
        self.epoch += 1;
        Ok(report)
    }
}

impl Trainer {
    /// In alternating mode, gives each planned step the task it trains: multi-input epochs
    /// interleave every task's batches (round-robin or in a seeded proportional order),
    /// single-input epochs rotate (or draw) the task over the shared batches (`plan` is the
    /// shared batch plan; for multi-input data it is empty and replaced). Other modes leave
    /// the plan as it is (`None`: the step trains the active tasks).
    #[allow(clippy::type_complexity)]
    fn assign_tasks(
        &mut self,
        plan: Vec<Vec<Vec<u32>>>,
        data: TaskData<'_>,
    ) -> Result<(Vec<Vec<Vec<u32>>>, Vec<Option<usize>>)> {
        let TrainingMode::Alternating(order) = self.config.mode.clone() else {
            let n = plan.len();
            return Ok((plan, vec![None; n]));
        };
        let k_tasks = self.num_tasks();
        match data {
            TaskData::Shared(_) => {
                let tasks = (0..plan.len())
                    .map(|i| {
                        Some(match order {
                            TaskOrder::RoundRobin => {
                                ((self.step + i as u64) % k_tasks as u64) as usize
                            }
                            TaskOrder::Proportional => self.rng.random_range(0..k_tasks),
                        })
                    })
                    .collect();
                Ok((plan, tasks))
            }
            TaskData::PerTask(dss) => {
                // Each task's data exactly once per epoch.
                let mut per_task: Vec<std::collections::VecDeque<Vec<u32>>> = dss
                    .iter()
                    .map(|ds| self.batch_plan(ds.len()).into_iter().collect())
                    .collect();
                let mut sequence: Vec<usize> = Vec::new();
                match order {
                    TaskOrder::RoundRobin => {
                        let longest = per_task.iter().map(|q| q.len()).max().unwrap_or(0);
                        for round in 0..longest {
                            for (k, q) in per_task.iter().enumerate() {
                                if round < q.len() {
                                    sequence.push(k);
                                }
                            }
                        }
                    }
                    TaskOrder::Proportional => {
                        for (k, q) in per_task.iter().enumerate() {
                            sequence.extend(std::iter::repeat_n(k, q.len()));
                        }
                        use rand::seq::SliceRandom;
                        sequence.shuffle(&mut self.rng);
                    }
                }
                let mut steps = Vec::with_capacity(sequence.len());
                let mut tasks = Vec::with_capacity(sequence.len());
                for k in sequence {
                    let idx = per_task[k].pop_front().unwrap_or_default();
                    steps.push(vec![idx]);
                    tasks.push(Some(k));
                }
                Ok((steps, tasks))
            }
        }
    }

    /// Brings the epoch-dependent state up to date: the tasks that have joined (progressive
    /// mode; the strategy is re-prepared for them when they change) and the encoder layers
    /// released by the unfreezing schedule.
    fn begin_epoch(&mut self) -> Result<()> {
        if matches!(self.config.mode, TrainingMode::Progressive(_)) {
            let names = self.model.task_names();
            let active = active_tasks(&self.config.mode, &names, self.epoch);
            if active != self.active {
                let setup = WeightingSetup {
                    task_names: active.iter().map(|&k| names[k].clone()).collect(),
                    gradient_source: self.gradient_source,
                    input_mode: self.config.input_mode,
                    batches_per_step: self.batches_per_step,
                };
                check_compatible(self.weighting.as_ref(), &setup)?;
                self.weighting.prepare(&setup)?;
                self.weighting.seed(derive_seed(
                    self.config.seed,
                    WEIGHTING_SEED_STREAM + 16 * self.epoch as u64,
                ));
                self.active = active;
            }
        }
        self.apply_unfreeze_schedule()
    }

    /// Freezes the encoder and releases the top layers the schedule allows at this epoch.
    fn apply_unfreeze_schedule(&mut self) -> Result<()> {
        let Some(schedule) = self.config.unfreeze else {
            return Ok(());
        };
        let released = schedule.released_layers(self.epoch);
        let groups = self.model.encoder().layer_groups();
        self.model.freeze(&Component::Encoder)?;
        if released == 0 {
            return Ok(());
        }
        if groups.is_empty() || released >= groups.len() {
            self.model.unfreeze(&Component::Encoder)?;
        } else {
            for g in groups.iter().rev().take(released) {
                self.model.unfreeze(&Component::EncoderLayer(g.clone()))?;
            }
        }
        Ok(())
    }

    /// The tasks that train in the current epoch, in task order.
    pub fn active_tasks(&self) -> Vec<String> {
        let names = self.model.task_names();
        self.active.iter().map(|&k| names[k].clone()).collect()
    }
}

impl MultiTaskTrainer for Trainer {
    /// As the trait's default, and with [`TrainerConfig::checkpoint`] set, a checkpoint after
    /// every epoch (the oldest beyond `keep_last` deleted) and `best.safetensors` when the
    /// chosen metric improves.
    fn fit(
        &mut self,
        train: TaskData<'_>,
        eval: Option<TaskData<'_>>,
        epochs: usize,
        on_epoch: &mut dyn FnMut(&EpochReport) -> Result<()>,
    ) -> Result<FitReport> {
        let mut fit = FitReport::default();
        let mut best: Option<f64> = None;
        let mut plateau = Plateau::default();
        let mut stopping = Plateau::default();
        let watched = |report: &EpochReport, task: &str, metric: Metric| -> Result<f64> {
            report
                .eval
                .as_ref()
                .and_then(|e| e.task(task))
                .and_then(|t| t.metric(metric))
                .ok_or_else(|| {
                    Error::config(
                        "watched metric",
                        format!("{task}/{metric}"),
                        "needs evaluation data in fit and a task reporting that metric",
                    )
                })
        };
        for _ in 0..epochs {
            let every = self
                .config
                .eval_every_steps
                .and_then(|n| eval.map(|e| (e, n)));
            let mut report = self.train_epoch_with_eval(train, every)?;
            if let Some(eval) = eval {
                report.eval = Some(self.evaluate(eval)?);
            }
            if let LrSchedule::ReduceOnPlateau {
                task,
                metric,
                factor,
                patience,
                min_lr,
            } = self.config.lr_schedule.clone()
            {
                let value = watched(&report, &task, metric)?;
                plateau.update(value, metric.higher_is_better(), 0.0);
                if plateau.stale > patience {
                    let base = self.config.optimizer.lr();
                    self.lr_scale = (self.lr_scale * factor).max(min_lr / base);
                    plateau.stale = 0;
                }
            }
            let stop = match self.config.early_stopping.clone() {
                Some(es) => {
                    let value = watched(&report, &es.task, es.metric)?;
                    stopping.update(value, es.metric.higher_is_better(), es.min_delta);
                    stopping.stale >= es.patience
                }
                None => false,
            };
            if let Some(policy) = self.config.checkpoint.clone() {
                self.save_checkpoint(policy.epoch_path(report.epoch))?;
                if report.epoch >= policy.keep_last {
                    let old = policy.epoch_path(report.epoch - policy.keep_last);
                    if old.exists() {
                        std::fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
                    }
                }
                if let Some((task, metric)) = &policy.best {
                    let value = report
                        .eval
                        .as_ref()
                        .and_then(|e| e.task(task))
                        .and_then(|t| t.metric(*metric))
                        .ok_or_else(|| {
                            Error::config(
                                "checkpoint.best",
                                format!("{task}/{metric}"),
                                "needs evaluation data in fit and a task reporting that metric",
                            )
                        })?;
                    let better = match best {
                        None => true,
                        Some(b) if metric.higher_is_better() => value > b,
                        Some(b) => value < b,
                    };
                    if better {
                        best = Some(value);
                        self.save_checkpoint(policy.best_path())?;
                    }
                }
            }
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
        if self.batches_per_step > 1 {
            return Err(Error::IncompatibleWeighting {
                strategy: self.weighting.name().to_string(),
                reason: "it needs two batches per step: use Trainer::train_step_pair, or train_epoch / fit".into(),
            });
        }
        self.step_inner(batch, None)
    }

    fn train_epoch(&mut self, data: TaskData<'_>) -> Result<EpochReport> {
        self.train_epoch_with_eval(data, None)
    }

    fn evaluate(&mut self, data: TaskData<'_>) -> Result<EvalReport> {
        self.check_data(data)?;
        let device = self.model.device().clone();
        let tasks = self.model.tasks();
        let mut accs = vec![MetricAccumulator::default(); tasks.len()];
        let mut loss_sums = vec![0.0; tasks.len()];
        let mut counts = vec![0usize; tasks.len()];
        let mut add =
            |k: usize, pred: &Tensor, target: &Tensor, mask: Option<&Tensor>| -> Result<()> {
                let task = &tasks[k];
                let (pred, target) = match mask {
                    Some(m) => {
                        let keep: Vec<u32> = m
                            .to_dtype(DType::F32)?
                            .to_vec1::<f32>()?
                            .iter()
                            .enumerate()
                            .filter(|(_, v)| **v != 0.0)
                            .map(|(i, _)| i as u32)
                            .collect();
                        if keep.is_empty() {
                            return Ok(());
                        }
                        let idx = Tensor::new(keep.as_slice(), pred.device())?;
                        (pred.index_select(&idx, 0)?, target.index_select(&idx, 0)?)
                    }
                    None => (pred.clone(), target.clone()),
                };
                let (pred, target) = (&pred, &target);
                let n = target.dims().first().copied().unwrap_or(0);
                let loss = task.spec().loss.compute(task.name(), pred, target)?;
                loss_sums[k] +=
                    f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?) * n as f64;
                counts[k] += n;
                if task.spec().loss.is_classification() {
                    accs[k].add_classification(task.name(), pred, target)
                } else {
                    accs[k].add_regression(task.name(), pred, target)
                }
            };
        match data {
            TaskData::Shared(ds) => {
                for idx in sequential_batches(ds.len(), self.config.eval_batch_size) {
                    let b = ds.batch(&idx, &device)?;
                    let preds = self.model.forward_all(&b.inputs, false)?;
                    for (k, pred) in preds.iter().enumerate() {
                        let target = b.target(tasks[k].name()).ok_or_else(|| {
                            Error::DataMismatch(format!("no target for task '{}'", tasks[k].name()))
                        })?;
                        add(k, pred, target, b.label_mask(tasks[k].name()))?;
                    }
                }
            }
            TaskData::PerTask(dss) => {
                for (k, ds) in dss.iter().enumerate() {
                    for idx in sequential_batches(ds.len(), self.config.eval_batch_size) {
                        let b = ds.batch(&idx, &device)?;
                        let rep = self.model.encode_for_task(&b.inputs, k, false)?;
                        let pred = self.model.predict(k, representation_for(&rep, k)?, false)?;
                        let target = b.target(tasks[k].name()).ok_or_else(|| {
                            Error::DataMismatch(format!("no target for task '{}'", tasks[k].name()))
                        })?;
                        add(k, &pred, target, b.label_mask(tasks[k].name()))?;
                    }
                }
            }
        }
        let tasks = tasks
            .iter()
            .enumerate()
            .map(|(k, t)| TaskEvaluation {
                task: t.name().to_string(),
                loss: loss_sums[k] / counts[k].max(1) as f64,
                metrics: t
                    .spec()
                    .metrics
                    .iter()
                    .map(|&m| (m, accs[k].value(m)))
                    .collect(),
                samples: counts[k],
            })
            .collect();
        Ok(EvalReport { tasks })
    }
}

/// What one step computed before anything is applied: losses and weights of the tasks it
/// trains (in their order), the gradients, the head penalty.
struct Update {
    losses: Vec<f64>,
    grads: GradStore,
    weights: Option<Vec<f64>>,
    regularization: Option<f64>,
}

/// The tasks that train at `epoch` under `mode` (every task except those a progressive
/// schedule has not let in yet).
fn active_tasks(mode: &TrainingMode, names: &[String], epoch: usize) -> Vec<usize> {
    names
        .iter()
        .enumerate()
        .filter(|(_, n)| mode.join_epoch(n) <= epoch)
        .map(|(k, _)| k)
        .collect()
}

/// Salt of the seed that draws meta-validation batches.
const META_SEED_STREAM: u64 = 2;

/// The most batches per step the trainer gives a cross-batch strategy.
const MAX_BATCHES_PER_STEP: usize = 2;

/// Salt of the seed handed to the weighting strategy, so that its generator and the data
/// order's are independent.
const WEIGHTING_SEED_STREAM: u64 = 1;

/// A well-mixed seed for sub-generator `stream` of a run seeded with `seed` (SplitMix64).
fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_add(stream.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
