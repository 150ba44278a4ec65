//! Saving and restoring a whole run: [`Trainer::save_checkpoint`],
//! [`Trainer::load_checkpoint`], checkpoints inside epochs, and resuming from the newest
//! checkpoint of a folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};

use super::checkpoint::{self, latest_checkpoint};
use super::run_state::RunState;
use super::Trainer;
use crate::error::{Error, Result};

/// Metadata prefix of the configuration fields that decide a run.
const CONFIG_PREFIX: &str = "config.";
/// Metadata prefix of the run's description ([`Trainer::describe_run`]).
const RUN_PREFIX: &str = "run.";

impl Trainer {
    /// Writes a checkpoint of the whole run to `path` (atomically: a crash leaves the previous
    /// file intact): model parameters and buffers, the strategy's learned parameters and state, the
    /// optimiser's per-parameter state, the counters, the generators, the position inside
    /// the epoch under way and the epoch policies' state; the metadata records the format,
    /// the crate version, the tasks, the strategy, the configuration and the run's
    /// description.
    ///
    /// Taken between epochs, between manual steps, or (by [`CheckpointPolicy::every_steps`](super::CheckpointPolicy::every_steps))
    /// after any step inside an epoch, it lets [`load_checkpoint`](Self::load_checkpoint)
    /// continue the run exactly.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (name, var) in self.model.params().named_state() {
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
        tensors.extend(self.state.to_tensors()?);
        tensors.extend(self.path.state_tensors()?);
        tensors.extend(self.policy_tensors()?);
        let mut metadata = HashMap::from([
            ("format".to_string(), checkpoint::FORMAT.to_string()),
            (
                "crate_version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            ("tasks".to_string(), self.model.task_names().join(",")),
            ("weighting".to_string(), self.weighting.name().to_string()),
            ("step".to_string(), self.state.step.to_string()),
            ("epoch".to_string(), self.state.epoch.to_string()),
            (
                checkpoint::INSIDE_EPOCH_KEY.to_string(),
                self.state.in_epoch.is_some().to_string(),
            ),
            ("config".to_string(), format!("{:?}", self.config)),
        ]);
        for (field, value) in self.config.run_entries() {
            metadata.insert(format!("{CONFIG_PREFIX}{field}"), value);
        }
        for (key, value) in &self.description {
            metadata.insert(format!("{RUN_PREFIX}{key}"), value.clone());
        }
        checkpoint::save(path.as_ref(), tensors, metadata)
    }

