//! GradVac (Gradient Vaccine), LibMTL 1.1.5 and torchjd 0.18.0 variants.

use super::method::{random_orders_method, GradientMethod};
use std::collections::HashMap;

use crate::solvers::matrix::{check_orders, check_rows, check_square_of, gramian};
use crate::weighting::hyper::{check, Rule};
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
    /// Generator for the task orders when [`GradientMethod::combine`] is used.
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

    /// GradVac (torchjd's variant) with EMA decay `beta` and denominator guard `eps`; refused
    /// with [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) outside the
    /// ranges of the table above.
    pub fn new(beta: f64, eps: f64) -> crate::Result<Self> {
        let s = GradVac {
            beta,
            eps,
            ..Self::default()
        };
        GradientMethod::validate(&s)?;
        Ok(s)
    }

    /// Sets the EMA targets (e.g. a golden case's `state_before`). Errors on a non-square or
    /// non-finite matrix or entries outside [-1, 1].
    pub fn set_phi_hat(&mut self, phi_hat: Vec<Vec<f64>>) -> Result<(), String> {
        if !phi_hat.is_empty() {
            check_square_of(&phi_hat, phi_hat.len(), "phi_hat")?;
        }
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
        check_square_of(gram, k, "gramian")?;
        check_orders(orders, k, "GradVac")?;
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
        self.weights_from_gramian(&gramian(rows)?, orders)
    }
}

impl GradientMethod for GradVac {
    fn name(&self) -> &str {
        "gradvac"
    }

    fn validate(&self) -> crate::Result<()> {
        check("gradvac", "beta", self.beta, Rule::UnitClosed)?;
        check("gradvac", "eps", self.eps, Rule::NonNegative)
    }

    random_orders_method!();

    fn state(&self) -> crate::Result<Vec<(String, Vec<f64>)>> {
        Ok(vec![
            ("rng".to_string(), self.rng.to_state()),
            ("phi_hat".into(), self.phi_hat.concat()),
            ("k".into(), vec![self.phi_hat.len() as f64]),
        ])
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> crate::Result<()> {
        self.rng.load_from(state)?;
        let k = state
            .get("k")
            .and_then(|v| v.first())
            .copied()
            .unwrap_or(0.0) as usize;
        if let (Some(flat), true) = (state.get("phi_hat"), k > 0) {
            let m: Vec<Vec<f64>> = flat.chunks(k).map(<[f64]>::to_vec).collect();
            self.set_phi_hat(m)
                .map_err(|reason| crate::Error::InvalidDecision {
                    strategy: "gradvac".into(),
                    reason,
                })?;
        }
        Ok(())
    }
}
