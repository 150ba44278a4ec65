//! Random loss weighting (RLW).

use super::scalarize::{check_finite, check_same_len, softmax, Scalarized};
use crate::error::Result as CrateResult;
use crate::weighting::support::solver_error;
use crate::weighting::{Decision, StepInput, StrategyRng, TaskWeighting};

/// Random loss weighting: at every step draw `ε ~ N(0, I_K)` and use
/// `S(L) = Σ_k softmax_k(ε) L_k`, so the loss weights `softmax(ε)` are positive and sum to 1.
///
/// As a [`TaskWeighting`] the draw comes from the strategy's seeded generator at every step.
/// For tests the draw can be injected: stored in [`Rlw::normal_draw`] (then [`Rlw::scalarize`]
/// uses it), passed to [`Rlw::scalarize_with_draw`], or produced by a caller-supplied sampler in
/// [`Rlw::scalarize_with_sampler`].
///
/// Paper: Lin, Ye, Zhang & Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
/// Multi-Task Learning", TMLR 2022 (Algorithm 2, normal draws through softmax).
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `normal_draw` | `None` (drawn each step by the trainer) | finite, length K | the standard-normal draw `ε` for this step |
///
/// Needs: the current losses and K standard-normal numbers per step. Cost: O(K) time and memory.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rlw {
    /// The standard-normal draw used by [`Rlw::scalarize`].
    pub normal_draw: Option<Vec<f64>>,
    #[cfg_attr(feature = "serde", serde(skip))]
    rng: StrategyRng,
}

impl Rlw {
    /// A scalariser that will use `draw` as its normal draw.
    pub fn with_draw(draw: Vec<f64>) -> Self {
        Self {
            normal_draw: Some(draw),
            rng: StrategyRng::default(),
        }
    }

    /// Stores the normal draw for the next [`Rlw::scalarize`].
    pub fn set_draw(&mut self, draw: Vec<f64>) {
        self.normal_draw = Some(draw);
    }

    /// Scalarises with the stored draw.
    ///
    /// # Errors
    /// If no draw is stored, or as [`Rlw::scalarize_with_draw`].
    pub fn scalarize(&self, losses: &[f64]) -> Result<Scalarized, String> {
        match &self.normal_draw {
            Some(d) => Self::scalarize_with_draw(losses, d),
            None => Err(
                "Rlw: no normal draw stored; call set_draw() or scalarize_with_sampler()".into(),
            ),
        }
    }

    /// Returns `Σ softmax_k(draw) L_k` and the weights `softmax(draw)`.
    ///
    /// # Errors
    /// If `losses` is empty/non-finite or `draw` has another length or is non-finite.
    pub fn scalarize_with_draw(losses: &[f64], draw: &[f64]) -> Result<Scalarized, String> {
        check_finite(losses, "Rlw: losses")?;
        check_same_len(draw, losses, "Rlw: normal draw")?;
        let w = softmax(draw);
        Ok(Scalarized {
            value: losses.iter().zip(&w).map(|(l, c)| l * c).sum(),
            loss_weights: w,
        })
    }

    /// Draws `K` numbers from `sampler` (which should return standard-normal variates) and
    /// scalarises with them.
    ///
    /// # Errors
    /// As [`Rlw::scalarize_with_draw`].
    pub fn scalarize_with_sampler<F: FnMut() -> f64>(
        losses: &[f64],
        mut sampler: F,
    ) -> Result<Scalarized, String> {
        let draw: Vec<f64> = (0..losses.len()).map(|_| sampler()).collect();
        Self::scalarize_with_draw(losses, &draw)
    }
}

impl TaskWeighting for Rlw {
    fn name(&self) -> &str {
        "rlw"
    }

    fn seed(&mut self, seed: u64) {
        self.rng = StrategyRng::new(seed);
    }

    /// Draws K standard normals from the seeded generator each step.
    fn decide(&mut self, input: &StepInput) -> CrateResult<Decision> {
        let draw: Vec<f64> = (0..input.losses.len()).map(|_| self.rng.normal()).collect();
        let s = Self::scalarize_with_draw(input.losses, &draw).map_err(solver_error("rlw"))?;
        self.normal_draw = Some(draw);
        Ok(Decision::Weights(s.loss_weights))
    }

    fn state(&self) -> CrateResult<Vec<(String, Vec<f64>)>> {
        Ok(vec![("rng".into(), self.rng.to_state())])
    }

    fn load_state(
        &mut self,
        state: &std::collections::HashMap<String, Vec<f64>>,
    ) -> CrateResult<()> {
        if let Some(r) = state.get("rng") {
            self.rng = StrategyRng::from_state(r)?;
        }
        Ok(())
    }
}
