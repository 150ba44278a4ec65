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
