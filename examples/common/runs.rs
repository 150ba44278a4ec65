//! Run files shared by the examples: checkpoint flags (`--checkpoint-dir`,
//! `--checkpoint-every`, `--resume`), a digest of the parameters, and JSON output through
//! serde_json.

use std::path::Path;

use candle_mtl::model::MultiTaskModel;
use candle_mtl::train::{CheckpointPolicy, Trainer, TrainerConfig};

use super::Args;

/// The usage lines of the checkpoint flags.
pub const CHECKPOINT_USAGE: &str =
    "  --checkpoint-dir DIR  write checkpoints there: after every epoch (the last 3 kept) and, with
                        --checkpoint-every, inside epochs
  --checkpoint-every N  also checkpoint every N steps (the last 3 kept)
  --resume              continue from the newest checkpoint in --checkpoint-dir (refused, naming
                        what differs, when it comes from another configuration); a fresh start
                        when the folder has none";

/// The names of the checkpoint flags that take a value, and the boolean one.
pub const CHECKPOINT_FLAGS: [&str; 2] = ["checkpoint-dir", "checkpoint-every"];
/// The boolean checkpoint flag.
pub const RESUME_FLAG: &str = "resume";

/// Sets `config.checkpoint` from the flags.
pub fn apply_checkpoint_flags(args: &Args, config: &mut TrainerConfig) -> candle_mtl::Result<()> {
    let every: Option<u64> = match args.get("checkpoint-every") {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| {
            candle_mtl::Error::config(
                "--checkpoint-every",
                v,
                "expected a whole number of steps >= 1",
            )
        })?),
    };
    match (args.get("checkpoint-dir"), every) {
        (Some(dir), every) => {
            config.checkpoint = Some(CheckpointPolicy {
                every_steps: every,
                ..CheckpointPolicy::every_epoch(dir)
            });
        }
        (None, Some(n)) => {
            return Err(candle_mtl::Error::config(
                "--checkpoint-every",
                n,
                "needs --checkpoint-dir",
            ))
        }
        (None, None) if args.flag(RESUME_FLAG) => {
            return Err(candle_mtl::Error::config(
                "--resume",
                "set",
                "needs --checkpoint-dir (the folder to resume from)",
            ))
        }
        (None, None) => {}
    }
    Ok(())
}

/// With `--resume`, loads the newest checkpoint of `--checkpoint-dir` into `trainer` and
/// says where the run continues.
pub fn resume_if_asked(args: &Args, trainer: &mut Trainer) -> candle_mtl::Result<()> {
    if !args.flag(RESUME_FLAG) {
        return Ok(());
    }
    let Some(dir) = args.get("checkpoint-dir") else {
        return Ok(());
    };
    match trainer.resume_from_latest(dir)? {
        Some(path) => println!(
            "resumed from {}: {} steps, {} epochs done{}",
            path.display(),
            trainer.steps_done(),
            trainer.epochs_done(),
            if trainer.is_inside_epoch() {
                ", continuing inside the epoch"
            } else {
                ""
            }
        ),
        None => println!("no checkpoint in {dir} yet: starting from the beginning"),
    }
    Ok(())
}

/// A 64-bit FNV-1a digest of every parameter's bits, in name order: equal digests mean
/// bit-identical parameters.
pub fn parameter_digest(model: &MultiTaskModel) -> candle_mtl::Result<String> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (name, var) in model.params().named_state() {
        eat(name.as_bytes());
        let values = var
            .as_tensor()
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        for v in values {
            eat(&v.to_bits().to_le_bytes());
        }
    }
    Ok(format!("{hash:016x}"))
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &str, value: &serde_json::Value) -> candle_mtl::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| candle_mtl::Error::io(path, std::io::Error::other(e.to_string())))?;
    std::fs::write(Path::new(path), text + "\n").map_err(|e| candle_mtl::Error::io(path, e))
}

