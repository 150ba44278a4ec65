//! Strategies that read the per-task gradients. One strategy per file; `common.rs` holds what
//! they share and [`crate::solvers`] the small optimisation problems they solve.
//!
//! Most are written on the K x K Gramian `G G^T` ([`GramianWeighting`]), so one implementation
//! serves gradients of the shared parameters and gradients of the shared representation
//! (MGDA-UB style): the trainer hands over whichever [`GradientSource`] the configuration
//! asks for, and they return weights.
//!
//! | strategy | file | reference |
//! |---|---|---|
//! | [`Mgda`] | `mgda.rs` | Désidéri 2012; Sener & Koltun, NeurIPS 2018 |
//! | [`UPGrad`] | `upgrad.rs` | Quinton & Rey, torchjd (2024) |
//! | [`DualProj`] | `dualproj.rs` | Lopez-Paz & Ranzato, NeurIPS 2017 (GEM) |
//! | [`CaGrad`] | `cagrad.rs` | Liu et al., NeurIPS 2021 |
//! | [`Imtlg`] | `imtlg.rs` | Liu et al., ICLR 2021 |
//! | [`AlignedMtl`] | `aligned_mtl.rs` | Senushkin et al., CVPR 2023 |
//! | [`NashMtl`] | `nash_mtl.rs` | Navon et al., ICML 2022 |
//! | [`FairGrad`] | `fairgrad.rs` | Ban & Ji, ICML 2024 |
//! | [`CrMogm`] | `cr_mogm.rs` | Zhou et al., NeurIPS 2022 |
//! | [`MoDo`] | `modo.rs` | Chen et al., NeurIPS 2023 |
//! | [`SdmGrad`] | `sdmgrad.rs` | Xiao et al., NeurIPS 2023 |

mod aligned_mtl;
mod cagrad;
mod common;
mod cr_mogm;
mod dualproj;
mod fairgrad;
mod imtlg;
mod mgda;
mod modo;
mod nash_mtl;
mod sdmgrad;
mod upgrad;

mod cagrad_libmtl;
mod config;
mod excess_mtl;
mod graddrop;
mod gradnorm;
mod gradvac;
mod imtl;
mod krum;
mod mgda_normalized;
mod pcd;
mod pcgrad;
mod rows;
mod trimmed_mean;

pub use aligned_mtl::{AlignedMtl, ScaleMode};
pub use cagrad::CaGrad;
pub use common::{Aggregate, GramianWeighting};
pub use cr_mogm::CrMogm;
pub use dualproj::DualProj;
pub use fairgrad::FairGrad;
pub use imtlg::Imtlg;
pub use mgda::{Mgda, MgdaSolver};
pub use modo::MoDo;
pub use nash_mtl::NashMtl;
pub use sdmgrad::SdmGrad;
pub use upgrad::UPGrad;

pub use cagrad_libmtl::{CaGradLibMtl, CaGradOutput, CaGradRescale};
pub use config::ConFig;
pub use excess_mtl::ExcessMtl;
pub use graddrop::GradDrop;
pub use gradnorm::{GradNorm, GradNormOutput};
pub use gradvac::GradVac;
pub use imtl::{Imtl, ImtlOutput};
pub use krum::Krum;
pub use mgda_normalized::{MgdaNormalization, MgdaNormalized, MgdaOutput};
pub use pcd::Pcd;
pub use pcgrad::PcGrad;
pub use rows::Aggregator;
pub use trimmed_mean::TrimmedMean;

use super::support::{direction, gradients, solver_error};
use super::{
    Decision, GradientSource, Needs, StepInput, StrategyRng, TaskWeighting, WeightingSetup,
};
use std::collections::HashMap;

use crate::error::Result;

/// Both gradient sources, shared parameters preferred.
fn any_source() -> Needs {
    Needs::gradients(vec![
        GradientSource::SharedParameters,
        GradientSource::Representation,
    ])
}

