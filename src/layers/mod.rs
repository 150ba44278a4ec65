//! Building blocks shared by the built-in encoders and heads, initialised through
//! [`ParamPath`](crate::params::ParamPath) so that a seed fixes every weight.

mod activation;
mod batch_norm;
mod conv;
mod dense;

pub use activation::Activation;
pub use batch_norm::BatchNorm2d;
pub use conv::Conv2d;
pub use dense::{Dense, DenseStack};
