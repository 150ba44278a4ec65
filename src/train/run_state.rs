//! The run state: counters, the learning-rate scale, the data-order generator and the
//! position inside the epoch under way, with its conversion to and from checkpoint tensors,
//! so that a checkpoint taken after any step resumes the run exactly.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{rng_from_tensor, rng_to_tensor};
use super::{EvalReport, StepReport, TaskEvaluation};
use crate::error::{Error, Result};
use crate::metrics::Metric;

/// Counters, generator and epoch position of a run.
pub(crate) struct RunState {
    /// Steps taken.
    pub step: u64,
    /// Epochs completed.
    pub epoch: usize,
    /// Multiplier of the base learning rate (set by reduce-on-plateau).
    pub lr_scale: f64,
    /// Fraction of the current epoch done (for per-step schedules).
    pub epoch_progress: f64,
    /// The generator of the data order (and of proportional task draws).
    pub rng: ChaCha8Rng,
    /// The epoch under way: set while an epoch runs, or after loading a checkpoint taken in
    /// the middle of one (the next epoch call then continues it).
    pub in_epoch: Option<EpochPosition>,
}

/// Where the epoch under way stands.
#[derive(Clone)]
pub(crate) struct EpochPosition {
    /// The data-order generator as the epoch began: the epoch's plan is drawn from it again
    /// when the epoch is resumed.
    pub start_rng: ChaCha8Rng,
    /// Steps (groups of batches) of the plan already taken.
    pub groups_done: usize,
    /// The epoch's running totals.
    pub totals: EpochTotals,
    /// The evaluations made every N steps so far in this epoch (`eval_every_steps`).
    pub step_evals: Vec<(u64, EvalReport)>,
}

/// Running sums of an epoch, for its report.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct EpochTotals {
    pub loss_sums: Vec<f64>,
    pub loss_counts: Vec<usize>,
    pub regularization_sum: Option<f64>,
    /// `None` as soon as one step had no weights.
    pub weight_sums: Option<Vec<f64>>,
    pub steps: usize,
    pub samples: usize,
    pub skipped: usize,
}

impl EpochTotals {
    /// Empty totals for `k` tasks.
    pub fn new(k: usize) -> Self {
        Self {
            loss_sums: vec![0.0; k],
            loss_counts: vec![0; k],
            regularization_sum: None,
            weight_sums: Some(vec![0.0; k]),
            ..Self::default()
        }
    }

    /// Adds one step.
    pub fn record(&mut self, r: &StepReport) {
        self.steps += 1;
        self.samples += r.samples;
        if r.skipped {
            self.skipped += 1;
            return;
        }
        for ((s, c), l) in self
            .loss_sums
            .iter_mut()
            .zip(&mut self.loss_counts)
            .zip(&r.losses)
        {
            if l.is_finite() {
                *s += l;
                *c += 1;
            }
        }
        if let Some(p) = r.regularization {
            *self.regularization_sum.get_or_insert(0.0) += p;
        }
        match (&mut self.weight_sums, &r.weights) {
            (Some(ws), Some(w)) => ws.iter_mut().zip(w).for_each(|(s, w)| *s += w),
            _ => self.weight_sums = None,
        }
    }

    /// Mean training loss per task (NaN for a task that did not train).
    pub fn mean_losses(&self) -> Vec<f64> {
        self.loss_sums
            .iter()
            .zip(&self.loss_counts)
            .map(|(s, &c)| if c > 0 { s / c as f64 } else { f64::NAN })
            .collect()
    }

    /// Steps that were applied (at least 1, to divide by).
    pub fn applied(&self) -> f64 {
        (self.steps - self.skipped).max(1) as f64
    }
}

const COUNTERS: &str = "trainer.counters";
const LR_SCALE: &str = "trainer.lr_scale";
const RNG: &str = "trainer.rng";
const EPOCH_RNG: &str = "trainer.epoch.start_rng";
const EPOCH_POSITION: &str = "trainer.epoch.position";
const EPOCH_LOSS_SUMS: &str = "trainer.epoch.loss_sums";
const EPOCH_LOSS_COUNTS: &str = "trainer.epoch.loss_counts";
const EPOCH_REGULARIZATION: &str = "trainer.epoch.regularization";
const EPOCH_WEIGHT_SUMS: &str = "trainer.epoch.weight_sums";
const EPOCH_STEP_EVALS: &str = "trainer.epoch.step_evals";

/// The evaluations as rows `[step, per task: loss, samples, each metric]`.
fn evals_to_tensor(evals: &[(u64, EvalReport)]) -> Result<Tensor> {
    let rows: Vec<Vec<f64>> = evals
        .iter()
        .map(|(step, e)| {
            let mut row = vec![*step as f64];
            for t in &e.tasks {
                row.push(t.loss);
                row.push(t.samples as f64);
                row.extend(t.metrics.iter().map(|(_, v)| *v));
            }
            row
        })
        .collect();
    let width = rows.first().map_or(0, Vec::len);
    Ok(Tensor::from_vec(
        rows.concat(),
        (rows.len(), width),
        &Device::Cpu,
    )?)
}

