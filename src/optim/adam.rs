use candle_core::utils::with_threadpool;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::ParamState;
use crate::error::{Error, Result};
use crate::ops::{fast_cpu_ops, CpuSlice};

/// Hyper-parameters of Adam and AdamW.
///
/// | field | default | range |
/// |---|---|---|
/// | `lr` | 1e-3 | > 0 |
/// | `beta1` | 0.9 | [0, 1) |
/// | `beta2` | 0.999 | [0, 1) |
/// | `eps` | 1e-8 | > 0 |
/// | `weight_decay` | 0 | >= 0 |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// L2 penalty (Adam) or decoupled decay (AdamW).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamConfig {
    pub(super) fn validate(&self) -> Result<()> {
        let checks = [
            ("lr", self.lr, self.lr > 0.0, "must be > 0"),
            (
                "beta1",
                self.beta1,
                (0.0..1.0).contains(&self.beta1),
                "must be in [0, 1)",
            ),
            (
                "beta2",
                self.beta2,
                (0.0..1.0).contains(&self.beta2),
                "must be in [0, 1)",
            ),
            ("eps", self.eps, self.eps > 0.0, "must be > 0"),
            (
                "weight_decay",
                self.weight_decay,
                self.weight_decay >= 0.0,
                "must be >= 0",
            ),
        ];
        for (field, value, ok, reason) in checks {
            if !(ok && value.is_finite()) {
                return Err(Error::config(format!("adam {field}"), value, reason));
            }
        }
        Ok(())
    }
}

/// One Adam(W) update of `theta` with gradient `grad`; returns the new value. On the CPU in
/// f32 this is one pass over the buffers ([`update_cpu`]); elsewhere, candle tensor ops.
pub(super) fn update(
    c: &AdamConfig,
    decoupled: bool,
    theta: &Tensor,
    grad: &Tensor,
    state: &mut ParamState,
) -> Result<Tensor> {
    match update_cpu(c, decoupled, theta, grad, state)? {
        Some(updated) => Ok(updated),
        None => update_tensors(c, decoupled, theta, grad, state),
    }
}

/// The update with candle tensor ops, for any device and dtype.
fn update_tensors(
    c: &AdamConfig,
    decoupled: bool,
    theta: &Tensor,
    grad: &Tensor,
    state: &mut ParamState,
) -> Result<Tensor> {
    let grad = if !decoupled && c.weight_decay > 0.0 {
        (grad + theta.affine(c.weight_decay, 0.0)?)?
    } else {
        grad.clone()
    };
    let first = match &state.first {
        Some(m) => (m.affine(c.beta1, 0.0)? + grad.affine(1.0 - c.beta1, 0.0)?)?,
        None => grad.affine(1.0 - c.beta1, 0.0)?,
    };
    let sq = grad.sqr()?;
    let second = match &state.second {
        Some(v) => (v.affine(c.beta2, 0.0)? + sq.affine(1.0 - c.beta2, 0.0)?)?,
        None => sq.affine(1.0 - c.beta2, 0.0)?,
    };
    state.steps += 1;
    let t = state.steps as i32;
    let bias1 = 1.0 - c.beta1.powi(t);
    let bias2 = 1.0 - c.beta2.powi(t);
    let denom = second
        .affine(1.0 / bias2, 0.0)?
        .sqrt()?
        .affine(1.0, c.eps)?;
    let step = (first.affine(c.lr / bias1, 0.0)? / denom)?;
    let theta = if decoupled && c.weight_decay > 0.0 {
        theta.affine(1.0 - c.lr * c.weight_decay, 0.0)?
    } else {
        theta.clone()
    };
    state.first = Some(first);
    state.second = Some(second);
    Ok((theta - step)?)
}
/// Elements per parallel work unit of the fused update.
const CHUNK: usize = 16 * 1024;

