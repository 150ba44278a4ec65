//! A trained model saved for prediction, loaded in another process without a trainer.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Tensor, Var};

use super::{representation_for, MultiTaskModel};
use crate::error::{Error, Result};
use crate::train::{EvalReport, TaskData};

/// How the tensors of a file differ from the model's `expected` ones: each missing name, each
/// shape that differs (both shapes) and each name of the file that `counts` but the model
/// lacks; `source` names the file kind in the messages ("file", "checkpoint").
pub(crate) fn tensor_differences(
    expected: &[(String, Var)],
    tensors: &HashMap<String, Tensor>,
    source: &str,
    counts: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut differences = Vec::new();
    for (name, var) in expected {
        match tensors.get(name) {
            None => differences.push(format!(
                "{name} {:?} is missing from the {source}",
                var.dims()
            )),
            Some(t) if t.dims() != var.dims() => differences.push(format!(
                "{name}: {source} {:?}, model {:?}",
                t.dims(),
                var.dims()
            )),
            Some(_) => {}
        }
    }
    for (name, t) in tensors {
        if counts(name) && !expected.iter().any(|(n, _)| n == name) {
            differences.push(format!(
                "{name} {:?} is in the {source} but not in the model",
                t.dims()
            ));
        }
    }
    differences
}

/// Format tag of files written by [`MultiTaskModel::save`].
const MODEL_FORMAT: &str = "candle-mtl-model/1";

impl MultiTaskModel {
    /// What a saved file records to check a model against on load: every task's name, loss
    /// and head output size, and the encoder's output size.
    fn spec_entries(&self) -> Vec<(String, String)> {
        let mut entries = vec![(
            "encoder_output_dim".to_string(),
            self.encoder.output_dim().to_string(),
        )];
        entries.push(("tasks".to_string(), self.task_names().join(",")));
        for t in &self.tasks {
            entries.push((
                format!("task.{}", t.name()),
                format!(
                    "loss {}, head output {}, stem {}",
                    t.spec().loss.name(),
                    t.head().output_dim(),
                    t.stem().is_some()
                ),
            ));
        }
        entries
    }

    /// Saves every parameter and buffer, with the spec needed to check the model it is loaded
    /// into (tasks, losses, head sizes), to a safetensors file, atomically. Load it with
    /// [`load_weights`](Self::load_weights) into a model built by the same code.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let tensors = self
            .params
            .named_state()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        let mut metadata: HashMap<String, String> = self.spec_entries().into_iter().collect();
        metadata.insert("format".to_string(), MODEL_FORMAT.to_string());
        metadata.insert(
            "crate_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        );
        crate::train::checkpoint::save(path.as_ref(), tensors, metadata)
    }

    /// Loads a file written by [`save`](Self::save) (a trainer checkpoint is refused: save
    /// the model itself). The model must have the same
    /// tasks, losses, head sizes, parameter names and shapes; otherwise nothing is changed and
    /// the error lists every difference. Returns the number of tensors loaded.
    pub fn load_weights(&self, path: impl AsRef<Path>) -> Result<usize> {
        let path = path.as_ref();
        let (tensors, metadata) = crate::train::checkpoint::load_tagged(
            path,
            self.device(),
            MODEL_FORMAT,
            "saved candle-mtl model",
        )?;
        let mut differences = Vec::new();
        for (key, ours) in self.spec_entries() {
            match metadata.get(&key) {
                Some(theirs) if *theirs == ours => {}
                Some(theirs) => differences.push(format!("{key}: file '{theirs}', model '{ours}'")),
                None => differences.push(format!("{key}: not in the file, model '{ours}'")),
            }
        }
        let state = self.params.named_state();
        differences.extend(tensor_differences(&state, &tensors, "file", |_| true));
        if !differences.is_empty() {
            differences.sort();
            return Err(Error::malformed(
                path,
                format!("does not match this model:\n  {}", differences.join("\n  ")),
            ));
        }
        for (name, var) in &state {
            if let Some(t) = tensors.get(name) {
                var.set(&t.to_dtype(var.dtype())?)?;
            }
        }
        Ok(state.len())
    }

    /// Predictions of the named tasks (all tasks when `tasks` is empty) for a batch `xs`, in
    /// evaluation mode, in the order asked; the encoder runs once (once per task for tasks
    /// with input stems). An unknown task name is an error listing the model's tasks.
    pub fn predict_tasks(&self, xs: &Tensor, tasks: &[&str]) -> Result<Vec<(String, Tensor)>> {
        let indices: Vec<usize> = if tasks.is_empty() {
            (0..self.tasks.len()).collect()
        } else {
            tasks
                .iter()
                .map(|name| {
                    self.task_index(name).ok_or_else(|| {
                        Error::config(
                            "task",
                            format!("'{name}'"),
                            format!(
                                "is not a task of this model (tasks: {})",
                                self.task_names().join(", ")
                            ),
                        )
                    })
                })
                .collect::<Result<_>>()?
        };
        let shared = if self.has_stems() {
            None
        } else {
            Some(self.encode(xs, false)?)
        };
        indices
            .into_iter()
            .map(|k| {
                let pred = match &shared {
                    Some(rep) => self.predict(k, representation_for(rep, k)?, false)?,
                    None => {
                        let rep = self.encode_for_task(xs, k, false)?;
                        self.predict(k, representation_for(&rep, k)?, false)?
                    }
                };
                Ok((self.tasks[k].name().to_string(), pred))
            })
            .collect()
    }

    /// Per-task losses and metrics on `data` in batches of `batch_size`, without a trainer
    /// (evaluation mode, label masks honoured): what a [`Trainer`](crate::train::Trainer)
    /// reports for the same model and data.
    pub fn evaluate(&self, data: TaskData<'_>, batch_size: usize) -> Result<EvalReport> {
        if batch_size == 0 {
            return Err(Error::config("batch_size", 0, "must be positive"));
        }
        let mode = match data {
            TaskData::Shared(_) => crate::weighting::InputMode::SingleInput,
            TaskData::PerTask(_) => crate::weighting::InputMode::MultiInput,
        };
        crate::train::evaluate::check_data(self, data, mode)?;
        crate::train::evaluate::evaluate(self, data, batch_size)
    }
}
