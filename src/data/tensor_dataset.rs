use candle_core::{DType, Device, Tensor};

use rand::{Rng, RngCore};

use super::{
    Augment, Batch, Dataset, ImageDataset, Normalize, Sample, Target, TargetInfo, TargetKind,
};
use crate::error::{Error, Result};

/// An in-memory dataset: inputs `(N, ...)` and one named target tensor `(N, ...)` per task.
///
/// Inputs stay in their stored type (u8 pixels take a quarter of the memory of f32) on the CPU;
/// [`batch`](TensorDataset::batch) gathers rows, moves them to the device and applies the
/// [`Normalize`] transform. Targets are named after the tasks that read them.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use candle_mtl::data::TensorDataset;
/// let x = Tensor::zeros((3, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let ds = TensorDataset::new(x)
///     .with_target("label", Tensor::new(&[0u32, 1, 0], &Device::Cpu)?)?;
/// let batch = ds.batch(&[2, 0], &Device::Cpu)?;
/// assert_eq!(batch.inputs.dims(), &[2, 2]);
/// assert_eq!(batch.target("label").unwrap().to_vec1::<u32>()?, vec![0, 0]);
/// # Ok::<(), candle_mtl::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TensorDataset {
    inputs: Tensor,
    normalize: Option<Normalize>,
    augment: Vec<Augment>,
    targets: Vec<(String, Tensor)>,
}

