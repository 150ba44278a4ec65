//! A view of some of a dataset's samples, and seeded splits.

use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use candle_core::Tensor;

use super::{Batch, Dataset, Sample, Target, TargetInfo};
use crate::error::{Error, Result};

/// The samples of `inner` at `indices`, in that order (built by
/// [`DatasetExt::subset`](super::DatasetExt::subset) and
/// [`DatasetExt::split`](super::DatasetExt::split)). Batches are read from `inner` directly,
/// so a tensor or memory-mapped source keeps its fast path.
#[derive(Debug, Clone)]
pub struct Subset<D> {
    inner: D,
    indices: Vec<u32>,
}

impl<D: Dataset> Subset<D> {
    /// The samples of `inner` at `indices`; refuses an index past its end.
    pub fn new(inner: D, indices: Vec<u32>) -> Result<Self> {
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= inner.len()) {
            return Err(Error::DataMismatch(format!(
                "subset index {bad} out of range for a dataset of {} samples",
                inner.len()
            )));
        }
        Ok(Self { inner, indices })
    }

    /// The indices into the inner dataset.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    fn map(&self, indices: &[u32]) -> Result<Vec<u32>> {
        indices
            .iter()
            .map(|&i| {
                self.indices.get(i as usize).copied().ok_or_else(|| {
                    Error::DataMismatch(format!(
                        "sample index {i} out of range for a subset of {} samples",
                        self.indices.len()
                    ))
                })
            })
            .collect()
    }

    fn inner_index(&self, index: usize) -> Result<usize> {
        Ok(self.map(&[index as u32])?[0] as usize)
    }
}

/// Splits `0..len` in a seeded random order: the first `round(fraction * len)` indices and
/// the rest. `fraction` must lie in `[0, 1]`.
pub fn split_indices(len: usize, fraction: f64, seed: u64) -> Result<(Vec<u32>, Vec<u32>)> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(Error::config(
            "split fraction",
            fraction,
            "must lie in [0, 1]",
        ));
    }
    let mut order: Vec<u32> = (0..len as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let rest = order.split_off((fraction * len as f64).round() as usize);
    Ok((order, rest))
}

impl<D: Dataset> Dataset for Subset<D> {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn input_shape(&self) -> Vec<usize> {
        self.inner.input_shape()
    }
    fn targets(&self) -> Vec<TargetInfo> {
        self.inner.targets()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        self.inner.get(self.inner_index(index)?)
    }
    fn target(&self, index: usize, target: usize) -> Result<Option<Target>> {
        self.inner.target(self.inner_index(index)?, target)
    }
    fn origin(&self, index: usize) -> String {
        match self.inner_index(index) {
            Ok(i) => self.inner.origin(i),
            Err(_) => format!("sample {index}"),
        }
    }
    fn read_batch(&self, indices: &[u32]) -> Result<Batch> {
        self.inner.read_batch(&self.map(indices)?)
    }
    fn read_training_batch(&self, indices: &[u32], rng: &mut dyn RngCore) -> Result<Batch> {
        self.inner.read_training_batch(&self.map(indices)?, rng)
    }
    fn augments(&self) -> bool {
        self.inner.augments()
    }
    fn read_targets(&self, indices: &[u32]) -> Result<Vec<(String, Tensor)>> {
        self.inner.read_targets(&self.map(indices)?)
    }
}
