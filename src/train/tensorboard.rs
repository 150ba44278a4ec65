//! A TensorBoard observer: writes the run's scalars as a TensorBoard event file, with no
//! dependency (the record framing, the CRC-32C checksum and the two protobuf messages it needs
//! are written here).
//!
//! Layout of an event file: a sequence of TFRecords, each `length: u64 LE`,
//! `masked_crc32c(length): u32 LE`, `data`, `masked_crc32c(data): u32 LE`, where `data` is an
//! `Event` protobuf: `wall_time` (field 1, double), `step` (2, int64), `file_version` (3,
//! string) or `summary` (5, message `Summary { repeated Value value = 1 }` with
//! `Value { string tag = 1; float simple_value = 2 }`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{EpochReport, EvalReport, Observer, StepReport};
use crate::error::{Error, Result};

/// Writes per-task losses, weights, gradient norms and cosines (every step) and evaluation
/// metrics (every evaluation) to a TensorBoard event file in a folder:
///
/// | tag | when |
/// |---|---|
/// | `train/loss/<task>`, `train/weight/<task>` | every step (weights when the strategy gives them) |
/// | `train/grad_norm`, `train/regularization` | every step, when set |
/// | `gradients/norm/<task>`, `gradients/cosine/<a>-<b>`, `gradients/conflicting_pairs` | every step of a gradient-based strategy |
/// | `eval/<task>/loss`, `eval/<task>/<metric>` | every evaluation, at the global step |
/// | `epoch/train_loss/<task>`, `epoch/samples_per_second`, `epoch/learning_rate` | every epoch, at the epoch's last step |
///
/// `tensorboard --logdir DIR` shows it. The file is flushed after every epoch and evaluation.
pub struct TensorBoardLog {
    path: PathBuf,
    out: BufWriter<File>,
    last_step: u64,
}

impl TensorBoardLog {
    /// A new event file in `dir` (created), named as TensorBoard expects
    /// (`events.out.tfevents.<seconds>.candle-mtl.<pid>`).
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = dir.join(format!(
            "events.out.tfevents.{seconds}.candle-mtl.{}",
            std::process::id()
        ));
        let out = BufWriter::new(File::create(&path).map_err(|e| Error::io(&path, e))?);
        let mut log = Self {
            path,
            out,
            last_step: 0,
        };
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        put_bytes(&mut event, 3, b"brain.Event:2");
        log.record(&event)?;
        Ok(log)
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes scalars `(tag, value)` at `step`; non-finite values are left out.
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, v) in values.iter().filter(|(_, v)| v.is_finite()) {
            let mut value = Vec::new();
            put_bytes(&mut value, 1, tag.as_bytes());
            value.push(0x15); // field 2, 32-bit
            value.extend_from_slice(&(*v as f32).to_le_bytes());
            put_bytes(&mut summary, 1, &value);
        }
        if summary.is_empty() {
            return Ok(());
        }
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        event.push(0x10); // field 2, varint
        put_varint(&mut event, step);
        put_bytes(&mut event, 5, &summary);
        self.record(&event)
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let io = |e| Error::io(&self.path, e);
        self.out.write_all(&len).map_err(io)?;
        self.out
            .write_all(&masked_crc32c(&len).to_le_bytes())
            .map_err(io)?;
        self.out.write_all(data).map_err(io)?;
        self.out
            .write_all(&masked_crc32c(data).to_le_bytes())
            .map_err(io)
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }

    fn eval_scalars(report: &EvalReport) -> Vec<(String, f64)> {
        let mut values = Vec::new();
        for t in &report.tasks {
            values.push((format!("eval/{}/loss", t.task), t.loss));
            for (m, v) in &t.metrics {
                values.push((format!("eval/{}/{}", t.task, m.name()), *v));
            }
        }
        values
    }
}