    /// Restores a checkpoint written by [`save_checkpoint`](Self::save_checkpoint) into this
    /// trainer, which must have been built the same way (same tasks, model, strategy,
    /// configuration and run description). Refuses, changing nothing, a checkpoint that
    /// differs, listing every difference (parameter names and shapes, the strategy, each
    /// configuration field, each description key).
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (tensors, metadata) = checkpoint::load(path, self.model.device())?;
        let mut expected: Vec<(String, Var)> = self
            .model
            .params()
            .named_state()
            .into_iter()
            .map(|(n, v)| (format!("model.{n}"), v))
            .collect();
        expected.extend(
            self.weighting_vars
                .iter()
                .map(|(n, v)| (format!("params.{n}"), v.clone())),
        );
        let mut differences = parameter_differences(&expected, &tensors);
        if let Some(w) = metadata.get("weighting") {
            if w != self.weighting.name() {
                differences.push(format!(
                    "weighting: checkpoint '{w}', trainer '{}'",
                    self.weighting.name()
                ));
            }
        }
        let ours: Vec<(String, String)> = self
            .config
            .run_entries()
            .into_iter()
            .map(|(k, v)| (format!("{CONFIG_PREFIX}{k}"), v))
            .chain(
                self.description
                    .iter()
                    .map(|(k, v)| (format!("{RUN_PREFIX}{k}"), v.clone())),
            )
            .collect();
        differences.extend(metadata_differences(&ours, &metadata));
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
        let layout: Vec<(String, Vec<crate::metrics::Metric>)> = self
            .model
            .tasks()
            .iter()
            .map(|t| (t.name().to_string(), t.spec().metric_keys()))
            .collect();
        let state = RunState::from_tensors(&tensors, path, &layout)?;
        let strategy_state: HashMap<String, Vec<f64>> = tensors
            .iter()
            .filter_map(|(n, t)| n.strip_prefix("strategy.").map(|k| (k.to_string(), t)))
            .map(|(k, t)| Ok((k, t.to_dtype(DType::F64)?.to_vec1::<f64>()?)))
            .collect::<Result<_>>()?;
        let policy_state: Vec<Option<Vec<f64>>> = self
            .policies
            .iter()
            .map(|p| {
                tensors
                    .get(&policy_key(p.name()))
                    .map(|t| Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        // Everything is read and checked; now write.
        for (name, var) in &expected {
            var.set(&get(name)?.to_dtype(var.dtype())?)?;
        }
        self.optimizer
            .load_state_tensors(&|n| tensors.get(&format!("optim.{n}")).cloned())?;
        self.path
            .load_state_tensors(&|n| tensors.get(n).cloned(), path)?;
        for (p, s) in self.policies.iter_mut().zip(policy_state) {
            if let Some(s) = s {
                p.load_state(&s);
            }
        }
        self.state = state;
        self.begin_epoch()?;
        self.weighting.load_state(&strategy_state)?;
        Ok(())
    }

    /// Loads the newest checkpoint in `dir` (see [`latest_checkpoint`]) and returns its path;
    /// `Ok(None)` when the folder has none, the trainer untouched.
    pub fn resume_from_latest(&mut self, dir: impl AsRef<Path>) -> Result<Option<PathBuf>> {
        match latest_checkpoint(dir)? {
            Some(path) => {
                self.load_checkpoint(&path)?;
                Ok(Some(path))
            }
            None => Ok(None),
        }
    }

    /// The epoch policies' states, for checkpoints.
    fn policy_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.policies
            .iter()
            .map(|p| {
                let s = p.state();
                let n = s.len();
                Ok((policy_key(p.name()), Tensor::from_vec(s, n, &Device::Cpu)?))
            })
            .collect()
    }

    /// After a step inside an epoch: the checkpoint [`CheckpointPolicy::every_steps`](super::CheckpointPolicy::every_steps)
    /// asks for, and the rotation of older step checkpoints.
    pub(super) fn checkpoint_if_due(&mut self) -> Result<()> {
        let Some(policy) = &self.config.checkpoint else {
            return Ok(());
        };
        let Some(every) = policy.every_steps else {
            return Ok(());
        };
        if self.state.step % every != 0 {
            return Ok(());
        }
        let (path, dir, keep) = (
            policy.step_path(self.state.step),
            policy.dir.clone(),
            policy.keep_last,
        );
        self.save_checkpoint(&path)?;
        checkpoint::rotate_step_checkpoints(&dir, keep)
    }
}

/// Checkpoint name of an epoch policy's state.
fn policy_key(name: &str) -> String {
    format!("trainer.policy.{name}")
}

/// Every difference in names and shapes between the trainer's parameters and a checkpoint's.
fn parameter_differences(
    expected: &[(String, Var)],
    tensors: &HashMap<String, Tensor>,
) -> Vec<String> {
    crate::model::tensor_differences(expected, tensors, "checkpoint", |name| {
        name.starts_with("model.") || name.starts_with("params.")
    })
}

/// Every configuration field and description key whose value differs. Checkpoints written
/// before these entries existed carry none and are not compared.
fn metadata_differences(
    ours: &[(String, String)],
    metadata: &HashMap<String, String>,
) -> Vec<String> {
    let has_entries = metadata.keys().any(|k| k.starts_with(CONFIG_PREFIX));
    if !has_entries {
        return Vec::new();
    }
    let mut differences = Vec::new();
    for (key, value) in ours {
        match metadata.get(key) {
            Some(v) if v == value => {}
            Some(v) => differences.push(format!("{key}: checkpoint {v}, trainer {value}")),
            None if key.starts_with(RUN_PREFIX) => {
                differences.push(format!("{key}: not in the checkpoint, trainer {value}"))
            }
            None => {}
        }
    }
    for (key, v) in metadata {
        if key.starts_with(RUN_PREFIX) && !ours.iter().any(|(k, _)| k == key) {
            differences.push(format!("{key}: checkpoint {v}, not set in the trainer"));
        }
    }
    differences
}
