use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::Rng;

/// One batch: inputs and the targets of each task, by task name.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Inputs, normalised, on the training device.
    pub inputs: Tensor,
    /// `(task name, target)` pairs.
    pub targets: Vec<(String, Tensor)>,
}

impl Batch {
    /// The target of task `name`.
    pub fn target(&self, name: &str) -> Option<&Tensor> {
        self.targets.iter().find(|(t, _)| t == name).map(|(_, v)| v)
    }

    /// The label mask of task `name` (non-zero: labelled), if the dataset has one.
    pub fn label_mask(&self, name: &str) -> Option<&Tensor> {
        self.target(&super::mask_name(name))
    }

    /// Number of samples in the batch.
    pub fn len(&self) -> usize {
        self.inputs.dims().first().copied().unwrap_or(0)
    }

    /// The batch moved to `device` (a no-op when it is already there).
    pub fn to_device(&self, device: &candle_core::Device) -> crate::Result<Batch> {
        Ok(Batch {
            inputs: self.inputs.to_device(device)?,
            targets: self
                .targets
                .iter()
                .map(|(n, t)| Ok((n.clone(), t.to_device(device)?)))
                .collect::<crate::Result<Vec<_>>>()?,
        })
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Indices `0..len` shuffled by `rng` and cut into batches of `batch_size`; the last, shorter
/// batch is kept unless `drop_last`. The same generator state gives the same batches.
pub fn shuffled_batches(
    len: usize,
    batch_size: usize,
    drop_last: bool,
    rng: &mut impl Rng,
) -> Vec<Vec<u32>> {
    let mut order: Vec<u32> = (0..len as u32).collect();
    order.shuffle(rng);
    cut(order, batch_size, drop_last)
}

/// Indices `0..len` in order, cut into batches of `batch_size` (the last may be shorter).
pub fn sequential_batches(len: usize, batch_size: usize) -> Vec<Vec<u32>> {
    cut((0..len as u32).collect(), batch_size, false)
}

fn cut(order: Vec<u32>, batch_size: usize, drop_last: bool) -> Vec<Vec<u32>> {
    let batch_size = batch_size.max(1);
    order
        .chunks(batch_size)
        .filter(|c| !drop_last || c.len() == batch_size)
        .map(<[u32]>::to_vec)
        .collect()
}

/// The rows of a per-sample label mask `(N,)` that are labelled (non-zero), as an index
/// tensor on the mask's device; `None` when no row is.
pub(crate) fn labelled_rows(mask: &Tensor) -> crate::Result<Option<Tensor>> {
    let keep: Vec<u32> = mask
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0.0)
        .map(|(i, _)| i as u32)
        .collect();
    if keep.is_empty() {
        return Ok(None);
    }
    Ok(Some(Tensor::new(keep.as_slice(), mask.device())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn seeded_shuffle_is_a_reproducible_permutation() {
        let a = shuffled_batches(10, 3, false, &mut ChaCha8Rng::seed_from_u64(4));
        let b = shuffled_batches(10, 3, false, &mut ChaCha8Rng::seed_from_u64(4));
        assert_eq!(a, b);
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
        let mut all: Vec<u32> = a.concat();
        assert_ne!(all, (0..10).collect::<Vec<_>>());
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(
            shuffled_batches(10, 3, true, &mut ChaCha8Rng::seed_from_u64(4)).len(),
            3
        );
        assert_eq!(
            sequential_batches(5, 2),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
    }
}
