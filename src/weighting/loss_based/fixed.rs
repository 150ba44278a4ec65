use crate::error::{Error, Result};
use crate::weighting::hyper::{check_all, refuse, Rule};
use crate::weighting::{Decision, StepInput, TaskWeighting, WeightingSetup};

/// Fixed, hand-chosen weights: `L = sum_k w_k L_k` with the same `w` at every step.
///
/// The number of weights must equal the number of tasks, and every weight must be finite and
/// non-negative; both are checked when the trainer is built.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Fixed {
    weights: Vec<f64>,
}

impl Fixed {
    /// One weight per task, in task order.
    pub fn new(weights: Vec<f64>) -> Result<Self> {
        check_all("fixed", "weights", &weights, Rule::NonNegative)?;
        if weights.iter().all(|w| *w == 0.0) {
            return Err(refuse(
                "fixed",
                "weights",
                format!("{weights:?}"),
                "positive in at least one entry",
            ));
        }
        Ok(Self { weights })
    }

    /// The weights.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
}

impl TaskWeighting for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }

    fn check(&self, setup: &WeightingSetup) -> Result<()> {
        if self.weights.len() != setup.task_names.len() {
            return Err(Error::IncompatibleWeighting {
                strategy: self.name().to_string(),
                reason: format!(
                    "{} weights {:?} given for {} tasks ({})",
                    self.weights.len(),
                    self.weights,
                    setup.task_names.len(),
                    setup.task_names.join(", ")
                ),
            });
        }
        Ok(())
    }

    fn decide(&mut self, _input: &StepInput) -> Result<Decision> {
        Ok(Decision::Weights(self.weights.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weighting::InputMode;

    #[test]
    fn validates_values_and_count() {
        assert!(Fixed::new(vec![1.0, -0.5]).is_err());
        assert!(Fixed::new(vec![0.0, 0.0]).is_err());
        let f = Fixed::new(vec![1.0, 0.5]).unwrap();
        let setup = WeightingSetup {
            task_names: vec!["a".into(), "b".into(), "c".into()],
            gradient_source: None,
            input_mode: InputMode::SingleInput,
            batches_per_step: 1,
        };
        let msg = f.check(&setup).unwrap_err().to_string();
        assert!(
            msg.contains("2 weights") && msg.contains("3 tasks"),
            "{msg}"
        );
    }
}
