//! Dynamic Weight Average (DWA).

use super::scalarize::{check_finite, check_same_len, softmax, Scalarized};
use crate::error::Result as CrateResult;
use crate::weighting::hyper::{check, Rule};
use crate::weighting::support::solver_error;
use crate::weighting::{Decision, StepInput, TaskWeighting};

/// Dynamic Weight Average: weights each loss by how slowly it has been decreasing.
///
/// With `A_k(t)` the average loss of task `k` over epoch `t` and temperature `T`, the batch losses
/// of epoch `t` are combined as
/// `S(L) = Σ_k λ_k L_k`, `λ_k = K · softmax_k(r / T)`, `r_k = A_k(t-1) / A_k(t-2)`.
/// The weights sum to `K` and are constant with respect to the current losses (they depend only on
/// past epoch averages), so `∂S/∂L_k = λ_k`. Until two epoch averages exist, `λ_k = 1`.
///
/// Paper: Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019.
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `temperature` | `2.0` | `(0, ∞)` | softmax temperature `T`; larger gives more uniform weights |
///
/// Needs: the current losses and a loss history (the average loss of each of the two previous
/// epochs). Feed each batch's losses with [`Dwa::record`] and close an epoch with [`Dwa::step`], or
/// set the two averages directly with [`Dwa::set_history`]. Cost: O(K) time, O(K) memory.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Dwa {
    /// Softmax temperature `T` (> 0).
    pub temperature: f64,
    /// Up to two previous epoch averages, older first.
    previous_averages: Vec<Vec<f64>>,
    /// Sum of the losses recorded in the current epoch (empty when none).
    loss_sum: Vec<f64>,
    /// Number of batches recorded in the current epoch.
    n_batches: usize,
}

impl Default for Dwa {
    fn default() -> Self {
        Self::with_temperature(2.0)
    }
}

impl Dwa {
    /// A scalariser with the given temperature and an empty history; refused with
    /// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) unless the
    /// temperature is finite and `> 0`.
    pub fn new(temperature: f64) -> CrateResult<Self> {
        let s = Self::with_temperature(temperature);
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> CrateResult<()> {
        check("dwa", "temperature", self.temperature, Rule::Positive)
    }

    fn with_temperature(temperature: f64) -> Self {
        Self {
            temperature,
            previous_averages: Vec::new(),
            loss_sum: Vec::new(),
            n_batches: 0,
        }
    }

    /// Replaces the history with two epoch averages, `older` = epoch `t-2`, `newer` = epoch `t-1`,
    /// and clears the current epoch's accumulator.
    ///
    /// # Errors
    /// If the two vectors differ in length or contain non-finite values.
    pub fn set_history(&mut self, older: Vec<f64>, newer: Vec<f64>) -> Result<(), String> {
        check_finite(&older, "DWA: older epoch average")?;
        check_same_len(&newer, &older, "DWA: newer epoch average")?;
        self.previous_averages = vec![older, newer];
        self.loss_sum.clear();
        self.n_batches = 0;
        Ok(())
    }

    /// The stored epoch averages, older first (zero, one or two of them).
    pub fn history(&self) -> &[Vec<f64>] {
        &self.previous_averages
    }

    /// Adds one batch's losses to the current epoch's running sum.
    ///
    /// # Errors
    /// If `losses` is empty or non-finite, or its length differs from earlier batches of the epoch.
    pub fn record(&mut self, losses: &[f64]) -> Result<(), String> {
        check_finite(losses, "DWA: losses")?;
        if self.n_batches == 0 {
            self.loss_sum = losses.to_vec();
        } else {
            check_same_len(losses, &self.loss_sum, "DWA: recorded losses")?;
            for (s, l) in self.loss_sum.iter_mut().zip(losses) {
                *s += l;
            }
        }
        self.n_batches += 1;
        Ok(())
    }

    /// Ends the epoch: stores the average of the recorded losses as the newest history entry and
    /// keeps only the last two. Does nothing if no batch was recorded.
    pub fn step(&mut self) {
        if self.n_batches == 0 {
            return;
        }
        let n = self.n_batches as f64;
        let average: Vec<f64> = self.loss_sum.iter().map(|s| s / n).collect();
        self.previous_averages.push(average);
        if self.previous_averages.len() > 2 {
            self.previous_averages.remove(0);
        }
        self.loss_sum.clear();
        self.n_batches = 0;
    }

    /// Clears the history and the current epoch's accumulator.
    pub fn reset(&mut self) {
        self.previous_averages.clear();
        self.loss_sum.clear();
        self.n_batches = 0;
    }

    /// The DWA weights `λ` for `k` tasks from the stored history (all ones before two epochs).
    ///
    /// # Errors
    /// If the history length differs from
    /// `k`, or a ratio `A(t-1)/A(t-2)` is not finite (e.g. a zero older average).
    pub fn weights(&self, k: usize) -> Result<Vec<f64>, String> {
        let [older, newer] = match self.previous_averages.as_slice() {
            [a, b] => [a, b],
            _ => return Ok(vec![1.0; k]),
        };
        if older.len() != k {
            return Err(format!(
                "DWA: history has {} tasks but there are {k} losses; call reset() first",
                older.len()
            ));
        }
        let mut rates = Vec::with_capacity(k);
        for (i, (n, o)) in newer.iter().zip(older).enumerate() {
            let r = n / o;
            if !r.is_finite() {
                return Err(format!(
                    "DWA: loss ratio for task {i} is {n} / {o}, which is not finite"
                ));
            }
            rates.push(r / self.temperature);
        }
        Ok(softmax(&rates).into_iter().map(|w| w * k as f64).collect())
    }

    /// Returns `Σ λ_k L_k` and the weights `λ` (the losses are not recorded; see [`Dwa::record`]).
    ///
    /// # Errors
    /// As [`Dwa::weights`], or if `losses` is empty or non-finite.
    pub fn scalarize(&self, losses: &[f64]) -> Result<Scalarized, String> {
        check_finite(losses, "DWA: losses")?;
        let w = self.weights(losses.len())?;
        Ok(Scalarized {
            value: losses.iter().zip(&w).map(|(l, c)| l * c).sum(),
            loss_weights: w,
        })
    }

    /// Like [`Dwa::scalarize`], then records the losses into the current epoch, as the reference
    /// implementation does on every call.
    ///
    /// # Errors
    /// As [`Dwa::scalarize`] and [`Dwa::record`].
    pub fn scalarize_and_record(&mut self, losses: &[f64]) -> Result<Scalarized, String> {
        let out = self.scalarize(losses)?;
        self.record(losses)?;
        Ok(out)
    }
}

impl TaskWeighting for Dwa {
    fn name(&self) -> &str {
        "dwa"
    }

