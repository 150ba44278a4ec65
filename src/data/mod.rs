//! Data: IDX files (the MNIST family), in-memory datasets with named targets, normalisation
//! and seeded batching.
//!
//! The path from files to a training step:
//! [`load_mnist`] reads the four IDX files of a split into [`ImageDataset`]s (u8 pixels, u32
//! labels); [`TensorDataset`] holds the inputs and one target tensor per task;
//! [`shuffled_batches`] fixes a seeded order; [`TensorDataset::batch`] gathers, moves to the
//! device and normalises one [`Batch`].

mod batch;
mod cifar;
mod compose;
mod dataset;
#[cfg(feature = "download")]
mod download;
mod idx;
mod image;
mod mnist;
mod prefetch;
mod standard;
mod transform;

pub use batch::{sequential_batches, shuffled_batches, Batch};
pub use cifar::{
    load_cifar10, load_cifar100, parse_cifar, write_cifar, Cifar10, Cifar100, CifarKind,
    CifarRecords, CIFAR100_FILES, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES,
};
pub use compose::{compose_pairs, ComposeConfig, Composites};
pub use dataset::TensorDataset;
#[cfg(feature = "download")]
pub use download::{download_file, extract_tar_gz, fetch, fetch_files, fetch_from};
pub use idx::{parse_idx, read_idx, write_idx, IdxArray};
pub use image::ImageDataset;
pub use mnist::{load_emnist, load_mnist, Mnist, MNIST_FILES};
pub use prefetch::{prefetch, PrefetchStats};
pub use standard::{data_root, RemoteFile, StandardDataset};
pub use transform::{Augment, Normalize};

/// The target name under which a task's label mask is stored (`<task>.mask`; task names have
/// no dots, so it cannot clash with a task's own target).
pub fn mask_name(task: &str) -> String {
    format!("{task}.mask")
}
