//! Trimmed mean, as in torchjd 0.18.0.

use super::method::any_source;
use super::method::{Aggregate, GradientMethod, GradientStep};
use crate::solvers::matrix::check_rows;
use crate::weighting::Needs;

/// Coordinate-wise trimmed mean: for every coordinate, drop the `t` largest and `t` smallest task
/// values and average the remaining `K - 2t`. The result is a direction, not a combination of rows.
///
/// Paper: D. Yin, Y. Chen, K. Ramchandran and P. Bartlett, "Byzantine-Robust Distributed
/// Learning: Towards Optimal Statistical Rates", ICML 2018.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `trim_number` | 1 | `K >= 2 t + 1` | values `t` removed at each end of every coordinate |
///
/// Needs: full per-task gradients (coordinate-wise). Cost per step: `O(d K log K)`.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrimmedMean {
    /// Number of values removed at each end.
    pub trim_number: usize,
}

impl Default for TrimmedMean {
    fn default() -> Self {
        Self { trim_number: 1 }
    }
}

impl TrimmedMean {
    /// The trimmed-mean direction.
    pub fn direction(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let (k, d) = check_rows(rows)?;
        let need = self
            .trim_number
            .checked_mul(2)
            .and_then(|v| v.checked_add(1));
        if need.is_none_or(|need| k < need) {
            return Err(format!(
                "TrimmedMean: needs at least 2 * trim_number + 1 tasks (trim_number = {}), got {k}",
                self.trim_number
            ));
        }
        let n = k - 2 * self.trim_number;
        let mut out = vec![0.0; d];
        let mut col = vec![0.0; k];
        for (c, o) in out.iter_mut().enumerate() {
            for (x, r) in col.iter_mut().zip(rows) {
                *x = r[c];
            }
            col.sort_by(|a, b| a.total_cmp(b));
            *o = col[self.trim_number..self.trim_number + n]
                .iter()
                .sum::<f64>()
                / n as f64;
        }
        Ok(out)
    }
}

impl GradientMethod for TrimmedMean {
    fn name(&self) -> &str {
        "trimmed-mean"
    }

    /// At least `2 trim_number + 1` tasks.
    fn needs(&self) -> Needs {
        Needs {
            min_tasks: self.trim_number.saturating_mul(2).saturating_add(1),
            ..any_source()
        }
    }

    fn combine(&mut self, step: &GradientStep) -> crate::Result<Aggregate> {
        let d = TrimmedMean::direction(self, &step.rows()?).map_err(|e| step.fail(e))?;
        Ok(Aggregate::Direction(d))
    }
}