    fn check(&self, _setup: &crate::weighting::WeightingSetup) -> CrateResult<()> {
        self.validate()
    }

    fn decide(&mut self, input: &StepInput) -> CrateResult<Decision> {
        let s = self.scalarize(input.losses).map_err(solver_error("dwa"))?;
        Ok(Decision::Weights(s.loss_weights))
    }

    /// Closes the epoch with its mean training losses (the loss history DWA reads).
    fn end_epoch(&mut self, _epoch: usize, mean_losses: &[f64]) -> CrateResult<()> {
        self.record(mean_losses).map_err(solver_error("dwa"))?;
        self.step();
        Ok(())
    }

    fn state(&self) -> CrateResult<Vec<(String, Vec<f64>)>> {
        Ok(vec![
            ("previous_averages".into(), self.previous_averages.concat()),
            (
                "previous_count".into(),
                vec![self.previous_averages.len() as f64],
            ),
            ("loss_sum".into(), self.loss_sum.clone()),
            ("n_batches".into(), vec![self.n_batches as f64]),
        ])
    }

    fn load_state(
        &mut self,
        state: &std::collections::HashMap<String, Vec<f64>>,
    ) -> CrateResult<()> {
        let count = state
            .get("previous_count")
            .and_then(|v| v.first())
            .copied()
            .unwrap_or(0.0) as usize;
        let flat = state.get("previous_averages").cloned().unwrap_or_default();
        self.previous_averages = match flat.len().checked_div(count) {
            Some(k) if k > 0 && k * count == flat.len() => {
                flat.chunks(k).map(<[f64]>::to_vec).collect()
            }
            _ => Vec::new(),
        };
        self.loss_sum = state.get("loss_sum").cloned().unwrap_or_default();
        self.n_batches = state
            .get("n_batches")
            .and_then(|v| v.first())
            .copied()
            .unwrap_or(0.0) as usize;
        Ok(())
    }
}
