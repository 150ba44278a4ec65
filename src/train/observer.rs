//! Watching a run: the [`Observer`] trait and two observers that write metric logs,
//! JSON lines ([`JsonlLog`]) and CSV ([`CsvLog`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::{EpochReport, EvalReport, StepReport};
use crate::error::{Error, Result};

/// Receives the trainer's events: every step, and every epoch of
/// [`fit`](super::MultiTaskTrainer::fit) (with its evaluation). Add one with
/// [`Trainer::add_observer`](super::Trainer::add_observer).
pub trait Observer: Send {
    /// Before each training epoch, with the number of steps it will take.
    fn on_epoch_start(&mut self, epoch: usize, steps: usize) -> Result<()> {
        let _ = (epoch, steps);
        Ok(())
    }

    /// After each training step (skipped steps included).
    fn on_step(&mut self, task_names: &[String], report: &StepReport) -> Result<()> {
        let _ = (task_names, report);
        Ok(())
    }

    /// After each evaluation taken inside an epoch (`TrainerConfig::eval_every_steps`).
    fn on_eval(&mut self, step: u64, report: &EvalReport) -> Result<()> {
        let _ = (step, report);
        Ok(())
    }

    /// After each epoch of `fit`, evaluation included.
    fn on_epoch(&mut self, report: &EpochReport) -> Result<()> {
        let _ = report;
        Ok(())
    }
}

/// `{name: value}` for each task; non-finite values become `null`.
fn object(names: &[String], values: &[f64]) -> Value {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (n.clone(), Value::from(*v)))
        .collect::<Map<String, Value>>()
        .into()
}

/// An evaluation as a JSON object `{task: {"loss": .., metric: ..}}`.
fn eval_json(e: &EvalReport) -> Value {
    e.tasks
        .iter()
        .map(|t| {
            let mut fields = Map::new();
            fields.insert("loss".into(), Value::from(t.loss));
            for (m, v) in &t.metrics {
                fields.insert(m.name().to_string(), Value::from(*v));
            }
            (t.task.clone(), Value::Object(fields))
        })
        .collect::<Map<String, Value>>()
        .into()
}

/// `Some(v)` as a number (`null` when not finite), `None` as `null`.
fn optional(v: Option<f64>) -> Value {
    v.map_or(Value::Null, Value::from)
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(BufWriter::new(
        File::create(path).map_err(|e| Error::io(path, e))?,
    ))
}

/// Writes one JSON object per line: `{"type":"step",...}` per step (task losses and weights,
/// gradient norm, conflicting gradient pairs, skipped, head penalty) and `{"type":"epoch",...}` per epoch
/// (mean training losses and weights, evaluation metrics, learning rate, samples/s, skipped
/// steps). Flushed after every epoch.
pub struct JsonlLog {
    path: PathBuf,
    out: BufWriter<File>,
    baselines: Vec<(String, crate::metrics::Metric, f64)>,
}

impl JsonlLog {
    /// A log at `path` (created, folders included; an existing file is replaced).
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        Ok(Self {
            out: create(&path)?,
            path,
            baselines: Vec::new(),
        })
    }

    /// Also logs Delta-m per epoch ([`delta_m`](crate::metrics::delta_m)) against single-task
    /// baselines `(task, metric, baseline value)`.
    pub fn with_baselines(mut self, baselines: Vec<(String, crate::metrics::Metric, f64)>) -> Self {
        self.baselines = baselines;
        self
    }

    fn line(&mut self, value: &Value) -> Result<()> {
        serde_json::to_writer(&mut self.out, value)
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
        writeln!(self.out).map_err(|e| Error::io(&self.path, e))
    }
}

impl Observer for JsonlLog {
    fn on_eval(&mut self, step: u64, report: &EvalReport) -> Result<()> {
        self.line(&json!({"type": "eval", "step": step, "eval": eval_json(report)}))
    }

    fn on_step(&mut self, task_names: &[String], r: &StepReport) -> Result<()> {
        let weights = r
            .weights
            .as_ref()
            .map_or(Value::Null, |w| object(task_names, w));
        let conflicts = r
            .gradient_stats
            .as_ref()
            .map_or(Value::Null, |g| Value::from(g.conflicting_pairs));
        self.line(&json!({
            "type": "step",
            "step": r.step,
            "losses": object(task_names, &r.losses),
            "weights": weights,
            "grad_norm": optional(r.grad_norm),
            "conflicting_pairs": conflicts,
            "skipped": r.skipped,
            "samples": r.samples,
            "regularization": optional(r.regularization),
        }))
    }