impl TensorDataset {
    /// A dataset of `inputs` (first dimension = samples) with no targets yet.
    pub fn new(inputs: Tensor) -> Self {
        Self {
            inputs,
            normalize: None,
            augment: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// The images of an [`ImageDataset`] as inputs, normalised by `normalize` at batch time.
    pub fn from_images(images: &ImageDataset, normalize: Normalize) -> Result<Self> {
        Ok(Self::new(images.images_tensor()?).with_normalize(normalize))
    }

    /// Every sample of `dataset` read into memory: its batches' inputs (as the dataset makes
    /// them: u8 pixels of a manifest stay u8, a normalised source gives f32), its targets and
    /// a label mask for every task with a missing label. Reads without augmentation.
    pub fn from_dataset(dataset: &dyn Dataset) -> Result<Self> {
        let n = dataset.len();
        let parts = super::sequential_batches(n, 1024)
            .iter()
            .map(|idx| Ok(dataset.read_batch(idx)?.inputs))
            .collect::<Result<Vec<_>>>()?;
        let inputs = if parts.is_empty() {
            let mut dims = vec![0];
            dims.extend(dataset.input_shape());
            Tensor::zeros(dims, DType::F32, &Device::Cpu)?
        } else {
            Tensor::cat(&parts, 0)?
        };
        let all: Vec<u32> = (0..n as u32).collect();
        let mut out = TensorDataset::new(inputs);
        for (name, t) in dataset.read_targets(&all)? {
            out = out.with_target(name, t)?;
        }
        Ok(out)
    }

    /// Sets the normalisation applied to each batch's inputs.
    pub fn with_normalize(mut self, normalize: Normalize) -> Self {
        self.normalize = Some(normalize);
        self
    }

    /// Sets the random augmentations applied to training batches (see
    /// [`training_batch`](TensorDataset::training_batch)); evaluation batches are never augmented.
    pub fn with_augment(mut self, augment: Vec<Augment>) -> Self {
        self.augment = augment;
        self
    }

    /// True when training batches are augmented.
    pub fn has_augment(&self) -> bool {
        !self.augment.is_empty()
    }

    /// Adds the target of task `name`; its first dimension must equal the number of samples.
    pub fn with_target(mut self, name: impl Into<String>, target: Tensor) -> Result<Self> {
        let name = name.into();
        let n = target.dims().first().copied().unwrap_or(0);
        if n != self.len() {
            return Err(Error::DataMismatch(format!(
                "target '{name}' has {n} rows but the dataset has {} samples",
                self.len()
            )));
        }
        if self.targets.iter().any(|(t, _)| *t == name) {
            return Err(Error::DataMismatch(format!("target '{name}' added twice")));
        }
        self.targets.push((name, target));
        Ok(self)
    }

    /// Marks which samples carry a label for task `task` (partially labelled data): `mask`
    /// has one entry per sample, non-zero where the label is present. Unlabelled samples add
    /// nothing to the task's loss, gradient or metrics; their target values are ignored (any
    /// placeholder will do). Stored as the target `<task>.mask`.
    ///
    /// For a multi-label task the mask may instead have the shape of the task's targets
    /// (`(N, L)`, added before it): one entry per label, so that only the present labels
    /// count ([`BinaryCrossEntropy`](crate::task::BinaryCrossEntropy), F1, mAP).
    pub fn with_label_mask(self, task: &str, mask: Tensor) -> Result<Self> {
        let n = self.len();
        let per_label = self
            .target(task)
            .is_some_and(|t| t.rank() > 1 && t.dims() == mask.dims() && !t.dtype().is_int());
        if mask.dims() != [n] && !per_label {
            return Err(Error::DataMismatch(format!(
                "label mask of task '{task}' has shape {:?}, expected ({n},) or, for a \
                 multi-label task, its targets' shape {:?}",
                mask.dims(),
                self.target(task).map(|t| t.dims().to_vec())
            )));
        }
        let mask = mask
            .to_dtype(candle_core::DType::F32)?
            .ne(0f32)?
            .to_dtype(candle_core::DType::U8)?;
        self.with_target(super::mask_name(task), mask)
    }

    /// The label mask of task `task`, if one was set.
    pub fn label_mask(&self, task: &str) -> Option<&Tensor> {
        self.target(&super::mask_name(task))
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.inputs.dims().first().copied().unwrap_or(0)
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of one input sample.
    pub fn input_shape(&self) -> &[usize] {
        self.inputs.dims().get(1..).unwrap_or(&[])
    }

    /// The target of task `name`, all samples.
    pub fn target(&self, name: &str) -> Option<&Tensor> {
        self.targets.iter().find(|(t, _)| t == name).map(|(_, v)| v)
    }

    /// Names of the targets, in the order they were added.
    pub fn target_names(&self) -> Vec<&str> {
        self.targets.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The samples at `indices`, on `device`, inputs normalised (no augmentation).
    pub fn batch(&self, indices: &[u32], device: &Device) -> Result<Batch> {
        self.make_batch(indices, device, None::<&mut rand_chacha::ChaCha8Rng>)
    }

    /// Like [`batch`](TensorDataset::batch), with the dataset's augmentations drawn from `rng`
    /// applied before normalisation.
    pub fn training_batch(
        &self,
        indices: &[u32],
        device: &Device,
        rng: &mut impl Rng,
    ) -> Result<Batch> {
        self.make_batch(indices, device, Some(rng))
    }

    fn make_batch<R: Rng>(
        &self,
        indices: &[u32],
        device: &Device,
        rng: Option<&mut R>,
    ) -> Result<Batch> {
        let (inputs, targets) = self.select(indices)?;
        let inputs = match rng {
            Some(rng) if !self.augment.is_empty() => {
                Augment::apply_all(&self.augment, &inputs, rng)?
            }
            _ => inputs,
        };
        let inputs = inputs.to_device(device)?;
        let inputs = match &self.normalize {
            Some(n) => n.apply(&inputs)?,
            None => inputs,
        };
        let targets = targets
            .into_iter()
            .map(|(name, t)| Ok((name, t.to_device(device)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Batch { inputs, targets })
    }

    /// A new dataset holding the samples at `indices`, with the same normalisation.
    pub fn subset(&self, indices: &[u32]) -> Result<TensorDataset> {
        let (inputs, targets) = self.select(indices)?;
        Ok(TensorDataset {
            inputs,
            normalize: self.normalize.clone(),
            augment: self.augment.clone(),
            targets,
        })
    }

    /// The targets that belong to tasks (label masks left out), in the order added.
    fn task_targets(&self) -> impl Iterator<Item = &(String, Tensor)> {
        self.targets.iter().filter(|(n, _)| !n.ends_with(".mask"))
    }

    fn check_index(&self, index: usize) -> Result<()> {
        if index >= TensorDataset::len(self) {
            return Err(Error::DataMismatch(format!(
                "sample index {index} out of range for a dataset of {} samples",
                TensorDataset::len(self)
            )));
        }
        Ok(())
    }

    fn select(&self, indices: &[u32]) -> Result<(Tensor, Vec<(String, Tensor)>)> {
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= self.len()) {
            return Err(Error::DataMismatch(format!(
                "sample index {bad} out of range for a dataset of {} samples",
                self.len()
            )));
        }
        let idx = Tensor::from_slice(indices, indices.len(), self.inputs.device())?;
        let inputs = self.inputs.index_select(&idx, 0)?;
        Ok((inputs, self.select_targets(indices)?))
    }

    /// Every target (label masks included) at `indices`.
    fn select_targets(&self, indices: &[u32]) -> Result<Vec<(String, Tensor)>> {
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= self.len()) {
            return Err(Error::DataMismatch(format!(
                "sample index {bad} out of range for a dataset of {} samples",
                self.len()
            )));
        }
        let idx = Tensor::from_slice(indices, indices.len(), &Device::Cpu)?;
        self.targets
            .iter()
            .map(|(name, t)| {
                Ok((
                    name.clone(),
                    t.index_select(&idx.to_device(t.device())?, 0)?,
                ))
            })
            .collect()
    }
}

impl Dataset for TensorDataset {
    fn len(&self) -> usize {
        TensorDataset::len(self)
    }

    fn input_shape(&self) -> Vec<usize> {
        TensorDataset::input_shape(self).to_vec()
    }

    fn targets(&self) -> Vec<TargetInfo> {
        self.task_targets()
            .map(|(name, t)| TargetInfo {
                name: name.clone(),
                kind: if t.dtype().is_int() {
                    TargetKind::Classes
                } else {
                    TargetKind::Values {
                        shape: t.dims()[1..].to_vec(),
                    }
                },
            })
            .collect()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        self.check_index(index)?;
        let targets = (0..self.task_targets().count())
            .map(|t| Dataset::target(self, index, t))
            .collect::<Result<Vec<_>>>()?;
        let input = self.inputs.get(index)?;
        let input = match &self.normalize {
            Some(n) => n.apply(&input.unsqueeze(0)?)?.squeeze(0)?,
            None => input,
        };
        Ok(Sample { input, targets })
    }

    fn target(&self, index: usize, target: usize) -> Result<Option<Target>> {
        self.check_index(index)?;
        let Some((name, t)) = self.task_targets().nth(target) else {
            return Ok(None);
        };
        if let Some(mask) = self.label_mask(name) {
            let row = mask.get(index)?.flatten_all()?.to_vec1::<u8>()?;
            if row.iter().all(|&m| m == 0) {
                return Ok(None);
            }
            if row.contains(&0) {
                // A sample read alone carries no per-label mask: refused rather than
                // handing on its placeholders as labels.
                return Err(Error::DataMismatch(format!(
                    "sample {index} of task '{name}' has some labels masked out; per-label \
                     masks are kept only in batches read from the TensorDataset itself \
                     (read_batch, subsets of it), not through per-sample reads (concat, map)"
                )));
            }
        }
        let row = t.get(index)?;
        Ok(Some(if t.dtype().is_int() {
            let c = row.to_dtype(DType::I64)?.to_scalar::<i64>()?;
            Target::Class(u32::try_from(c).map_err(|_| {
                Error::DataMismatch(format!(
                    "target '{name}' of sample {index} is class {c}, not a class index"
                ))
            })?)
        } else {
            Target::Values(row.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        }))
    }

    fn read_batch(&self, indices: &[u32]) -> Result<Batch> {
        self.batch(indices, &Device::Cpu)
    }

    fn read_training_batch(&self, indices: &[u32], mut rng: &mut dyn RngCore) -> Result<Batch> {
        self.training_batch(indices, &Device::Cpu, &mut rng)
    }

    fn augments(&self) -> bool {
        self.has_augment()
    }

    fn read_targets(&self, indices: &[u32]) -> Result<Vec<(String, Tensor)>> {
        self.select_targets(indices)
    }
}
