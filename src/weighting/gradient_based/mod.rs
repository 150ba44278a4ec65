//! Strategies that read the per-task gradients. One strategy per file; `method.rs` holds the
//! protocol they share, [`crate::solvers`] the small optimisation problems they solve and
//! [`crate::solvers::matrix`] the matrix helpers.
//!
//! One protocol, [`GradientMethod`]: from the step's gradients ([`GradientStep`]) a method
//! returns an [`Aggregate`], weights on the tasks or a direction. Every `GradientMethod` is a
//! [`TaskWeighting`](crate::weighting::TaskWeighting). Stateless methods written on the K x K
//! Gramian `G G^T` implement the smaller [`GramianWeighting`] and get the rest for free, so one
//! implementation serves gradients of the shared parameters and of the shared representation
//! (MGDA-UB style): the trainer hands over whichever
//! [`GradientSource`](crate::weighting::GradientSource) the configuration asks for.
//!
//! A new strategy is one file here (a struct, its constructor validating the hyper-parameters,
//! and `impl GradientMethod` or `impl GramianWeighting`), a `mod` line below and one row of the
//! registry (`src/weighting/registry.rs`).
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
mod cagrad_libmtl;
mod config;
mod cr_mogm;
mod dualproj;
mod excess_mtl;
mod fairgrad;
mod graddrop;
mod gradnorm;
mod gradvac;
mod imtl;
mod imtlg;
mod krum;
mod method;
mod mgda;
mod mgda_normalized;
mod modo;
mod nash_mtl;
mod pcd;
mod pcgrad;
mod sdmgrad;
mod simplex_state;
mod trimmed_mean;
mod upgrad;

pub use aligned_mtl::{AlignedMtl, ScaleMode};
pub use cagrad::CaGrad;
pub use cagrad_libmtl::{CaGradLibMtl, CaGradOutput, CaGradRescale};
pub use config::ConFig;
pub use cr_mogm::CrMogm;
pub use dualproj::DualProj;
pub use excess_mtl::ExcessMtl;
pub use fairgrad::FairGrad;
pub use graddrop::GradDrop;
pub use gradnorm::{GradNorm, GradNormOutput};
pub use gradvac::GradVac;
pub use imtl::{Imtl, ImtlOutput};
pub use imtlg::Imtlg;
pub use krum::Krum;
pub use method::{
    any_source, two_batches, Aggregate, GradientMethod, GradientStep, GramianWeighting,
};
pub use mgda::{Mgda, MgdaSolver};
pub use mgda_normalized::{MgdaNormalization, MgdaNormalized, MgdaOutput};
pub use modo::MoDo;
pub use nash_mtl::NashMtl;
pub use pcd::Pcd;
pub use pcgrad::PcGrad;
pub use sdmgrad::SdmGrad;
pub use trimmed_mean::TrimmedMean;
pub use upgrad::UPGrad;
