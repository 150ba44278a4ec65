//! GradVac (Gradient Vaccine), LibMTL 1.1.5 and torchjd 0.18.0 variants.

use super::rows::{check_order, check_rows, check_square, gramian, Aggregate, Aggregator};
use crate::weighting::StrategyRng;

/// GradVac: like PCGrad, but instead of only removing conflicts it pulls the cosine similarity of
/// each (modified) task gradient with every other task's gradient up to an adaptive target.
///
/// For each task `i`, `g_i^PC = g_i`; for each other task `j` in a random order:
/// `phi = g_i^PC . g_j / (|g_i^PC| |g_j| + eps)`; if `phi < phi_hat_ij`,
/// `g_i^PC += |g_i^PC| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) / (|g_j| sqrt(1 - phi_hat^2) + eps) g_j`;
/// then the target is updated by the EMA `phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi`.
/// The update is `sum_i g_i^PC = sum_k w_k g_k`.
///
/// Paper: Z. Wang, Y. Tsvetkov, O. Firat and Y. Cao, "Gradient Vaccine: Investigating and
/// Improving Multi-task Optimization in Massively Multilingual Models", ICLR 2021.
///
/// Everything is computed from the Gramian (`g_i^PC = sum_k c_ik g_k`). The references differ:
/// * torchjd 0.18.0 (`Default`): `eps = 1e-8` in both denominators, the EMA is updated for every
///   visited pair.
/// * LibMTL 1.1.5 ([`GradVac::libmtl`]): `eps = 0`, the EMA (`rho_T`) is only updated for pairs
///   where the correction fired. LibMTL's returned `batch_weight` is `1 + sum` of the corrections,
///   i.e. the same weights `w`.
///
/// With `eps = 0`, a pair where `|g_i^PC| |g_j| = 0` is skipped (no correction, no EMA update)
/// instead of producing NaN.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `beta` | 0.5 | [0, 1] | EMA rate of the targets `phi_hat` |
/// | `eps` | 1e-8 | >= 0 | added to the cosine and correction denominators |
/// | `ema_only_on_correction` | `false` | bool | update `phi_hat_ij` only when the correction fires (LibMTL) |
/// | `phi_hat` | empty (= zeros) | `K x K`, entries in [-1, 1] | EMA targets (state) |
///
/// Needs: full per-task gradients (only through their Gramian). Stateful (`phi_hat`); if its size
/// does not match `K` it is reset to zeros. Cost per step: `O(K^2 d)` Gramian plus `O(K^3)`.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct GradVac {
    /// EMA rate of the targets.
    pub beta: f64,
    /// Added to the denominators.
    pub eps: f64,
    /// Update a target only when its correction fires (LibMTL 1.1.5).
    pub ema_only_on_correction: bool,
    /// EMA targets `phi_hat[i][j]` (state; empty means zeros).
    pub phi_hat: Vec<Vec<f64>>,
    /// Generator for the task orders when [`Aggregator::aggregate`] is used.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub rng: StrategyRng,
}

impl Default for GradVac {
    fn default() -> Self {
        Self {
            beta: 0.5,
            eps: 1e-8,
            ema_only_on_correction: false,
            phi_hat: Vec::new(),
            rng: StrategyRng::default(),
        }
    }
}

impl GradVac {
    /// The torchjd 0.18.0 variant; same as `Default`.
    pub fn torchjd() -> Self {
        Self::default()
    }

    /// The LibMTL 1.1.5 variant (`eps = 0`, EMA only on correction).
    pub fn libmtl() -> Self {
        Self {
            eps: 0.0,
            ema_only_on_correction: true,
            ..Self::default()
        }
    }

    /// Sets the EMA targets (e.g. a golden case's `state_before`). Errors on a non-square or
    /// non-finite matrix or entries outside [-1, 1].
    pub fn set_phi_hat(&mut self, phi_hat: Vec<Vec<f64>>) -> Result<(), String> {
        check_square("phi_hat", &phi_hat, phi_hat.len())?;
        for (i, r) in phi_hat.iter().enumerate() {
            for (j, v) in r.iter().enumerate() {
                if v.abs() > 1.0 {
                    return Err(format!("phi_hat[{i}][{j}] = {v} is outside [-1, 1]"));
                }
            }
        }
        self.phi_hat = phi_hat;
        Ok(())
    }

