//! GradDrop (gradient sign dropout), as in torchjd 0.18.0.

use super::rows::{check_rows, check_vec, Aggregate, Aggregator};
use crate::weighting::StrategyRng;

/// GradDrop: per coordinate, compute the positive-sign purity `P = (1 + sum_k g_k / sum_k |g_k|) / 2`,
/// draw `U ~ Uniform(0, 1)` and keep only the positive entries (if `P > U`) or only the negative
/// ones (if `P < U`) of that coordinate across tasks; the update is the sum of the kept entries.
/// With leaks `l_k`, task `k` contributes `(l_k + (1 - l_k) M_k) g_k`. The result is a direction,
/// not a linear combination of the rows. The sign-purity transform `f` is the identity.
///
/// Paper: Z. Chen, J. Ngiam, Y. Huang, T. Luong, H. Kretzschmar, Y. Chai and D. Anguelov,
/// "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout", NeurIPS 2020.
///
/// A coordinate where every task is 0 gives 0 (torch gives NaN purity there but the same 0 output).
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `leak` | `None` (= zeros) | length `K`, in [0, 1] | fraction of each task's gradient always kept |
/// | `rng` | seed 0 (re-seeded by the trainer) | any | uniform draws when none are injected |
///
/// Needs: full per-task gradients (coordinate-wise). Cost per step: `O(K d)`.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GradDrop {
    /// Per-task leak (None means no leak).
    pub leak: Option<Vec<f64>>,
    /// Generator used by [`Aggregator::aggregate`].
    #[cfg_attr(feature = "serde", serde(skip))]
    pub rng: StrategyRng,
}

impl GradDrop {
    /// Direction with injected uniform draws `u` (length `d`, one per coordinate).
    pub fn aggregate_with_uniform(&self, rows: &[Vec<f64>], u: &[f64]) -> Result<Vec<f64>, String> {
        let (k, d) = check_rows(rows)?;
        check_vec("uniform draws", u, d)?;
        let zeros = vec![0.0; k];
        let leak = match &self.leak {
            Some(l) => {
                check_vec("leak", l, k)?;
                l
            }
            None => &zeros,
        };
        let mut out = vec![0.0; d];
        for c in 0..d {
            let s: f64 = rows.iter().map(|r| r[c]).sum();
            let a: f64 = rows.iter().map(|r| r[c].abs()).sum();
            let p = if a > 0.0 { 0.5 * (1.0 + s / a) } else { 0.5 };
            for (r, l) in rows.iter().zip(leak) {
                let g = r[c];
                let m = if (p > u[c] && g > 0.0) || (p < u[c] && g < 0.0) {
                    1.0
                } else {
                    0.0
                };
                out[c] += (l + (1.0 - l) * m) * g;
            }
        }
        Ok(out)
    }
}

impl Aggregator for GradDrop {
    fn aggregate(&mut self, rows: &[Vec<f64>], _losses: &[f64]) -> Result<Aggregate, String> {
        let (_, d) = check_rows(rows)?;
        let u: Vec<f64> = (0..d).map(|_| self.rng.uniform()).collect();
        Ok(Aggregate::Direction(self.aggregate_with_uniform(rows, &u)?))
    }
}
