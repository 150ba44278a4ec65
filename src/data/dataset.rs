//! The [`Dataset`] trait: random access to samples, each with an input and, per task, a
//! label or "missing".

use candle_core::{DType, Device, Tensor};
use rand::RngCore;

use super::Batch;
use crate::error::{Error, Result};

/// One task's label of one sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A class index (classification tasks).
    Class(u32),
    /// Regression values, as many as the task's [`TargetKind::Values`] shape holds (one for
    /// a scalar target).
    Values(Vec<f32>),
}

/// What a dataset's target for a task holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// Class indices: batches hold them as u32 `(N,)`.
    Classes,
    /// Real values of a fixed shape per sample (`[]` for a scalar): batches hold them as f32
    /// `(N, ...shape)`.
    Values {
        /// Shape of one sample's target.
        shape: Vec<usize>,
    },
}

/// A target a dataset provides: the task's name and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// The task that reads this target.
    pub name: String,
    /// Classes or values.
    pub kind: TargetKind,
}

/// One sample: its input (on the CPU, of the dataset's input shape) and, for each of the
/// dataset's [`targets`](Dataset::targets) in order, its label or `None` when the sample is
/// not labelled for that task.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The input, `input_shape` of the dataset, u8 or f32 (or u32 token ids).
    pub input: Tensor,
    /// Labels in the order of [`Dataset::targets`]; `None`: missing.
    pub targets: Vec<Option<Target>>,
}

/// The largest class index among the labelled samples of a task, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassRange {
    /// The largest class index.
    pub max: u32,
    /// The first sample holding it.
    pub index: usize,
}

/// Random access to a multi-task dataset.
///
/// The trainer, [`evaluate`](crate::model::MultiTaskModel::evaluate) and the
/// [`DataLoader`](super::DataLoader) read any `Dataset`. An implementation needs
/// [`len`](Dataset::len), [`input_shape`](Dataset::input_shape),
/// [`targets`](Dataset::targets) and [`get`](Dataset::get); the provided methods collate
/// samples into a [`Batch`] (a missing label becomes a placeholder plus the task's label mask,
/// so it adds nothing to the loss or the metrics). Sources with a faster way to make a batch
/// (gathering rows of a tensor or of a memory-mapped file) override
/// [`read_batch`](Dataset::read_batch).
///
/// Every method must be deterministic: the same index gives the same sample, whatever thread
/// asks. Randomness (augmentation) comes only from the generator handed to
/// [`read_training_batch`](Dataset::read_training_batch).
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of one sample's input.
    fn input_shape(&self) -> Vec<usize>;

    /// The targets this dataset labels, one per task, in the order of [`Sample::targets`].
    fn targets(&self) -> Vec<TargetInfo>;

    /// The sample at `index` (`0..len`).
    fn get(&self, index: usize) -> Result<Sample>;

    /// The label of sample `index` for target number `target`, without reading its input.
    /// The default reads the whole sample; sources that hold labels apart from inputs (a
    /// manifest, in-memory targets) answer without decoding anything.
    fn target(&self, index: usize, target: usize) -> Result<Option<Target>> {
        let mut sample = self.get(index)?;
        Ok(sample.targets.get_mut(target).and_then(Option::take))
    }

    /// Where sample `index` comes from, for error messages (`train.csv line 12`).
    fn origin(&self, index: usize) -> String {
        format!("sample {index}")
    }

    /// The samples at `indices` as one batch on the CPU, without augmentation.
    fn read_batch(&self, indices: &[u32]) -> Result<Batch> {
        collate(self, indices)
    }

    /// The samples at `indices` for training: like [`read_batch`](Dataset::read_batch), with
    /// any random augmentation drawn from `rng`.
    fn read_training_batch(&self, indices: &[u32], rng: &mut dyn RngCore) -> Result<Batch> {
        let _ = rng;
        self.read_batch(indices)
    }

    /// True when [`read_training_batch`](Dataset::read_training_batch) draws from its
    /// generator (the trainer then seeds one per batch).
    fn augments(&self) -> bool {
        false
    }

    /// The targets (and `<task>.mask` label masks) of the samples at `indices`, as a batch
    /// holds them, without reading any input. The default goes through
    /// [`target`](Dataset::target); in-memory labels answer with one gather.
    fn read_targets(&self, indices: &[u32]) -> Result<Vec<(String, Tensor)>> {
        collate_targets(self, indices)
    }

    /// The largest class index of target `name` among labelled samples (`None` for a target
    /// of values, or when no sample is labelled), read in chunks through
    /// [`read_targets`](Dataset::read_targets). The trainer checks it against the head's
    /// outputs before each epoch.
    fn class_range(&self, name: &str) -> Result<Option<ClassRange>> {
        let is_classes = self
            .targets()
            .iter()
            .any(|t| t.name == name && t.kind == TargetKind::Classes);
        if !is_classes {
            return Ok(None);
        }
        let mut best: Option<ClassRange> = None;
        let mask_name = super::mask_name(name);
        for start in (0..self.len()).step_by(1 << 16) {
            let chunk: Vec<u32> =
                (start as u32..self.len().min(start + (1 << 16)) as u32).collect();
            let targets = self.read_targets(&chunk)?;
            let find = |n: &str| targets.iter().find(|(t, _)| t == n).map(|(_, v)| v);
            let Some(values) = find(name) else {
                return Ok(None);
            };
            // A class per sample, or per step of a sequence (`(N, T)`): `per` values a sample.
            let per = values
                .dims()
                .get(1..)
                .map_or(1, |d| d.iter().product::<usize>());
            let values: Vec<i64> = values.flatten_all()?.to_dtype(DType::I64)?.to_vec1()?;
            let labelled: Option<Vec<u8>> = find(&mask_name)
                .map(|m| m.to_dtype(DType::U8)?.to_vec1())
                .transpose()?;
            for (j, &v) in values.iter().enumerate() {
                let row = j / per.max(1);
                if labelled.as_ref().is_some_and(|m| m.get(row) == Some(&0)) {
                    continue;
                }
                let index = start + row;
                let c = u32::try_from(v).map_err(|_| {
                    let what = if v < 0 {
                        "a negative class"
                    } else {
                        "a class too large,"
                    };
                    Error::DataMismatch(format!(
                        "target '{name}' has {what} {v} at {}: not a class index",
                        self.origin(index)
                    ))
                })?;
                if best.as_ref().is_none_or(|b| c > b.max) {
                    best = Some(ClassRange { max: c, index });
                }
            }
        }
        Ok(best)
    }
}

