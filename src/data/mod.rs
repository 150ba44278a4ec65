//! Data: the [`Dataset`] trait and its sources, composition helpers, the parallel
//! [`DataLoader`], the standard datasets' readers, normalisation and augmentation.
//!
//! Sources: [`TensorDataset`] (inputs and targets in memory), [`CsvManifest`] (a CSV listing
//! images or numeric features with one column per task, empty cells missing), [`ImageFolder`]
//! (one folder per class), [`MmapDataset`] (a memory-mapped safetensors or `.npy` array larger
//! than memory), or your own type implementing [`Dataset`]. [`DatasetExt`] splits, subsets,
//! concatenates, maps, normalises and augments any of them.
//!
//! The path from files to a training step: the trainer fixes a seeded order of index batches
//! ([`shuffled_batches`]); worker threads ([`prefetch_parallel`]) call
//! [`Dataset::read_training_batch`] for each and hand the [`Batch`]es over in that order;
//! the step moves them to the device.

mod batch;
mod cifar;
mod compose;
mod concat;
mod dataset;
mod dataset_ext;
#[cfg(feature = "download")]
mod download;
mod idx;
mod image;
#[cfg(feature = "image")]
mod image_file;
#[cfg(feature = "image")]
mod image_folder;
mod loader;
#[cfg(feature = "csv")]
mod manifest;
#[cfg(feature = "csv")]
mod manifest_config;
mod map;
mod mmap;
mod mnist;
mod npy;
mod prefetch;
mod standard;
mod subset;
mod tensor_dataset;
mod transform;

pub(crate) use batch::labelled_rows;
pub use batch::{sequential_batches, shuffled_batches, Batch};
pub use cifar::{
    load_cifar10, load_cifar100, parse_cifar, write_cifar, Cifar10, Cifar100, CifarKind,
    CifarRecords, CIFAR100_FILES, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES,
};
pub use compose::{compose_pairs, ComposeConfig, Composites};
pub use concat::Concat;
pub use dataset::{
    collate, collate_targets, ClassRange, Dataset, DatasetList, Sample, Target, TargetInfo,
    TargetKind,
};
pub use dataset_ext::DatasetExt;
#[cfg(feature = "download")]
pub use download::{download_file, extract_tar_gz, fetch, fetch_files, fetch_from};
pub use idx::{parse_idx, read_idx, write_idx, IdxArray};
pub use image::ImageDataset;
#[cfg(feature = "image")]
pub use image_file::{ImageFit, ImageOptions};
#[cfg(feature = "image")]
pub use image_folder::ImageFolder;
pub use loader::DataLoader;
#[cfg(feature = "csv")]
pub use manifest::CsvManifest;
#[cfg(feature = "csv")]
pub use manifest_config::{ColumnKind, ManifestConfig, SkippedRow};
pub use map::{Mapped, Prepared};
pub use mmap::MmapDataset;
pub use mnist::{load_emnist, load_mnist, Mnist, MNIST_FILES};
pub use npy::{parse_npy_header, read_npy, write_npy, NpyHeader, NpyWriter};
pub use prefetch::{prefetch, prefetch_parallel, PrefetchStats};
pub use standard::{data_root, RemoteFile, StandardDataset};
pub use subset::{split_indices, Subset};
pub use tensor_dataset::TensorDataset;
pub use transform::{Augment, Normalize};

/// The target name under which a task's label mask is stored (`<task>.mask`; task names have
/// no dots, so it cannot clash with a task's own target).
pub fn mask_name(task: &str) -> String {
    format!("{task}.mask")
}
