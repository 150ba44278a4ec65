//! Epochs: a pure plan (the batches and the task of each step, drawn from the data-order
//! generator) and the loop that runs it. The loop's position is part of the run state, so a
//! checkpoint taken after any step continues the epoch exactly where it stood.

use std::collections::VecDeque;
use std::time::Instant;

use candle_core::Device;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::evaluate::check_data;
use super::run_state::{derive_seed, EpochPosition, EpochTotals};
use super::tasks::TaskSchedule;
use super::{EpochLength, EpochReport, StepBatch, TaskData, TaskOrder, Trainer, TrainerConfig};
use crate::data::{prefetch_parallel, shuffled_batches, Dataset};
use crate::error::{Error, Result};
use crate::model::MultiTaskModel;

/// An epoch's plan: per step, one index list per dataset read (one for shared data), and the
/// task a step trains alone (alternating mode) or `None` (the active tasks).
pub(crate) struct EpochPlan {
    pub batches: Vec<Vec<Vec<u32>>>,
    pub tasks: Vec<Option<usize>>,
}

/// Draws the plan of an epoch from `rng`; `first_step` is the global step the epoch starts
/// at (round-robin alternation over shared data rotates from it).
pub(crate) fn plan_epoch(
    rng: &mut ChaCha8Rng,
    data: TaskData<'_>,
    schedule: &TaskSchedule,
    config: &TrainerConfig,
    model: &MultiTaskModel,
    first_step: u64,
) -> Result<EpochPlan> {
    let mut order = |len: usize| shuffled_batches(len, config.batch_size, config.drop_last, rng);
    let k_tasks = model.tasks().len();
    match (data, schedule.alternation()) {
        (TaskData::Shared(ds), alternation) => {
            let batches: Vec<Vec<Vec<u32>>> =
                order(ds.len()).into_iter().map(|b| vec![b]).collect();
            let tasks = match alternation {
                None => vec![None; batches.len()],
                Some(TaskOrder::RoundRobin) => (0..batches.len())
                    .map(|i| Some(((first_step + i as u64) % k_tasks as u64) as usize))
                    .collect(),
                Some(TaskOrder::Proportional) => (0..batches.len())
                    .map(|_| Some(rng.random_range(0..k_tasks)))
                    .collect(),
            };
            Ok(EpochPlan { batches, tasks })
        }
        (TaskData::PerTask(dss), Some(task_order)) => {
            let dss = dss.all();
            // Each task's data exactly once per epoch.
            let mut per_task: Vec<VecDeque<Vec<u32>>> = dss
                .iter()
                .map(|ds| order(ds.len()).into_iter().collect())
                .collect();
            let mut sequence: Vec<usize> = Vec::new();
            match task_order {
                TaskOrder::RoundRobin => {
                    let longest = per_task.iter().map(VecDeque::len).max().unwrap_or(0);
                    for round in 0..longest {
                        for (k, q) in per_task.iter().enumerate() {
                            if round < q.len() {
                                sequence.push(k);
                            }
                        }
                    }
                }
                TaskOrder::Proportional => {
                    for (k, q) in per_task.iter().enumerate() {
                        sequence.extend(std::iter::repeat_n(k, q.len()));
                    }
                    sequence.shuffle(rng);
                }
            }
            let mut batches = Vec::with_capacity(sequence.len());
            let mut tasks = Vec::with_capacity(sequence.len());
            for k in sequence {
                batches.push(vec![per_task[k].pop_front().unwrap_or_default()]);
                tasks.push(Some(k));
            }
            Ok(EpochPlan { batches, tasks })
        }
        (TaskData::PerTask(dss), None) => {
            let dss = dss.all();
            let mut plans: Vec<Vec<Vec<u32>>> = dss.iter().map(|ds| order(ds.len())).collect();
            let counts: Vec<usize> = plans.iter().map(Vec::len).collect();
            if let Some(k) = counts.iter().position(|&c| c == 0) {
                return Err(Error::DataMismatch(format!(
                    "task '{}' has {} samples, not one full batch of {} (drop_last is set)",
                    model.tasks()[k].name(),
                    dss[k].len(),
                    config.batch_size
                )));
            }
            let n_steps = match config.epoch_length {
                EpochLength::CycleShorter => counts.iter().copied().max().unwrap_or(0),
                EpochLength::StopAtShortest => counts.iter().copied().min().unwrap_or(0),
            };
            let mut cursors = vec![0usize; dss.len()];
            let mut batches = Vec::with_capacity(n_steps);
            for _ in 0..n_steps {
                let mut step = Vec::with_capacity(dss.len());
                for (k, ds) in dss.iter().enumerate() {
                    if cursors[k] >= plans[k].len() {
                        plans[k] = order(ds.len());
                        cursors[k] = 0;
                    }
                    step.push(std::mem::take(&mut plans[k][cursors[k]]));
                    cursors[k] += 1;
                }
                batches.push(step);
            }
            Ok(EpochPlan {
                tasks: vec![None; batches.len()],
                batches,
            })
        }
    }
}

