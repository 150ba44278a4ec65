//! Training: the [`MultiTaskTrainer`] trait and the built-in [`Trainer`].

mod builder;
pub(crate) mod checkpoint;
mod config;
mod epoch;
pub(crate) mod evaluate;
mod freezing;
mod mode;
mod observer;
mod policy;
#[cfg(feature = "progress")]
mod progress;
mod report;
mod resume;
mod run_state;
mod schedule;
mod setup;
mod step;
mod tasks;
#[cfg(feature = "tensorboard")]
mod tensorboard;
mod trainer;

pub use builder::TrainerBuilder;
pub use checkpoint::{latest_checkpoint, CheckpointPolicy};
pub use config::{EpochLength, NonFinitePolicy, TrainerConfig};
pub use mode::{
    HeadRegularizer, HeadsTraining, Phase, PhaseSchedule, PhaseUnit, TaskOrder, TrainingMode,
    UnfreezeOrder, UnfreezeSchedule,
};
pub use observer::{CsvLog, JsonlLog, Observer};
#[cfg(feature = "progress")]
pub use progress::Progress;
pub use report::{EpochReport, EvalReport, FitReport, StepReport, TaskEvaluation};
pub use schedule::{EarlyStopping, LrSchedule};
#[cfg(feature = "tensorboard")]
pub use tensorboard::TensorBoardLog;
pub use trainer::Trainer;

pub(crate) use run_state::derive_seed;

use crate::data::{Batch, Dataset, DatasetList};
use crate::error::Result;

/// The data of an epoch or an evaluation: any [`Dataset`] (a `TensorDataset`, a CSV manifest,
/// a memory-mapped file, or one of your own).
#[derive(Clone, Copy)]
pub enum TaskData<'a> {
    /// Single-input mode: one dataset with a target named after every task.
    Shared(&'a dyn Dataset),
    /// Multi-input mode: one dataset per task, in task order, each with a target named after
    /// its task (a `Vec` or an array of datasets).
    PerTask(&'a dyn DatasetList),
}

impl<'a> TaskData<'a> {
    /// The datasets read: one for shared data, one per task otherwise.
    pub fn datasets(&self) -> Vec<&'a dyn Dataset> {
        match *self {
            TaskData::Shared(ds) => vec![ds],
            TaskData::PerTask(dss) => dss.all(),
        }
    }
}

impl std::fmt::Debug for TaskData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: Vec<usize> = self.datasets().iter().map(|d| d.len()).collect();
        match self {
            TaskData::Shared(_) => write!(f, "TaskData::Shared({} samples)", sizes[0]),
            TaskData::PerTask(_) => write!(f, "TaskData::PerTask({sizes:?} samples)"),
        }
    }
}

/// The batches of one training step.
#[derive(Debug, Clone)]
pub enum StepBatch {
    /// One batch read by every task.
    Shared(Batch),
    /// One batch per task, in task order.
    PerTask(Vec<Batch>),
    /// One batch for one task (index in the model's task order): a step of
    /// [`TrainingMode::Alternating`] that trains that task alone.
    Task {
        /// The task trained.
        task: usize,
        /// Its batch.
        batch: Batch,
    },
}

/// Trains a multi-task model: steps, epochs, evaluation.
///
/// [`fit`](MultiTaskTrainer::fit) has a default body built on the other three methods.
pub trait MultiTaskTrainer {
    /// One optimisation step on `batch`.
    fn train_step(&mut self, batch: &StepBatch) -> Result<StepReport>;

    /// One pass over `data` in a seeded random order (no evaluation).
    fn train_epoch(&mut self, data: TaskData<'_>) -> Result<EpochReport>;

    /// Per-task losses and metrics on `data`, without updating anything.
    fn evaluate(&mut self, data: TaskData<'_>) -> Result<EvalReport>;

    /// `epochs` epochs of training, each followed by evaluation on `eval` when given;
    /// `on_epoch` sees each epoch's report (printing, logging, early stopping by error).
    fn fit(
        &mut self,
        train: TaskData<'_>,
        eval: Option<TaskData<'_>>,
        epochs: usize,
        on_epoch: &mut dyn FnMut(&EpochReport) -> Result<()>,
    ) -> Result<FitReport> {
        let mut fit = FitReport::default();
        for _ in 0..epochs {
            let mut report = self.train_epoch(train)?;
            if let Some(eval) = eval {
                report.eval = Some(self.evaluate(eval)?);
            }
            on_epoch(&report)?;
            fit.epochs.push(report);
        }
        Ok(fit)
    }
}
