//! How tasks are scheduled during training, layer-wise unfreezing of the encoder, and penalties
//! that tie the task heads together.

use crate::error::{Error, Result};

/// Which tasks a training step trains.
///
/// | mode | a step trains | the weighting strategy |
/// |---|---|---|
/// | [`Joint`](TrainingMode::Joint) | every task | decides every step |
/// | [`Alternating`](TrainingMode::Alternating) | one task, on its own loss | not consulted (must be loss-based, without learned parameters) |
/// | [`Progressive`](TrainingMode::Progressive) | the tasks that have joined | decides among the joined tasks; re-prepared (its state reset) when a task joins |
///
/// Evaluation always covers every task.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TrainingMode {
    /// All tasks at every step (the default).
    #[default]
    Joint,
    /// One task per step. In multi-input mode an epoch visits every task's dataset once, the
    /// tasks' batches interleaved as the order says; in single-input mode each step trains one
    /// task on the shared batch.
    Alternating(TaskOrder),
    /// Tasks join at given epochs: `(task, epoch)` pairs; a task not listed trains from epoch
    /// 0. A task that has not joined yet is neither run nor updated. Use it to add a task to a
    /// trained model while the old tasks keep training (so that they are not forgotten).
    Progressive(Vec<(String, usize)>),
}

/// The order of tasks in [`TrainingMode::Alternating`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskOrder {
    /// Task 0, 1, ..., K-1, 0, ...; a task whose data is used up for the epoch is passed over.
    #[default]
    RoundRobin,
    /// A seeded random order in which each task appears as often as it has batches, that is
    /// in proportion to its dataset's size (uniform when all tasks share one dataset).
    Proportional,
}

impl TrainingMode {
    /// The epoch at which task `name` joins (0 unless a progressive schedule says otherwise).
    pub fn join_epoch(&self, name: &str) -> usize {
        match self {
            TrainingMode::Progressive(schedule) => schedule
                .iter()
                .find(|(t, _)| t == name)
                .map_or(0, |(_, e)| *e),
            _ => 0,
        }
    }

    /// Checks the mode against the model's task names.
    pub fn validate(&self, task_names: &[String]) -> Result<()> {
        if let TrainingMode::Progressive(schedule) = self {
            for (i, (task, _)) in schedule.iter().enumerate() {
                if !task_names.contains(task) {
                    return Err(Error::config(
                        "TrainingMode::Progressive",
                        format!("'{task}'"),
                        format!("names no task of the model ({})", task_names.join(", ")),
                    ));
                }
                if schedule[..i].iter().any(|(t, _)| t == task) {
                    return Err(Error::config(
                        "TrainingMode::Progressive",
                        format!("'{task}'"),
                        "is scheduled twice",
                    ));
                }
            }
            if task_names.iter().all(|t| self.join_epoch(t) > 0) {
                return Err(Error::config(
                    "TrainingMode::Progressive",
                    format!("{schedule:?}"),
                    "no task trains from epoch 0; at least one must",
                ));
            }
        }
        Ok(())
    }
}

/// Layer-wise unfreezing of the encoder (as in ULMFiT's gradual unfreezing): the encoder is
/// frozen for the first `first_epoch` epochs, then released one layer at a time from the top
/// (the layer nearest the heads) down, one more every `every_epochs` epochs. The layers are
/// those the encoder declares ([`SharedEncoder::layer_groups`](crate::encoder::SharedEncoder::layer_groups));
/// an encoder that declares none is released whole at `first_epoch`.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnfreezeSchedule {
    /// Epochs with the whole encoder frozen (only heads and stems train).
    pub first_epoch: usize,
    /// Epochs between the release of one layer and the next.
    pub every_epochs: usize,
}

impl Default for UnfreezeSchedule {
    fn default() -> Self {
        Self {
            first_epoch: 1,
            every_epochs: 1,
        }
    }
}

impl UnfreezeSchedule {
    /// How many layers, counted from the top, train in epoch `epoch`.
    pub fn released_layers(&self, epoch: usize) -> usize {
        if epoch < self.first_epoch {
            0
        } else {
            1 + (epoch - self.first_epoch) / self.every_epochs.max(1)
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.every_epochs == 0 {
            return Err(Error::config(
                "UnfreezeSchedule::every_epochs",
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Task-relation penalties on the heads, added to the training objective and reported in the
/// step and epoch reports:
///
/// `mean_l2 * sum_k ||theta_k - mean_j theta_j||^2 + l1 * sum_k ||W_k||_1`
///
/// The first term pulls the heads' parameters towards their mean (parameters are compared by
/// their name inside the head, among heads where they have the same shape, so heads of
/// different output sizes are tied only where they match); the second makes head weights
/// sparse (`*weight` parameters only, not biases). Only the heads of the tasks trained at a
/// step take part.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HeadRegularizer {
    /// Coefficient of the pull towards the heads' mean.
    pub mean_l2: f64,
    /// Coefficient of the L1 penalty on head weights.
    pub l1: f64,
}

impl HeadRegularizer {
    pub(crate) fn validate(&self) -> Result<()> {
        for (name, v) in [("mean_l2", self.mean_l2), ("l1", self.l1)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::config(
                    format!("HeadRegularizer::{name}"),
                    v,
                    "must be finite and >= 0",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfreezing_releases_one_layer_per_period() {
        let s = UnfreezeSchedule {
            first_epoch: 2,
            every_epochs: 2,
        };
        let released: Vec<usize> = (0..8).map(|e| s.released_layers(e)).collect();
        assert_eq!(released, vec![0, 0, 1, 1, 2, 2, 3, 3]);
    }

    #[test]
    fn progressive_schedules_are_checked_against_the_tasks() {
        let names = vec!["a".to_string(), "b".to_string()];
        let ok = TrainingMode::Progressive(vec![("b".into(), 3)]);
        assert!(ok.validate(&names).is_ok());
        assert_eq!(ok.join_epoch("b"), 3);
        assert_eq!(ok.join_epoch("a"), 0);
        let unknown = TrainingMode::Progressive(vec![("c".into(), 1)]);
        assert!(unknown
            .validate(&names)
            .unwrap_err()
            .to_string()
            .contains("'c'"));
        let nobody = TrainingMode::Progressive(vec![("a".into(), 1), ("b".into(), 2)]);
        assert!(nobody.validate(&names).is_err());
    }
}
