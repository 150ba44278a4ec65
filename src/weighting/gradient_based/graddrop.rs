//! GradDrop (gradient sign dropout), as in torchjd 0.18.0.

use super::method::{Aggregate, GradientMethod, GradientStep};
use std::collections::HashMap;

use crate::solvers::matrix::{check_rows, check_vector};
use crate::weighting::hyper::{check_all, Rule};
use crate::weighting::StrategyRng;
use crate::weighting::{GradientSource, Needs};

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
    /// Generator used by [`GradientMethod::combine`].
    #[cfg_attr(feature = "serde", serde(skip))]
    pub rng: StrategyRng,
}

impl GradDrop {
    /// GradDrop with per-task leaks (fractions of each gradient always kept); refused with
    /// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) unless every leak
    /// is in `[0, 1]`.
    pub fn with_leak(leak: Vec<f64>) -> crate::Result<Self> {
        let s = GradDrop {
            leak: Some(leak),
            ..Self::default()
        };
        GradientMethod::validate(&s)?;
        Ok(s)
    }

    /// Direction with injected uniform draws `u` (length `d`, one per coordinate).
    pub fn aggregate_with_uniform(&self, rows: &[Vec<f64>], u: &[f64]) -> Result<Vec<f64>, String> {
        let (k, d) = check_rows(rows)?;
        check_vector(u, d, "uniform draws")?;
        let zeros = vec![0.0; k];
        let leak = match &self.leak {
            Some(l) => {
                check_vector(l, k, "leak")?;
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

impl GradientMethod for GradDrop {
    fn name(&self) -> &str {
        "graddrop"
    }

    /// Works coordinate by coordinate on the full gradients; usually given the representation's
    /// gradients, as in the paper.
    fn needs(&self) -> Needs {
        Needs::gradients(vec![
            GradientSource::Representation,
            GradientSource::SharedParameters,
        ])
    }

    fn validate(&self) -> crate::Result<()> {
        match &self.leak {
            Some(l) => check_all("graddrop", "leak", l, Rule::UnitClosed),
            None => Ok(()),
        }
    }

    fn seed(&mut self, seed: u64) {
        self.rng = StrategyRng::new(seed);
    }

    fn combine(&mut self, step: &GradientStep) -> crate::Result<Aggregate> {
        let rows = step.rows()?;
        let u: Vec<f64> = (0..step.dim()).map(|_| self.rng.uniform()).collect();
        let d = self
            .aggregate_with_uniform(&rows, &u)
            .map_err(|e| step.fail(e))?;
        Ok(Aggregate::Direction(d))
    }

    fn state(&self) -> crate::Result<Vec<(String, Vec<f64>)>> {
        Ok(vec![("rng".into(), self.rng.to_state())])
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> crate::Result<()> {
        self.rng.load_from(state)
    }
}