/// A JSON number, `null` for NaN or infinity.
pub fn number(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// What `fit_and_report` measured: the final evaluation's tasks as JSON, samples/s of the
/// training epochs and the peak resident memory.
pub struct RunOutcome {
    /// `{task: {metric: value, "loss": .., "samples": ..}}`.
    pub tasks: serde_json::Map<String, serde_json::Value>,
    /// Training samples per second over all epochs.
    pub samples_per_second: f64,
    /// Peak resident memory in MiB (Linux).
    pub peak_mib: Option<f64>,
}

/// Trains `epochs` epochs on `train`, evaluating on `test` after each, printing one line per
/// epoch (each task's training loss, samples/s, data wait) and one per task at the end
/// (every metric and the number of labelled samples).
pub fn fit_and_report(
    trainer: &mut Trainer,
    train: &dyn candle_mtl::data::Dataset,
    test: &dyn candle_mtl::data::Dataset,
    epochs: usize,
) -> candle_mtl::Result<RunOutcome> {
    use candle_mtl::train::{MultiTaskTrainer, TaskData};
    let names = trainer.model().task_names();
    let fit = trainer.fit(
        TaskData::Shared(train),
        Some(TaskData::Shared(test)),
        epochs,
        &mut |r| {
            let losses: Vec<String> = names
                .iter()
                .zip(&r.train_losses)
                .map(|(t, l)| format!("{t} {l:.4}"))
                .collect();
            println!(
                "epoch {}/{epochs} | train loss {} | {:.0} samples/s, data wait {:.1}%",
                r.epoch + 1,
                losses.join(", "),
                r.samples_per_second(),
                100.0 * r.data_share()
            );
            Ok(())
        },
    )?;
    let samples: usize = fit.epochs.iter().map(|e| e.samples).sum();
    let seconds: f64 = fit.epochs.iter().map(|e| e.seconds).sum();
    let eval = match fit.last().and_then(|e| e.eval.clone()) {
        Some(e) => e,
        None => trainer.evaluate(TaskData::Shared(test))?,
    };
    let mut tasks = serde_json::Map::new();
    for t in &eval.tasks {
        let metrics: Vec<String> = t
            .metrics
            .iter()
            .map(|(m, v)| format!("{} {v:.4}", m.name()))
            .collect();
        println!(
            "test | {}: {} ({} labelled samples)",
            t.task,
            metrics.join(", "),
            t.samples
        );
        let mut m: serde_json::Map<String, serde_json::Value> = t
            .metrics
            .iter()
            .map(|(m, v)| (m.name().to_string(), number(*v)))
            .collect();
        m.insert("loss".into(), number(t.loss));
        m.insert("samples".into(), t.samples.into());
        tasks.insert(t.task.clone(), m.into());
    }
    Ok(RunOutcome {
        tasks,
        samples_per_second: samples as f64 / seconds.max(1e-9),
        peak_mib: super::peak_memory_mib(),
    })
}

impl RunOutcome {
    /// Writes the object `fields` plus the run's steps, tasks, samples/s, peak memory and
    /// parameter digest as JSON to `path`.
    pub fn write_summary(
        self,
        path: &str,
        fields: serde_json::Value,
        trainer: &Trainer,
    ) -> candle_mtl::Result<()> {
        let mut fields = match fields {
            serde_json::Value::Object(m) => m,
            other => serde_json::Map::from_iter([("fields".to_string(), other)]),
        };
        fields.insert("steps".into(), trainer.steps_done().into());
        fields.insert("tasks".into(), self.tasks.into());
        fields.insert("samples_per_second".into(), number(self.samples_per_second));
        fields.insert("peak_memory_mib".into(), self.peak_mib.map(number).into());
        fields.insert(
            "parameters_digest".into(),
            parameter_digest(trainer.model())?.into(),
        );
        write_json(path, &fields.into())?;
        println!("summary written to {path}");
        Ok(())
    }
}