/// `TaskWeighting` for a stateless [`GramianWeighting`]: weights from the step's Gramian.
macro_rules! gramian_strategy {
    ($ty:ty, $name:literal) => {
        impl TaskWeighting for $ty {
            fn name(&self) -> &str {
                $name
            }

            fn needs(&self) -> Needs {
                any_source()
            }

            fn decide(&mut self, input: &StepInput) -> Result<Decision> {
                let gram = gradients($name, input)?.gramian()?;
                let w = GramianWeighting::weights(self, &gram).map_err(solver_error($name))?;
                Ok(Decision::Weights(w))
            }
        }
    };
}

gramian_strategy!(UPGrad, "upgrad");
gramian_strategy!(DualProj, "dualproj");
gramian_strategy!(CaGrad, "cagrad");
gramian_strategy!(Imtlg, "imtl-g");
gramian_strategy!(AlignedMtl, "aligned-mtl");
gramian_strategy!(FairGrad, "fairgrad");

impl TaskWeighting for Mgda {
    fn name(&self) -> &str {
        match self.gradient_source {
            GradientSource::SharedParameters => "mgda",
            GradientSource::Representation => "mgda-ub",
        }
    }

    /// The source set by [`Mgda::upper_bound`] first, the other one also accepted.
    fn needs(&self) -> Needs {
        let other = match self.gradient_source {
            GradientSource::SharedParameters => GradientSource::Representation,
            GradientSource::Representation => GradientSource::SharedParameters,
        };
        Needs::gradients(vec![self.gradient_source, other])
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let name = TaskWeighting::name(self).to_string();
        let gram = gradients(&name, input)?.gramian()?;
        let w = GramianWeighting::weights(self, &gram).map_err(solver_error(&name))?;
        Ok(Decision::Weights(w))
    }
}

impl TaskWeighting for NashMtl {
    fn name(&self) -> &str {
        "nash-mtl"
    }