/// Reads back [`evals_to_tensor`]'s rows for tasks `tasks` (name and metrics, in order).
fn evals_from_tensor(
    t: &Tensor,
    tasks: &[(String, Vec<Metric>)],
    path: &Path,
) -> Result<Vec<(u64, EvalReport)>> {
    let width = 1 + tasks.iter().map(|(_, m)| 2 + m.len()).sum::<usize>();
    let rows: Vec<Vec<f64>> = t.to_dtype(DType::F64)?.to_vec2()?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if row.len() != width {
            return Err(Error::malformed(
                path,
                format!(
                    "{EPOCH_STEP_EVALS} has rows of {} values, these tasks need {width}",
                    row.len()
                ),
            ));
        }
        let mut at = 1;
        let mut evals = Vec::with_capacity(tasks.len());
        for (name, metrics) in tasks {
            let (loss, samples) = (row[at], row[at + 1]);
            at += 2;
            let values = metrics.iter().map(|m| {
                at += 1;
                (m.clone(), row[at - 1])
            });
            evals.push(TaskEvaluation {
                task: name.clone(),
                loss,
                metrics: values.collect(),
                samples: samples.max(0.0) as usize,
            });
        }
        out.push((row[0].max(0.0) as u64, EvalReport { tasks: evals }));
    }
    Ok(out)
}

impl RunState {
    /// A new run seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            step: 0,
            epoch: 0,
            lr_scale: 1.0,
            epoch_progress: 0.0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            in_epoch: None,
        }
    }

    /// The state as named checkpoint tensors (on the CPU).
    pub fn to_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let cpu = &Device::Cpu;
        let mut out = vec![
            (
                COUNTERS.to_string(),
                Tensor::from_vec(vec![self.step as i64, self.epoch as i64], 2, cpu)?,
            ),
            (
                LR_SCALE.into(),
                Tensor::from_vec(vec![self.lr_scale], 1, cpu)?,
            ),
            (RNG.into(), rng_to_tensor(&self.rng)?),
        ];
        if let Some(pos) = &self.in_epoch {
            let t = &pos.totals;
            let k = t.loss_sums.len();
            out.push((EPOCH_RNG.into(), rng_to_tensor(&pos.start_rng)?));
            out.push((
                EPOCH_POSITION.into(),
                Tensor::from_vec(
                    vec![
                        pos.groups_done as i64,
                        t.steps as i64,
                        t.samples as i64,
                        t.skipped as i64,
                    ],
                    4,
                    cpu,
                )?,
            ));
            out.push((
                EPOCH_LOSS_SUMS.into(),
                Tensor::from_vec(t.loss_sums.clone(), k, cpu)?,
            ));
            let counts: Vec<i64> = t.loss_counts.iter().map(|&c| c as i64).collect();
            out.push((EPOCH_LOSS_COUNTS.into(), Tensor::from_vec(counts, k, cpu)?));
            let reg = match t.regularization_sum {
                Some(v) => vec![1.0, v],
                None => vec![0.0, 0.0],
            };
            out.push((EPOCH_REGULARIZATION.into(), Tensor::from_vec(reg, 2, cpu)?));
            if let Some(w) = &t.weight_sums {
                out.push((
                    EPOCH_WEIGHT_SUMS.into(),
                    Tensor::from_vec(w.clone(), k, cpu)?,
                ));
            }
            if !pos.step_evals.is_empty() {
                out.push((EPOCH_STEP_EVALS.into(), evals_to_tensor(&pos.step_evals)?));
            }
        }
        Ok(out)
    }

    /// Reads the state saved by [`to_tensors`](Self::to_tensors) (checkpoints without an
    /// epoch position were taken between epochs); `tasks` (names and metrics, in order)
    /// checks the epoch totals and reads back the epoch's evaluations.
    pub fn from_tensors(
        tensors: &HashMap<String, Tensor>,
        path: &Path,
        tasks: &[(String, Vec<Metric>)],
    ) -> Result<Self> {
        let num_tasks = tasks.len();
        let get = |name: &str| -> Result<&Tensor> {
            tensors
                .get(name)
                .ok_or_else(|| Error::malformed(path, format!("has no entry {name}")))
        };
        let ints = |name: &str| -> Result<Vec<i64>> {
            Ok(get(name)?.to_dtype(DType::I64)?.to_vec1::<i64>()?)
        };
        let floats = |name: &str| -> Result<Vec<f64>> {
            Ok(get(name)?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
        };
        let counters = ints(COUNTERS)?;
        let lr_scale = match tensors.get(LR_SCALE) {
            Some(_) => floats(LR_SCALE)?.first().copied().unwrap_or(1.0),
            None => 1.0,
        };
        let in_epoch = if tensors.contains_key(EPOCH_POSITION) {
            let position = ints(EPOCH_POSITION)?;
            let loss_sums = floats(EPOCH_LOSS_SUMS)?;
            let loss_counts = ints(EPOCH_LOSS_COUNTS)?;
            let reg = floats(EPOCH_REGULARIZATION)?;
            let weight_sums = match tensors.get(EPOCH_WEIGHT_SUMS) {
                Some(_) => Some(floats(EPOCH_WEIGHT_SUMS)?),
                None => None,
            };
            let bad = position.len() != 4
                || position.iter().any(|&v| v < 0)
                || loss_sums.len() != num_tasks
                || loss_counts.len() != num_tasks
                || reg.len() != 2
                || weight_sums.as_ref().is_some_and(|w| w.len() != num_tasks);
            if bad {
                return Err(Error::malformed(
                    path,
                    format!(
                        "the epoch position does not fit a run of {num_tasks} tasks \
                         (position {position:?}, {} loss sums, {} counts)",
                        loss_sums.len(),
                        loss_counts.len()
                    ),
                ));
            }
            let step_evals = match tensors.get(EPOCH_STEP_EVALS) {
                Some(t) => evals_from_tensor(t, tasks, path)?,
                None => Vec::new(),
            };
            Some(EpochPosition {
                start_rng: rng_from_tensor(get(EPOCH_RNG)?, path, EPOCH_RNG)?,
                groups_done: position[0] as usize,
                step_evals,
                totals: EpochTotals {
                    loss_sums,
                    loss_counts: loss_counts.iter().map(|&c| c.max(0) as usize).collect(),
                    regularization_sum: (reg[0] != 0.0).then_some(reg[1]),
                    weight_sums,
                    steps: position[1] as usize,
                    samples: position[2] as usize,
                    skipped: position[3] as usize,
                },
            })
        } else {
            None
        };
        Ok(Self {
            step: counters.first().copied().unwrap_or(0).max(0) as u64,
            epoch: counters.get(1).copied().unwrap_or(0).max(0) as usize,
            lr_scale,
            epoch_progress: 0.0,
            rng: rng_from_tensor(get(RNG)?, path, RNG)?,
            in_epoch,
        })
    }
}

