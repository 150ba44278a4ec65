use candle_core::Tensor;

use super::gating::{common_output_dim, gate_input, mix, run_experts};
use crate::encoder::{Representation, SharedEncoder};
use crate::error::{Error, Result};
use crate::layers::Dense;
use crate::params::ParamPath;

/// Configuration of [`Mmoe`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmoeConfig {
    /// Number of experts `E`.
    pub experts: usize,
    /// Number of tasks (one gate each).
    pub tasks: usize,
    /// Features per sample the gates read: the input flattened (784 for 1x28x28 images).
    pub gate_input_dim: usize,
}

/// Multi-gate mixture of experts (Ma et al., *Modeling Task Relationships in Multi-task
/// Learning with Multi-gate Mixture-of-Experts*, KDD 2018): `E` experts, any encoder with
/// `(N, D)` outputs, all reading the input; task `k` reads
/// `z_k = sum_e softmax(W_k x + b_k)_e * expert_e(x)`, its gate a linear layer on the
/// flattened input.
///
/// ```text
///        x ──┬── expert 0 ──┐
///            ├── expert 1 ──┼──(gate 0: softmax(W_0 x))──> z_0 ──> head 0
///            └── expert 2 ──┴──(gate 1: softmax(W_1 x))──> z_1 ──> head 1
/// ```
///
/// Parameters: `encoder.expert<e>.*`, `encoder.gate<k>.{weight,bias}`; all count as shared.
pub struct Mmoe {
    experts: Vec<Box<dyn SharedEncoder>>,
    gates: Vec<Dense>,
    gate_input_dim: usize,
    output_dim: usize,
}

impl Mmoe {
    /// Builds the experts with `build_expert` (called once per expert, each under its own
    /// path) and one gate per task.
    pub fn new<E, F>(config: &MmoeConfig, path: &ParamPath, build_expert: F) -> Result<Self>
    where
        E: SharedEncoder + 'static,
        F: Fn(&ParamPath) -> Result<E>,
    {
        if config.experts == 0 || config.tasks == 0 {
            return Err(Error::config(
                "MmoeConfig",
                format!("{} experts, {} tasks", config.experts, config.tasks),
                "needs at least one expert and one task",
            ));
        }
        let experts = (0..config.experts)
            .map(|e| {
                build_expert(&path.pp(&format!("expert{e}")))
                    .map(|x| Box::new(x) as Box<dyn SharedEncoder>)
            })
            .collect::<Result<Vec<_>>>()?;
        let dims: Vec<usize> = experts.iter().map(|e| e.output_dim()).collect();
        let output_dim = common_output_dim(&dims, "MMoE")?;
        let gates = (0..config.tasks)
            .map(|k| {
                Dense::new(
                    config.gate_input_dim,
                    config.experts,
                    &path.pp(&format!("gate{k}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            experts,
            gates,
            gate_input_dim: config.gate_input_dim,
            output_dim,
        })
    }
}

impl SharedEncoder for Mmoe {
    /// The experts' mean (all gates uniform); training uses
    /// [`forward_tasks`](SharedEncoder::forward_tasks).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let outputs = run_experts(&self.experts, xs, train)?;
        Ok(Tensor::stack(&outputs, 1)?.mean(1)?)
    }

    fn output_dim(&self) -> usize {
        self.output_dim
    }

    fn forward_tasks(&self, xs: &Tensor, num_tasks: usize, train: bool) -> Result<Representation> {
        if num_tasks != self.gates.len() {
            return Err(Error::DataMismatch(format!(
                "MMoE was built with {} gates for a model of {num_tasks} tasks",
                self.gates.len()
            )));
        }
        let outputs = run_experts(&self.experts, xs, train)?;
        let flat = gate_input(xs, self.gate_input_dim, "an MMoE gate")?;
        let zs = self
            .gates
            .iter()
            .map(|g| mix(&g.forward(&flat)?, &outputs))
            .collect::<Result<Vec<_>>>()?;
        Ok(Representation::PerTask(zs))
    }
}
