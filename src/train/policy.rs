//! Epoch-end policies: objects that look at an epoch's report and return actions (scale the
//! learning rate, save or delete a checkpoint, stop), in the spirit of burn's checkpointing
//! strategies. Reduce-on-plateau, early stopping and checkpoint rotation are three of them,
//! built from the trainer's configuration; their state is part of every checkpoint.

use std::path::PathBuf;

use super::schedule::Plateau;
use super::{CheckpointPolicy, EarlyStopping, EpochReport, LrSchedule, TrainerConfig};
use crate::error::{Error, Result};
use crate::metrics::Metric;

/// What a policy asks the trainer to do after an epoch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EpochAction {
    /// Multiply the base learning rate by this factor from now on.
    SetLrScale(f64),
    /// Write a checkpoint of the run here.
    Save(PathBuf),
    /// Delete this checkpoint (rotation), if it exists.
    Delete(PathBuf),
    /// End training after this epoch.
    Stop,
}

/// What policies read besides the report.
pub(crate) struct PolicyContext {
    /// The current learning-rate multiplier.
    pub lr_scale: f64,
    /// The optimiser's base learning rate.
    pub base_lr: f64,
}

/// An epoch-end policy.
pub(crate) trait EpochPolicy: Send {
    /// Stable name, used for its state in checkpoints.
    fn name(&self) -> &'static str;
    /// The actions after the epoch of `report` (its evaluation included).
    fn on_epoch_end(
        &mut self,
        report: &EpochReport,
        cx: &PolicyContext,
    ) -> Result<Vec<EpochAction>>;
    /// Its state, as numbers.
    fn state(&self) -> Vec<f64>;
    /// Restores [`state`](Self::state).
    fn load_state(&mut self, state: &[f64]);
}

/// The policies `config` asks for, in the order they act.
pub(crate) fn from_config(config: &TrainerConfig) -> Vec<Box<dyn EpochPolicy>> {
    let mut policies: Vec<Box<dyn EpochPolicy>> = Vec::new();
    if let LrSchedule::ReduceOnPlateau {
        task,
        metric,
        factor,
        patience,
        min_lr,
    } = &config.lr_schedule
    {
        policies.push(Box::new(ReduceOnPlateau {
            task: task.clone(),
            metric: metric.clone(),
            factor: *factor,
            patience: *patience,
            min_lr: *min_lr,
            plateau: Plateau::default(),
        }));
    }
    if let Some(es) = &config.early_stopping {
        policies.push(Box::new(StopEarly {
            rule: es.clone(),
            plateau: Plateau::default(),
        }));
    }
    if let Some(policy) = &config.checkpoint {
        policies.push(Box::new(CheckpointRotation {
            policy: policy.clone(),
            best: None,
        }));
    }
    policies
}

/// The value of `task`'s `metric` in the epoch's evaluation; `field` names the setting that
/// asked for it in the error.
fn watched(report: &EpochReport, task: &str, metric: &Metric, field: &str) -> Result<f64> {
    report
        .eval
        .as_ref()
        .and_then(|e| e.task(task))
        .and_then(|t| t.metric(metric))
        .ok_or_else(|| {
            Error::config(
                field,
                format!("{task}/{metric}"),
                "needs evaluation data in fit and a task reporting that metric",
            )
        })
}

fn plateau_state(p: &Plateau) -> Vec<f64> {
    let (has, best) = match p.best {
        Some(b) => (1.0, b),
        None => (0.0, 0.0),
    };
    vec![has, best, p.stale as f64]
}

fn load_plateau(p: &mut Plateau, state: &[f64]) {
    if let [has, best, stale] = state {
        p.best = (*has != 0.0).then_some(*best);
        p.stale = *stale as usize;
    }
}

/// [`LrSchedule::ReduceOnPlateau`].
struct ReduceOnPlateau {
    task: String,
    metric: Metric,
    factor: f64,
    patience: usize,
    min_lr: f64,
    plateau: Plateau,
}

impl EpochPolicy for ReduceOnPlateau {
    fn name(&self) -> &'static str {
        "reduce_on_plateau"
    }

    fn on_epoch_end(
        &mut self,
        report: &EpochReport,
        cx: &PolicyContext,
    ) -> Result<Vec<EpochAction>> {
        let value = watched(report, &self.task, &self.metric, "watched metric")?;
        self.plateau
            .update(value, self.metric.higher_is_better(), 0.0);
        if self.plateau.stale > self.patience {
            self.plateau.stale = 0;
            let scale = (cx.lr_scale * self.factor).max(self.min_lr / cx.base_lr);
            return Ok(vec![EpochAction::SetLrScale(scale)]);
        }
        Ok(Vec::new())
    }

    fn state(&self) -> Vec<f64> {
        plateau_state(&self.plateau)
    }

    fn load_state(&mut self, state: &[f64]) {
        load_plateau(&mut self.plateau, state);
    }
}

