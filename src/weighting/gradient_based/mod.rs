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

use super::support::{gradients, solver_error};
use super::{Decision, GradientSource, Needs, StepInput, TaskWeighting};
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

            /// Two batches per step: the trainer does not provide that yet, so it refuses this
            /// strategy when it is built (the weights themselves are implemented and checked
            /// against the reference in `tests/golden_gradient_based.rs`).
            fn needs(&self) -> Needs {
                Needs {
                    batches_per_step: 2,
                    ..any_source()
                }
            }

            fn decide(&mut self, input: &StepInput) -> Result<Decision> {
                let g = gradients($name, input)?.rows_f64()?;
                let w = self
                    .weights_from_batches(&g, &g)
                    .map_err(solver_error($name))?;
                Ok(Decision::Weights(w))
            }
        }
    };
}

two_batch_strategy!(MoDo, "modo");
two_batch_strategy!(SdmGrad, "sdmgrad");