/// Moves every batch of `batch` to `device`.
fn to_device(batch: StepBatch, device: &Device) -> Result<StepBatch> {
    Ok(match batch {
        StepBatch::Shared(b) => StepBatch::Shared(b.to_device(device)?),
        StepBatch::PerTask(bs) => StepBatch::PerTask(
            bs.iter()
                .map(|b| b.to_device(device))
                .collect::<Result<Vec<_>>>()?,
        ),
        StepBatch::Task { task, batch } => StepBatch::Task {
            task,
            batch: batch.to_device(device)?,
        },
    })
}

impl Trainer {
    /// One epoch (or the rest of one, after loading a checkpoint taken inside it); with
    /// `eval` (data, every N steps), evaluates every N global steps and keeps the results in
    /// [`EpochReport::step_evals`].
    pub(super) fn run_epoch(
        &mut self,
        data: TaskData<'_>,
        eval: Option<(TaskData<'_>, u64)>,
    ) -> Result<EpochReport> {
        check_data(&self.model, data, self.config.input_mode)?;
        self.begin_epoch()?;
        let device = self.model.device().clone();
        let k_tasks = self.model.tasks().len();
        let start = Instant::now();
        // A checkpoint taken inside this epoch: its plan is drawn again from the generator as
        // the epoch began, and the steps already taken are skipped.
        let resumed = self.state.in_epoch.take();
        if let Some(pos) = &resumed {
            self.state.rng = pos.start_rng.clone();
        }
        let start_rng = self.state.rng.clone();
        let done_before = resumed.as_ref().map_or(0, |p| p.groups_done);
        let first_step = self.state.step.saturating_sub(done_before as u64);
        // The whole epoch's plan is fixed here, so that preparing batches on another thread
        // cannot change it.
        let plan = plan_epoch(
            &mut self.state.rng,
            data,
            &self.schedule,
            &self.config,
            &self.model,
            first_step,
        )?;
        let group = self.path.batches();
        if plan.batches.len() < group {
            return Err(Error::DataMismatch(format!(
                "the epoch has {} batches of {} samples, fewer than the {group} a step of '{}' takes",
                plan.batches.len(),
                self.config.batch_size,
                self.weighting.name()
            )));
        }
        let datasets = data.datasets();
        // Augmentation draws from a generator per batch, seeded by the batch's index: the
        // same on any resume point and any prefetch depth.
        let augment_seed: Option<u64> = datasets
            .iter()
            .any(|d| d.augments())
            .then(|| self.state.rng.random());
        let shared = matches!(data, TaskData::Shared(_));
        let produce = |i: usize| -> Result<StepBatch> {
            let mut rng = augment_seed.map(|s| ChaCha8Rng::seed_from_u64(derive_seed(s, i as u64)));
            let mut read = |ds: &dyn Dataset, idx: &[u32]| match rng.as_mut() {
                Some(rng) => ds.read_training_batch(idx, rng),
                None => ds.read_batch(idx),
            };
            if let Some(k) = plan.tasks[i] {
                let ds = if shared { datasets[0] } else { datasets[k] };
                let idx = plan.batches[i].first().map(Vec::as_slice).unwrap_or(&[]);
                return Ok(StepBatch::Task {
                    task: k,
                    batch: read(ds, idx)?,
                });
            }
            let mut batches = plan.batches[i]
                .iter()
                .zip(&datasets)
                .map(|(idx, ds)| read(*ds, idx))
                .collect::<Result<Vec<_>>>()?;
            if shared {
                let b = batches
                    .pop()
                    .ok_or_else(|| Error::DataMismatch("empty batch plan".into()))?;
                Ok(StepBatch::Shared(b))
            } else {
                Ok(StepBatch::PerTask(batches))
            }
        };
        // Cross-batch strategies take consecutive batches in groups (the last, incomplete
        // group is dropped); everything else one batch per step.
        let produce_group = |i: usize| -> Result<Vec<StepBatch>> {
            (i * group..(i + 1) * group).map(&produce).collect()
        };
        let total_groups = plan.batches.len() / group;
        let skip = done_before.min(total_groups);
        self.state.in_epoch = Some(EpochPosition {
            start_rng,
            groups_done: skip,
            totals: resumed
                .as_ref()
                .map(|p| p.totals.clone())
                .unwrap_or_else(|| EpochTotals::new(k_tasks)),
            // Evaluations made before the checkpoint this epoch resumes from.
            step_evals: resumed.map(|p| p.step_evals).unwrap_or_default(),
        });
        for o in &mut self.observers {
            o.on_epoch_start(self.state.epoch, total_groups)?;
        }
        // No prefetching: batches are made on this thread. Otherwise `loader_workers` threads
        // make them, at most `prefetch_depth` (at least one per worker) ahead.
        let (workers, depth) = match self.config.prefetch_depth {
            0 => (0, 0),
            d => {
                let w = self.config.loader_workers.max(1);
                (w, d.max(w))
            }
        };
        let stats = prefetch_parallel(
            total_groups - skip,
            workers,
            depth,
            |j| produce_group(j + skip),
            |batches| {
                let batches = batches
                    .into_iter()
                    .map(|b| to_device(b, &device))
                    .collect::<Result<Vec<_>>>()?;
                let done = self.state.in_epoch.as_ref().map_or(0, |p| p.groups_done);
                self.state.epoch_progress = done as f64 / total_groups.max(1) as f64;
                let (first, rest) = batches
                    .split_first()
                    .ok_or_else(|| Error::DataMismatch("empty group".into()))?;
                let rest: Vec<&StepBatch> = rest.iter().collect();
                let r = self.step(first, &rest)?;
                if let Some(pos) = self.state.in_epoch.as_mut() {
                    pos.totals.record(&r);
                    pos.groups_done += 1;
                }
                if let Some((eval_data, every)) = eval {
                    if self.state.step % every == 0 {
                        let e = self.evaluate_data(eval_data)?;
                        for o in &mut self.observers {
                            o.on_eval(self.state.step, &e)?;
                        }
                        if let Some(pos) = self.state.in_epoch.as_mut() {
                            pos.step_evals.push((self.state.step, e));
                        }
                    }
                }
                self.checkpoint_if_due()
            },
        )?;
        let (totals, step_evals) = self
            .state
            .in_epoch
            .take()
            .map(|p| (p.totals, p.step_evals))
            .unwrap_or_else(|| (EpochTotals::new(k_tasks), Vec::new()));
        let seconds = start.elapsed().as_secs_f64();
        let applied = totals.applied();
        let train_losses = totals.mean_losses();
        if self.path.consults_strategy() {
            let active_means: Vec<f64> = self
                .schedule
                .active()
                .iter()
                .map(|&k| train_losses[k])
                .collect();
            self.weighting.end_epoch(self.state.epoch, &active_means)?;
        }
        let report = EpochReport {
            epoch: self.state.epoch,
            task_names: self.model.task_names(),
            train_losses,
            mean_regularization: totals.regularization_sum.map(|s| s / applied),
            mean_weights: totals
                .weight_sums
                .map(|w| w.into_iter().map(|s| s / applied).collect()),
            steps: totals.steps,
            skipped_steps: totals.skipped,
            step_evals,
            learning_rate: self.optimizer.learning_rate(),
            samples: totals.samples,
            seconds,
            data_seconds: stats.wait_seconds,
            eval: None,
        };
        self.state.epoch += 1;
        Ok(report)
    }
}
