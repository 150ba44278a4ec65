use candle_core::{DType, Device, Tensor};

use crate::encoder::{Representation, SharedEncoder, StagedEncoder};
use crate::error::{Error, Result};
use crate::layers::{Conv2d, Dense};
use crate::params::ParamPath;

/// Configuration of [`Mtan`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtanConfig {
    /// Number of tasks.
    pub tasks: usize,
    /// Shape of one input sample (`[C, H, W]` for images, `[D]` for vectors), used to size the
    /// attention modules from a trial pass through the trunk.
    pub input_shape: Vec<usize>,
}

/// Two 1x1 layers (convolutions on `(N, C, H, W)` features, linear on `(N, D)`), ReLU between,
/// sigmoid after: a soft mask of the shared features.
enum Attention {
    Conv(Conv2d, Conv2d),
    Dense(Dense, Dense),
}

impl Attention {
    fn new(input: usize, output: usize, rank: usize, path: &ParamPath) -> Result<Self> {
        Ok(if rank == 4 {
            Attention::Conv(
                Conv2d::new(input, output, 1, 0, 1, &path.pp("conv0"))?,
                Conv2d::new(output, output, 1, 0, 1, &path.pp("conv1"))?,
            )
        } else {
            Attention::Dense(
                Dense::new(input, output, &path.pp("layer0"))?,
                Dense::new(output, output, &path.pp("layer1"))?,
            )
        })
    }

    fn mask(&self, xs: &Tensor) -> Result<Tensor> {
        let h = match self {
            Attention::Conv(a, b) => b.forward(&a.forward(xs)?.relu()?)?,
            Attention::Dense(a, b) => b.forward(&a.forward(xs)?.relu()?)?,
        };
        Ok(candle_nn::ops::sigmoid(&h)?)
    }
}

/// Multi-Task Attention Network (Liu, Johns & Davison, *End-to-End Multi-Task Learning with
/// Attention*, CVPR 2019), over any staged trunk: the trunk is shared; each task has, at every
/// stage `s`, an attention module that masks the trunk's features `h_s`:
///
/// - stage 0: `t_0 = sigmoid(A_0(h_0)) * h_0`;
/// - stage s > 0: the trunk's own stage `s` applied to the task's previous features,
///   `u = stage_s(t_{s-1})`, then `t_s = sigmoid(A_s([h_s, u])) * h_s`.
///
/// ```text
/// x ── stage 0 ── h_0 ── stage 1 ── h_1 ── ... (shared trunk)
///                  │ A_0            │ A_1([h_1, stage_1(t_0)])
///                  t_0 ──────────── t_1 ── ... ──> z_k   (per task)
/// ```
///
/// This follows MTAN's structure (shared features, per-task soft masks fed by the task's
/// previous masked features); where MTAN gives each task its own 3x3 convolution to reach the
/// next resolution, this version reuses the trunk's stage, so that it works with any staged
/// encoder. Parameters: `encoder.trunk.*` and `encoder.attention<k>.stage<s>.*`; all count as
/// shared.
pub struct Mtan {
    trunk: Box<dyn StagedEncoder>,
    attention: Vec<Vec<Attention>>,
}

impl Mtan {
    /// Builds the trunk with `build_trunk` under `encoder.trunk` and sizes one attention
    /// module per task and stage from a trial pass of a zero input.
    pub fn new<E, F>(config: &MtanConfig, path: &ParamPath, build_trunk: F) -> Result<Self>
    where
        E: StagedEncoder + 'static,
        F: FnOnce(&ParamPath) -> Result<E>,
    {
        if config.tasks == 0 {
            return Err(Error::config(
                "MtanConfig::tasks",
                0,
                "needs at least one task",
            ));
        }
        let trunk: Box<dyn StagedEncoder> = Box::new(build_trunk(&path.pp("trunk"))?);
        let mut shape = vec![1];
        shape.extend_from_slice(&config.input_shape);
        let mut h =
            Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu)?.to_device(path.device())?;
        let mut stage_shapes = Vec::with_capacity(trunk.num_stages());
        for s in 0..trunk.num_stages() {
            h = trunk.forward_stage(s, &h, false)?;
            if !matches!(h.rank(), 2 | 4) {
                return Err(Error::config(
                    "MTAN trunk",
                    format!("stage {s} output {:?}", h.dims()),
                    "stages must give (N, C, H, W) or (N, D) features",
                ));
            }
            stage_shapes.push((h.dims()[1], h.rank()));
        }
        let attention = (0..config.tasks)
            .map(|k| {
                stage_shapes
                    .iter()
                    .enumerate()
                    .map(|(s, &(c, rank))| {
                        let input = if s == 0 { c } else { 2 * c };
                        Attention::new(
                            input,
                            c,
                            rank,
                            &path.pp(&format!("attention{k}")).pp(&format!("stage{s}")),
                        )
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { trunk, attention })
    }
}

impl SharedEncoder for Mtan {
    /// The shared trunk alone; training uses [`forward_tasks`](SharedEncoder::forward_tasks).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.trunk.forward_t(xs, train)
    }

    fn output_dim(&self) -> usize {
        self.trunk.output_dim()
    }

    fn forward_tasks(&self, xs: &Tensor, num_tasks: usize, train: bool) -> Result<Representation> {
        if num_tasks != self.attention.len() {
            return Err(Error::DataMismatch(format!(
                "MTAN was built for {} tasks, the model has {num_tasks}",
                self.attention.len()
            )));
        }
        let mut shared = Vec::with_capacity(self.trunk.num_stages());
        let mut h = xs.clone();
        for s in 0..self.trunk.num_stages() {
            h = self.trunk.forward_stage(s, &h, train)?;
            shared.push(h.clone());
        }
        let zs = self
            .attention
            .iter()
            .map(|modules| {
                let mut t: Option<Tensor> = None;
                for (s, (module, h_s)) in modules.iter().zip(&shared).enumerate() {
                    let input = match &t {
                        None => h_s.clone(),
                        Some(prev) => {
                            let u = self.trunk.forward_stage(s, prev, train)?;
                            Tensor::cat(&[h_s, &u], 1)?
                        }
                    };
                    t = Some((module.mask(&input)? * h_s)?);
                }
                t.ok_or_else(|| Error::DataMismatch("MTAN trunk without stages".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Representation::PerTask(zs))
    }
}