    fn needs(&self) -> Needs {
        any_source()
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        let (step, alpha) = NashMtl::state(self);
        let mut out = vec![("step".to_string(), vec![step as f64])];
        if let Some(a) = alpha {
            out.push(("alpha".to_string(), a.to_vec()));
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> Result<()> {
        let step = state
            .get("step")
            .and_then(|v| v.first())
            .copied()
            .unwrap_or(0.0) as usize;
        self.set_state(step, state.get("alpha").cloned())
            .map_err(solver_error("nash-mtl"))
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let gram = gradients("nash-mtl", input)?.gramian()?;
        let w = self.weights(&gram).map_err(solver_error("nash-mtl"))?;
        Ok(Decision::Weights(w))
    }
}

impl<W: GramianWeighting + Send> TaskWeighting for CrMogm<W> {
    fn name(&self) -> &str {
        "cr-mogm"
    }

    fn needs(&self) -> Needs {
        any_source()
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        Ok(CrMogm::state(self)
            .map(|l| vec![("lambda".to_string(), l.to_vec())])
            .unwrap_or_default())
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> Result<()> {
        self.set_state(state.get("lambda").cloned());
        Ok(())
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let gram = gradients("cr-mogm", input)?.gramian()?;
        let w = self.weights(&gram).map_err(solver_error("cr-mogm"))?;
        Ok(Decision::Weights(w))
    }
}

/// Strategies that estimate their weights from two independent batches per step.
macro_rules! two_batch_strategy {
    ($ty:ty, $name:literal) => {
        impl TaskWeighting for $ty {
            fn name(&self) -> &str {
                $name
            }

            /// Two batches per step and shared-parameter gradients: the weights come from
            /// `G_1 G_2^T` of two independent batches (an unbiased estimate of the Gramian's
            /// products), the update is applied to the first batch's gradients.
            fn needs(&self) -> Needs {
                Needs {
                    batches_per_step: 2,
                    ..Needs::gradients(vec![GradientSource::SharedParameters])
                }
            }

            fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
                Ok(<$ty>::state(self)
                    .map(|l| vec![("weights".to_string(), l.to_vec())])
                    .unwrap_or_default())
            }

            fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> Result<()> {
                self.set_state(state.get("weights").cloned());
                Ok(())
            }

            fn decide(&mut self, input: &StepInput) -> Result<Decision> {
                let first = gradients($name, input)?;
                let second = input.second_gradients.ok_or_else(|| {
                    solver_error($name)(
                        "needs the gradients of a second batch (Trainer::train_step_pair)".into(),
                    )
                })?;
                let cross = first.cross_gramian(second)?;
                let w = self.weights(&cross).map_err(solver_error($name))?;
                Ok(Decision::Weights(w))
            }
        }
    };
}

two_batch_strategy!(MoDo, "modo");
two_batch_strategy!(SdmGrad, "sdmgrad");

/// Full-gradient strategies (they read every coordinate, not only the Gramian).
fn rows_only() -> Needs {
    Needs::gradients(vec![
        GradientSource::SharedParameters,
        GradientSource::Representation,
    ])
}

/// One random permutation of the tasks for each task (PCGrad / GradVac visit orders).
fn orders(rng: &mut StrategyRng, k: usize) -> Vec<Vec<usize>> {
    (0..k).map(|_| rng.permutation(k)).collect()
}

/// `TaskWeighting` for the projection methods that visit the tasks in a seeded random order.
macro_rules! ordered_strategy {
    ($ty:ty, $name:literal) => {
        impl TaskWeighting for $ty {
            fn name(&self) -> &str {
                $name
            }

            fn needs(&self) -> Needs {
                any_source()
            }

            fn seed(&mut self, seed: u64) {
                self.rng = StrategyRng::new(seed);
            }

            fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
                let mut out = vec![("rng".to_string(), self.rng.to_state())];
                out.extend(extra_state(self));
                Ok(out)
            }

            fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> Result<()> {
                if let Some(r) = state.get("rng") {
                    self.rng = StrategyRng::from_state(r)?;
                }
                load_extra_state(self, state)
            }

            fn decide(&mut self, input: &StepInput) -> Result<Decision> {
                let gram = gradients($name, input)?.gramian()?;
                let order = orders(&mut self.rng, gram.len());
                let w = self
                    .weights_from_gramian(&gram, &order)
                    .map_err(solver_error($name))?;
                Ok(Decision::Weights(w))
            }
        }
    };
}

ordered_strategy!(PcGrad, "pcgrad");
ordered_strategy!(GradVac, "gradvac");

/// State beyond the generator: none for PCGrad, the EMA cosine targets for GradVac.
trait ExtraState {
    fn extra(&self) -> Vec<(String, Vec<f64>)>;
    fn load_extra(&mut self, state: &HashMap<String, Vec<f64>>) -> Result<()>;
}

impl ExtraState for PcGrad {
    fn extra(&self) -> Vec<(String, Vec<f64>)> {
        Vec::new()
    }
    fn load_extra(&mut self, _: &HashMap<String, Vec<f64>>) -> Result<()> {
        Ok(())
    }
}

impl ExtraState for GradVac {
    fn extra(&self) -> Vec<(String, Vec<f64>)> {
        vec![
            ("phi_hat".into(), self.phi_hat.concat()),
            ("k".into(), vec![self.phi_hat.len() as f64]),
        ]
    }
    fn load_extra(&mut self, state: &HashMap<String, Vec<f64>>) -> Result<()> {
        let k = state
            .get("k")
            .and_then(|v| v.first())
            .copied()
            .unwrap_or(0.0) as usize;
        if let (Some(flat), true) = (state.get("phi_hat"), k > 0) {
            let m: Vec<Vec<f64>> = flat.chunks(k).map(<[f64]>::to_vec).collect();
            self.set_phi_hat(m).map_err(solver_error("gradvac"))?;
        }
        Ok(())
    }
}

fn extra_state<T: ExtraState>(t: &T) -> Vec<(String, Vec<f64>)> {
    t.extra()
}

fn load_extra_state<T: ExtraState>(t: &mut T, state: &HashMap<String, Vec<f64>>) -> Result<()> {
    t.load_extra(state)
}

impl TaskWeighting for GradDrop {
    fn name(&self) -> &str {
        "graddrop"
    }

