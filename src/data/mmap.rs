//! [`MmapDataset`]: inputs read straight from a memory-mapped array file (safetensors or
//! `.npy`), so a dataset larger than memory trains with bounded memory.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::{parse_npy_header, Batch, Dataset, Sample, Target, TargetInfo, TensorDataset};
use crate::error::{Error, Result};

/// Samples whose inputs are the rows of an array in a memory-mapped file, and whose labels
/// are small in-memory tensors.
///
/// The file is mapped to read its header and check its size; by default a batch then reads
/// its rows with positional reads (`pread`), so the run's resident memory stays near one
/// batch however large the file, and the operating system's page cache, not the process,
/// keeps what is hot. (Copying rows out of the mapping instead,
/// [`keep_pages`](MmapDataset::keep_pages), maps pages in blocks around every row touched, so
/// the resident set grows with the file; handing the pages back after each row with
/// `madvise` still left a third of a 5 GB file resident.) Inputs of type u8 stay u8
/// (normalise them with [`DatasetExt::normalized`](super::DatasetExt::normalized)); f32 stay
/// f32.
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
    file: std::fs::File,
    keep_pages: bool,
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

fn map_file(path: &Path) -> Result<(memmap2::Mmap, std::fs::File)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the mapping is read-only; the crate never writes the file. A file truncated
    // or rewritten by another process while mapped is the caller's to avoid, as for any
    // memory-mapped reader (candle's own safetensors loader included).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok((map, file))
}

/// Fills `buf` from `file` at byte `offset`, without moving a shared cursor (safe from
/// several threads at once).
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(
                file,
                &mut buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, buf, offset);
        Err(std::io::Error::other(
            "positional reads are not available here; use keep_pages()",
        ))
    }
}

impl MmapDataset {
    fn new(
        path: &Path,
        (map, file): (memmap2::Mmap, std::fs::File),
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
        let too_large =
            || Error::malformed(path, format!("inputs {dims:?} are too large to address"));
        let row_bytes = shape
            .iter()
            .try_fold(dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(too_large)?;
        let need = n
            .checked_mul(row_bytes)
            .and_then(|b| b.checked_add(offset))
            .ok_or_else(too_large)?;
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
            file,
            keep_pages: false,
        })
    }

    /// Maps the `.npy` file at `path` (u8 or f32, C order, first dimension = samples).
    pub fn open_npy(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (map, file) = map_file(path)?;
        let h = parse_npy_header(path, &map)?;
        Self::new(path, (map, file), h.data_offset, h.dtype, &h.shape)
    }

    /// Maps the safetensors file at `path`: tensor `inputs` holds the inputs, every other
    /// tensor is a target (or a `<task>.mask`) with one row per sample, loaded into memory.
    pub fn open_safetensors(path: impl AsRef<Path>, inputs: &str) -> Result<Self> {
        let path = path.as_ref();
        let (map, file) = map_file(path)?;
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
        let mut ds = Self::new(path, (map, file), offset, dtype, &dims)?;
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

    /// Copies rows straight out of the mapping instead of reading them with positional
    /// reads: no system call per row (faster when the file fits in memory), but every page
    /// touched stays in the process's resident set, which grows to the file's size.
    pub fn keep_pages(mut self) -> Self {
        self.keep_pages = true;
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
            if self.keep_pages {
                bytes.extend_from_slice(&self.map[start..start + self.row_bytes]);
            } else {
                let at = bytes.len();
                bytes.resize(at + self.row_bytes, 0);
                read_at(&self.file, &mut bytes[at..], start as u64)
                    .map_err(|e| Error::io(&self.path, e))?;
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
        Ok(Batch {
            inputs: self.rows(indices)?,
            targets: self.labels.read_targets(indices)?,
        })
    }
    fn read_targets(&self, indices: &[u32]) -> Result<Vec<(String, Tensor)>> {
        self.labels.read_targets(indices)
    }
}