/// A well-mixed seed for sub-generator `stream` of a run seeded with `seed` (SplitMix64).
pub(crate) fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_add(stream.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn a_mid_epoch_state_round_trips_exactly() -> Result<()> {
        let mut state = RunState::new(5);
        state.step = 17;
        state.epoch = 2;
        state.lr_scale = 0.25;
        let start_rng = state.rng.clone();
        let _: u64 = state.rng.random();
        let mut totals = EpochTotals::new(2);
        totals.loss_sums = vec![1.0 / 3.0, 2.5];
        totals.loss_counts = vec![3, 2];
        totals.steps = 3;
        totals.samples = 96;
        totals.skipped = 1;
        totals.regularization_sum = Some(0.125);
        let tasks = vec![
            ("digit".to_string(), vec![Metric::Accuracy]),
            ("value".to_string(), vec![Metric::Mae, Metric::Rmse]),
        ];
        let eval = |step: u64, x: f64| {
            let tasks = tasks
                .iter()
                .map(|(name, metrics)| TaskEvaluation {
                    task: name.clone(),
                    loss: x,
                    metrics: metrics.iter().map(|m| (m.clone(), x / 2.0)).collect(),
                    samples: 100,
                })
                .collect();
            (step, EvalReport { tasks })
        };
        let step_evals = vec![eval(12, 0.75), eval(15, 0.5)];
        state.in_epoch = Some(EpochPosition {
            start_rng,
            groups_done: 3,
            totals: totals.clone(),
            step_evals: step_evals.clone(),
        });
        let map: HashMap<String, Tensor> = state.to_tensors()?.into_iter().collect();
        let mut back = RunState::from_tensors(&map, Path::new("x"), &tasks)?;
        assert_eq!((back.step, back.epoch, back.lr_scale), (17, 2, 0.25));
        assert_eq!(back.rng.random::<u64>(), state.rng.random::<u64>());
        let pos = back.in_epoch.as_mut().expect("position");
        assert_eq!(pos.groups_done, 3);
        assert_eq!(pos.totals, totals);
        assert_eq!(pos.step_evals, step_evals);
        let mut fresh = RunState::new(5).rng;
        assert_eq!(pos.start_rng.random::<u64>(), fresh.random::<u64>());
        // A position for another number of tasks is refused, naming the file.
        let three = [tasks.clone(), vec![("x".to_string(), vec![])]].concat();
        let err = RunState::from_tensors(&map, Path::new("run.safetensors"), &three)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("run.safetensors"), "{err}");
        Ok(())
    }
}
