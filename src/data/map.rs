//! Transforms over any dataset: a function applied to every input, and the batch-level
//! normalisation and augmentation of [`TensorDataset`](super::TensorDataset) for any source.

use std::fmt;

use candle_core::Tensor;
use rand::RngCore;

use super::{Augment, Batch, Dataset, Normalize, Sample, Target, TargetInfo};
use crate::error::{Error, Result};

/// `inner` with `f` applied to every sample's input (built by
/// [`DatasetExt::map`](super::DatasetExt::map)): a deterministic per-sample transform
/// (cropping, feature scaling, tokenising). `f` may change the input's shape (the new shape
/// is read from the first sample); labels pass through untouched and are read without
/// calling `f`.
pub struct Mapped<D, F> {
    inner: D,
    f: F,
    shape: Vec<usize>,
}

impl<D, F> fmt::Debug for Mapped<D, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mapped {{ input_shape: {:?} }}", self.shape)
    }
}

impl<D: Dataset, F: Fn(Tensor) -> Result<Tensor> + Send + Sync> Mapped<D, F> {
    /// Applies `f` to every input of `inner`; reads the first sample to learn the new shape.
    pub fn new(inner: D, f: F) -> Result<Self> {
        if inner.augments() {
            return Err(Error::DataMismatch(
                "the dataset augments its training batches; map the plain dataset and augment \
                 the result (DatasetExt::augmented)"
                    .into(),
            ));
        }
        let shape = if inner.is_empty() {
            inner.input_shape()
        } else {
            f(inner.get(0)?.input)?.dims().to_vec()
        };
        Ok(Self { inner, f, shape })
    }
}

impl<D: Dataset, F: Fn(Tensor) -> Result<Tensor> + Send + Sync> Dataset for Mapped<D, F> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn input_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn targets(&self) -> Vec<TargetInfo> {
        self.inner.targets()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let mut sample = self.inner.get(index)?;
        sample.input = (self.f)(sample.input)?;
        if sample.input.dims() != self.shape.as_slice() {
            return Err(Error::DataMismatch(format!(
                "{}: the map gave an input of shape {:?}, the first sample's was {:?}",
                self.inner.origin(index),
                sample.input.dims(),
                self.shape
            )));
        }
        Ok(sample)
    }
    fn target(&self, index: usize, target: usize) -> Result<Option<Target>> {
        self.inner.target(index, target)
    }
    fn read_targets(&self, indices: &[u32]) -> Result<Vec<(String, Tensor)>> {
        self.inner.read_targets(indices)
    }
    fn origin(&self, index: usize) -> String {
        self.inner.origin(index)
    }
}

/// `inner` with [`Normalize`] applied to every batch's inputs and random [`Augment`]s to
/// training batches before it (built by [`DatasetExt::normalized`](super::DatasetExt::normalized)
/// and [`DatasetExt::augmented`](super::DatasetExt::augmented)): what
/// [`TensorDataset::with_normalize`](super::TensorDataset::with_normalize) does, for any
/// source. Inputs are `(C, H, W)` images for the augmentations and per-channel constants.
#[derive(Debug, Clone)]
pub struct Prepared<D> {
    inner: D,
    normalize: Option<Normalize>,
    augment: Vec<Augment>,
}

impl<D: Dataset> Prepared<D> {
    /// `inner` with neither normalisation nor augmentation yet.
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            normalize: None,
            augment: Vec::new(),
        }
    }

    /// Sets the normalisation.
    pub fn with_normalize(mut self, normalize: Normalize) -> Self {
        self.normalize = Some(normalize);
        self
    }

    /// Sets the augmentations of training batches.
    pub fn with_augment(mut self, augment: Vec<Augment>) -> Self {
        self.augment = augment;
        self
    }

    fn finish(&self, mut batch: Batch) -> Result<Batch> {
        if let Some(n) = &self.normalize {
            batch.inputs = n.apply(&batch.inputs)?;
        }
        Ok(batch)
    }
}

impl<D: Dataset> Dataset for Prepared<D> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn input_shape(&self) -> Vec<usize> {
        self.inner.input_shape()
    }
    fn targets(&self) -> Vec<TargetInfo> {
        self.inner.targets()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let mut sample = self.inner.get(index)?;
        if let Some(n) = &self.normalize {
            sample.input = n.apply(&sample.input.unsqueeze(0)?)?.squeeze(0)?;
        }
        Ok(sample)
    }
    fn target(&self, index: usize, target: usize) -> Result<Option<Target>> {
        self.inner.target(index, target)
    }
    fn origin(&self, index: usize) -> String {
        self.inner.origin(index)
    }
    fn read_batch(&self, indices: &[u32]) -> Result<Batch> {
        self.finish(self.inner.read_batch(indices)?)
    }
    fn read_training_batch(&self, indices: &[u32], mut rng: &mut dyn RngCore) -> Result<Batch> {
        let mut batch = self.inner.read_training_batch(indices, rng)?;
        if !self.augment.is_empty() {
            let inputs: Tensor = Augment::apply_all(&self.augment, &batch.inputs, &mut rng)?;
            batch.inputs = inputs;
        }
        self.finish(batch)
    }
    fn augments(&self) -> bool {
        !self.augment.is_empty() || self.inner.augments()
    }
    fn read_targets(&self, indices: &[u32]) -> Result<Vec<(String, Tensor)>> {
        self.inner.read_targets(indices)
    }
}