    fn on_epoch(&mut self, r: &EpochReport) -> Result<()> {
        let weights = r
            .mean_weights
            .as_ref()
            .map_or(Value::Null, |w| object(&r.task_names, w));
        let metrics = r.eval.as_ref().map_or(Value::Null, eval_json);
        let delta_m = r
            .eval
            .as_ref()
            .filter(|_| !self.baselines.is_empty())
            .and_then(|e| {
                let entries = self
                    .baselines
                    .iter()
                    .map(|(task, m, b)| {
                        e.task(task)
                            .and_then(|t| t.metric(m))
                            .map(|v| (m.clone(), v, *b))
                    })
                    .collect::<Option<Vec<_>>>()?;
                crate::metrics::delta_m(&entries)
            });
        self.line(&json!({
            "type": "epoch",
            "epoch": r.epoch,
            "train_losses": object(&r.task_names, &r.train_losses),
            "mean_weights": weights,
            "eval": metrics,
            "delta_m": optional(delta_m),
            "learning_rate": Value::from(r.learning_rate),
            "samples_per_second": Value::from(r.samples_per_second()),
            "seconds": Value::from(r.seconds),
            "data_seconds": Value::from(r.data_seconds),
            "steps": r.steps,
            "skipped_steps": r.skipped_steps,
            "regularization": optional(r.mean_regularization),
        }))?;
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// Writes `steps.csv` (step, skipped, grad_norm, loss and weight per task) and `epochs.csv`
/// (epoch, seconds, samples/s, learning rate, skipped steps, mean training loss per task, then
/// each task's evaluation metrics) into a folder. Headers come from the first event.
pub struct CsvLog {
    dir: PathBuf,
    steps: BufWriter<File>,
    epochs: BufWriter<File>,
    steps_header: bool,
    epochs_header: bool,
}

impl CsvLog {
    /// Logs in `dir` (created).
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        Ok(Self {
            steps: create(&dir.join("steps.csv"))?,
            epochs: create(&dir.join("epochs.csv"))?,
            dir,
            steps_header: false,
            epochs_header: false,
        })
    }
}

fn csv_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

impl Observer for CsvLog {
    fn on_step(&mut self, names: &[String], r: &StepReport) -> Result<()> {
        let path = self.dir.join("steps.csv");
        let io = |e| Error::io(&path, e);
        if !self.steps_header {
            let mut cols = vec!["step".to_string(), "skipped".into(), "grad_norm".into()];
            cols.extend(names.iter().map(|n| format!("loss_{n}")));
            cols.extend(names.iter().map(|n| format!("weight_{n}")));
            cols.push("regularization".into());
            writeln!(self.steps, "{}", cols.join(",")).map_err(io)?;
            self.steps_header = true;
        }
        let mut cols = vec![
            r.step.to_string(),
            r.skipped.to_string(),
            r.grad_norm.map(csv_number).unwrap_or_default(),
        ];
        cols.extend(r.losses.iter().map(|l| csv_number(*l)));
        match &r.weights {
            Some(w) => cols.extend(w.iter().map(|x| csv_number(*x))),
            None => cols.extend(names.iter().map(|_| String::new())),
        }
        cols.push(r.regularization.map(csv_number).unwrap_or_default());
        writeln!(self.steps, "{}", cols.join(","))
            .map_err(|e| Error::io(self.dir.join("steps.csv"), e))
    }

    fn on_epoch(&mut self, r: &EpochReport) -> Result<()> {
        let path = self.dir.join("epochs.csv");
        let metric_cols: Vec<(String, String, crate::metrics::Metric)> = r
            .eval
            .iter()
            .flat_map(|e| e.tasks.iter())
            .flat_map(|t| {
                t.metrics.iter().map(move |(m, _)| {
                    (
                        format!("{}_{}", t.task, m.name()),
                        t.task.clone(),
                        m.clone(),
                    )
                })
            })
            .collect();
        if !self.epochs_header {
            let mut cols: Vec<String> = [
                "epoch",
                "seconds",
                "samples_per_second",
                "learning_rate",
                "skipped_steps",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            cols.extend(r.task_names.iter().map(|n| format!("train_loss_{n}")));
            cols.extend(metric_cols.iter().map(|(c, _, _)| c.clone()));
            cols.push("regularization".into());
            writeln!(self.epochs, "{}", cols.join(",")).map_err(|e| Error::io(&path, e))?;
            self.epochs_header = true;
        }
        let mut cols = vec![
            r.epoch.to_string(),
            csv_number(r.seconds),
            csv_number(r.samples_per_second()),
            csv_number(r.learning_rate),
            r.skipped_steps.to_string(),
        ];
        cols.extend(r.train_losses.iter().map(|l| csv_number(*l)));
        for (_, task, metric) in &metric_cols {
            let v = r
                .eval
                .as_ref()
                .and_then(|e| e.task(task))
                .and_then(|t| t.metric(metric));
            cols.push(v.map(csv_number).unwrap_or_default());
        }
        cols.push(r.mean_regularization.map(csv_number).unwrap_or_default());
        writeln!(self.epochs, "{}", cols.join(",")).map_err(|e| Error::io(&path, e))?;
        self.epochs.flush().map_err(|e| Error::io(&path, e))?;
        self.steps
            .flush()
            .map_err(|e| Error::io(self.dir.join("steps.csv"), e))
    }
}