    /// Works coordinate by coordinate on the full gradients; usually given the representation's
    /// gradients, as in the paper.
    fn needs(&self) -> Needs {
        Needs::gradients(vec![
            GradientSource::Representation,
            GradientSource::SharedParameters,
        ])
    }

    fn seed(&mut self, seed: u64) {
        self.rng = StrategyRng::new(seed);
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        Ok(vec![("rng".into(), self.rng.to_state())])
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> Result<()> {
        if let Some(r) = state.get("rng") {
            self.rng = StrategyRng::from_state(r)?;
        }
        Ok(())
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let g = gradients("graddrop", input)?;
        let rows = g.rows_f64()?;
        let u: Vec<f64> = (0..g.dim()).map(|_| self.rng.uniform()).collect();
        let d = self
            .aggregate_with_uniform(&rows, &u)
            .map_err(solver_error("graddrop"))?;
        direction(d, g)
    }
}

impl TaskWeighting for ConFig {
    fn name(&self) -> &str {
        "config"
    }

    fn needs(&self) -> Needs {
        rows_only()
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let g = gradients("config", input)?;
        let d = ConFig::direction(self, &g.rows_f64()?).map_err(solver_error("config"))?;
        direction(d, g)
    }
}

impl TaskWeighting for TrimmedMean {
    fn name(&self) -> &str {
        "trimmed-mean"
    }

    /// At least `2 trim_number + 1` tasks.
    fn needs(&self) -> Needs {
        Needs {
            min_tasks: 2 * self.trim_number + 1,
            ..rows_only()
        }
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let g = gradients("trimmed-mean", input)?;
        let d =
            TrimmedMean::direction(self, &g.rows_f64()?).map_err(solver_error("trimmed-mean"))?;
        direction(d, g)
    }
}

impl TaskWeighting for Krum {
    fn name(&self) -> &str {
        "krum"
    }

    /// At least `n_byzantine + 3` tasks.
    fn needs(&self) -> Needs {
        Needs {
            min_tasks: self.n_byzantine + 3,
            ..any_source()
        }
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let gram = gradients("krum", input)?.gramian()?;
        let w = self
            .weights_from_gramian(&gram)
            .map_err(solver_error("krum"))?;
        Ok(Decision::Weights(w))
    }
}

impl TaskWeighting for Pcd {
    fn name(&self) -> &str {
        "pcd"
    }

    fn needs(&self) -> Needs {
        any_source()
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        Ok(vec![
            ("sq_norm_ema".into(), self.sq_norm_ema.clone()),
            ("n_steps".into(), vec![f64::from(self.n_steps)]),
        ])
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> Result<()> {
        if let Some(v) = state.get("sq_norm_ema") {
            self.sq_norm_ema = v.clone();
        }
        if let Some(n) = state.get("n_steps").and_then(|v| v.first()) {
            self.n_steps = *n as i32;
        }
        Ok(())
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let gram = gradients("pcd", input)?.gramian()?;
        let w = self
            .weights_from_gramian(&gram)
            .map_err(solver_error("pcd"))?;
        Ok(Decision::Weights(w))
    }
}

impl TaskWeighting for ExcessMtl {
    fn name(&self) -> &str {
        "excess-mtl"
    }

    fn needs(&self) -> Needs {
        rows_only()
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let rows = gradients("excess-mtl", input)?.rows_f64()?;
        let w = self.step(&rows).map_err(solver_error("excess-mtl"))?;
        Ok(Decision::Weights(w))
    }
}

impl TaskWeighting for MgdaNormalized {
    fn name(&self) -> &str {
        match self.normalization {
            MgdaNormalization::None => "mgda-libmtl",
            MgdaNormalization::L2 => "mgda-l2",
            MgdaNormalization::Loss => "mgda-loss",
            MgdaNormalization::LossPlus => "mgda-loss+",
        }
    }

