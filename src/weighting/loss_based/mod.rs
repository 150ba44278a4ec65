//! Strategies that read only the task losses. One strategy per file; `scalarize.rs` holds what
//! they share.
//!
//! | strategy | file | reference |
//! |---|---|---|
//! | [`Equal`] (sum, mean) | `equal.rs` | linear scalarisation |
//! | [`Fixed`] | `fixed.rs` | linear scalarisation |
//! | [`InverseLoss`] | `inverse_loss.rs` | `w_k ∝ 1/(L_k + eps)` |
//! | [`Uncertainty`] | `uncertainty.rs` | Kendall, Gal & Cipolla, CVPR 2018 |
//! | [`Dwa`] | `dwa.rs` | Liu, Johns & Davison, CVPR 2019 |
//! | [`GeometricMean`] (GLS) | `geometric_mean.rs` | Chennupati et al., CVPRW 2019 |
//! | [`Rlw`] | `rlw.rs` | Lin, Ye, Zhang & Tsang, TMLR 2022 |
//! | [`ImtlL`] | `imtl_l.rs` | Liu et al., ICLR 2021 |
//! | [`Famo`] | `famo.rs` | Liu, Feng, Stone & Liu, NeurIPS 2023 |
//! | [`Stch`] | `stch.rs` | Lin et al., ICML 2024 |
//! | [`Cosmos`] | `cosmos.rs` | Ruchte & Grabocka, ICDM 2021 |
//! | [`Pbi`] | `pbi.rs` | Zhang & Li, IEEE TEVC 2007 |
//! | [`AutoLambda`] | `auto_lambda.rs` | Liu, Johns & Davison, TMLR 2022 (first order) |

mod auto_lambda;
mod cosmos;
mod dwa;
mod equal;
mod famo;
mod fixed;
mod geometric_mean;
mod imtl_l;
mod inverse_loss;
mod learned_scales;
mod pbi;
mod rlw;
mod scalarize;
mod stch;
mod uncertainty;

pub use auto_lambda::AutoLambda;
pub use cosmos::Cosmos;
pub use dwa::Dwa;
pub use equal::Equal;
pub use famo::{Famo, FAMO_EPSILON};
pub use fixed::Fixed;
pub use geometric_mean::GeometricMean;
pub use imtl_l::ImtlL;
pub use inverse_loss::{InverseLoss, InverseLossNormalization};
pub use pbi::{Pbi, PBI_EPSILON};
pub use rlw::Rlw;
pub use scalarize::{Adam, Scalarized};
pub use stch::Stch;
pub use uncertainty::Uncertainty;
