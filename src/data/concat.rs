//! Several datasets of one kind read as one.

use super::{Dataset, Sample, Target, TargetInfo};
use crate::error::{Error, Result};

/// The samples of every part, in order (built by
/// [`DatasetExt::concat`](super::DatasetExt::concat) or [`Concat::new`]). The parts must have
/// the same input shape and the same targets, and none may augment its batches: augment the
/// concatenation instead ([`DatasetExt::augmented`](super::DatasetExt::augmented)).
#[derive(Debug, Clone)]
pub struct Concat<D> {
    parts: Vec<D>,
    /// `starts[p]`: index of part `p`'s first sample; one entry more than parts.
    starts: Vec<usize>,
}

impl<D: Dataset> Concat<D> {
    /// Concatenates `parts`; refuses parts whose input shapes or targets differ, naming both.
    pub fn new(parts: Vec<D>) -> Result<Self> {
        let Some(first) = parts.first() else {
            return Err(Error::DataMismatch("concatenating no datasets".into()));
        };
        let (shape, targets) = (first.input_shape(), first.targets());
        if let Some(p) = parts.iter().position(Dataset::augments) {
            return Err(Error::DataMismatch(format!(
                "part {p} augments its training batches; concatenate the plain datasets and \
                 augment the result (DatasetExt::augmented)"
            )));
        }
        for (p, part) in parts.iter().enumerate().skip(1) {
            if part.input_shape() != shape {
                return Err(Error::DataMismatch(format!(
                    "part {p} has inputs of shape {:?}, part 0 {shape:?}",
                    part.input_shape()
                )));
            }
            if part.targets() != targets {
                return Err(Error::DataMismatch(format!(
                    "part {p} has targets {:?}, part 0 {targets:?}",
                    part.targets()
                )));
            }
        }
        let mut starts = vec![0];
        for part in &parts {
            starts.push(starts[starts.len() - 1] + part.len());
        }
        Ok(Self { parts, starts })
    }

    /// The part holding sample `index` and the index within it.
    fn locate(&self, index: usize) -> Result<(usize, usize)> {
        if index >= Dataset::len(self) {
            return Err(Error::DataMismatch(format!(
                "sample index {index} out of range for a dataset of {} samples",
                Dataset::len(self)
            )));
        }
        let p = self.starts.partition_point(|&s| s <= index) - 1;
        Ok((p, index - self.starts[p]))
    }
}

impl<D: Dataset> Dataset for Concat<D> {
    fn len(&self) -> usize {
        self.starts[self.starts.len() - 1]
    }
    fn input_shape(&self) -> Vec<usize> {
        self.parts[0].input_shape()
    }
    fn targets(&self) -> Vec<TargetInfo> {
        self.parts[0].targets()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let (p, i) = self.locate(index)?;
        self.parts[p].get(i)
    }
    fn target(&self, index: usize, target: usize) -> Result<Option<Target>> {
        let (p, i) = self.locate(index)?;
        self.parts[p].target(i, target)
    }
    fn origin(&self, index: usize) -> String {
        match self.locate(index) {
            Ok((p, i)) => self.parts[p].origin(i),
            Err(_) => format!("sample {index}"),
        }
    }
}
