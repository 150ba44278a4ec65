//! What the built-in strategies share: turning solver results into decisions, errors, and a
//! seeded random source.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Decision, StepInput, TaskGradients};
use crate::error::{Error, Result};

/// The per-task gradients of a step, or an error naming the strategy that needed them.
#[allow(dead_code)] // used by the gradient-based strategies
pub(crate) fn gradients<'a>(strategy: &str, input: &StepInput<'a>) -> Result<&'a TaskGradients> {
    input.gradients.ok_or_else(|| Error::InvalidDecision {
        strategy: strategy.to_string(),
        reason: "needs per-task gradients but the trainer gave none".into(),
    })
}

/// Wraps a solver's error message as an error of `strategy`.
pub(crate) fn solver_error(strategy: &str) -> impl Fn(String) -> Error + '_ {
    move |reason| Error::InvalidDecision {
        strategy: strategy.to_string(),
        reason,
    }
}

/// A combined gradient computed on the host, as a decision on the gradients' device.
#[allow(dead_code)] // used by the gradient-based strategies
pub(crate) fn direction(values: Vec<f64>, like: &TaskGradients) -> Result<Decision> {
    let device: &Device = like.matrix().device();
    let v: Vec<f32> = values.into_iter().map(|x| x as f32).collect();
    let n = v.len();
    Ok(Decision::Direction(
        Tensor::from_vec(v, n, &Device::Cpu)?
            .to_device(device)?
            .to_dtype(DType::F32)?,
    ))
}

/// A seeded generator for randomised strategies; reseeded by [`TaskWeighting::seed`](super::TaskWeighting::seed).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyRng(ChaCha8Rng);

impl StrategyRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// A uniformly random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.0.random_range(0..=i);
            p.swap(i, j);
        }
        p
    }
}

impl StrategyRng {
    /// One random permutation of `0..k` for each of the `k` tasks (PCGrad / GradVac visit
    /// orders).
    pub fn orders(&mut self, k: usize) -> Vec<Vec<usize>> {
        (0..k).map(|_| self.permutation(k)).collect()
    }

    /// Restores the generator saved under `rng` in a strategy's state, if there is one.
    pub(crate) fn load_from(
        &mut self,
        state: &std::collections::HashMap<String, Vec<f64>>,
    ) -> Result<()> {
        if let Some(r) = state.get("rng") {
            *self = StrategyRng::from_state(r)?;
        }
        Ok(())
    }

    /// The exact generator state as 56 numbers (bytes of seed, stream and position), for
    /// checkpoints.
    pub fn to_state(&self) -> Vec<f64> {
        chacha_to_bytes(&self.0)
            .into_iter()
            .map(f64::from)
            .collect()
    }

    /// The generator saved by [`to_state`](Self::to_state).
    pub fn from_state(state: &[f64]) -> Result<Self> {
        if state.len() != 56
            || state
                .iter()
                .any(|b| !(0.0..=255.0).contains(b) || b.fract() != 0.0)
        {
            return Err(Error::config(
                "generator state",
                format!("{} values", state.len()),
                "must be 56 bytes",
            ));
        }
        let bytes: Vec<u8> = state.iter().map(|b| *b as u8).collect();
        chacha_from_bytes(&bytes).map(Self).ok_or_else(|| {
            Error::config(
                "generator state",
                format!("{} values", state.len()),
                "must be 56 bytes",
            )
        })
    }
}

/// A ChaCha generator's exact state: seed (32 bytes), stream (8), word position (16).
pub(crate) fn chacha_to_bytes(rng: &ChaCha8Rng) -> Vec<u8> {
    let mut bytes = rng.get_seed().to_vec();
    bytes.extend_from_slice(&rng.get_stream().to_le_bytes());
    bytes.extend_from_slice(&rng.get_word_pos().to_le_bytes());
    bytes
}

