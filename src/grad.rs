//! Per-task gradients for gradient-based weighting, and the flattening that turns candle's
//! per-variable gradient stores into a `(K, d)` matrix in a fixed order.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use crate::error::{Error, Result};

/// Where per-task gradients are taken.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GradientSource {
    /// Gradients of each task loss with respect to the shared (encoder) parameters: one
    /// backward pass per task.
    SharedParameters,
    /// Gradients with respect to the shared representation (MGDA-UB style): the heads' backward
    /// per task, then one encoder backward for the combined gradient.
    Representation,
}

impl std::fmt::Display for GradientSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GradientSource::SharedParameters => "shared-parameter",
            GradientSource::Representation => "representation",
        })
    }
}

/// The per-task gradients of one step: a `(K, d)` matrix on the training device, row `k` the
/// gradient of task `k`'s loss, flattened (shared parameters sorted by name, or the
/// representation in row-major order).
#[derive(Debug, Clone)]
pub struct TaskGradients {
    source: GradientSource,
    matrix: Tensor,
    gramian: std::sync::OnceLock<Vec<Vec<f64>>>,
}

impl TaskGradients {
    /// Wraps a `(K, d)` f32 matrix.
    pub fn new(source: GradientSource, matrix: Tensor) -> Result<Self> {
        if matrix.rank() != 2 {
            return Err(Error::DataMismatch(format!(
                "task gradients must be a (K, d) matrix, got shape {:?}",
                matrix.dims()
            )));
        }
        Ok(Self {
            source,
            matrix,
            gramian: std::sync::OnceLock::new(),
        })
    }

    /// Where the gradients were taken.
    pub fn source(&self) -> GradientSource {
        self.source
    }

    /// The `(K, d)` matrix.
    pub fn matrix(&self) -> &Tensor {
        &self.matrix
    }

    /// Number of tasks K.
    pub fn num_tasks(&self) -> usize {
        self.matrix.dims()[0]
    }

    /// Gradient length d.
    pub fn dim(&self) -> usize {
        self.matrix.dims()[1]
    }

    /// The Gramian `G G^T` (K x K), computed once on the device (in f32, then returned in
    /// f64) and cached.
    pub fn gramian(&self) -> Result<Vec<Vec<f64>>> {
        if let Some(g) = self.gramian.get() {
            return Ok(g.clone());
        }
        let g = self.matrix.to_dtype(DType::F32)?;
        let gram = g.matmul(&g.t()?)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        Ok(self.gramian.get_or_init(|| gram).clone())
    }

    /// `G H^T` (K x K) with the gradients `H` of another batch, computed on the device.
    pub fn cross_gramian(&self, other: &TaskGradients) -> Result<Vec<Vec<f64>>> {
        if other.matrix.dims() != self.matrix.dims() {
            return Err(Error::DataMismatch(format!(
                "gradient matrices of shapes {:?} and {:?} cannot be compared",
                self.matrix.dims(),
                other.matrix.dims()
            )));
        }
        let a = self.matrix.to_dtype(DType::F32)?;
        let b = other.matrix.to_dtype(DType::F32)?;
        Ok(a.matmul(&b.t()?)?.to_dtype(DType::F64)?.to_vec2::<f64>()?)
    }

    /// The rows in f64 on the host (for solvers that need the full vectors).
    pub fn rows_f64(&self) -> Result<Vec<Vec<f64>>> {
        Ok(self.matrix.to_dtype(DType::F64)?.to_vec2::<f64>()?)
    }
}

/// How the task gradients of a step relate: norms, pairwise cosine similarities, and the
/// number of conflicting pairs (negative cosine), for monitoring.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct GradientStats {
    /// `||g_k||` per task.
    pub norms: Vec<f64>,
    /// `cos(g_i, g_j)`; 0 where a gradient is zero.
    pub cosine: Vec<Vec<f64>>,
    /// Pairs `i < j` with `g_i . g_j < 0`.
    pub conflicting_pairs: usize,
}

