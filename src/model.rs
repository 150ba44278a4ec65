//! A multi-task model: one shared encoder and one head per task (hard parameter sharing).

mod pretrained;
mod saved;

pub use pretrained::{KeyRule, LoadReport, PretrainedOptions, ShapeMismatch};
pub(crate) use saved::tensor_differences;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};

use crate::encoder::{InputStem, Representation, SharedEncoder};
use crate::error::{Error, Result};
use crate::head::TaskHead;
use crate::params::{ParamPath, ParamStore};
use crate::task::TaskSpec;

/// Prefix of the shared parameters.
pub const ENCODER_PREFIX: &str = "encoder";
/// Prefix of the task heads' parameters (`heads.<task>.*`).
pub const HEADS_PREFIX: &str = "heads";
/// Prefix of the per-task input stems' parameters (`stems.<task>.*`).
pub const STEMS_PREFIX: &str = "stems";

/// Format tag of files written by [`MultiTaskModel::save_component`].
const COMPONENT_FORMAT: &str = "candle-mtl-component/1";

/// A part of a model that can be frozen, released, saved or loaded as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// The whole shared encoder (`encoder.*`).
    Encoder,
    /// One layer of the encoder, by its sub-path (`conv0`, `fc`, `layer1`: see
    /// [`SharedEncoder::layer_groups`]).
    EncoderLayer(String),
    /// The head of the named task.
    Head(String),
    /// The input stem of the named task.
    Stem(String),
}

impl Component {
    /// The parameter path prefix of the component.
    pub fn prefix(&self) -> String {
        match self {
            Component::Encoder => ENCODER_PREFIX.to_string(),
            Component::EncoderLayer(l) => format!("{ENCODER_PREFIX}.{l}"),
            Component::Head(t) => format!("{HEADS_PREFIX}.{t}"),
            Component::Stem(t) => format!("{STEMS_PREFIX}.{t}"),
        }
    }
}

/// A task of a built model: its spec, its head and its optional input stem.
pub struct Task {
    spec: TaskSpec,
    head: Box<dyn TaskHead>,
    stem: Option<Box<dyn InputStem>>,
}

impl Task {
    /// The task's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Loss and metrics.
    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    /// The head.
    pub fn head(&self) -> &dyn TaskHead {
        self.head.as_ref()
    }

    /// The input stem, when the task has one.
    pub fn stem(&self) -> Option<&dyn InputStem> {
        self.stem.as_deref()
    }
}

/// A shared encoder, named task heads, and the [`ParamStore`] holding all their parameters.
///
/// Built with [`MultiTaskModel::builder`], which names parameters by path (`encoder.*`,
/// `heads.<task>.*`) and checks every head against the encoder's output size.
pub struct MultiTaskModel {
    params: ParamStore,
    encoder: Box<dyn SharedEncoder>,
    tasks: Vec<Task>,
}

impl MultiTaskModel {
    /// Starts a model whose parameters live on `device`, initialised from `seed`.
    pub fn builder(device: &Device, seed: u64) -> MultiTaskModelBuilder {
        MultiTaskModelBuilder {
            params: ParamStore::new(device, seed),
            encoder: None,
            tasks: Vec::new(),
        }
    }

    /// The encoder.
    pub fn encoder(&self) -> &dyn SharedEncoder {
        self.encoder.as_ref()
    }

    /// The tasks, in the order they were added.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Task names in order.
    pub fn task_names(&self) -> Vec<String> {
        self.tasks.iter().map(|t| t.spec.name.clone()).collect()
    }

