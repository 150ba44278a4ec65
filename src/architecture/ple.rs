use candle_core::Tensor;

use super::gating::{common_output_dim, gate_input, mix, run_experts};
use crate::encoder::{Representation, SharedEncoder};
use crate::error::{Error, Result};
use crate::layers::Dense;
use crate::params::ParamPath;

/// Configuration of [`Ple`]; one level is CGC.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PleConfig {
    /// Number of tasks.
    pub tasks: usize,
    /// Shared experts per level.
    pub shared_experts: usize,
    /// Experts of each task per level.
    pub task_experts: usize,
    /// Extraction levels (1: CGC; 2 or more: PLE).
    pub levels: usize,
    /// Features per sample of the model's input (the input flattened), read by the first
    /// level's gates.
    pub gate_input_dim: usize,
}

/// One extraction level: shared experts, each task's experts, a gate per task and, except on
/// the last level, a shared gate.
struct Level {
    shared: Vec<Box<dyn SharedEncoder>>,
    tasks: Vec<Vec<Box<dyn SharedEncoder>>>,
    task_gates: Vec<Dense>,
    shared_gate: Option<Dense>,
    input_dim: usize,
}

/// Customized Gate Control and Progressive Layered Extraction (Tang et al., *Progressive
/// Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model for Personalized
/// Recommendations*, RecSys 2020).
///
/// CGC (one level): shared experts plus experts owned by each task; task `k`'s gate mixes the
/// shared experts and its own, `z_k = sum softmax(W_k x) * [shared..., own_k...]`. PLE stacks
/// levels: each task's mixture is the input of its experts at the next level, and a shared
/// gate over every expert gives the input of the next level's shared experts.
///
/// ```text
/// level l:  in_shared ── shared experts ──┬──────────────(shared gate)──> in_shared'
///           in_k ────── task k experts ───┴─(gate k: shared + own)──> in_k' (z_k at the top)
/// ```
///
/// `build_expert(level, path)` builds one expert; level 0 experts read the model's input,
/// deeper ones the `D`-sized outputs of the level below. Parameters:
/// `encoder.level<l>.{shared<i>, task<k>.expert<j>, gate<k>, shared_gate}.*`; all count as
/// shared for gradient-based strategies (a task's own experts and gate get no gradient from
/// the other tasks).
pub struct Ple {
    levels: Vec<Level>,
    output_dim: usize,
}

impl Ple {
    /// Builds every level.
    pub fn new<E, F>(config: &PleConfig, path: &ParamPath, build_expert: F) -> Result<Self>
    where
        E: SharedEncoder + 'static,
        F: Fn(usize, &ParamPath) -> Result<E>,
    {
        if config.tasks == 0
            || config.levels == 0
            || config.shared_experts + config.task_experts == 0
        {
            return Err(Error::config(
                "PleConfig",
                format!("{config:?}"),
                "needs at least one task, one level and one expert per gate",
            ));
        }
        let boxed = |level: usize, p: &ParamPath| -> Result<Box<dyn SharedEncoder>> {
            Ok(Box::new(build_expert(level, p)?))
        };
        let mut levels = Vec::with_capacity(config.levels);
        let mut input_dim = config.gate_input_dim;
        let mut output_dim = 0;
        for l in 0..config.levels {
            let lp = path.pp(&format!("level{l}"));
            let shared = (0..config.shared_experts)
                .map(|i| boxed(l, &lp.pp(&format!("shared{i}"))))
                .collect::<Result<Vec<_>>>()?;
            let tasks = (0..config.tasks)
                .map(|k| {
                    (0..config.task_experts)
                        .map(|j| boxed(l, &lp.pp(&format!("task{k}")).pp(&format!("expert{j}"))))
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<_>>>()?;
            let dims: Vec<usize> = shared
                .iter()
                .chain(tasks.iter().flatten())
                .map(|e| e.output_dim())
                .collect();
            output_dim = common_output_dim(&dims, &format!("PLE level {l}"))?;
            let per_gate = config.shared_experts + config.task_experts;
            let task_gates = (0..config.tasks)
                .map(|k| Dense::new(input_dim, per_gate, &lp.pp(&format!("gate{k}"))))
                .collect::<Result<Vec<_>>>()?;
            let shared_gate = if l + 1 < config.levels && config.shared_experts > 0 {
                Some(Dense::new(
                    input_dim,
                    config.shared_experts + config.tasks * config.task_experts,
                    &lp.pp("shared_gate"),
                )?)
            } else {
                None
            };
            levels.push(Level {
                shared,
                tasks,
                task_gates,
                shared_gate,
                input_dim,
            });
            input_dim = output_dim;
        }
        Ok(Self { levels, output_dim })
    }
}

impl SharedEncoder for Ple {
    /// The top level's shared experts' mean (or every expert's, without shared experts);
    /// training uses [`forward_tasks`](SharedEncoder::forward_tasks).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        match self.forward_tasks(xs, self.levels[0].tasks.len(), train)? {
            Representation::PerTask(zs) => Ok(Tensor::stack(&zs, 1)?.mean(1)?),
            Representation::Shared(z) => Ok(z),
        }
    }

    fn output_dim(&self) -> usize {
        self.output_dim
    }

    fn forward_tasks(&self, xs: &Tensor, num_tasks: usize, train: bool) -> Result<Representation> {
        let k_tasks = self.levels[0].tasks.len();
        if num_tasks != k_tasks {
            return Err(Error::DataMismatch(format!(
                "PLE was built for {k_tasks} tasks, the model has {num_tasks}"
            )));
        }
        let mut shared_in = xs.clone();
        let mut task_in = vec![xs.clone(); k_tasks];
        for (l, level) in self.levels.iter().enumerate() {
            let what = format!("a PLE level-{l} gate");
            let shared_out = run_experts(&level.shared, &shared_in, train)?;
            let task_out = level
                .tasks
                .iter()
                .zip(&task_in)
                .map(|(experts, input)| run_experts(experts, input, train))
                .collect::<Result<Vec<_>>>()?;
            let next_task_in = (0..k_tasks)
                .map(|k| {
                    let experts: Vec<Tensor> =
                        shared_out.iter().chain(&task_out[k]).cloned().collect();
                    let g = gate_input(&task_in[k], level.input_dim, &what)?;
                    mix(&level.task_gates[k].forward(&g)?, &experts)
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some(gate) = &level.shared_gate {
                let experts: Vec<Tensor> = shared_out
                    .iter()
                    .chain(task_out.iter().flatten())
                    .cloned()
                    .collect();
                let g = gate_input(&shared_in, level.input_dim, &what)?;
                shared_in = mix(&gate.forward(&g)?, &experts)?;
            }
            task_in = next_task_in;
        }
        Ok(Representation::PerTask(task_in))
    }
}