/// Reads `indices` from `dataset` one sample at a time and stacks them into a batch: inputs
/// `(N, ...input_shape)`, one target per task, and `<task>.mask` (u8, 1: labelled) for every
/// task with a missing label in the batch (its placeholder is class 0 or zeros).
pub fn collate<D: Dataset + ?Sized>(dataset: &D, indices: &[u32]) -> Result<Batch> {
    let infos = dataset.targets();
    let shape = dataset.input_shape();
    let mut inputs = Vec::with_capacity(indices.len());
    let mut columns: Vec<Vec<Option<Target>>> =
        vec![Vec::with_capacity(indices.len()); infos.len()];
    for &i in indices {
        let i = i as usize;
        if i >= dataset.len() {
            return Err(Error::DataMismatch(format!(
                "sample index {i} out of range for a dataset of {} samples",
                dataset.len()
            )));
        }
        let sample = dataset.get(i)?;
        if sample.input.dims() != shape.as_slice() {
            return Err(Error::DataMismatch(format!(
                "{}: input has shape {:?}, the dataset's inputs {shape:?}",
                dataset.origin(i),
                sample.input.dims()
            )));
        }
        if sample.targets.len() != infos.len() {
            return Err(Error::DataMismatch(format!(
                "{}: {} labels for the dataset's {} targets",
                dataset.origin(i),
                sample.targets.len(),
                infos.len()
            )));
        }
        inputs.push(sample.input);
        for (col, t) in columns.iter_mut().zip(sample.targets) {
            col.push(t);
        }
    }
    let inputs = if inputs.is_empty() {
        let mut dims = vec![0];
        dims.extend(&shape);
        Tensor::zeros(dims, DType::F32, &Device::Cpu)?
    } else {
        Tensor::stack(&inputs, 0)?
    };
    let targets = targets_of_columns(&infos, columns, |j| dataset.origin(indices[j] as usize))?;
    Ok(Batch { inputs, targets })
}