    /// Index of task `name`.
    pub fn task_index(&self, name: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t.spec.name == name)
    }

    /// The parameter store (names, values, `save`/`load` through its `VarMap`).
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// The device of the parameters.
    pub fn device(&self) -> &Device {
        self.params.device()
    }

    /// Shared parameters (`encoder.*`), sorted by name.
    pub fn shared_vars(&self) -> Vec<(String, Var)> {
        self.vars_with_prefix(&format!("{ENCODER_PREFIX}."))
    }

    /// Shared parameters that are not frozen, sorted by name: the columns of the per-task
    /// gradient matrix that gradient-based strategies see.
    pub fn trainable_shared_vars(&self) -> Vec<(String, Var)> {
        self.shared_vars()
            .into_iter()
            .filter(|(n, _)| !self.params.is_frozen(n))
            .collect()
    }

    /// Parameters of task `task`'s head (`heads.<name>.*`), sorted by name.
    pub fn head_vars(&self, task: usize) -> Vec<(String, Var)> {
        match self.tasks.get(task) {
            Some(t) => self.vars_with_prefix(&format!("{HEADS_PREFIX}.{}.", t.spec.name)),
            None => Vec::new(),
        }
    }

    /// Every task-specific parameter of task `task`: its head and its input stem.
    pub fn task_vars(&self, task: usize) -> Vec<(String, Var)> {
        match self.tasks.get(task) {
            Some(t) => {
                let mut vars = self.head_vars(task);
                vars.extend(self.vars_with_prefix(&format!("{STEMS_PREFIX}.{}.", t.spec.name)));
                vars
            }
            None => Vec::new(),
        }
    }

    /// True when some task has an input stem (the encoder then runs once per task).
    pub fn has_stems(&self) -> bool {
        self.tasks.iter().any(|t| t.stem.is_some())
    }

    /// Freezes a component: its parameters get no gradient (they enter the forward pass
    /// detached, so no backward work is spent on them) and the trainer does not update them.
    /// Returns the number of parameters frozen; refuses a component with none, naming it.
    pub fn freeze(&self, component: &Component) -> Result<usize> {
        self.set_frozen(component, true)
    }

    /// Releases a frozen component; see [`freeze`](MultiTaskModel::freeze).
    pub fn unfreeze(&self, component: &Component) -> Result<usize> {
        self.set_frozen(component, false)
    }

    fn set_frozen(&self, component: &Component, frozen: bool) -> Result<usize> {
        let n = self.params.set_frozen(&component.prefix(), frozen);
        if n == 0 {
            let layers = self.encoder.layer_groups();
            return Err(Error::config(
                "component",
                format!("{component:?}"),
                format!(
                    "has no parameters (tasks: {}; encoder layers: {})",
                    self.task_names().join(", "),
                    if layers.is_empty() {
                        "none declared".to_string()
                    } else {
                        layers.join(", ")
                    }
                ),
            ));
        }
        Ok(n)
    }

    /// True when parameter `name` is frozen.
    pub fn is_frozen(&self, name: &str) -> bool {
        self.params.is_frozen(name)
    }

    /// The parameters and buffers of `component`, named relative to it (`conv0.weight` for the
    /// encoder's `encoder.conv0.weight`), sorted by name.
    fn component_vars(&self, component: &Component) -> Vec<(String, Var)> {
        let prefix = format!("{}.", component.prefix());
        self.params
            .named_state()
            .into_iter()
            .filter_map(|(n, v)| n.strip_prefix(&prefix).map(|r| (r.to_string(), v)))
            .collect()
    }

    /// Writes the parameters of `component` (for example the encoder, to reuse it in another
    /// model: transfer learning) to a safetensors file, atomically. Names are relative to the
    /// component, so a head saved from one task can be loaded into a task of another name.
    pub fn save_component(&self, component: &Component, path: impl AsRef<Path>) -> Result<()> {
        let vars = self.component_vars(component);
        if vars.is_empty() {
            return Err(Error::config(
                "component",
                format!("{component:?}"),
                "has no parameters to save",
            ));
        }
        let tensors = vars
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        let metadata = HashMap::from([
            ("format".to_string(), COMPONENT_FORMAT.to_string()),
            ("component".to_string(), component.prefix()),
        ]);
        crate::train::checkpoint::save(path.as_ref(), tensors, metadata)
    }

    /// Loads parameters written by [`save_component`](MultiTaskModel::save_component) into
    /// `component`, which must have the same parameter names and shapes; refuses, changing
    /// nothing, a file that differs, listing every difference. Returns the number of
    /// parameters loaded.
    pub fn load_component(&self, component: &Component, path: impl AsRef<Path>) -> Result<usize> {
        let path = path.as_ref();
        let (tensors, metadata) = crate::train::checkpoint::load_tagged(
            path,
            self.device(),
            COMPONENT_FORMAT,
            "saved model component",
        )?;
        let vars = self.component_vars(component);
        let mut differences = saved::tensor_differences(&vars, &tensors, "file", |_| true);
        if !differences.is_empty() {
            differences.sort();
            return Err(Error::malformed(
                path,
                format!(
                    "does not match {component:?} (saved from {}):\n  {}",
                    metadata.get("component").map_or("?", String::as_str),
                    differences.join("\n  ")
                ),
            ));
        }
        for (name, var) in &vars {
            if let Some(t) = tensors.get(name) {
                var.set(&t.to_dtype(var.dtype())?)?;
            }
        }
        Ok(vars.len())
    }

    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, Var)> {
        self.params
            .named_vars()
            .into_iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .collect()
    }

    /// Encodes `xs` for every task (input stems are not applied; see
    /// [`encode_for_task`](MultiTaskModel::encode_for_task)).
    pub fn encode(&self, xs: &Tensor, train: bool) -> Result<Representation> {
        self.encoder.forward_tasks(xs, self.tasks.len(), train)
    }

    /// Encodes inputs of task `task`: through the task's input stem when it has one, then the
    /// shared encoder.
    pub fn encode_for_task(&self, xs: &Tensor, task: usize, train: bool) -> Result<Representation> {
        match self.tasks.get(task).and_then(|t| t.stem.as_ref()) {
            Some(stem) => {
                let h = stem.forward_t(xs, train)?;
                self.encoder.forward_tasks(&h, self.tasks.len(), train)
            }
            None => self.encode(xs, train),
        }
    }

    /// Task `task`'s prediction from its representation.
    pub fn predict(&self, task: usize, z: &Tensor, train: bool) -> Result<Tensor> {
        let t = self.task_entry(task)?;
        named(t, t.head.forward_t(z, train))
    }

    fn task_entry(&self, task: usize) -> Result<&Task> {
        self.tasks.get(task).ok_or_else(|| {
            Error::DataMismatch(format!(
                "task index {task} out of range for {} tasks",
                self.tasks.len()
            ))
        })
    }

    /// Task `task`'s prediction in a training pass, its head knowing the batch's `target`
    /// and label `mask` ([`TaskHead::forward_with_target`]: teacher forcing, state of its own).
    pub fn predict_with_target(
        &self,
        task: usize,
        z: &Tensor,
        target: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let t = self.task_entry(task)?;
        named(t, t.head.forward_with_target(z, target, mask, train))
    }

    /// Task `task`'s prediction for evaluation against `target`
    /// ([`TaskHead::forward_for_target`]).
    pub fn predict_for_target(&self, task: usize, z: &Tensor, target: &Tensor) -> Result<Tensor> {
        let t = self.task_entry(task)?;
        named(t, t.head.forward_for_target(z, target))
    }

    /// Tells every head that a training step ended ([`TaskHead::end_step`]): `applied` when
    /// the optimiser updated the parameters.
    pub fn end_step(&self, applied: bool) -> Result<()> {
        for t in &self.tasks {
            named(t, t.head.end_step(applied))?;
        }
        Ok(())
    }

    /// Every task's prediction for inputs `xs` (single-input mode), in task order.
    pub fn forward_all(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        if self.has_stems() {
            return (0..self.tasks.len())
                .map(|k| {
                    let rep = self.encode_for_task(xs, k, train)?;
                    self.predict(k, representation_for(&rep, k)?, train)
                })
                .collect();
        }
        let rep = self.encode(xs, train)?;
        (0..self.tasks.len())
            .map(|k| {
                let z = representation_for(&rep, k)?;
                self.predict(k, z, train)
            })
            .collect()
    }
}