impl Observer for TensorBoardLog {
    fn on_step(&mut self, task_names: &[String], r: &StepReport) -> Result<()> {
        let mut values: Vec<(String, f64)> = task_names
            .iter()
            .zip(&r.losses)
            .map(|(n, l)| (format!("train/loss/{n}"), *l))
            .collect();
        if let Some(w) = &r.weights {
            values.extend(
                task_names
                    .iter()
                    .zip(w)
                    .map(|(n, w)| (format!("train/weight/{n}"), *w)),
            );
        }
        if let Some(g) = r.grad_norm {
            values.push(("train/grad_norm".into(), g));
        }
        if let Some(p) = r.regularization {
            values.push(("train/regularization".into(), p));
        }
        if let Some(stats) = &r.gradient_stats {
            // The statistics cover the tasks the step trained: named when that is all of them.
            let name = |i: usize| match task_names.get(i) {
                Some(n) if stats.norms.len() == task_names.len() => n.clone(),
                _ => format!("active{i}"),
            };
            for (i, v) in stats.norms.iter().enumerate() {
                values.push((format!("gradients/norm/{}", name(i)), *v));
            }
            for (i, row) in stats.cosine.iter().enumerate() {
                for (j, c) in row.iter().enumerate().skip(i + 1) {
                    values.push((format!("gradients/cosine/{}-{}", name(i), name(j)), *c));
                }
            }
            values.push((
                "gradients/conflicting_pairs".into(),
                stats.conflicting_pairs as f64,
            ));
        }
        self.last_step = r.step;
        self.scalars(r.step, &values)
    }

    fn on_eval(&mut self, step: u64, report: &EvalReport) -> Result<()> {
        self.scalars(step, &Self::eval_scalars(report))?;
        self.flush()
    }

    fn on_epoch(&mut self, r: &EpochReport) -> Result<()> {
        let mut values: Vec<(String, f64)> = r
            .task_names
            .iter()
            .zip(&r.train_losses)
            .map(|(n, l)| (format!("epoch/train_loss/{n}"), *l))
            .collect();
        values.push(("epoch/samples_per_second".into(), r.samples_per_second()));
        values.push(("epoch/learning_rate".into(), r.learning_rate));
        if let Some(e) = &r.eval {
            values.extend(Self::eval_scalars(e));
        }
        self.scalars(self.last_step, &values)?;
        self.flush()
    }
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field.
fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_double(out: &mut Vec<u8>, field: u64, v: f64) {
    put_varint(out, (field << 3) | 1);
    out.extend_from_slice(&v.to_le_bytes());
}

/// CRC-32C (Castagnoli), bit by bit over a byte table built once.
fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The CRC-32C check value of "123456789" (RFC 3720, appendix B.4).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn records_frame_events_with_checksums() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("candle-mtl-tb-{}", std::process::id()));
        let mut log = TensorBoardLog::create(&dir)?;
        log.scalars(
            3,
            &[("train/loss/a".into(), 0.5), ("skipped".into(), f64::NAN)],
        )?;
        log.flush()?;
        let bytes = std::fs::read(log.path()).map_err(|e| Error::io(log.path(), e))?;
        // Walk the records: each length and payload checksum must match.
        let mut at = 0;
        let mut records = 0;
        while at < bytes.len() {
            let len_bytes = &bytes[at..at + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or([0; 8])) as usize;
            let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap_or([0; 4]));
            assert_eq!(crc, masked_crc32c(len_bytes));
            let data = &bytes[at + 12..at + 12 + len];
            let crc = u32::from_le_bytes(
                bytes[at + 12 + len..at + 16 + len]
                    .try_into()
                    .unwrap_or([0; 4]),
            );
            assert_eq!(crc, masked_crc32c(data));
            at += 16 + len;
            records += 1;
        }
        assert_eq!(
            records, 2,
            "file version, then one summary (the NaN left out)"
        );
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("brain.Event:2")
                && text.contains("train/loss/a")
                && !text.contains("skipped")
        );
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }
}
