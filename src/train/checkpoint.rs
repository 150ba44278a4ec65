//! Checkpoint files: one safetensors file holding the model, the strategy's learned
//! parameters, the optimiser state, the strategy's state, the counters and the generators, with
//! the run's description in the file's metadata. Written atomically.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Format tag stored in every checkpoint's metadata.
pub(crate) const FORMAT: &str = "candle-mtl-checkpoint-1";

/// When and where [`fit`](super::MultiTaskTrainer::fit) writes checkpoints.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `dir` | — | folder for `epoch-NNNN.safetensors` and `best.safetensors` |
/// | `keep_last` | 3 | epoch checkpoints kept; older ones are deleted after a new one is written |
/// | `best` | `None` | `(task, metric)`: also keep `best.safetensors`, the epoch with the best value |
/// | `every_steps` | `None` | also write `step-NNNNNNNNNN.safetensors` every this many steps, inside epochs (the last `keep_last` kept); such a checkpoint resumes the epoch where it stood |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointPolicy {
    /// Folder of the checkpoints (created if missing).
    pub dir: PathBuf,
    /// How many epoch checkpoints to keep (at least 1).
    pub keep_last: usize,
    /// Keep the best epoch by this task's metric (needs evaluation data in `fit`).
    pub best: Option<(String, crate::metrics::Metric)>,
    /// Also checkpoint every this many steps, inside epochs (`None`: after epochs only).
    #[cfg_attr(feature = "serde", serde(default))]
    pub every_steps: Option<u64>,
}

impl CheckpointPolicy {
    /// Every epoch into `dir`, keeping the last 3.
    pub fn every_epoch(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            keep_last: 3,
            best: None,
            every_steps: None,
        }
    }

    /// As [`every_epoch`](Self::every_epoch), and every `steps` steps inside epochs.
    pub fn every_steps(dir: impl Into<PathBuf>, steps: u64) -> Self {
        Self {
            every_steps: Some(steps),
            ..Self::every_epoch(dir)
        }
    }

    /// Path of the checkpoint written after global step `step` (1-based count of steps done).
    pub fn step_path(&self, step: u64) -> PathBuf {
        self.dir.join(format!("step-{step:010}.safetensors"))
    }

    /// Path of the checkpoint written after epoch `epoch` (0-based).
    pub fn epoch_path(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("epoch-{:04}.safetensors", epoch + 1))
    }

    /// Path of the best checkpoint.
    pub fn best_path(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed over `path` (and the folder synced), so a crash leaves either the old file or the
/// new one, never a torn one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&temp).map_err(|e| Error::io(&temp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&temp, e))?;
        f.sync_all().map_err(|e| Error::io(&temp, e))?;
        std::fs::rename(&temp, path).map_err(|e| Error::io(path, e))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Serialises `tensors` (moved to the CPU) with `metadata` and writes them atomically.
pub(crate) fn save(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let cpu = tensors
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_device(&Device::Cpu)?)))
        .collect::<Result<Vec<_>>>()?;
    let bytes =
        safetensors::tensor::serialize(cpu.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
            .map_err(|e| Error::malformed(path, format!("cannot serialise checkpoint: {e}")))?;
    write_atomic(path, &bytes)
}

/// Reads a checkpoint: its tensors (on `device`) and metadata. Refuses a file that is not a
/// candle-mtl checkpoint.
pub(crate) fn load(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    load_tagged(path, device, FORMAT, "candle-mtl checkpoint")
}

/// Reads a safetensors file written by this crate: its tensors (on `device`) and metadata,
/// refusing one whose `format` tag is not `format` (a `what`, named in the error).
pub(crate) fn load_tagged(
    path: &Path,
    device: &Device,
    format: &str,
    what: &str,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::malformed(path, format!("not a safetensors file: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    if metadata.get("format").map(String::as_str) != Some(format) {
        return Err(Error::malformed(
            path,
            format!(
                "not a {what} (format {:?}, expected {format})",
                metadata.get("format")
            ),
        ));
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| Error::malformed(path, format!("damaged file: {e}")))?;
    Ok((tensors, metadata))
}

/// Metadata key: whether the checkpoint was taken inside an epoch.
pub(crate) const INSIDE_EPOCH_KEY: &str = "inside_epoch";

/// The metadata of a safetensors file, reading only its header.
fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    use std::io::Read;
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| Error::io(path, e))?;
    let n = u64::from_le_bytes(len);
    // safetensors caps its header at 100 MB.
    if n > 100_000_000 {
        return Err(Error::malformed(path, format!("header of {n} bytes")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let parsed: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| Error::malformed(path, format!("not a safetensors header: {e}")))?;
    Ok(parsed
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

/// The newest candle-mtl checkpoint in `dir`: the one with the most steps done (at equal
/// steps, one taken after its epoch ended beats one taken inside it). `best.safetensors`,
/// temporary files of interrupted writes and files that are not candle-mtl checkpoints are
/// passed over; `Ok(None)` when there is none (or no folder).
pub fn latest_checkpoint(dir: impl AsRef<Path>) -> Result<Option<PathBuf>> {
    let dir = dir.as_ref();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut best: Option<((u64, bool), PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".safetensors") || name == "best.safetensors" {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = read_metadata(&path) else {
            continue;
        };
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            continue;
        }
        let Some(step) = meta.get("step").and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let ended = meta.get(INSIDE_EPOCH_KEY).map(String::as_str) != Some("true");
        let key = (step, ended);
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, path));
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// Deletes all but the newest `keep` step checkpoints (`step-N.safetensors`) in `dir`, and
/// temporary files that interrupted writes of other processes left behind.
pub(crate) fn rotate_step_checkpoints(dir: &Path, keep: usize) -> Result<()> {
    let mut steps: Vec<(u64, PathBuf)> = Vec::new();
    let own_temp = format!(".tmp-{}", std::process::id());
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".safetensors.tmp-") && !name.ends_with(&own_temp)
        {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        let number = name
            .strip_prefix("step-")
            .and_then(|n| n.strip_suffix(".safetensors"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = number {
            steps.push((n, entry.path()));
        }
    }
    steps.sort();
    let excess = steps.len().saturating_sub(keep);
    for (_, path) in steps.into_iter().take(excess) {
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// A generator's exact state as a u8 tensor (see `chacha_to_bytes`).
pub(crate) fn rng_to_tensor(rng: &ChaCha8Rng) -> Result<Tensor> {
    let bytes = crate::weighting::support::chacha_to_bytes(rng);
    let n = bytes.len();
    Ok(Tensor::from_vec(bytes, n, &Device::Cpu)?)
}

/// The generator saved by [`rng_to_tensor`].
pub(crate) fn rng_from_tensor(t: &Tensor, path: &Path, name: &str) -> Result<ChaCha8Rng> {
    let bytes = t.to_dtype(DType::U8)?.to_vec1::<u8>()?;
    crate::weighting::support::chacha_from_bytes(&bytes).ok_or_else(|| {
        Error::malformed(
            path,
            format!("{name} has {} bytes, expected 56", bytes.len()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn generators_round_trip_exactly() -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..37 {
            rng.random::<u32>();
        }
        let mut copy = rng_from_tensor(&rng_to_tensor(&rng)?, Path::new("x"), "rng")?;
        assert_eq!(rng.random::<u64>(), copy.random::<u64>());
        Ok(())
    }

    #[test]
    fn atomic_write_replaces_or_keeps() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("candle-mtl-ckpt-{}", std::process::id()));
        let p = dir.join("a.bin");
        write_atomic(&p, b"one")?;
        write_atomic(&p, b"two")?;
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
        Ok(())
    }
}