impl GradientStats {
    /// The statistics of the gradients whose Gramian is `gramian`.
    pub fn from_gramian(gramian: &[Vec<f64>]) -> Self {
        let k = gramian.len();
        // NaN must survive (f64::max would turn it into 0): the trainer checks these norms.
        let norms: Vec<f64> = (0..k)
            .map(|i| {
                let d = gramian[i][i];
                if d.is_finite() {
                    d.max(0.0).sqrt()
                } else {
                    d
                }
            })
            .collect();
        let mut cosine = vec![vec![0.0; k]; k];
        let mut conflicting_pairs = 0;
        for i in 0..k {
            for j in 0..k {
                let denom = norms[i] * norms[j];
                cosine[i][j] = if denom > 0.0 {
                    gramian[i][j] / denom
                } else {
                    0.0
                };
                if i < j && gramian[i][j] < 0.0 {
                    conflicting_pairs += 1;
                }
            }
        }
        Self {
            norms,
            cosine,
            conflicting_pairs,
        }
    }
}

/// Flattens the gradients of `vars` (in the given order) into one vector; a var without a
/// gradient contributes zeros.
pub(crate) fn flatten(grads: &GradStore, vars: &[(String, Var)]) -> Result<Tensor> {
    let parts = vars
        .iter()
        .map(|(_, v)| match grads.get(v) {
            // Detached: gradients of leaves can still carry candle's graph.
            Some(g) => Ok(g.detach().flatten_all()?),
            None => Ok(v.as_tensor().zeros_like()?.flatten_all()?),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&parts, 0)?)
}

/// Splits a flat vector back into per-var gradients and inserts them into `store`.
pub(crate) fn unflatten_into(
    flat: &Tensor,
    vars: &[(String, Var)],
    store: &mut GradStore,
) -> Result<()> {
    let total: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    if flat.dims() != [total] {
        return Err(Error::DataMismatch(format!(
            "combined gradient has shape {:?}, the shared parameters need ({total},)",
            flat.dims()
        )));
    }
    let flat = flat.detach();
    let mut offset = 0;
    for (_, var) in vars {
        let n = var.elem_count();
        let g = flat.narrow(0, offset, n)?.reshape(var.shape())?;
        store.insert(var.as_tensor(), g);
        offset += n;
    }
    Ok(())
}

/// `sum_k w_k grads_k` for each of `vars`; vars absent from every store are left out.
pub(crate) fn weighted_sum(
    stores: &[GradStore],
    weights: &[f64],
    vars: &[(String, Var)],
) -> Result<GradStore> {
    let mut out = GradStore::default();
    for (_, var) in vars {
        let mut acc: Option<Tensor> = None;
        for (store, &w) in stores.iter().zip(weights) {
            if let Some(g) = store.get(var) {
                let term = g.detach().affine(w, 0.0)?;
                acc = Some(match acc {
                    Some(a) => (a + term)?,
                    None => term,
                });
            }
        }
        if let Some(a) = acc {
            out.insert(var.as_tensor(), a);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn flatten_unflatten_round_trip_and_gramian() -> Result<()> {
        let a = Var::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu)?;
        let b = Var::new(&[5f32], &Device::Cpu)?;
        let vars = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
        let loss = (a.as_tensor().sqr()?.sum_all()? + b.as_tensor().sum_all()?)?;
        let grads = loss.backward()?;
        let flat = flatten(&grads, &vars)?;
        assert_eq!(flat.to_vec1::<f32>()?, vec![2.0, 4.0, 6.0, 8.0, 1.0]);
        let mut store = GradStore::default();
        unflatten_into(&flat, &vars, &mut store)?;
        assert_eq!(store.get(&b).unwrap().to_vec1::<f32>()?, vec![1.0]);
        let tg = TaskGradients::new(
            GradientSource::SharedParameters,
            Tensor::new(&[[1f32, 0.0], [1.0, 2.0]], &Device::Cpu)?,
        )?;
        assert_eq!(tg.gramian()?, vec![vec![1.0, 1.0], vec![1.0, 5.0]]);
        let stats = GradientStats::from_gramian(&[vec![1.0, -1.0], vec![-1.0, 4.0]]);
        assert_eq!(stats.norms, vec![1.0, 2.0]);
        assert_eq!(stats.conflicting_pairs, 1);
        assert!((stats.cosine[0][1] + 0.5).abs() < 1e-12);
        // A NaN gradient must show as a NaN norm, not as zero.
        let nan = GradientStats::from_gramian(&[vec![f64::NAN, 0.0], vec![0.0, 1.0]]);
        assert!(nan.norms[0].is_nan());
        let summed = weighted_sum(&[grads, loss.backward()?], &[0.5, 1.5], &vars)?;
        assert_eq!(summed.get(&b).unwrap().to_vec1::<f32>()?, vec![2.0]);
        Ok(())
    }
}
