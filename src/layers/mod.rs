//! Building blocks shared by the built-in encoders and heads, initialised through
//! [`ParamPath`](crate::params::ParamPath) so that a seed fixes every weight.

mod activation;
mod batch_norm;
mod conv;
mod dense;
mod graph;
mod graph_stack;

pub use activation::Activation;
pub use batch_norm::BatchNorm2d;
pub use conv::Conv2d;
pub use dense::{Dense, DenseStack};
pub use graph::{Adjacency, GatLayer, GcnLayer};
pub use graph_stack::{GraphConvKind, GraphStack};
