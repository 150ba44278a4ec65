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
/// | [`EncoderDecoder`](TrainingMode::EncoderDecoder) | every task, but only the heads or only the encoder, in turn | decides every step (loss-based or representation-gradient strategies) |
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
    /// Every task at every step, alternating between *what* trains: phases that train only
    /// the task-specific parts (heads and input stems, the encoder frozen: no gradient work
    /// below the heads) and phases that train only the shared encoder (heads and stems
    /// frozen), heads first. The phase follows from the step (or epoch) count, so a resumed
    /// run continues mid-phase. Strategies that compare shared-parameter gradients are refused
    /// (no shared parameter trains in a heads phase).
    EncoderDecoder(PhaseSchedule),
}

/// The phase lengths of [`TrainingMode::EncoderDecoder`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseSchedule {
    /// Length of each heads-only phase.
    pub heads: usize,
    /// Length of each encoder-only phase.
    pub encoder: usize,
    /// Whether lengths count steps or epochs.
    pub unit: PhaseUnit,
}

/// What [`PhaseSchedule`] lengths count.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PhaseUnit {
    /// Optimiser steps (global step count).
    #[default]
    Steps,
    /// Epochs.
    Epochs,
}

/// Which part trains in a phase of [`TrainingMode::EncoderDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Heads and stems train, the encoder is frozen.
    Heads,
    /// The encoder trains, heads and stems are frozen.
    Encoder,
}

impl PhaseSchedule {
    /// `heads` steps training the heads, then `encoder` steps training the encoder, in turn.
    pub fn steps(heads: usize, encoder: usize) -> Self {
        Self {
            heads,
            encoder,
            unit: PhaseUnit::Steps,
        }
    }

    /// The same in epochs.
    pub fn epochs(heads: usize, encoder: usize) -> Self {
        Self {
            heads,
            encoder,
            unit: PhaseUnit::Epochs,
        }
    }

    /// The phase of global step `step` in epoch `epoch`.
    pub fn phase(&self, step: u64, epoch: usize) -> Phase {
        let position = match self.unit {
            PhaseUnit::Steps => step,
            PhaseUnit::Epochs => epoch as u64,
        };
        let cycle = (self.heads + self.encoder).max(1) as u64;
        if position % cycle < self.heads as u64 {
            Phase::Heads
        } else {
            Phase::Encoder
        }
    }

    fn validate(&self) -> Result<()> {
        if self.heads == 0 || self.encoder == 0 {
            return Err(Error::config(
                "TrainingMode::EncoderDecoder",
                format!(
                    "heads {} / encoder {} {:?}",
                    self.heads, self.encoder, self.unit
                ),
                "both phases need a length of at least 1",
            ));
        }
        Ok(())
    }
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
        if let TrainingMode::EncoderDecoder(phases) = self {
            phases.validate()?;
        }
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

/// Layer-wise training of the encoder: its layers (those it declares,
/// [`SharedEncoder::layer_groups`](crate::encoder::SharedEncoder::layer_groups); an encoder
/// that declares none is one layer) are released one at a time, the first at `first_epoch`,
/// one more every `every_epochs` epochs.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `first_epoch` | 1 | epochs before the first layer is released |
/// | `every_epochs` | 1 | epochs between one release and the next |
/// | `order` | `TopDown` | `TopDown`: from the layer nearest the heads down (ULMFiT's gradual unfreezing, for fine-tuning a pretrained encoder); `BottomUp`: from the input upwards (low-level features first) |
/// | `keep_trained` | true | released layers keep training (true), or only the layer released last trains while those before it are frozen again (false: greedy layer-wise training; once every layer has had its turn, everything trains together) |
/// | `heads` | `FromStart` | `FromStart`: the heads train from epoch 0; `Last` (bottom-up only): the heads are the last layer released, after the encoder's top layer |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnfreezeSchedule {
    /// Epochs before the first layer is released (only heads and stems train until then).
    pub first_epoch: usize,
    /// Epochs between the release of one layer and the next.
    pub every_epochs: usize,
    /// The order layers are released in.
    pub order: UnfreezeOrder,
    /// Whether layers released earlier keep training.
    pub keep_trained: bool,
    /// When the heads train.
    pub heads: HeadsTraining,
}

/// The order of [`UnfreezeSchedule`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnfreezeOrder {
    /// From the layer nearest the heads down to the input.
    #[default]
    TopDown,
    /// From the input up to the layer nearest the heads.
    BottomUp,
}

/// When the heads train under an [`UnfreezeSchedule`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeadsTraining {
    /// From the first epoch.
    #[default]
    FromStart,
    /// Released after the encoder's last layer, as the top of a bottom-up order.
    Last,
}

impl Default for UnfreezeSchedule {
    fn default() -> Self {
        Self {
            first_epoch: 1,
            every_epochs: 1,
            order: UnfreezeOrder::TopDown,
            keep_trained: true,
            heads: HeadsTraining::FromStart,
        }
    }
}

impl UnfreezeSchedule {
    /// ULMFiT-style gradual unfreezing: heads first, then the encoder from the top down.
    pub fn top_down(first_epoch: usize, every_epochs: usize) -> Self {
        Self {
            first_epoch,
            every_epochs,
            ..Self::default()
        }
    }

