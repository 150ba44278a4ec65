use super::{
    CheckpointPolicy, EarlyStopping, HeadRegularizer, LrSchedule, TrainingMode, UnfreezeSchedule,
};
use crate::error::{Error, Result};
use crate::grad::GradientSource;
use crate::optim::OptimizerConfig;
use crate::weighting::InputMode;

/// How a multi-input epoch ends when the tasks' datasets differ in size.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EpochLength {
    /// Run until the largest dataset is used up; smaller ones restart (reshuffled).
    #[default]
    CycleShorter,
    /// Stop when the smallest dataset is used up.
    StopAtShortest,
}

/// What the trainer does when a task's loss or gradient is NaN or infinite.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonFinitePolicy {
    /// Stop with an error naming the task and the step; nothing is updated.
    #[default]
    Error,
    /// Skip the step (no update of parameters, optimiser or strategy) and count it in the
    /// epoch report.
    Skip,
}

/// Configuration of a [`Trainer`](super::Trainer), validated when the trainer is built.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `optimizer` | Adam, lr 1e-3 | optimiser and its hyper-parameters |
/// | `batch_size` | 64 | training batch size (per task in multi-input mode) |
/// | `eval_batch_size` | 500 | evaluation batch size |
/// | `seed` | 0 | seeds the data order and the strategy's generator |
/// | `input_mode` | single input | one batch for all tasks, or one per task |
/// | `gradient_source` | `None` | per-task gradients to compute; `None` lets a gradient-based strategy pick its preferred one |
/// | `epoch_length` | cycle shorter | multi-input epochs over datasets of different sizes |
/// | `drop_last` | false | drop the last, incomplete training batch |
/// | `prefetch_depth` | 2 | batches prepared ahead of the training step (0: none, prepare inline) |
/// | `loader_workers` | 1 | threads preparing batches when `prefetch_depth > 0` (results do not depend on it) |
/// | `max_grad_norm` | `None` | clip the global gradient norm to this value |
/// | `non_finite` | error | stop, or skip the step, on a NaN/infinite loss or gradient |
/// | `eval_every_steps` | `None` | in `fit`, also evaluate every N steps (kept in `EpochReport::step_evals`) |
/// | `lr_schedule` | constant | learning-rate schedule ([`LrSchedule`]) |
/// | `early_stopping` | `None` | stop `fit` when a metric stops improving ([`EarlyStopping`]) |
/// | `checkpoint` | `None` | where `fit` writes checkpoints after each epoch ([`CheckpointPolicy`]) |
/// | `mode` | joint | which tasks a step trains ([`TrainingMode`]: joint, alternating, progressive) |
/// | `unfreeze` | `None` | layer-wise unfreezing of the encoder ([`UnfreezeSchedule`]) |
/// | `head_regularizer` | `None` | task-relation penalties on the heads ([`HeadRegularizer`]) |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerConfig {
    /// Optimiser.
    pub optimizer: OptimizerConfig,
    /// Training batch size.
    pub batch_size: usize,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Seed of the data order and the weighting strategy.
    pub seed: u64,
    /// Single- or multi-input training.
    pub input_mode: InputMode,
    /// Where per-task gradients are taken, for gradient-based strategies.
    pub gradient_source: Option<GradientSource>,
    /// Multi-input epoch length policy.
    pub epoch_length: EpochLength,
    /// Drop the last incomplete batch of an epoch.
    pub drop_last: bool,
    /// Batches prepared ahead of the training step (at least one per worker); 0 prepares them
    /// on the training thread.
    pub prefetch_depth: usize,
    /// Threads reading, decoding and augmenting batches when `prefetch_depth > 0`. Batches
    /// are handed over in the plan's order and augmentation is seeded per batch, so the run
    /// is the same for every worker count.
    #[cfg_attr(feature = "serde", serde(default = "default_loader_workers"))]
    pub loader_workers: usize,
    /// Clip the global L2 norm of the gradients to this value before each update.
    pub max_grad_norm: Option<f64>,
    /// What to do on a non-finite loss or gradient.
    pub non_finite: NonFinitePolicy,
    /// In `fit` (with evaluation data), evaluate every this many steps too.
    pub eval_every_steps: Option<u64>,
    /// Learning-rate schedule.
    pub lr_schedule: LrSchedule,
    /// Early stopping of `fit`.
    pub early_stopping: Option<EarlyStopping>,
    /// Checkpoints written by `fit` after each epoch.
    pub checkpoint: Option<CheckpointPolicy>,
    /// Which tasks each step trains.
    #[cfg_attr(feature = "serde", serde(default))]
    pub mode: TrainingMode,
    /// Layer-wise unfreezing of the encoder, applied at the start of each epoch.
    #[cfg_attr(feature = "serde", serde(default))]
    pub unfreeze: Option<UnfreezeSchedule>,
    /// Task-relation penalties on the heads.
    #[cfg_attr(feature = "serde", serde(default))]
    pub head_regularizer: Option<HeadRegularizer>,
}

