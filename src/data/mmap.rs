//! [`MmapDataset`]: inputs read straight from a memory-mapped array file (safetensors or
//! `.npy`), so a dataset larger than memory trains with bounded memory.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::{
    parse_npy_header, Batch, ClassRange, Dataset, Sample, Target, TargetInfo, TensorDataset,
};
use crate::error::{Error, Result};

/// Samples whose inputs are the rows of an array in a memory-mapped file, and whose labels
/// are small in-memory tensors.
///
/// A batch copies its rows out of the mapping and, by default, hands the pages back to the
/// operating system (`madvise(MADV_DONTNEED)` on Unix): the resident memory of a run stays
/// near one batch however large the file, and the page cache, not the process, keeps what
/// is hot. Inputs of type u8 stay u8 (normalise them with
/// [`DatasetExt::normalized`](super::DatasetExt::normalized)); f32 stay f32.
///
/// Two layouts:
/// - [`open_safetensors`](MmapDataset::open_safetensors): one safetensors file with the
///   inputs under a name you give (`inputs`) and every other tensor of as many rows a target
///   named after its task (integer types: classes; floats: values; `<task>.mask`: label masks).
/// - [`open_npy`](MmapDataset::open_npy): an `.npy` file of inputs; add targets with
///   [`with_target`](MmapDataset::with_target) (for example from [`read_npy`](super::read_npy)).
pub struct MmapDataset {
    path: PathBuf,
    map: memmap2::Mmap,
    offset: usize,
    dtype: DType,
    shape: Vec<usize>,
    row_bytes: usize,
    labels: TensorDataset,
    release_pages: bool,
}

impl std::fmt::Debug for MmapDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapDataset")
            .field("path", &self.path)
            .field("dtype", &self.dtype)
            .field("samples", &self.labels.len())
            .field("input_shape", &self.shape)
            .finish()
    }
}

fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the mapping is read-only; the crate never writes the file. A file truncated
    // or rewritten by another process while mapped is the caller's to avoid, as for any
    // memory-mapped reader (candle's own safetensors loader included).
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

impl MmapDataset {
    fn new(
        path: &Path,
        map: memmap2::Mmap,
        offset: usize,
        dtype: DType,
        dims: &[usize],
    ) -> Result<Self> {
        if !matches!(dtype, DType::U8 | DType::F32) {
            return Err(Error::malformed(
                path,
                format!("inputs are {dtype:?}; u8 or f32 are read"),
            ));
        }
        let Some((&n, shape)) = dims.split_first() else {
            return Err(Error::malformed(
                path,
                "inputs are a scalar, not an array of samples",
            ));
        };
        let row_bytes = shape.iter().product::<usize>() * dtype.size_in_bytes();
        let need = offset + n * row_bytes;
        if map.len() < need {
            return Err(Error::malformed(
                path,
                format!(
                    "is {} bytes, its inputs {dims:?} of {dtype:?} need {need}",
                    map.len()
                ),
            ));
        }
        let labels = TensorDataset::new(Tensor::zeros((n, 0), DType::U8, &Device::Cpu)?);
        Ok(Self {
            path: path.to_path_buf(),
            map,
            offset,
            dtype,
            shape: shape.to_vec(),
            row_bytes,
            labels,
            release_pages: true,
        })
    }

    /// Maps the `.npy` file at `path` (u8 or f32, C order, first dimension = samples).
    pub fn open_npy(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let map = map_file(path)?;
        let h = parse_npy_header(path, &map)?;
        Self::new(path, map, h.data_offset, h.dtype, &h.shape)
    }