    fn needs(&self) -> Needs {
        rows_only()
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let name = TaskWeighting::name(self).to_string();
        let rows = gradients(&name, input)?.rows_f64()?;
        let out = self
            .step(&rows, input.losses)
            .map_err(solver_error(&name))?;
        Ok(Decision::Weights(out.coefficients))
    }
}

impl TaskWeighting for CaGradLibMtl {
    fn name(&self) -> &str {
        "cagrad-libmtl"
    }

    fn needs(&self) -> Needs {
        rows_only()
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let rows = gradients("cagrad-libmtl", input)?.rows_f64()?;
        let out = self.step(&rows).map_err(solver_error("cagrad-libmtl"))?;
        Ok(Decision::Weights(out.coefficients))
    }
}

impl TaskWeighting for Imtl {
    fn name(&self) -> &str {
        "imtl"
    }

    fn needs(&self) -> Needs {
        rows_only()
    }

    fn prepare(&mut self, setup: &WeightingSetup) -> Result<()> {
        let k = setup.task_names.len();
        if self.loss_scale.is_empty() {
            self.loss_scale = vec![0.0; k];
        }
        self.learned.init(&self.loss_scale)
    }

    fn parameters(&self) -> Vec<(String, candle_core::Var)> {
        self.learned
            .var()
            .map(|v| ("loss_scale".to_string(), v.clone()))
            .into_iter()
            .collect()
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        if self.learned.var().is_some() {
            self.loss_scale = self.learned.values()?;
        }
        let rows = gradients("imtl", input)?.rows_f64()?;
        let out = self
            .step(&rows, input.losses)
            .map_err(solver_error("imtl"))?;
        self.pending_gradient = out.grad_loss_scale;
        Ok(Decision::Weights(out.coefficients))
    }

    fn auxiliary_loss(
        &self,
        _detached_losses: &[candle_core::Tensor],
    ) -> Result<Option<candle_core::Tensor>> {
        self.learned.surrogate(&self.pending_gradient)
    }
}

impl TaskWeighting for GradNorm {
    fn name(&self) -> &str {
        "gradnorm"
    }

    fn needs(&self) -> Needs {
        rows_only()
    }

    fn prepare(&mut self, setup: &WeightingSetup) -> Result<()> {
        let k = setup.task_names.len();
        if self.loss_scale.is_empty() {
            self.loss_scale = vec![1.0; k];
        }
        self.learned.init(&self.loss_scale)
    }

    fn parameters(&self) -> Vec<(String, candle_core::Var)> {
        self.learned
            .var()
            .map(|v| ("loss_scale".to_string(), v.clone()))
            .into_iter()
            .collect()
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        Ok(vec![("initial_losses".into(), self.initial_losses.clone())])
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> Result<()> {
        if let Some(v) = state.get("initial_losses") {
            self.initial_losses = v.clone();
        }
        Ok(())
    }

    /// The first step's losses become the reference `L_k(0)` of the loss ratios.
    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        if self.learned.var().is_some() {
            self.loss_scale = self.learned.values()?;
        }
        if self.initial_losses.is_empty() {
            self.initial_losses = input.losses.to_vec();
        }
        let rows = gradients("gradnorm", input)?.rows_f64()?;
        let out = self
            .step(&rows, input.losses)
            .map_err(solver_error("gradnorm"))?;
        self.pending_gradient = out.grad_loss_scale;
        Ok(Decision::Weights(out.weights))
    }

    fn auxiliary_loss(
        &self,
        _detached_losses: &[candle_core::Tensor],
    ) -> Result<Option<candle_core::Tensor>> {
        self.learned.surrogate(&self.pending_gradient)
    }
}