/// The representation task `k` reads, or an error when the encoder returned too few.
pub(crate) fn representation_for(rep: &Representation, k: usize) -> Result<&Tensor> {
    rep.for_task(k).ok_or_else(|| {
        Error::DataMismatch(format!(
            "the encoder returned no representation for task {k}"
        ))
    })
}

/// Builds a [`MultiTaskModel`]; see [`MultiTaskModel::builder`].
///
/// ```
/// use candle_core::Device;
/// use candle_mtl::prelude::*;
/// let model = MultiTaskModel::builder(&Device::Cpu, 0)
///     .encoder(|p| Mlp::new(&MlpConfig { input_dim: 4, hidden: vec![8], ..Default::default() }, p))?
///     .task(TaskSpec::classification("class"), |p| LinearHead::new(8, 3, p))?
///     .task(TaskSpec::regression("value"), |p| LinearHead::new(8, 1, p))?
///     .build()?;
/// assert_eq!(model.task_names(), ["class", "value"]);
/// // A head that does not fit the encoder is refused, with both sizes:
/// let err = MultiTaskModel::builder(&Device::Cpu, 0)
///     .encoder(|p| Mlp::new(&MlpConfig { input_dim: 4, hidden: vec![8], ..Default::default() }, p))?
///     .task(TaskSpec::classification("class"), |p| LinearHead::new(16, 3, p));
/// assert!(err.is_err());
/// # Ok::<(), candle_mtl::Error>(())
/// ```
pub struct MultiTaskModelBuilder {
    params: ParamStore,
    encoder: Option<Box<dyn SharedEncoder>>,
    tasks: Vec<Task>,
}