    /// Maps the safetensors file at `path`: tensor `inputs` holds the inputs, every other
    /// tensor is a target (or a `<task>.mask`) with one row per sample, loaded into memory.
    pub fn open_safetensors(path: impl AsRef<Path>, inputs: &str) -> Result<Self> {
        let path = path.as_ref();
        let map = map_file(path)?;
        let st = safetensors::SafeTensors::deserialize(&map)
            .map_err(|e| Error::malformed(path, format!("not a safetensors file: {e}")))?;
        let (header, _) = safetensors::SafeTensors::read_metadata(&map)
            .map_err(|e| Error::malformed(path, format!("not a safetensors file: {e}")))?;
        let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        names.sort();
        let view = st.tensor(inputs).map_err(|_| {
            Error::malformed(
                path,
                format!("has no tensor '{inputs}' (tensors: {})", names.join(", ")),
            )
        })?;
        let dtype = match view.dtype() {
            safetensors::Dtype::U8 => DType::U8,
            safetensors::Dtype::F32 => DType::F32,
            other => {
                return Err(Error::malformed(
                    path,
                    format!("inputs '{inputs}' are {other:?}; U8 or F32 are read"),
                ))
            }
        };
        // The view's data lies inside the mapping: its offset is the distance between them.
        let offset = view.data().as_ptr() as usize - map.as_ptr() as usize;
        debug_assert!(offset >= 8 + header);
        let dims = view.shape().to_vec();
        let mut targets = Vec::new();
        for name in names.iter().filter(|n| *n != inputs) {
            let view = st
                .tensor(name)
                .map_err(|e| Error::malformed(path, e.to_string()))?;
            let t = candle_core::safetensors::Load::load(&view, &Device::Cpu)?;
            targets.push((name.clone(), t));
        }
        drop(st);
        let mut ds = Self::new(path, map, offset, dtype, &dims)?;
        // Masks after the targets they mask.
        targets.sort_by_key(|(n, _)| n.ends_with(".mask"));
        for (name, t) in targets {
            ds = match name.strip_suffix(".mask") {
                Some(task) => ds.with_label_mask(task, t)?,
                None => ds.with_target(name, t)?,
            };
        }
        Ok(ds)
    }

    /// Adds the target of task `name` (first dimension = samples; integer types are classes).
    pub fn with_target(mut self, name: impl Into<String>, target: Tensor) -> Result<Self> {
        self.labels = self.labels.with_target(name, target)?;
        Ok(self)
    }

    /// Marks which samples carry a label for `task` (see [`TensorDataset::with_label_mask`]).
    pub fn with_label_mask(mut self, task: &str, mask: Tensor) -> Result<Self> {
        self.labels = self.labels.with_label_mask(task, mask)?;
        Ok(self)
    }

    /// Keeps the pages read resident instead of handing them back (faster when the file fits
    /// in memory; the resident size then grows to the file's).
    pub fn keep_pages(mut self) -> Self {
        self.release_pages = false;
        self
    }

    /// The mapped file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows `indices` as one input tensor `(N, ...shape)`.
    fn rows(&self, indices: &[u32]) -> Result<Tensor> {
        let n = self.labels.len();
        let mut bytes = Vec::with_capacity(indices.len() * self.row_bytes);
        for &i in indices {
            let i = i as usize;
            if i >= n {
                return Err(Error::DataMismatch(format!(
                    "sample index {i} out of range for {} ({n} samples)",
                    self.path.display()
                )));
            }
            let start = self.offset + i * self.row_bytes;
            bytes.extend_from_slice(&self.map[start..start + self.row_bytes]);
            #[cfg(unix)]
            if self.release_pages {
                // SAFETY: the mapping is a shared, read-only mapping of a file: dropped pages
                // are read again from the file on the next access, with the same content; no
                // reference into these pages outlives the copy above.
                unsafe {
                    let _ = self.map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        self.row_bytes,
                    );
                }
            }
        }
        let mut dims = vec![indices.len()];
        dims.extend(&self.shape);
        Ok(Tensor::from_raw_buffer(
            &bytes,
            self.dtype,
            &dims,
            &Device::Cpu,
        )?)
    }
}

impl Dataset for MmapDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn input_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn targets(&self) -> Vec<TargetInfo> {
        Dataset::targets(&self.labels)
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let mut sample = Dataset::get(&self.labels, index)?;
        sample.input = self.rows(&[index as u32])?.squeeze(0)?;
        Ok(sample)
    }
    fn target(&self, index: usize, target: usize) -> Result<Option<Target>> {
        Dataset::target(&self.labels, index, target)
    }
    fn origin(&self, index: usize) -> String {
        format!("{} row {index}", self.path.display())
    }
    fn read_batch(&self, indices: &[u32]) -> Result<Batch> {
        let mut batch = self.labels.read_batch(indices)?;
        batch.inputs = self.rows(indices)?;
        Ok(batch)
    }
    fn class_range(&self, name: &str) -> Result<Option<ClassRange>> {
        self.labels.class_range(name)
    }
}
