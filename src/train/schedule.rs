//! Learning-rate schedules and early stopping, applied by the trainer.

use crate::error::{Error, Result};
use crate::metrics::Metric;

/// How the learning rate evolves; the optimiser configuration's rate is the base rate `lr0`.
///
/// | schedule | rate |
/// |---|---|
/// | `Constant` | `lr0` |
/// | `Step { every_epochs, gamma }` | `lr0 * gamma^(epoch / every_epochs)` |
/// | `Cosine { total_epochs, min_lr }` | `min_lr + (lr0 - min_lr) (1 + cos(pi e / total_epochs)) / 2`, `e` the fractional epoch |
/// | `Warmup { steps, then }` | `lr0 * (step + 1) / steps` for the first `steps` steps, then `then` |
/// | `ReduceOnPlateau { task, metric, factor, patience, min_lr }` | multiplied by `factor` (not below `min_lr`) when the evaluation metric has not improved for `patience` epochs of `fit` |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Default)]
pub enum LrSchedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        /// Epochs between decays (>= 1).
        every_epochs: usize,
        /// Decay factor, in (0, 1].
        gamma: f64,
    },
    /// Cosine annealing from the base rate to `min_lr` over `total_epochs`.
    Cosine {
        /// Length of the schedule in epochs (>= 1).
        total_epochs: usize,
        /// Final rate (>= 0).
        min_lr: f64,
    },
    /// Linear warm-up over the first `steps` steps, then another schedule.
    Warmup {
        /// Warm-up steps (>= 1).
        steps: u64,
        /// The schedule after the warm-up.
        then: Box<LrSchedule>,
    },
    /// Divide the rate when a task's evaluation metric stops improving (needs evaluation data in
    /// `fit`).
    ReduceOnPlateau {
        /// Task whose metric is watched.
        task: String,
        /// The metric.
        metric: Metric,
        /// Factor applied on a plateau, in (0, 1).
        factor: f64,
        /// Epochs without improvement before reducing.
        patience: usize,
        /// Lowest rate.
        min_lr: f64,
    },
}

impl LrSchedule {
    /// Checks the hyper-parameters.
    pub fn validate(&self) -> Result<()> {
        match self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Step {
                every_epochs,
                gamma,
            } => {
                if *every_epochs == 0 || !(*gamma > 0.0 && *gamma <= 1.0) {
                    return Err(Error::config(
                        "LrSchedule::Step",
                        format!("{every_epochs}, {gamma}"),
                        "needs every_epochs >= 1 and gamma in (0, 1]",
                    ));
                }
                Ok(())
            }
            LrSchedule::Cosine {
                total_epochs,
                min_lr,
            } => {
                if *total_epochs == 0 || !(min_lr.is_finite() && *min_lr >= 0.0) {
                    return Err(Error::config(
                        "LrSchedule::Cosine",
                        format!("{total_epochs}, {min_lr}"),
                        "needs total_epochs >= 1 and min_lr >= 0",
                    ));
                }
                Ok(())
            }
            LrSchedule::Warmup { steps, then } => {
                if *steps == 0 {
                    return Err(Error::config("LrSchedule::Warmup steps", 0, "must be >= 1"));
                }
                if matches!(**then, LrSchedule::ReduceOnPlateau { .. }) {
                    return Err(Error::config(
                        "LrSchedule::Warmup then",
                        "ReduceOnPlateau",
                        "put the plateau rule outermost",
                    ));
                }
                then.validate()
            }
            LrSchedule::ReduceOnPlateau { factor, min_lr, .. } => {
                if !(*factor > 0.0 && *factor < 1.0 && min_lr.is_finite() && *min_lr >= 0.0) {
                    return Err(Error::config(
                        "LrSchedule::ReduceOnPlateau",
                        format!("factor {factor}, min_lr {min_lr}"),
                        "needs factor in (0, 1) and min_lr >= 0",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The rate at global step `step` of epoch `epoch` (`progress` in [0, 1) through the epoch)
    /// for base rate `base`. `ReduceOnPlateau` returns `base`; the trainer applies its
    /// reductions.
    pub fn rate(&self, base: f64, step: u64, epoch: usize, progress: f64) -> f64 {
        match self {
            LrSchedule::Constant | LrSchedule::ReduceOnPlateau { .. } => base,
            LrSchedule::Step {
                every_epochs,
                gamma,
            } => base * gamma.powi((epoch / every_epochs.max(&1)) as i32),
            LrSchedule::Cosine {
                total_epochs,
                min_lr,
            } => {
                let e = ((epoch as f64 + progress) / *total_epochs as f64).min(1.0);
                min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * e).cos())
            }
            LrSchedule::Warmup { steps, then } => {
                if step < *steps {
                    base * (step + 1) as f64 / *steps as f64
                } else {
                    then.rate(base, step, epoch, progress)
                }
            }
        }
    }
}

/// Stop `fit` once a task's evaluation metric has gone `patience` epochs without improving on
/// its best by more than `min_delta` (needs evaluation data).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStopping {
    /// Task whose metric is watched.
    pub task: String,
    /// The metric (its direction decides what "improved" means).
    pub metric: Metric,
    /// Epochs without improvement tolerated.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    pub min_delta: f64,
}

/// Tracks the best value of a metric and the epochs since it improved.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plateau {
    pub(crate) best: Option<f64>,
    pub(crate) stale: usize,
}

impl Plateau {
    /// Records `value`; true when it improved on the best by more than `min_delta`.
    pub(crate) fn update(&mut self, value: f64, higher_is_better: bool, min_delta: f64) -> bool {
        let improved = match self.best {
            None => true,
            Some(b) if higher_is_better => value > b + min_delta,
            Some(b) => value < b - min_delta,
        };
        if improved {
            self.best = Some(value);
            self.stale = 0;
        } else {
            self.stale += 1;
        }
        improved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_their_formulas() {
        let s = LrSchedule::Step {
            every_epochs: 2,
            gamma: 0.5,
        };
        assert_eq!(s.rate(1.0, 0, 3, 0.0), 0.5);
        assert_eq!(s.rate(1.0, 0, 4, 0.0), 0.25);
        let c = LrSchedule::Cosine {
            total_epochs: 4,
            min_lr: 0.0,
        };
        assert!((c.rate(1.0, 0, 2, 0.0) - 0.5).abs() < 1e-12);
        assert!(c.rate(1.0, 0, 4, 0.0).abs() < 1e-12);
        let w = LrSchedule::Warmup {
            steps: 10,
            then: Box::new(LrSchedule::Constant),
        };
        assert!((w.rate(1.0, 0, 0, 0.0) - 0.1).abs() < 1e-12);
        assert_eq!(w.rate(1.0, 10, 0, 0.0), 1.0);
        assert!(LrSchedule::Step {
            every_epochs: 0,
            gamma: 0.5
        }
        .validate()
        .is_err());
        let mut p = Plateau::default();
        assert!(p.update(0.5, true, 0.0));
        assert!(!p.update(0.5, true, 0.0));
        assert_eq!(p.stale, 1);
        assert!(p.update(0.4, false, 0.0));
    }
}
