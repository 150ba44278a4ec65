//! Krum / Multi-Krum, as in torchjd 0.18.0.

use super::method::any_source;
use super::method::{Aggregate, GradientMethod, GradientStep};
use crate::solvers::matrix::check_square_of;
use crate::weighting::hyper::at_least;
use crate::weighting::Needs;

/// Krum: score each gradient by the sum of its distances to its `K - f - 2` nearest other
/// gradients and average the `m` gradients with the lowest scores (`m = 1`: Krum; `m > 1`:
/// Multi-Krum). Weights are `1/m` on the selected tasks and 0 elsewhere.
///
/// Paper: P. Blanchard, E. M. El Mhamdi, R. Guerraoui and J. Stainer, "Machine Learning with
/// Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017.
///
/// Distances come from the Gramian (`|g_i|^2 + |g_j|^2 - 2 g_i . g_j`, clamped at 0 against
/// rounding). Exact ties are broken by the lower task index. Note that the two rows of the closest
/// pair always tie when `K - f - 2 = 1` (e.g. `K = 4`, `f = 1`): torch then decides by last-bit
/// rounding of its `J @ J.T`, which no implementation can reproduce reliably.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `n_byzantine` | 1 | `K >= n_byzantine + 3` | number `f` of possibly adversarial rows |
/// | `n_selected` | 1 | `1 ..= K` | number `m` of rows averaged |
///
/// Needs: full per-task gradients (only through their Gramian). Cost per step: `O(K^2 d + K^2 log K)`.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Krum {
    /// Number of possibly adversarial rows.
    pub n_byzantine: usize,
    /// Number of selected rows.
    pub n_selected: usize,
}

impl Default for Krum {
    fn default() -> Self {
        Self {
            n_byzantine: 1,
            n_selected: 1,
        }
    }
}

impl Krum {
    /// Multi-Krum assuming `n_byzantine` adversarial rows and averaging `n_selected`; refused
    /// with [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) when
    /// `n_selected` is 0.
    pub fn new(n_byzantine: usize, n_selected: usize) -> crate::Result<Self> {
        let s = Krum {
            n_byzantine,
            n_selected,
        };
        GradientMethod::validate(&s)?;
        Ok(s)
    }

    /// Krum scores (sum of distances to the `K - f - 2` nearest other rows) from a Gramian.
    pub fn scores_from_gramian(&self, gram: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let k = gram.len();
        check_square_of(gram, k, "gramian")?;
        if self.n_byzantine.checked_add(3).is_none_or(|need| k < need) {
            return Err(format!(
                "Krum: needs at least n_byzantine + 3 tasks (n_byzantine = {}), got {k}",
                self.n_byzantine
            ));
        }
        if self.n_selected == 0 || self.n_selected > k {
            return Err(format!(
                "Krum: n_selected = {} must be in 1..={k}",
                self.n_selected
            ));
        }
        let n_closest = k - self.n_byzantine - 2;
        let mut scores = Vec::with_capacity(k);
        for i in 0..k {
            let mut dist: Vec<f64> = (0..k)
                .map(|j| (gram[i][i] + gram[j][j] - 2.0 * gram[i][j]).max(0.0).sqrt())
                .collect();
            dist.sort_by(|a, b| a.total_cmp(b));
            scores.push(dist[1..=n_closest].iter().sum::<f64>());
        }
        Ok(scores)
    }

    /// Weights from a Gramian: `1 / n_selected` on the rows with the lowest scores.
    pub fn weights_from_gramian(&self, gram: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let k = gram.len();
        let scores = self.scores_from_gramian(gram)?;
        let mut idx: Vec<usize> = (0..k).collect();
        idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
        let mut w = vec![0.0; k];
        for &i in idx.iter().take(self.n_selected) {
            w[i] = 1.0 / self.n_selected as f64;
        }
        Ok(w)
    }
}

impl GradientMethod for Krum {
    fn name(&self) -> &str {
        "krum"
    }

    /// At least `n_byzantine + 3` tasks.
    fn needs(&self) -> Needs {
        Needs {
            min_tasks: self.n_byzantine.saturating_add(3),
            ..any_source()
        }
    }

    fn validate(&self) -> crate::Result<()> {
        at_least("krum", "n_selected", self.n_selected, 1)
    }

    fn combine(&mut self, step: &GradientStep) -> crate::Result<Aggregate> {
        let w = self
            .weights_from_gramian(&step.gramian()?)
            .map_err(|e| step.fail(e))?;
        Ok(Aggregate::Weights(w))
    }
}
