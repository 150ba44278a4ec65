//! [`DataLoader`]: batches of any dataset, made by worker threads, handed over in a seeded
//! order that does not depend on the number of workers.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{
    prefetch_parallel, sequential_batches, shuffled_batches, Batch, Dataset, PrefetchStats,
};
use crate::error::{Error, Result};
use crate::train::derive_seed;

/// Batches of a [`Dataset`] for a loop of your own (the [`Trainer`](crate::train::Trainer)
/// uses the same machinery, set by `TrainerConfig::{prefetch_depth, loader_workers}`).
///
/// `workers` threads read, decode, augment and collate batches; at most `depth` batches wait
/// ahead of the one being consumed (memory: `depth + 1` batches). The order of batches is fixed by the
/// seed and the epoch, and the augmentation of batch `i` by a generator seeded from
/// `(seed, epoch, i)`, so 0, 1 or 4 workers (as tested) give identical batches.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use candle_mtl::data::{DataLoader, TensorDataset};
/// let x = Tensor::arange(0f32, 10., &Device::Cpu)?.reshape((10, 1))?;
/// let ds = TensorDataset::new(x);
/// let loader = DataLoader::new(&ds, 4)?.shuffle(3).workers(2);
/// let mut seen = 0;
/// loader.for_each(0, |_, batch| {
///     seen += batch.len();
///     Ok(())
/// })?;
/// assert_eq!(seen, 10);
/// # Ok::<(), candle_mtl::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct DataLoader<'a> {
    dataset: &'a dyn Dataset,
    batch_size: usize,
    shuffle: Option<u64>,
    drop_last: bool,
    workers: usize,
    depth: usize,
    training: bool,
}

impl std::fmt::Debug for DataLoader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLoader")
            .field("samples", &self.dataset.len())
            .field("batch_size", &self.batch_size)
            .field("shuffle", &self.shuffle)
            .field("drop_last", &self.drop_last)
            .field("workers", &self.workers)
            .field("depth", &self.depth)
            .field("training", &self.training)
            .finish()
    }
}

impl<'a> DataLoader<'a> {
    /// Batches of `batch_size` (at least 1) in index order, made on the calling thread, not
    /// augmented.
    pub fn new(dataset: &'a dyn Dataset, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::config(
                "DataLoader batch_size",
                0,
                "must be at least 1",
            ));
        }
        Ok(Self {
            dataset,
            batch_size,
            shuffle: None,
            drop_last: false,
            workers: 0,
            depth: 2,
            training: false,
        })
    }

    /// Shuffles each epoch's order with a generator seeded from `seed` and the epoch; marks
    /// the batches as training batches (augmented when the dataset augments).
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle = Some(seed);
        self.training = true;
        self
    }

    /// Drops the last, incomplete batch.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Threads making batches (0: the calling thread).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Batches made ahead of the consumer, at most (raised to one per worker).
    pub fn depth(mut self, depth: usize) -> Self {
        self.depth = depth;
        self
    }

    /// The index lists of epoch `epoch`'s batches.
    pub fn batch_indices(&self, epoch: u64) -> Vec<Vec<u32>> {
        match self.shuffle {
            Some(seed) => shuffled_batches(
                self.dataset.len(),
                self.batch_size,
                self.drop_last,
                &mut ChaCha8Rng::seed_from_u64(derive_seed(seed, epoch)),
            ),
            None => {
                let mut b = sequential_batches(self.dataset.len(), self.batch_size);
                if self.drop_last && b.last().is_some_and(|l| l.len() < self.batch_size) {
                    b.pop();
                }
                b
            }
        }
    }

    /// Hands every batch of epoch `epoch` to `consume(batch number, batch)`, in order; the
    /// first error (reading a file, or returned by `consume`) stops the workers and is
    /// returned.
    pub fn for_each(
        &self,
        epoch: u64,
        consume: impl FnMut(usize, Batch) -> Result<()>,
    ) -> Result<PrefetchStats> {
        let plan = self.batch_indices(epoch);
        let augment_seed = self
            .shuffle
            .filter(|_| self.training && self.dataset.augments())
            .map(|seed| derive_seed(derive_seed(seed, epoch), u64::MAX));
        let produce = |i: usize| -> Result<Batch> {
            match augment_seed {
                Some(s) => {
                    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(s, i as u64));
                    self.dataset.read_training_batch(&plan[i], &mut rng)
                }
                None => self.dataset.read_batch(&plan[i]),
            }
        };
        let mut consume = consume;
        let mut next = 0usize;
        prefetch_parallel(
            plan.len(),
            self.workers,
            self.depth.max(self.workers),
            produce,
            |batch| {
                next += 1;
                consume(next - 1, batch)
            },
        )
    }
}