/// [`EarlyStopping`].
struct StopEarly {
    rule: EarlyStopping,
    plateau: Plateau,
}

impl EpochPolicy for StopEarly {
    fn name(&self) -> &'static str {
        "early_stopping"
    }

    fn on_epoch_end(
        &mut self,
        report: &EpochReport,
        _: &PolicyContext,
    ) -> Result<Vec<EpochAction>> {
        let es = &self.rule;
        let value = watched(report, &es.task, &es.metric, "watched metric")?;
        self.plateau
            .update(value, es.metric.higher_is_better(), es.min_delta);
        Ok(if self.plateau.stale >= es.patience {
            vec![EpochAction::Stop]
        } else {
            Vec::new()
        })
    }

    fn state(&self) -> Vec<f64> {
        plateau_state(&self.plateau)
    }

    fn load_state(&mut self, state: &[f64]) {
        load_plateau(&mut self.plateau, state);
    }
}

/// [`CheckpointPolicy`]: a checkpoint per epoch, the oldest beyond `keep_last` deleted, and
/// `best.safetensors` when the chosen metric improves.
struct CheckpointRotation {
    policy: CheckpointPolicy,
    best: Option<f64>,
}

impl EpochPolicy for CheckpointRotation {
    fn name(&self) -> &'static str {
        "checkpoint_best"
    }

    fn on_epoch_end(
        &mut self,
        report: &EpochReport,
        _: &PolicyContext,
    ) -> Result<Vec<EpochAction>> {
        let policy = &self.policy;
        let mut actions = vec![EpochAction::Save(policy.epoch_path(report.epoch))];
        if report.epoch >= policy.keep_last {
            actions.push(EpochAction::Delete(
                policy.epoch_path(report.epoch - policy.keep_last),
            ));
        }
        if let Some((task, metric)) = &policy.best {
            let value = watched(report, task, metric, "checkpoint.best")?;
            let better = match self.best {
                None => true,
                Some(b) if metric.higher_is_better() => value > b,
                Some(b) => value < b,
            };
            if better {
                self.best = Some(value);
                actions.push(EpochAction::Save(policy.best_path()));
            }
        }
        Ok(actions)
    }

    fn state(&self) -> Vec<f64> {
        match self.best {
            Some(b) => vec![1.0, b],
            None => vec![0.0, 0.0],
        }
    }

    fn load_state(&mut self, state: &[f64]) {
        if let [has, best] = state {
            self.best = (*has != 0.0).then_some(*best);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{EvalReport, TaskEvaluation};

    fn report(epoch: usize, accuracy: f64) -> EpochReport {
        EpochReport {
            epoch,
            eval: Some(EvalReport {
                tasks: vec![TaskEvaluation {
                    task: "a".into(),
                    loss: 1.0,
                    metrics: vec![(Metric::Accuracy, accuracy)],
                    samples: 1,
                }],
            }),
            ..EpochReport::default()
        }
    }

    #[test]
    fn policies_return_actions_and_keep_their_state() -> Result<()> {
        let cx = PolicyContext {
            lr_scale: 1.0,
            base_lr: 0.1,
        };
        let mut stop = StopEarly {
            rule: EarlyStopping {
                task: "a".into(),
                metric: Metric::Accuracy,
                patience: 2,
                min_delta: 0.0,
            },
            plateau: Plateau::default(),
        };
        assert!(stop.on_epoch_end(&report(0, 0.5), &cx)?.is_empty());
        assert!(stop.on_epoch_end(&report(1, 0.4), &cx)?.is_empty());
        let mut copy = StopEarly {
            rule: stop.rule.clone(),
            plateau: Plateau::default(),
        };
        copy.load_state(&stop.state());
        assert_eq!(
            copy.on_epoch_end(&report(2, 0.4), &cx)?,
            vec![EpochAction::Stop]
        );

        let dir = PathBuf::from("ckpt");
        let mut rotation = CheckpointRotation {
            policy: CheckpointPolicy {
                keep_last: 1,
                best: Some(("a".into(), Metric::Accuracy)),
                ..CheckpointPolicy::every_epoch(&dir)
            },
            best: None,
        };
        let first = rotation.on_epoch_end(&report(0, 0.5), &cx)?;
        assert!(first.contains(&EpochAction::Save(dir.join("best.safetensors"))));
        let second = rotation.on_epoch_end(&report(1, 0.4), &cx)?;
        assert_eq!(
            second,
            vec![
                EpochAction::Save(dir.join("epoch-0002.safetensors")),
                EpochAction::Delete(dir.join("epoch-0001.safetensors")),
            ]
        );
        Ok(())
    }
}
