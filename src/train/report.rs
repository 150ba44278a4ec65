//! What training and evaluation return.

use crate::metrics::Metric;

/// The result of one training step.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Global step number (from 0).
    pub step: u64,
    /// Task losses before the update, in task order; NaN for a task the step did not train
    /// (alternating and progressive modes).
    pub losses: Vec<f64>,
    /// Task weights the strategy chose, or `None` when it returned a combined gradient.
    pub weights: Option<Vec<f64>>,
    /// Samples consumed (summed over tasks in multi-input mode).
    pub samples: usize,
    /// Norms, pairwise cosines and conflicting pairs of the task gradients, when the strategy
    /// asked for gradients (computed from their Gramian, no extra backward pass).
    pub gradient_stats: Option<crate::grad::GradientStats>,
    /// Global gradient norm before clipping, when [`TrainerConfig::max_grad_norm`](super::TrainerConfig::max_grad_norm) is set.
    pub grad_norm: Option<f64>,
    /// Value of the head penalties ([`HeadRegularizer`](super::HeadRegularizer)), when set.
    pub regularization: Option<f64>,
    /// True when a non-finite loss or gradient made the step be skipped
    /// ([`NonFinitePolicy::Skip`](super::NonFinitePolicy::Skip)); nothing was updated.
    pub skipped: bool,
}

/// Evaluation of one task.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvaluation {
    /// Task name.
    pub task: String,
    /// Mean loss over the evaluated samples.
    pub loss: f64,
    /// `(metric, value)` in the order of the task's spec.
    pub metrics: Vec<(Metric, f64)>,
    /// Samples evaluated.
    pub samples: usize,
}

impl TaskEvaluation {
    /// The value of `metric`, if the task reports it.
    pub fn metric(&self, metric: impl std::borrow::Borrow<Metric>) -> Option<f64> {
        let metric = metric.borrow();
        self.metrics
            .iter()
            .find(|(m, _)| m == metric)
            .map(|(_, v)| *v)
    }
}

/// Evaluation of every task.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// One entry per task, in task order.
    pub tasks: Vec<TaskEvaluation>,
}

impl EvalReport {
    /// The evaluation of task `name`.
    pub fn task(&self, name: &str) -> Option<&TaskEvaluation> {
        self.tasks.iter().find(|t| t.task == name)
    }
}

/// The result of one training epoch.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EpochReport {
    /// Epoch number (from 0).
    pub epoch: usize,
    /// Task names, in task order.
    pub task_names: Vec<String>,
    /// Mean training loss of each task over the epoch's steps that trained it and were not
    /// skipped (NaN for a task no step trained).
    pub train_losses: Vec<f64>,
    /// Mean value of the head penalties over the epoch, when a
    /// [`HeadRegularizer`](super::HeadRegularizer) is set.
    pub mean_regularization: Option<f64>,
    /// Mean task weights over the epoch (`None` when the strategy returned directions).
    pub mean_weights: Option<Vec<f64>>,
    /// Steps taken (skipped ones included).
    pub steps: usize,
    /// Steps skipped for a non-finite loss or gradient.
    pub skipped_steps: usize,
    /// The optimiser's learning rate at the end of the epoch.
    pub learning_rate: f64,
    /// Evaluations taken inside the epoch, `(global step, report)`, with
    /// [`TrainerConfig::eval_every_steps`](super::TrainerConfig::eval_every_steps).
    pub step_evals: Vec<(u64, EvalReport)>,
    /// Samples consumed.
    pub samples: usize,
    /// Wall-clock seconds spent training (evaluation excluded).
    pub seconds: f64,
    /// Of `seconds`, the time the training loop waited for batches (gathering, augmenting,
    /// normalising happen on a background thread when
    /// [`TrainerConfig::prefetch_depth`](super::TrainerConfig::prefetch_depth) > 0).
    pub data_seconds: f64,
    /// Evaluation after the epoch, when evaluation data was given.
    pub eval: Option<EvalReport>,
}

impl EpochReport {
    /// Share of the training time spent waiting for data, in `[0, 1]`.
    pub fn data_share(&self) -> f64 {
        if self.seconds > 0.0 {
            self.data_seconds / self.seconds
        } else {
            0.0
        }
    }

    /// Training throughput.
    pub fn samples_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.samples as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The result of [`fit`](super::MultiTaskTrainer::fit): one report per epoch.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FitReport {
    /// Per-epoch reports.
    pub epochs: Vec<EpochReport>,
    /// True when early stopping ended the run before the requested epochs.
    pub stopped_early: bool,
}

impl FitReport {
    /// The last epoch's report.
    pub fn last(&self) -> Option<&EpochReport> {
        self.epochs.last()
    }
}
