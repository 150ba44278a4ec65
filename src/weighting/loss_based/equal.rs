use crate::error::Result;
use crate::weighting::{Decision, StepInput, TaskWeighting};

/// Equal weighting: every task counts the same.
///
/// `Equal::sum()` trains on `L = sum_k L_k` (`w_k = 1`, LibMTL's "EW" and the plain sum of
/// losses in most PyTorch code); `Equal::mean()` on `L = (1/K) sum_k L_k` (`w_k = 1/K`).
/// The default is the sum.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Equal {
    mean: bool,
}

impl Equal {
    /// `w_k = 1`.
    pub fn sum() -> Self {
        Self { mean: false }
    }

    /// `w_k = 1/K`.
    pub fn mean() -> Self {
        Self { mean: true }
    }
}

impl Default for Equal {
    fn default() -> Self {
        Self::sum()
    }
}

impl TaskWeighting for Equal {
    fn name(&self) -> &str {
        if self.mean {
            "equal-mean"
        } else {
            "equal"
        }
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let k = input.losses.len();
        let w = if self.mean { 1.0 / k as f64 } else { 1.0 };
        Ok(Decision::Weights(vec![w; k]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_and_mean() -> Result<()> {
        let input = StepInput {
            step: 0,
            epoch: 0,
            losses: &[2.0, 0.5, 9.0, 1.0],
            gradients: None,
            second_gradients: None,
        };
        let Decision::Weights(w) = Equal::sum().decide(&input)? else {
            panic!("weights expected")
        };
        assert_eq!(w, vec![1.0; 4]);
        let Decision::Weights(w) = Equal::mean().decide(&input)? else {
            panic!("weights expected")
        };
        assert_eq!(w, vec![0.25; 4]);
        Ok(())
    }
}