/// The targets of a batch at `indices` read through [`Dataset::target`] (no input decoded):
/// for sources that make their inputs tensor another way (gathering rows) and collate only
/// the labels.
pub fn collate_targets<D: Dataset + ?Sized>(
    dataset: &D,
    indices: &[u32],
) -> Result<Vec<(String, Tensor)>> {
    let infos = dataset.targets();
    let columns = (0..infos.len())
        .map(|t| {
            indices
                .iter()
                .map(|&i| dataset.target(i as usize, t))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    targets_of_columns(&infos, columns, |j| dataset.origin(indices[j] as usize))
}

fn targets_of_columns(
    infos: &[TargetInfo],
    columns: Vec<Vec<Option<Target>>>,
    origin: impl Fn(usize) -> String,
) -> Result<Vec<(String, Tensor)>> {
    let mut targets = Vec::with_capacity(infos.len() * 2);
    for (info, column) in infos.iter().zip(columns) {
        let (target, mask) = stack_targets(info, &column, &origin)?;
        targets.push((info.name.clone(), target));
        if let Some(mask) = mask {
            targets.push((super::mask_name(&info.name), mask));
        }
    }
    Ok(targets)
}

/// One task's labels of a batch as a tensor, and its mask when some are missing.
fn stack_targets(
    info: &TargetInfo,
    column: &[Option<Target>],
    origin: impl Fn(usize) -> String,
) -> Result<(Tensor, Option<Tensor>)> {
    let n = column.len();
    let missing = column.iter().any(Option::is_none);
    let mask = missing
        .then(|| {
            let m: Vec<u8> = column.iter().map(|t| u8::from(t.is_some())).collect();
            Tensor::from_vec(m, n, &Device::Cpu)
        })
        .transpose()?;
    let wrong = |j: usize, found: &Target| {
        Error::DataMismatch(format!(
            "{}: target '{}' should hold {:?}, found {found:?}",
            origin(j),
            info.name,
            info.kind
        ))
    };
    let target = match &info.kind {
        TargetKind::Classes => {
            let mut v = Vec::with_capacity(n);
            for (j, t) in column.iter().enumerate() {
                v.push(match t {
                    Some(Target::Class(c)) => *c,
                    None => 0,
                    Some(other) => return Err(wrong(j, other)),
                });
            }
            Tensor::from_vec(v, n, &Device::Cpu)?
        }
        TargetKind::Values { shape } => {
            let per: usize = shape.iter().product();
            let mut v = Vec::with_capacity(n * per);
            for (j, t) in column.iter().enumerate() {
                match t {
                    Some(Target::Values(x)) if x.len() == per => v.extend_from_slice(x),
                    None => v.extend(std::iter::repeat_n(0f32, per)),
                    Some(other) => return Err(wrong(j, other)),
                }
            }
            let mut dims = vec![n];
            dims.extend(shape);
            Tensor::from_vec(v, dims, &Device::Cpu)?
        }
    };
    Ok((target, mask))
}

macro_rules! forward_dataset {
    ($($ty:ty),*) => {$(
        impl<D: Dataset + ?Sized> Dataset for $ty {
            fn len(&self) -> usize {
                (**self).len()
            }
            fn input_shape(&self) -> Vec<usize> {
                (**self).input_shape()
            }
            fn targets(&self) -> Vec<TargetInfo> {
                (**self).targets()
            }
            fn get(&self, index: usize) -> Result<Sample> {
                (**self).get(index)
            }
            fn target(&self, index: usize, target: usize) -> Result<Option<Target>> {
                (**self).target(index, target)
            }
            fn origin(&self, index: usize) -> String {
                (**self).origin(index)
            }
            fn read_batch(&self, indices: &[u32]) -> Result<Batch> {
                (**self).read_batch(indices)
            }
            fn read_training_batch(&self, indices: &[u32], rng: &mut dyn RngCore) -> Result<Batch> {
                (**self).read_training_batch(indices, rng)
            }
            fn augments(&self) -> bool {
                (**self).augments()
            }
            fn read_targets(&self, indices: &[u32]) -> Result<Vec<(String, Tensor)>> {
                (**self).read_targets(indices)
            }
            fn class_range(&self, name: &str) -> Result<Option<ClassRange>> {
                (**self).class_range(name)
            }
        }
    )*};
}

forward_dataset!(&D, Box<D>, std::sync::Arc<D>);

/// The datasets of multi-input training, one per task in task order:
/// [`TaskData::PerTask`](crate::train::TaskData::PerTask) takes a `Vec` or an array of any
/// [`Dataset`] (`Vec<TensorDataset>`, `[CsvManifest; 2]`, `Vec<Box<dyn Dataset>>`).
pub trait DatasetList: Sync {
    /// Number of datasets.
    fn count(&self) -> usize;
    /// Dataset `k`.
    fn dataset(&self, k: usize) -> &dyn Dataset;
}

impl<D: Dataset> DatasetList for Vec<D> {
    fn count(&self) -> usize {
        self.len()
    }
    fn dataset(&self, k: usize) -> &dyn Dataset {
        &self[k]
    }
}

impl<D: Dataset, const N: usize> DatasetList for [D; N] {
    fn count(&self) -> usize {
        N
    }
    fn dataset(&self, k: usize) -> &dyn Dataset {
        &self[k]
    }
}

impl dyn DatasetList + '_ {
    /// The datasets in order.
    pub fn all(&self) -> Vec<&dyn Dataset> {
        (0..self.count()).map(|k| self.dataset(k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five samples `[i, i]`; task "c" labelled with class `i % 3` except sample 2, task "v"
    /// with value `i / 2`.
    struct Toy;

    impl Dataset for Toy {
        fn len(&self) -> usize {
            5
        }
        fn input_shape(&self) -> Vec<usize> {
            vec![2]
        }
        fn targets(&self) -> Vec<TargetInfo> {
            vec![
                TargetInfo {
                    name: "c".into(),
                    kind: TargetKind::Classes,
                },
                TargetInfo {
                    name: "v".into(),
                    kind: TargetKind::Values { shape: vec![] },
                },
            ]
        }
        fn get(&self, index: usize) -> Result<Sample> {
            let x = index as f32;
            Ok(Sample {
                input: Tensor::new(&[x, x], &Device::Cpu)?,
                targets: vec![
                    (index != 2).then_some(Target::Class(index as u32 % 3)),
                    Some(Target::Values(vec![x / 2.0])),
                ],
            })
        }
    }

    #[test]
    fn class_range_of_per_step_classes_names_the_sample() -> Result<()> {
        // Three sequences of two steps; sample 1 unlabelled (its class 9 is a placeholder).
        let ds = super::super::TensorDataset::new(Tensor::zeros((3, 2), DType::F32, &Device::Cpu)?)
            .with_target(
                "tag",
                Tensor::new(&[[0u32, 1], [9, 9], [4, 2]], &Device::Cpu)?,
            )?
            .with_label_mask("tag", Tensor::new(&[1u8, 0, 1], &Device::Cpu)?)?;
        assert_eq!(
            ds.class_range("tag")?,
            Some(ClassRange { max: 4, index: 2 })
        );
        Ok(())
    }

    #[test]
    fn collate_stacks_samples_and_masks_missing_labels() -> Result<()> {
        let b = Toy.read_batch(&[4, 2, 0])?;
        assert_eq!(
            b.inputs.to_vec2::<f32>()?,
            vec![vec![4.0, 4.0], vec![2.0, 2.0], vec![0.0, 0.0]]
        );
        assert_eq!(b.target("c").unwrap().to_vec1::<u32>()?, vec![1, 0, 0]);
        assert_eq!(b.label_mask("c").unwrap().to_vec1::<u8>()?, vec![1, 0, 1]);
        assert_eq!(
            b.target("v").unwrap().to_vec1::<f32>()?,
            vec![2.0, 1.0, 0.0]
        );
        assert!(b.label_mask("v").is_none());
        // A batch without a missing label has no mask.
        assert!(Toy.read_batch(&[0, 1])?.label_mask("c").is_none());
        assert!(Toy.read_batch(&[5]).is_err());
        assert_eq!(Toy.class_range("c")?, Some(ClassRange { max: 1, index: 1 }));
        assert_eq!(Toy.class_range("v")?, None);
        Ok(())
    }
}
