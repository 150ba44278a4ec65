//! Composition helpers every [`Dataset`] gets: subsets, seeded splits, concatenation, maps,
//! normalisation and augmentation.

use candle_core::Tensor;

use super::{split_indices, Augment, Concat, Dataset, Mapped, Normalize, Prepared, Subset};
use crate::error::Result;

/// Builders over any [`Dataset`], by value (`ds.split(..)`) or by reference (`(&ds).split(..)`,
/// which keeps `ds`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use candle_mtl::data::{Dataset, DatasetExt, TensorDataset};
/// let x = Tensor::arange(0f32, 10., &Device::Cpu)?.reshape((10, 1))?;
/// let ds = TensorDataset::new(x).with_target("y", Tensor::zeros(10, candle_core::DType::U32, &Device::Cpu)?)?;
/// let (train, test) = (&ds).split(0.8, 7)?;
/// assert_eq!((train.len(), test.len()), (8, 2));
/// let both = train.concat(test)?;
/// assert_eq!(both.len(), 10);
/// # Ok::<(), candle_mtl::Error>(())
/// ```
pub trait DatasetExt: Dataset + Sized {
    /// The samples at `indices`, in that order.
    fn subset(self, indices: Vec<u32>) -> Result<Subset<Self>> {
        Subset::new(self, indices)
    }

    /// A seeded random split: `round(fraction * len)` samples and the rest. The same seed
    /// gives the same split.
    fn split(self, fraction: f64, seed: u64) -> Result<(Subset<Self>, Subset<Self>)>
    where
        Self: Clone,
    {
        let (a, b) = split_indices(self.len(), fraction, seed)?;
        Ok((Subset::new(self.clone(), a)?, Subset::new(self, b)?))
    }

    /// This dataset's samples followed by `other`'s (same input shape and targets).
    fn concat(self, other: Self) -> Result<Concat<Self>> {
        Concat::new(vec![self, other])
    }

    /// Applies `f` to every sample's input (a deterministic per-sample transform: cropping,
    /// feature scaling, tokenising); labels pass through.
    fn map<F>(self, f: F) -> Result<Mapped<Self, F>>
    where
        F: Fn(Tensor) -> Result<Tensor> + Send + Sync,
    {
        Mapped::new(self, f)
    }

    /// Normalises every batch's inputs (u8 pixels scaled to `[0, 1]` first).
    fn normalized(self, normalize: Normalize) -> Prepared<Self> {
        Prepared::new(self).with_normalize(normalize)
    }

    /// Applies random augmentations to training batches (never to evaluation batches).
    fn augmented(self, augment: Vec<Augment>) -> Prepared<Self> {
        Prepared::new(self).with_augment(augment)
    }
}

impl<D: Dataset> DatasetExt for D {}
