use candle_core::Tensor;

use crate::encoder::{Representation, SharedEncoder, StagedEncoder};
use crate::error::{Error, Result};
use crate::params::{Param, ParamPath};

/// Cross-stitch networks (Misra et al., *Cross-stitch Networks for Multi-task Learning*,
/// CVPR 2016): one copy of a staged encoder per task (a "column"), and after every stage but
/// the last a learnable `K x K` matrix mixing the columns' activations,
/// `h'_k = sum_j alpha[k, j] h_j`, initialised to 0.9 on the diagonal and 0.1 / (K - 1) off it
/// (the paper's setting). Task `k` reads its column's output.
///
/// ```text
/// x ─ column 0: stage 0 ─┐ ┌─ stage 1 ─┐ ┌─ ... ─> z_0
///                        ├X┤           ├X┤
/// x ─ column 1: stage 0 ─┘ └─ stage 1 ─┘ └─ ... ─> z_1        X: cross-stitch unit alpha_s
/// ```
///
/// Parameters: `encoder.column<k>.*` and `encoder.stitch<s>` (`K x K`); all count as shared
/// (a column gets gradient from the other tasks only through the stitch units).
pub struct CrossStitch {
    columns: Vec<Box<dyn StagedEncoder>>,
    stitches: Vec<Param>,
    output_dim: usize,
}

impl CrossStitch {
    /// One column per task, each built by `build_column` under its own path.
    pub fn new<E, F>(tasks: usize, path: &ParamPath, build_column: F) -> Result<Self>
    where
        E: StagedEncoder + 'static,
        F: Fn(&ParamPath) -> Result<E>,
    {
        if tasks == 0 {
            return Err(Error::config(
                "cross-stitch tasks",
                0,
                "needs at least one task",
            ));
        }
        let columns = (0..tasks)
            .map(|k| {
                build_column(&path.pp(&format!("column{k}")))
                    .map(|c| Box::new(c) as Box<dyn StagedEncoder>)
            })
            .collect::<Result<Vec<_>>>()?;
        let stages = columns[0].num_stages();
        let output_dim = columns[0].output_dim();
        if columns
            .iter()
            .any(|c| c.num_stages() != stages || c.output_dim() != output_dim)
        {
            return Err(Error::config(
                "cross-stitch columns",
                "different shapes",
                "every column must have the same stages and output size",
            ));
        }
        let off = if tasks > 1 {
            0.1 / (tasks - 1) as f32
        } else {
            0.0
        };
        let init: Vec<f32> = (0..tasks * tasks)
            .map(|i| {
                if i / tasks == i % tasks {
                    if tasks > 1 {
                        0.9
                    } else {
                        1.0
                    }
                } else {
                    off
                }
            })
            .collect();
        let stitches = (0..stages.saturating_sub(1))
            .map(|s| path.values(&format!("stitch{s}"), &[tasks, tasks], init.clone()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            columns,
            stitches,
            output_dim,
        })
    }

    /// `h'_k = sum_j alpha[k, j] h_j` over the columns' activations.
    fn stitch(alpha: &Tensor, hs: &[Tensor]) -> Result<Vec<Tensor>> {
        let shape = hs[0].dims().to_vec();
        let stacked = Tensor::stack(hs, 0)?;
        let k = hs.len();
        let mixed = alpha.matmul(&stacked.reshape((k, stacked.elem_count() / k))?)?;
        (0..k)
            .map(|i| Ok(mixed.get(i)?.reshape(shape.as_slice())?))
            .collect()
    }
}

impl SharedEncoder for CrossStitch {
    /// The mean of the columns' outputs; training uses
    /// [`forward_tasks`](SharedEncoder::forward_tasks).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        match self.forward_tasks(xs, self.columns.len(), train)? {
            Representation::PerTask(zs) => Ok(Tensor::stack(&zs, 1)?.mean(1)?),
            Representation::Shared(z) => Ok(z),
        }
    }

    fn output_dim(&self) -> usize {
        self.output_dim
    }

    fn forward_tasks(&self, xs: &Tensor, num_tasks: usize, train: bool) -> Result<Representation> {
        if num_tasks != self.columns.len() {
            return Err(Error::DataMismatch(format!(
                "cross-stitch was built with {} columns for a model of {num_tasks} tasks",
                self.columns.len()
            )));
        }
        let mut hs = vec![xs.clone(); num_tasks];
        let stages = self.columns[0].num_stages();
        for s in 0..stages {
            hs = self
                .columns
                .iter()
                .zip(&hs)
                .map(|(c, h)| c.forward_stage(s, h, train))
                .collect::<Result<Vec<_>>>()?;
            if let Some(alpha) = self.stitches.get(s) {
                hs = Self::stitch(alpha.tensor(), &hs)?;
            }
        }
        Ok(Representation::PerTask(hs))
    }
}