/// The generator of [`chacha_to_bytes`]; `None` unless given exactly 56 bytes.
pub(crate) fn chacha_from_bytes(bytes: &[u8]) -> Option<ChaCha8Rng> {
    if bytes.len() != 56 {
        return None;
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&bytes[..32]);
    let mut stream = [0u8; 8];
    stream.copy_from_slice(&bytes[32..40]);
    let mut pos = [0u8; 16];
    pos.copy_from_slice(&bytes[40..56]);
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(u64::from_le_bytes(stream));
    rng.set_word_pos(u128::from_le_bytes(pos));
    Some(rng)
}

impl Default for StrategyRng {
    fn default() -> Self {
        Self::new(0)
    }
}

/// A strategy's own learnable parameters (one per task), held as a candle variable on the CPU
/// so that the trainer's optimiser updates them with the model.
#[derive(Debug, Clone, Default)]
pub(crate) struct LearnedParameters(Option<Var>);

impl PartialEq for LearnedParameters {
    fn eq(&self, other: &Self) -> bool {
        self.values().ok() == other.values().ok()
    }
}

impl LearnedParameters {
    /// Creates the variable from `initial`.
    pub(crate) fn init(&mut self, initial: &[f64]) -> Result<()> {
        let t = Tensor::from_vec(
            initial.iter().map(|v| *v as f32).collect::<Vec<_>>(),
            initial.len(),
            &Device::Cpu,
        )?;
        self.0 = Some(Var::from_tensor(&t)?);
        Ok(())
    }

    /// Sizes `values` for `k` tasks (filled with `init` when empty) and creates the variable
    /// from them.
    pub(crate) fn prepare(&mut self, values: &mut Vec<f64>, k: usize, init: f64) -> Result<()> {
        if values.is_empty() {
            *values = vec![init; k];
        }
        self.init(values)
    }

    /// The variable as the strategy's one named parameter (none before it is created).
    pub(crate) fn named(&self, name: &str) -> Vec<(String, Var)> {
        self.0
            .iter()
            .map(|v| (name.to_string(), v.clone()))
            .collect()
    }

    /// Copies the variable's current values into `values` (nothing before it is created).
    pub(crate) fn refresh(&self, values: &mut Vec<f64>) -> Result<()> {
        if self.0.is_some() {
            *values = self.values()?;
        }
        Ok(())
    }

    /// Current values (empty before [`init`](Self::init)).
    pub(crate) fn values(&self) -> Result<Vec<f64>> {
        match &self.0 {
            Some(v) => Ok(v
                .as_tensor()
                .to_vec1::<f32>()?
                .into_iter()
                .map(f64::from)
                .collect()),
            None => Ok(Vec::new()),
        }
    }

    /// A scalar whose gradient with respect to the variable is `gradient` (a linear surrogate
    /// of the strategy's own objective, whose gradient was computed analytically).
    pub(crate) fn surrogate(&self, gradient: &[f64]) -> Result<Option<Tensor>> {
        let Some(v) = &self.0 else { return Ok(None) };
        let g = Tensor::from_vec(
            gradient.iter().map(|x| *x as f32).collect::<Vec<_>>(),
            gradient.len(),
            &Device::Cpu,
        )?;
        Ok(Some((v.as_tensor() * g)?.sum_all()?))
    }
}

/// Detached loss tensors as f64 values.
pub(crate) fn loss_values(losses: &[Tensor]) -> Result<Vec<f64>> {
    losses
        .iter()
        .map(|l| {
            Ok(f64::from(
                l.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_seeded_and_normal_has_unit_variance() {
        let mut a = StrategyRng::new(1);
        let mut b = StrategyRng::new(1);
        assert_eq!(a.permutation(10), b.permutation(10));
        let mut p = a.permutation(7);
        p.sort();
        assert_eq!(p, (0..7).collect::<Vec<_>>());
        let xs: Vec<f64> = (0..20000).map(|_| a.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
