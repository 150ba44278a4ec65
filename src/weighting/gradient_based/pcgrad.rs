//! PCGrad (Projecting Conflicting Gradients), LibMTL 1.1.5 and torchjd 0.18.0 variants.

use super::method::{random_orders_method, GradientMethod};
use std::collections::HashMap;

use crate::solvers::matrix::{check_orders, check_rows, check_square_of, gramian};
use crate::weighting::hyper::{check, Rule};
use crate::weighting::StrategyRng;

/// PCGrad: for each task `i`, start from `g_i^PC = g_i` and visit the tasks `j` in a random
/// order; whenever `g_i^PC . g_j < 0`, remove the conflicting component:
/// `g_i^PC -= (g_i^PC . g_j) / (|g_j|^2 + eps) g_j` (projection uses the *original* `g_j`).
/// The update is `sum_i g_i^PC = sum_k w_k g_k`.
///
/// Paper: T. Yu, S. Kumar, A. Gupta, S. Levine, K. Hausman and C. Finn, "Gradient Surgery for
/// Multi-Task Learning", NeurIPS 2020.
///
/// Computed on the Gramian: `g_i^PC = sum_k c_ik g_k`, so `g_i^PC . g_j = (c_i G)_j` and a
/// projection is `c_ij -= (c_i G)_j / (G_jj + eps)`; the weights are `w = sum_i c_i`.
///
/// The two references differ only in whether task `i` itself is visited:
/// * torchjd (`Default`, `include_self = false`): `i` is skipped.
/// * LibMTL ([`PcGrad::libmtl`], `include_self = true`): the shuffled list contains `i` too; the
///   self-projection only fires once `g_i^PC . g_i < 0`.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `include_self` | `false` | bool | also project `g_i^PC` on its own original gradient when they conflict (LibMTL) |
/// | `eps` | 0.0 | >= 0 | added to `|g_j|^2` in the projection (both 1.1.5 / 0.18.0 use 0; later LibMTL uses 1e-8) |
/// | `rng` | seed 0 (re-seeded by the trainer) | any | orders drawn when none are injected |
///
/// Needs: full per-task gradients (only through their Gramian). Cost per step: `O(K^2 d)` for the
/// Gramian plus `O(K^3)`.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PcGrad {
    /// Also visit task `i` when projecting row `i` (LibMTL behaviour).
    pub include_self: bool,
    /// Added to the squared norm of `g_j` in the projection denominator.
    pub eps: f64,
    /// Generator for the task orders when [`GradientMethod::combine`] is used.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub rng: StrategyRng,
}

impl PcGrad {
    /// The LibMTL 1.1.5 variant (`include_self = true`, `eps = 0`).
    pub fn libmtl() -> Self {
        Self {
            include_self: true,
            ..Self::default()
        }
    }

    /// The torchjd 0.18.0 variant (`include_self = false`, `eps = 0`); same as `Default`.
    pub fn torchjd() -> Self {
        Self::default()
    }

    /// The same variant with denominator guard `eps`; refused with
    /// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) unless finite and
    /// `>= 0`.
    pub fn with_eps(self, eps: f64) -> crate::Result<Self> {
        let s = PcGrad { eps, ..self };
        GradientMethod::validate(&s)?;
        Ok(s)
    }

    /// Weights from a Gramian and injected orders: `orders[i]` is the sequence of tasks `j`
    /// visited for row `i` (entries equal to `i` are skipped unless `include_self`). An order
    /// need not contain every task; a task listed twice is visited twice.
    pub fn weights_from_gramian(
        &self,
        gram: &[Vec<f64>],
        orders: &[Vec<usize>],
    ) -> Result<Vec<f64>, String> {
        let c = self.projected_rows_from_gramian(gram, orders)?;
        let k = gram.len();
        Ok((0..k).map(|m| c.iter().map(|row| row[m]).sum()).collect())
    }

    /// The coefficient matrix `C` (`K x K`) of the projected gradients: `g_i^PC = sum_m C[i][m] g_m`.
    /// The weights are the column sums of `C`.
    pub fn projected_rows_from_gramian(
        &self,
        gram: &[Vec<f64>],
        orders: &[Vec<usize>],
    ) -> Result<Vec<Vec<f64>>, String> {
        let k = gram.len();
        check_square_of(gram, k, "gramian")?;
        check_orders(orders, k, "PCGrad")?;
        let mut rows = Vec::with_capacity(k);
        for (i, order) in orders.iter().enumerate() {
            let mut c = vec![0.0; k];
            c[i] = 1.0;
            for &j in order {
                if j == i && !self.include_self {
                    continue;
                }
                let inner: f64 = (0..k).map(|m| c[m] * gram[m][j]).sum();
                if inner < 0.0 {
                    c[j] -= inner / (gram[j][j] + self.eps);
                }
            }
            rows.push(c);
        }
        Ok(rows)
    }

    /// Weights for `rows` with injected orders (see [`PcGrad::weights_from_gramian`]).
    pub fn aggregate_with_orders(
        &self,
        rows: &[Vec<f64>],
        orders: &[Vec<usize>],
    ) -> Result<Vec<f64>, String> {
        check_rows(rows)?;
        self.weights_from_gramian(&gramian(rows)?, orders)
    }
}

impl GradientMethod for PcGrad {
    fn name(&self) -> &str {
        "pcgrad"
    }

    fn validate(&self) -> crate::Result<()> {
        check("pcgrad", "eps", self.eps, Rule::NonNegative)
    }

    random_orders_method!();

    fn state(&self) -> crate::Result<Vec<(String, Vec<f64>)>> {
        Ok(vec![("rng".to_string(), self.rng.to_state())])
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> crate::Result<()> {
        self.rng.load_from(state)
    }
}