/// The same update as the tensor version, in one pass over f32 CPU buffers: the tensor
/// version costs about 14 candle ops, each a fresh buffer. `None` when the tensors are not
/// f32 on the CPU (or the fast ops are switched off).
fn update_cpu(
    c: &AdamConfig,
    decoupled: bool,
    theta: &Tensor,
    grad: &Tensor,
    state: &mut ParamState,
) -> Result<Option<Tensor>> {
    let on_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    let moments_ok = [&state.first, &state.second]
        .iter()
        .all(|m| m.as_ref().is_none_or(|m| on_cpu(m) && m.is_contiguous()));
    // Both moments or neither (a partial state takes the general path).
    let paired = state.first.is_some() == state.second.is_some();
    if !(fast_cpu_ops() && on_cpu(theta) && on_cpu(grad) && moments_ok && paired) {
        return Ok(None);
    }
    let (theta_c, grad_c) = (theta.contiguous()?, grad.contiguous()?);
    let theta_s = CpuSlice::new(&theta_c, "adam parameter")?;
    let grad_s = CpuSlice::new(&grad_c, "adam gradient")?;
    let first_s = state
        .first
        .as_ref()
        .map(|m| CpuSlice::new(m, "adam first moment"))
        .transpose()?;
    let second_s = state
        .second
        .as_ref()
        .map(|v| CpuSlice::new(v, "adam second moment"))
        .transpose()?;
    let (th, gr) = (theta_s.as_slice(), grad_s.as_slice());
    let (m_old, v_old) = (
        first_s.as_ref().map(|m| m.as_slice()),
        second_s.as_ref().map(|v| v.as_slice()),
    );
    let t = (state.steps + 1) as i32;
    let f = |x: f64| x as f32;
    let (b1, b2, eps, wd) = (f(c.beta1), f(c.beta2), f(c.eps), f(c.weight_decay));
    let inv_bias2 = f(1.0 / (1.0 - c.beta2.powi(t)));
    let step_size = f(c.lr / (1.0 - c.beta1.powi(t)));
    let shrink = if decoupled && c.weight_decay > 0.0 {
        f(1.0 - c.lr * c.weight_decay)
    } else {
        1.0
    };
    let coupled_wd = if !decoupled && c.weight_decay > 0.0 {
        wd
    } else {
        0.0
    };
    let n = th.len();
    let (mut new_theta, mut m_new, mut v_new) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    let update_chunk = |start: usize, th_out: &mut [f32], m_out: &mut [f32], v_out: &mut [f32]| {
        let end = start + th_out.len();
        let (th, gr) = (&th[start..end], &gr[start..end]);
        // Moments from the previous step, or zero at the first (one loop each, branch-free,
        // so that both vectorise).
        match (m_old, v_old) {
            (Some(m_old), Some(v_old)) => {
                let (m_old, v_old) = (&m_old[start..end], &v_old[start..end]);
                for j in 0..th_out.len() {
                    let g = gr[j] + coupled_wd * th[j];
                    let m = b1 * m_old[j] + (1.0 - b1) * g;
                    let v = b2 * v_old[j] + (1.0 - b2) * (g * g);
                    m_out[j] = m;
                    v_out[j] = v;
                    th_out[j] = shrink * th[j] - step_size * m / ((v * inv_bias2).sqrt() + eps);
                }
            }
            _ => {
                for j in 0..th_out.len() {
                    let g = gr[j] + coupled_wd * th[j];
                    let m = (1.0 - b1) * g;
                    let v = (1.0 - b2) * (g * g);
                    m_out[j] = m;
                    v_out[j] = v;
                    th_out[j] = shrink * th[j] - step_size * m / ((v * inv_bias2).sqrt() + eps);
                }
            }
        }
    };
    if n >= 4 * CHUNK {
        with_threadpool(|| {
            new_theta
                .par_chunks_mut(CHUNK)
                .zip(m_new.par_chunks_mut(CHUNK))
                .zip(v_new.par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(k, ((a, b), c))| update_chunk(k * CHUNK, a, b, c))
        });
    } else {
        update_chunk(0, &mut new_theta, &mut m_new, &mut v_new);
    }
    drop((theta_s, grad_s, first_s, second_s));
    let shape = theta.shape();
    state.steps += 1;
    state.first = Some(Tensor::from_vec(m_new, shape, &Device::Cpu)?);
    state.second = Some(Tensor::from_vec(v_new, shape, &Device::Cpu)?);
    Ok(Some(Tensor::from_vec(new_theta, shape, &Device::Cpu)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fused_cpu_update_matches_the_tensor_ops() -> Result<()> {
        let dev = Device::Cpu;
        let n = 5 * CHUNK + 3; // parallel chunks and a ragged end
        for (decoupled, weight_decay) in [(false, 0.0), (false, 0.01), (true, 0.1)] {
            let c = AdamConfig {
                lr: 0.01,
                weight_decay,
                ..AdamConfig::default()
            };
            let (mut fused, mut tensors) = (ParamState::default(), ParamState::default());
            let mut theta_f = Tensor::randn(0f32, 1.0, n, &dev)?;
            let mut theta_t = theta_f.clone();
            for _ in 0..3 {
                let grad = Tensor::randn(0f32, 1.0, n, &dev)?;
                theta_f = update_cpu(&c, decoupled, &theta_f, &grad, &mut fused)?.expect("cpu f32");
                theta_t = update_tensors(&c, decoupled, &theta_t, &grad, &mut tensors)?;
            }
            for (a, b) in [
                (&theta_f, &theta_t),
                (
                    fused.first.as_ref().expect("m"),
                    tensors.first.as_ref().expect("m"),
                ),
                (
                    fused.second.as_ref().expect("v"),
                    tensors.second.as_ref().expect("v"),
                ),
            ] {
                let diff = (a - b)?.abs()?.max(0)?.to_scalar::<f32>()?;
                assert!(
                    diff < 1e-5,
                    "decoupled={decoupled} wd={weight_decay}: {diff}"
                );
            }
            assert_eq!(fused.steps, 3);
        }
        Ok(())
    }
}