impl MultiTaskModelBuilder {
    /// Sets the encoder, built under the path `encoder`.
    pub fn encoder<E, F>(mut self, build: F) -> Result<Self>
    where
        E: SharedEncoder + 'static,
        F: FnOnce(&ParamPath) -> Result<E>,
    {
        if self.encoder.is_some() {
            return Err(Error::config(
                "encoder",
                "set twice",
                "a model has one shared encoder",
            ));
        }
        let encoder = build(&self.params.path(ENCODER_PREFIX))?;
        self.encoder = Some(Box::new(encoder));
        Ok(self)
    }

    /// Adds a task whose head is built under `heads.<spec.name>`; the encoder must be set first.
    /// Refuses a duplicate or malformed name and a head whose input size differs from the
    /// encoder's output size.
    pub fn task<H, F>(mut self, spec: TaskSpec, build: F) -> Result<Self>
    where
        H: TaskHead + 'static,
        F: FnOnce(&ParamPath) -> Result<H>,
    {
        let name = spec.name.clone();
        if name.is_empty() || name.contains('.') || name.chars().any(char::is_whitespace) {
            return Err(Error::config(
                "task name",
                format!("'{name}'"),
                "must be non-empty, without dots or whitespace (it is a parameter path)",
            ));
        }
        if self.tasks.iter().any(|t| t.spec.name == name) {
            return Err(Error::config(
                "task name",
                format!("'{name}'"),
                "is used twice",
            ));
        }
        let Some(encoder) = &self.encoder else {
            return Err(Error::config(
                "task",
                format!("'{name}'"),
                "added before the encoder; set the encoder first",
            ));
        };
        let encoder_output = encoder.output_dim();
        // A head's own refusal (an adjacency of the wrong size, a bad configuration) names
        // the task it was built for.
        let head =
            build(&self.params.path(&format!("{HEADS_PREFIX}.{name}"))).map_err(|e| match e {
                Error::InvalidConfig {
                    field,
                    value,
                    reason,
                } => Error::InvalidConfig {
                    field: format!("task '{name}': {field}"),
                    value,
                    reason,
                },
                other => other,
            })?;
        if head.input_dim() != encoder_output {
            return Err(Error::HeadInputMismatch {
                task: name,
                head_input: head.input_dim(),
                encoder_output,
            });
        }
        spec.validate()?;
        if spec.loss.is_classification() && head.output_dim() < 2 {
            return Err(Error::config(
                format!("head of task '{name}'"),
                head.output_dim(),
                "a classification head needs at least 2 outputs (one per class)",
            ));
        }
        self.tasks.push(Task {
            spec,
            head: Box::new(head),
            stem: None,
        });
        Ok(self)
    }

    /// Gives task `task` (added before) an input stem, built under `stems.<task>`: the task's
    /// inputs go through it before the shared encoder. Use it when tasks read inputs of
    /// different shapes; the stem's output must be what the encoder reads.
    pub fn stem<S, F>(mut self, task: &str, build: F) -> Result<Self>
    where
        S: InputStem + 'static,
        F: FnOnce(&ParamPath) -> Result<S>,
    {
        let names: Vec<String> = self.tasks.iter().map(|t| t.spec.name.clone()).collect();
        let Some(t) = self.tasks.iter_mut().find(|t| t.spec.name == task) else {
            return Err(Error::config(
                "stem",
                format!("'{task}'"),
                format!(
                    "names no task added so far (tasks: {}); add the task first",
                    names.join(", ")
                ),
            ));
        };
        if t.stem.is_some() {
            return Err(Error::config(
                "stem",
                format!("'{task}'"),
                "is set twice for this task",
            ));
        }
        let stem = build(&self.params.path(&format!("{STEMS_PREFIX}.{task}")))?;
        t.stem = Some(Box::new(stem));
        Ok(self)
    }

    /// Finishes the model; needs an encoder and at least one task.
    pub fn build(self) -> Result<MultiTaskModel> {
        let encoder = self
            .encoder
            .ok_or_else(|| Error::config("encoder", "none", "a model needs a shared encoder"))?;
        if self.tasks.is_empty() {
            return Err(Error::config("tasks", 0, "a model needs at least one task"));
        }
        Ok(MultiTaskModel {
            params: self.params,
            encoder,
            tasks: self.tasks,
        })
    }
}

/// A head's shape mismatch reported with its task's name.
fn named<T>(task: &Task, result: Result<T>) -> Result<T> {
    result.map_err(|e| match e {
        Error::DataMismatch(m) => Error::DataMismatch(format!("task '{}': {m}", task.name())),
        other => other,
    })
}