#[cfg(feature = "serde")]
fn default_loader_workers() -> usize {
    1
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            optimizer: OptimizerConfig::default(),
            batch_size: 64,
            eval_batch_size: 500,
            seed: 0,
            input_mode: InputMode::SingleInput,
            gradient_source: None,
            epoch_length: EpochLength::CycleShorter,
            drop_last: false,
            prefetch_depth: 2,
            loader_workers: 1,
            max_grad_norm: None,
            non_finite: NonFinitePolicy::Error,
            eval_every_steps: None,
            lr_schedule: LrSchedule::Constant,
            early_stopping: None,
            checkpoint: None,
            mode: TrainingMode::Joint,
            unfreeze: None,
            head_regularizer: None,
        }
    }
}

impl TrainerConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::config("batch_size", 0, "must be at least 1"));
        }
        if self.eval_batch_size == 0 {
            return Err(Error::config("eval_batch_size", 0, "must be at least 1"));
        }
        self.lr_schedule.validate()?;
        if self.eval_every_steps == Some(0) {
            return Err(Error::config("eval_every_steps", 0, "must be at least 1"));
        }
        if let Some(m) = self.max_grad_norm {
            if !(m.is_finite() && m > 0.0) {
                return Err(Error::config("max_grad_norm", m, "must be finite and > 0"));
            }
        }
        if let Some(c) = &self.checkpoint {
            if c.every_steps == Some(0) {
                return Err(Error::config(
                    "checkpoint.every_steps",
                    0,
                    "must be at least 1 (or None for epoch checkpoints only)",
                ));
            }
            if c.keep_last == 0 {
                return Err(Error::config(
                    "checkpoint.keep_last",
                    0,
                    "must keep at least one checkpoint",
                ));
            }
        }
        if let Some(u) = &self.unfreeze {
            u.validate()?;
        }
        if let Some(r) = &self.head_regularizer {
            r.validate()?;
        }
        self.optimizer.validate()
    }
}

impl TrainerConfig {
    /// The fields that decide what a run computes, each formatted, for the checkpoint's
    /// metadata: resuming under a configuration that differs in any of them is refused,
    /// naming the field. Fields that only change how a run is observed or stored (evaluation
    /// batch size and frequency, prefetching, early stopping, checkpoints) are left out.
    pub(crate) fn run_entries(&self) -> Vec<(&'static str, String)> {
        vec![
            ("optimizer", format!("{:?}", self.optimizer)),
            ("batch_size", self.batch_size.to_string()),
            ("seed", self.seed.to_string()),
            ("input_mode", format!("{:?}", self.input_mode)),
            ("gradient_source", format!("{:?}", self.gradient_source)),
            ("epoch_length", format!("{:?}", self.epoch_length)),
            ("drop_last", self.drop_last.to_string()),
            ("max_grad_norm", format!("{:?}", self.max_grad_norm)),
            ("non_finite", format!("{:?}", self.non_finite)),
            ("lr_schedule", format!("{:?}", self.lr_schedule)),
            ("mode", format!("{:?}", self.mode)),
            ("unfreeze", format!("{:?}", self.unfreeze)),
            ("head_regularizer", format!("{:?}", self.head_regularizer)),
        ]
    }
}