    /// Clears the targets (the next call starts from zeros).
    pub fn reset(&mut self) {
        self.phi_hat.clear();
    }

    /// Weights from a Gramian with injected orders: `orders[i]` lists the other tasks `j` in the
    /// order they are visited for row `i` (an entry equal to `i` is ignored). Updates `phi_hat`.
    pub fn weights_from_gramian(
        &mut self,
        gram: &[Vec<f64>],
        orders: &[Vec<usize>],
    ) -> Result<Vec<f64>, String> {
        let k = gram.len();
        check_square("gramian", gram, k)?;
        if !(0.0..=1.0).contains(&self.beta) {
            return Err(format!("GradVac: beta = {} must be in [0, 1]", self.beta));
        }
        if self.eps.is_nan() || self.eps < 0.0 {
            return Err(format!("GradVac: eps = {} must be >= 0", self.eps));
        }
        if orders.len() != k {
            return Err(format!(
                "GradVac: expected {k} task orders (one per task), got {}",
                orders.len()
            ));
        }
        for (i, o) in orders.iter().enumerate() {
            check_order(&format!("orders[{i}]"), o, k)?;
        }
        if self.phi_hat.len() != k || self.phi_hat.iter().any(|r| r.len() != k) {
            self.phi_hat = vec![vec![0.0; k]; k];
        }
        let eps = self.eps;
        let beta = self.beta;
        let mut w = vec![0.0; k];
        for (i, order) in orders.iter().enumerate() {
            let mut c = vec![0.0; k];
            c[i] = 1.0;
            let mut cg: Vec<f64> = gram[i].clone();
            for &j in order {
                if j == i {
                    continue;
                }
                let dot_ij = cg[j];
                let norm_i = c
                    .iter()
                    .zip(&cg)
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                    .max(0.0)
                    .sqrt();
                let norm_j = gram[j][j].max(0.0).sqrt();
                let denom = norm_i * norm_j + eps;
                if denom == 0.0 {
                    continue;
                }
                let phi = dot_ij / denom;
                let hat = self.phi_hat[i][j];
                let mut fired = false;
                if phi < hat {
                    let s_phi = (1.0 - phi * phi).max(0.0).sqrt();
                    let s_hat = (1.0 - hat * hat).max(0.0).sqrt();
                    let denom_w = norm_j * s_hat + eps;
                    if denom_w != 0.0 {
                        let wij = norm_i * (hat * s_phi - phi * s_hat) / denom_w;
                        c[j] += wij;
                        for (m, v) in cg.iter_mut().enumerate() {
                            *v += wij * gram[j][m];
                        }
                        fired = true;
                    }
                }
                if fired || !self.ema_only_on_correction {
                    self.phi_hat[i][j] = (1.0 - beta) * hat + beta * phi;
                }
            }
            for (wm, cm) in w.iter_mut().zip(&c) {
                *wm += cm;
            }
        }
        Ok(w)
    }

    /// Weights for `rows` with injected orders (see [`GradVac::weights_from_gramian`]).
    pub fn aggregate_with_orders(
        &mut self,
        rows: &[Vec<f64>],
        orders: &[Vec<usize>],
    ) -> Result<Vec<f64>, String> {
        check_rows(rows)?;
        self.weights_from_gramian(&gramian(rows), orders)
    }
}

impl Aggregator for GradVac {
    /// Draws a random order of the other tasks per row from `rng`, then returns the weights.
    fn aggregate(&mut self, rows: &[Vec<f64>], _losses: &[f64]) -> Result<Aggregate, String> {
        let (k, _) = check_rows(rows)?;
        let orders: Vec<Vec<usize>> = (0..k)
            .map(|i| {
                self.rng
                    .permutation(k)
                    .into_iter()
                    .filter(|&j| j != i)
                    .collect()
            })
            .collect();
        Ok(Aggregate::Weights(
            self.aggregate_with_orders(rows, &orders)?,
        ))
    }
}
