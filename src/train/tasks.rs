//! The task schedule: which tasks a step and an epoch train, from the [`TrainingMode`].

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{StepBatch, TaskOrder, TrainingMode};
use crate::error::{Error, Result};
use crate::weighting::InputMode;

/// Joint, alternating or progressive training, with the tasks that have joined so far.
pub(crate) struct TaskSchedule {
    mode: TrainingMode,
    num_tasks: usize,
    /// Tasks trained by joint steps (all, or those that joined in progressive mode).
    active: Vec<usize>,
}

impl TaskSchedule {
    /// The schedule of `mode` over tasks `names`, as at epoch 0; refuses a mode that names
    /// unknown tasks.
    pub fn new(mode: &TrainingMode, names: &[String]) -> Result<Self> {
        mode.validate(names)?;
        Ok(Self {
            active: joined_tasks(mode, names, 0),
            mode: mode.clone(),
            num_tasks: names.len(),
        })
    }

    /// Whether each step trains one task on its own loss.
    pub fn is_alternating(&self) -> bool {
        matches!(self.mode, TrainingMode::Alternating(_))
    }

    /// Whether tasks join over the epochs.
    pub fn is_progressive(&self) -> bool {
        matches!(self.mode, TrainingMode::Progressive(_))
    }

    /// The task order of alternating training (`None` otherwise).
    pub fn alternation(&self) -> Option<TaskOrder> {
        match &self.mode {
            TrainingMode::Alternating(order) => Some(*order),
            _ => None,
        }
    }

    /// The tasks joint steps train now, in task order.
    pub fn active(&self) -> &[usize] {
        &self.active
    }

    /// The tasks active at `epoch` when they differ from the current ones (progressive
    /// mode); the caller re-prepares the strategy and then calls [`set_active`](Self::set_active).
    pub fn joined_at(&self, epoch: usize, names: &[String]) -> Option<Vec<usize>> {
        if !self.is_progressive() {
            return None;
        }
        let active = joined_tasks(&self.mode, names, epoch);
        (active != self.active).then_some(active)
    }

    /// Replaces the active tasks.
    pub fn set_active(&mut self, active: Vec<usize>) {
        self.active = active;
    }

    /// Refuses a batch whose kind does not fit the mode and the input mode.
    pub fn check_batch(&self, batch: &StepBatch, input_mode: InputMode) -> Result<()> {
        if let StepBatch::Task { task, .. } = batch {
            if !self.is_alternating() {
                return Err(Error::DataMismatch(
                    "a single-task batch (StepBatch::Task) needs TrainingMode::Alternating".into(),
                ));
            }
            if *task >= self.num_tasks {
                return Err(Error::DataMismatch(format!(
                    "StepBatch::Task names task index {task}, the model has {} tasks",
                    self.num_tasks
                )));
            }
            return Ok(());
        }
        match (batch, input_mode) {
            (StepBatch::Shared(_), InputMode::SingleInput) => Ok(()),
            (StepBatch::PerTask(bs), InputMode::MultiInput) if bs.len() == self.num_tasks => Ok(()),
            (StepBatch::PerTask(bs), InputMode::MultiInput) => Err(Error::DataMismatch(format!(
                "{} per-task batches for {} tasks",
                bs.len(),
                self.num_tasks
            ))),
            (_, mode) => Err(Error::DataMismatch(format!(
                "the trainer is configured for {mode:?} but got {} batch",
                if matches!(batch, StepBatch::Shared(_)) {
                    "a shared"
                } else {
                    "per-task"
                }
            ))),
        }
    }

    /// The tasks a step on `batch` trains (global step `step`; a proportional alternation on
    /// a shared batch draws the task from `rng`).
    pub fn step_tasks(
        &self,
        batch: &StepBatch,
        step: u64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<usize>> {
        match (&self.mode, batch) {
            (_, StepBatch::Task { task, .. }) => Ok(vec![*task]),
            (TrainingMode::Alternating(TaskOrder::RoundRobin), StepBatch::Shared(_)) => {
                Ok(vec![(step % self.num_tasks as u64) as usize])
            }
            (TrainingMode::Alternating(TaskOrder::Proportional), StepBatch::Shared(_)) => {
                Ok(vec![rng.random_range(0..self.num_tasks)])
            }
            (TrainingMode::Alternating(_), StepBatch::PerTask(_)) => Err(Error::DataMismatch(
                "alternating training in multi-input mode takes one task's batch per step: \
                 give StepBatch::Task"
                    .into(),
            )),
            _ => Ok(self.active.clone()),
        }
    }
}

/// The tasks that train at `epoch` under `mode` (every task except those a progressive
/// schedule has not let in yet).
pub(crate) fn joined_tasks(mode: &TrainingMode, names: &[String], epoch: usize) -> Vec<usize> {
    names
        .iter()
        .enumerate()
        .filter(|(_, n)| mode.join_epoch(n) <= epoch)
        .map(|(k, _)| k)
        .collect()
}
