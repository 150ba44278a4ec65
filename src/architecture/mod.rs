//! Soft-sharing architectures: encoders that give each task its own representation from
//! shared parts, usable with any expert encoder of the crate or of the user.
//!
//! Each architecture is a [`SharedEncoder`](crate::encoder::SharedEncoder) returning
//! [`Representation::PerTask`](crate::encoder::Representation::PerTask). All its parameters
//! live under `encoder.*` and count as shared parameters for gradient-based strategies; the
//! per-task parts (gates) simply receive no gradient from the other tasks' losses.

mod cross_stitch;
mod gating;
mod mmoe;
mod mtan;
mod ple;

pub use cross_stitch::CrossStitch;
pub use mmoe::{Mmoe, MmoeConfig};
pub use mtan::{Mtan, MtanConfig};
pub use ple::{Ple, PleConfig};
