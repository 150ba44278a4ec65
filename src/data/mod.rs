//! Data: IDX files (the MNIST family), in-memory datasets with named targets, normalisation
//! and seeded batching.
//!
//! The path from files to a training step:
//! [`load_mnist`] reads the four IDX files of a split into [`ImageDataset`]s (u8 pixels, u32
//! labels); [`TensorDataset`] holds the inputs and one target tensor per task;
//! [`shuffled_batches`] fixes a seeded order; [`TensorDataset::batch`] gathers, moves to the
//! device and normalises one [`Batch`].

mod batch;
mod dataset;
mod idx;
mod mnist;
mod transform;

pub use batch::{sequential_batches, shuffled_batches, Batch};
pub use dataset::TensorDataset;
pub use idx::{read_idx, write_idx, IdxArray};
pub use mnist::{load_mnist, ImageDataset, Mnist, MNIST_FILES};
pub use transform::Normalize;
