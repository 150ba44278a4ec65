//! A multi-task model: one shared encoder and one head per task (hard parameter sharing).

use candle_core::{Device, Tensor, Var};

use crate::encoder::{Representation, SharedEncoder};
use crate::error::{Error, Result};
use crate::head::TaskHead;
use crate::params::{ParamPath, ParamStore};
use crate::task::TaskSpec;

/// Prefix of the shared parameters.
pub const ENCODER_PREFIX: &str = "encoder";
/// Prefix of the task heads' parameters (`heads.<task>.*`).
pub const HEADS_PREFIX: &str = "heads";

/// A task of a built model: its spec and its head.
pub struct Task {
    spec: TaskSpec,
    head: Box<dyn TaskHead>,
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

    /// Parameters of task `task`'s head (`heads.<name>.*`), sorted by name.
    pub fn head_vars(&self, task: usize) -> Vec<(String, Var)> {
        match self.tasks.get(task) {
            Some(t) => self.vars_with_prefix(&format!("{HEADS_PREFIX}.{}.", t.spec.name)),
            None => Vec::new(),
        }
    }

    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, Var)> {
        self.params
            .named_vars()
            .into_iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .collect()
    }

    /// Encodes `xs` for every task.
    pub fn encode(&self, xs: &Tensor, train: bool) -> Result<Representation> {
        self.encoder.forward_tasks(xs, self.tasks.len(), train)
    }

    /// Task `task`'s prediction from its representation.
    pub fn predict(&self, task: usize, z: &Tensor, train: bool) -> Result<Tensor> {
        let t = self.tasks.get(task).ok_or_else(|| {
            Error::DataMismatch(format!(
                "task index {task} out of range for {} tasks",
                self.tasks.len()
            ))
        })?;
        t.head.forward_t(z, train)
    }

    /// Every task's prediction for inputs `xs` (single-input mode), in task order.
    pub fn forward_all(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
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
        let head = build(&self.params.path(&format!("{HEADS_PREFIX}.{name}")))?;
        if head.input_dim() != encoder_output {
            return Err(Error::HeadInputMismatch {
                task: name,
                head_input: head.input_dim(),
                encoder_output,
            });
        }
        if let Some(m) = spec
            .metrics
            .iter()
            .find(|m| m.is_classification() != spec.loss.is_classification())
        {
            return Err(Error::config(
                format!("metrics of task '{name}'"),
                m,
                format!("does not apply to a task trained with {:?}", spec.loss),
            ));
        }
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
        });
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
