//! Progress display (feature `progress`): a bar per epoch with the live task losses when
//! stderr is a terminal, one plain line per epoch otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use super::{EpochReport, Observer, StepReport};
use crate::error::Result;

/// Shows training progress. Add it with [`Trainer::add_observer`](super::Trainer::add_observer).
pub struct Progress {
    bar: Option<ProgressBar>,
    terminal: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// A bar on a terminal, plain lines otherwise.
    pub fn new() -> Self {
        Self {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }
}

impl Observer for Progress {
    fn on_epoch_start(&mut self, epoch: usize, steps: usize) -> Result<()> {
        if self.terminal {
            let bar = ProgressBar::new(steps as u64);
            let style =
                ProgressStyle::with_template("epoch {prefix} {bar:30} {pos}/{len} {per_sec} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix((epoch + 1).to_string());
            self.bar = Some(bar);
        }
        Ok(())
    }

    fn on_step(&mut self, task_names: &[String], report: &StepReport) -> Result<()> {
        if let Some(bar) = &self.bar {
            let losses: Vec<String> = task_names
                .iter()
                .zip(&report.losses)
                .map(|(n, l)| format!("{n} {l:.4}"))
                .collect();
            bar.set_message(losses.join("  "));
            bar.inc(1);
        }
        Ok(())
    }

    fn on_epoch(&mut self, report: &EpochReport) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
        if !self.terminal {
            let losses: Vec<String> = report
                .task_names
                .iter()
                .zip(&report.train_losses)
                .map(|(n, l)| format!("{n} {l:.4}"))
                .collect();
            eprintln!(
                "epoch {}: {} steps, {:.0} samples/s, train loss {}",
                report.epoch + 1,
                report.steps,
                report.samples_per_second(),
                losses.join(", ")
            );
        }
        Ok(())
    }
}
