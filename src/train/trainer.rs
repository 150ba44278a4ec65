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
    StepReport, TaskData, TaskEvaluation, TrainerConfig,
};
use super::{LrSchedule, Observer};
use crate::data::{prefetch, sequential_batches, shuffled_batches, Batch, TensorDataset};
use crate::encoder::Representation;
use crate::error::{Error, Result};
use crate::grad::{
    flatten, unflatten_into, weighted_sum, GradientSource, GradientStats, TaskGradients,
};
use crate::metrics::Metric;
use crate::metrics::MetricAccumulator;
use crate::model::{representation_for, MultiTaskModel};
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
}

/// Forward pass of one step: losses, plus what the representation path needs.
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
        let needs = weighting.needs();
        let refuse = |reason: String| Error::IncompatibleWeighting {
            strategy: weighting.name().to_string(),
            reason,
        };
        let gradient_source = match config.gradient_source {
            Some(s) => Some(s),
            None => needs.gradients.first().copied(),
        };
        let batches_per_step = needs.batches_per_step.clamp(1, MAX_BATCHES_PER_STEP);
        let setup = WeightingSetup {
            task_names: model.task_names(),
            gradient_source,
            input_mode: config.input_mode,
            batches_per_step,
        };
        check_compatible(weighting.as_ref(), &setup)?;
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
        weighting.prepare(&setup)?;
        weighting.seed(derive_seed(config.seed, WEIGHTING_SEED_STREAM));
        let weighting_vars: Vec<(String, Var)> = weighting
            .parameters()
            .into_iter()
            .map(|(n, v)| (format!("weighting.{n}"), v))
            .collect();
        let mut params = model.params().named_vars();
        params.extend(weighting_vars.iter().cloned());
        let optimizer = Optimizer::new(config.optimizer.clone(), params)?;
        let meta_rng = ChaCha8Rng::seed_from_u64(derive_seed(config.seed, META_SEED_STREAM));
        Ok(Self {
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
        })
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
        self.weighting.load_state(&strategy_state)?;
        self.step = counters.first().copied().unwrap_or(0).max(0) as u64;
        self.epoch = counters.get(1).copied().unwrap_or(0).max(0) as usize;
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

    /// Inputs and target of task `k` in `batch`.
    fn task_batch<'b>(&self, batch: &'b StepBatch, k: usize) -> Result<(&'b Tensor, &'b Tensor)> {
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
        Ok((&b.inputs, target))
    }

    fn check_batch_mode(&self, batch: &StepBatch) -> Result<()> {
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
        train: bool,
        detach_representation: bool,
    ) -> Result<Forward> {
        let k_tasks = self.num_tasks();
        let mut losses = Vec::with_capacity(k_tasks);
        let mut encoded = Vec::new();
        let mut leaves = Vec::new();
        let shared_rep = match batch {
            StepBatch::Shared(b) => Some(self.model.encode(&b.inputs, train)?),
            StepBatch::PerTask(_) => None,
        };
        let mut shared_leaf: Option<Var> = None;
        for k in 0..k_tasks {
            let (inputs, target) = self.task_batch(batch, k)?;
            let own_rep;
            let rep = match &shared_rep {
                Some(r) => r,
                None => {
                    own_rep = self.model.encode(inputs, train)?;
                    &own_rep
                }
            };
            let z = representation_for(rep, k)?;
            let head_input = if detach_representation {
                match rep {
                    Representation::Shared(_) => {
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
                    Representation::PerTask(_) => {
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
            losses.push(task.spec().loss.compute(task.name(), &pred, target)?);
        }
        Ok(Forward {
            losses,
            representation: detach_representation.then_some((encoded, leaves)),
        })
    }

    fn loss_values(&self, losses: &[Tensor]) -> Result<Vec<f64>> {
        let mut values = Vec::with_capacity(losses.len());
        for (k, l) in losses.iter().enumerate() {
            let v = f64::from(l.to_dtype(DType::F32)?.to_scalar::<f32>()?);
            if !v.is_finite() {
                return Err(Error::NonFinite {
                    quantity: "loss",
                    task: self.model.tasks()[k].name().to_string(),
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
    fn check_gradients(&mut self, gradients: &TaskGradients) -> Result<()> {
        let stats = GradientStats::from_gramian(&gradients.gramian()?);
        if let Some((k, v)) = stats.norms.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                quantity: "gradient",
                task: self.model.tasks()[k].name().to_string(),
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
        validate_weights(self.weighting.name(), &weights, self.num_tasks())?;
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
    ) -> Result<(GradStore, Option<Vec<f64>>)> {
        let shared = self.model.shared_vars();
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
        self.check_gradients(&gradients)?;
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
                validate_weights(self.weighting.name(), &w, self.num_tasks())?;
                Ok((weighted_sum(&stores, &w, &all_vars)?, Some(w)))
            }
            Decision::Direction(d) => {
                self.check_direction(&d)?;
                let mut combined = GradStore::default();
                unflatten_into(&d, &shared, &mut combined)
                    .map_err(|e| self.invalid(e.to_string()))?;
                for (k, store) in stores.iter().enumerate() {
                    for (_, var) in self.model.head_vars(k) {
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
    ) -> Result<(GradStore, Option<Vec<f64>>)> {
        let Some((encoded, leaves)) = &fwd.representation else {
            return Err(self.invalid("representation path without a representation"));
        };
        let k_tasks = self.num_tasks();
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
        self.check_gradients(&gradients)?;
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
        for (k, store) in stores.iter().enumerate() {
            for (_, var) in self.model.head_vars(k) {
                if let Some(g) = store.get(&var) {
                    let g = g.affine(head_weights[k], 0.0)?;
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
        let tasks: Vec<usize> = self
            .weighting
            .meta_objective_tasks()
            .unwrap_or_else(|| (0..self.num_tasks()).collect());
        // Virtual step, then the validation gradient there.
        shift(-alpha, grads)?;
        let result = (|| -> Result<Vec<f64>> {
            let fwd = self.forward(&val_batch, true, false)?;
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
            let plus = self.loss_values(&self.forward(batch, false, false)?.losses)?;
            shift(-eps, &v)?;
            let minus = self.loss_values(&self.forward(batch, false, false)?.losses)?;
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
        let fwd = self.forward(batch, true, false)?;
        self.loss_values(&fwd.losses)?;
        let shared = self.model.shared_vars();
        let rows = fwd
            .losses
            .iter()
            .map(|l| flatten(&l.backward()?, &shared))
            .collect::<Result<Vec<_>>>()?;
        let gradients =
            TaskGradients::new(GradientSource::SharedParameters, Tensor::stack(&rows, 0)?)?;
        self.check_gradients(&gradients)?;
        Ok(gradients)
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
        let samples = match batch {
            StepBatch::Shared(b) => b.len(),
            StepBatch::PerTask(bs) => bs.iter().map(Batch::len).sum(),
        };
        let computed =
            self.compute_update(batch, second)
                .and_then(|(losses, mut grads, weights)| {
                    let grad_norm = match self.config.max_grad_norm {
                        Some(max) => Some(self.clip_gradients(&mut grads, max)?),
                        None => None,
                    };
                    Ok((losses, grads, weights, grad_norm))
                });
        let (losses, grads, weights, grad_norm) = match computed {
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
                    skipped: true,
                };
                self.step += 1;
                self.notify_step(&report)?;
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        if self.meta_validation.is_some() {
            self.meta_step(batch, &grads)?;
        }
        self.apply_update(batch, losses, grads, weights, samples, grad_norm)
    }

    /// Forward, losses (checked finite), the strategy's decision and the gradients it asks for;
    /// nothing is applied yet.
    fn compute_update(
        &mut self,
        batch: &StepBatch,
        second: Option<&StepBatch>,
    ) -> Result<(Vec<f64>, GradStore, Option<Vec<f64>>)> {
        let representation = self.gradient_source == Some(GradientSource::Representation);
        let fwd = self.forward(batch, true, representation)?;
        let losses = self.loss_values(&fwd.losses)?;
        let (mut grads, weights) = match self.gradient_source {
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
                self.shared_parameter_update(&fwd, &losses, second_gradients.as_ref())?
            }
            Some(GradientSource::Representation) => self.representation_update(&fwd, &losses)?,
        };
        if !self.weighting_vars.is_empty() {
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
        Ok((losses, grads, weights))
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
        losses: Vec<f64>,
        grads: GradStore,
        weights: Option<Vec<f64>>,
        samples: usize,
        grad_norm: Option<f64>,
    ) -> Result<StepReport> {
        self.optimizer.step(&grads)?;
        let losses_after = if self.losses_after_step {
            let after = self.forward(batch, false, false)?;
            Some(self.loss_values(&after.losses)?)
        } else {
            None
        };
        self.weighting.after_step(&AfterStep {
            step: self.step,
            losses_before: &losses,
            losses_after: losses_after.as_deref(),
        })?;
        let report = StepReport {
            step: self.step,
            losses,
            weights,
            samples,
            gradient_stats: self.last_gradient_stats.take(),
            grad_norm,
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
        let device = self.model.device().clone();
        let k_tasks = self.num_tasks();
        let start = Instant::now();
        let mut loss_sums = vec![0.0; k_tasks];
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
            for (s, l) in loss_sums.iter_mut().zip(&r.losses) {
                *s += l;
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
        let train_losses = mean(loss_sums);
        self.weighting.end_epoch(self.epoch, &train_losses)?;
        let report = EpochReport {
            epoch: self.epoch,
            task_names: self.model.task_names(),
            train_losses,
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
        let mut add = |k: usize, pred: &Tensor, target: &Tensor| -> Result<()> {
            let task = &tasks[k];
            let n = target.dims().first().copied().unwrap_or(0);
            let loss = task.spec().loss.compute(task.name(), pred, target)?;
            loss_sums[k] += f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?) * n as f64;
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
                        add(k, pred, target)?;
                    }
                }
            }
            TaskData::PerTask(dss) => {
                for (k, ds) in dss.iter().enumerate() {
                    for idx in sequential_batches(ds.len(), self.config.eval_batch_size) {
                        let b = ds.batch(&idx, &device)?;
                        let rep = self.model.encode(&b.inputs, false)?;
                        let pred = self.model.predict(k, representation_for(&rep, k)?, false)?;
                        let target = b.target(tasks[k].name()).ok_or_else(|| {
                            Error::DataMismatch(format!("no target for task '{}'", tasks[k].name()))
                        })?;
                        add(k, &pred, target)?;
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
