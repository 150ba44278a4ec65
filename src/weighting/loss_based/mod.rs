//! Strategies that read only the task losses. One strategy per file.

mod equal;
mod fixed;
mod inverse_loss;

pub use equal::Equal;
pub use fixed::Fixed;
pub use inverse_loss::{InverseLoss, InverseLossNormalization};