    /// Bottom-up layer-wise training from epoch 0: the first layer, then the next one up,
    /// every `every_epochs` epochs; earlier layers keep training, the heads train throughout.
    pub fn bottom_up(every_epochs: usize) -> Self {
        Self {
            first_epoch: 0,
            every_epochs,
            order: UnfreezeOrder::BottomUp,
            ..Self::default()
        }
    }

    /// How many units (layers, and the heads when they come last) have been released by epoch
    /// `epoch`.
    pub fn released_layers(&self, epoch: usize) -> usize {
        if epoch < self.first_epoch {
            0
        } else {
            1 + (epoch - self.first_epoch) / self.every_epochs.max(1)
        }
    }

    /// What trains in epoch `epoch` for an encoder of `layers` layers (at least 1): for each
    /// layer, from the input upwards, whether it trains, and whether the heads train.
    pub fn trainable(&self, epoch: usize, layers: usize) -> (Vec<bool>, bool) {
        let layers = layers.max(1);
        // Release order: unit `i < layers` is a layer index, `layers` stands for the heads.
        let mut order: Vec<usize> = match self.order {
            UnfreezeOrder::TopDown => (0..layers).rev().collect(),
            UnfreezeOrder::BottomUp => (0..layers).collect(),
        };
        if self.heads == HeadsTraining::Last {
            order.push(layers);
        }
        let released = self.released_layers(epoch);
        let mut on = vec![false; layers + 1];
        if released > order.len() && !self.keep_trained {
            // Every unit has had its turn: everything trains together.
            on.iter_mut().for_each(|v| *v = true);
        } else if self.keep_trained {
            for &u in order.iter().take(released) {
                on[u] = true;
            }
        } else if released > 0 {
            on[order[released - 1]] = true;
        }
        let heads = match self.heads {
            HeadsTraining::FromStart => true,
            HeadsTraining::Last => on[layers],
        };
        on.truncate(layers);
        (on, heads)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.every_epochs == 0 {
            return Err(Error::config(
                "UnfreezeSchedule::every_epochs",
                0,
                "must be at least 1",
            ));
        }
        if self.heads == HeadsTraining::Last && self.order == UnfreezeOrder::TopDown {
            return Err(Error::config(
                "UnfreezeSchedule::heads",
                "Last",
                "needs order BottomUp (top-down release starts next to the heads)",
            ));
        }
        if self.heads == HeadsTraining::Last && self.first_epoch > 0 {
            return Err(Error::config(
                "UnfreezeSchedule::first_epoch",
                self.first_epoch,
                "must be 0 when the heads come last (nothing would train before the first release)",
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
        let s = UnfreezeSchedule::top_down(2, 2);
        let released: Vec<usize> = (0..8).map(|e| s.released_layers(e)).collect();
        assert_eq!(released, vec![0, 0, 1, 1, 2, 2, 3, 3]);
        // Top-down over 3 layers: the top one first.
        assert_eq!(s.trainable(2, 3), (vec![false, false, true], true));
        assert_eq!(s.trainable(4, 3), (vec![false, true, true], true));
    }

    #[test]
    fn bottom_up_orders_release_from_the_input() {
        let s = UnfreezeSchedule::bottom_up(1);
        let seen: Vec<(Vec<bool>, bool)> = (0..4).map(|e| s.trainable(e, 3)).collect();
        assert_eq!(seen[0], (vec![true, false, false], true));
        assert_eq!(seen[1], (vec![true, true, false], true));
        assert_eq!(seen[3], (vec![true, true, true], true));
        // Greedy: only the newest layer, then everything; heads last.
        let greedy = UnfreezeSchedule {
            keep_trained: false,
            heads: HeadsTraining::Last,
            ..s
        };
        let seen: Vec<(Vec<bool>, bool)> = (0..6).map(|e| greedy.trainable(e, 3)).collect();
        assert_eq!(seen[0], (vec![true, false, false], false));
        assert_eq!(seen[1], (vec![false, true, false], false));
        assert_eq!(seen[2], (vec![false, false, true], false));
        assert_eq!(seen[3], (vec![false, false, false], true));
        assert_eq!(seen[4], (vec![true, true, true], true));
        assert!(greedy.validate().is_ok());
        let bad = UnfreezeSchedule {
            heads: HeadsTraining::Last,
            ..UnfreezeSchedule::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn encoder_decoder_phases_alternate_heads_first() {
        let p = PhaseSchedule::steps(2, 3);
        let phases: Vec<Phase> = (0..7).map(|s| p.phase(s, 0)).collect();
        use Phase::{Encoder as E, Heads as H};
        assert_eq!(phases, [H, H, E, E, E, H, H]);
        let by_epoch = PhaseSchedule::epochs(1, 1);
        assert_eq!((by_epoch.phase(99, 0), by_epoch.phase(0, 1)), (H, E));
        assert!(TrainingMode::EncoderDecoder(PhaseSchedule::steps(0, 1))
            .validate(&["a".to_string()])
            .is_err());
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
