//! Batch normalisation's affine map `y = (x - mean) * inv_std * gamma + beta` over channel
//! planes, with its backward pass, as one CPU op.
//!
//! With batch statistics (training) the backward pass is the full one, through the mean and
//! variance: `dx = gamma * inv_std / M * (M dy - sum dy - x_hat sum(dy x_hat))` per channel
//! over its `M = N * H * W` values. With fixed statistics (evaluation, frozen layers)
//! `dx = dy * gamma * inv_std`. Every per-channel sum runs over the channel's values in index
//! order by one thread (in f64), so results do not depend on the thread count.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{gradient_tensor, storage_f32, CpuSlice};

/// Per-channel mean and biased variance of `x` laid out `(N, C, plane)`, summed in f64 in
/// index order.
pub(crate) fn channel_statistics(
    x: &[f32],
    n: usize,
    c: usize,
    plane: usize,
) -> (Vec<f32>, Vec<f32>) {
    let m = (n * plane) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let values = || {
                (0..n).flat_map(move |i| x[(i * c + ch) * plane..(i * c + ch + 1) * plane].iter())
            };
            let mean = values().map(|&v| f64::from(v)).sum::<f64>() / m;
            let var = values()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / m;
            (mean as f32, var as f32)
        })
        .unzip()
}

/// The op; `mean` and `inv_std` are per channel, computed before (batch statistics) or the
/// running ones.
pub(crate) struct BatchNormOp {
    pub n: usize,
    pub c: usize,
    pub plane: usize,
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
    /// Whether `mean` and `inv_std` are the batch's own (the backward pass then goes through
    /// them).
    pub batch_statistics: bool,
}

impl BatchNormOp {
    /// Per channel: the sum of `dy` and of `dy * x_hat`, in index order.
    fn channel_sums(&self, x: &[f32], dy: &[f32]) -> Vec<(f64, f64)> {
        let (n, c, plane) = (self.n, self.c, self.plane);
        (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mean, inv) = (self.mean[ch], self.inv_std[ch]);
                let (mut sum_dy, mut sum_dy_xhat) = (0f64, 0f64);
                for i in 0..n {
                    let range = (i * c + ch) * plane..(i * c + ch + 1) * plane;
                    for (&g, &v) in dy[range.clone()].iter().zip(&x[range]) {
                        sum_dy += f64::from(g);
                        sum_dy_xhat += f64::from(g) * f64::from((v - mean) * inv);
                    }
                }
                (sum_dy, sum_dy_xhat)
            })
            .collect()
    }
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "candle-mtl-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = storage_f32(s1, l1, "batch norm input")?;
        let gamma = storage_f32(s2, l2, "batch norm weight")?;
        let beta = storage_f32(s3, l3, "batch norm bias")?;
        let (c, plane) = (self.c, self.plane.max(1));
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(plane)
            .zip(x.par_chunks(plane))
            .enumerate()
            .for_each(|(p, (out, input))| {
                let ch = p % c;
                let scale = self.inv_std[ch] * gamma[ch];
                let (mean, shift) = (self.mean[ch], beta[ch]);
                for (o, &v) in out.iter_mut().zip(input) {
                    *o = (v - mean) * scale + shift;
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (need_x, need_g, need_b) = (x.track_op(), gamma.track_op(), beta.track_op());
        if !(need_x || need_g || need_b) {
            return Ok((None, None, None));
        }
        let grad = grad.contiguous()?;
        let dy = CpuSlice::new(&grad, "batch norm output gradient")?;
        let xs = CpuSlice::new(x, "batch norm input")?;
        let g = CpuSlice::new(gamma, "batch norm weight")?;
        let (dy, xs, g) = (dy.as_slice(), xs.as_slice(), g.as_slice());
        let sums = self.channel_sums(xs, dy);
        let (c, plane) = (self.c, self.plane.max(1));
        let dx = if need_x {
            let m = (self.n * self.plane) as f32;
            let mut dx = vec![0f32; xs.len()];
            dx.par_chunks_mut(plane)
                .zip(dy.par_chunks(plane).zip(xs.par_chunks(plane)))
                .enumerate()
                .for_each(|(p, (out, (dy, x)))| {
                    let ch = p % c;
                    let (mean, inv) = (self.mean[ch], self.inv_std[ch]);
                    let k = g[ch] * inv;
                    if self.batch_statistics {
                        let (sum_dy, sum_dy_xhat) = (sums[ch].0 as f32, sums[ch].1 as f32);
                        for ((o, &d), &v) in out.iter_mut().zip(dy).zip(x) {
                            let xhat = (v - mean) * inv;
                            *o = k / m * (m * d - sum_dy - xhat * sum_dy_xhat);
                        }
                    } else {
                        for (o, &d) in out.iter_mut().zip(dy) {
                            *o = k * d;
                        }
                    }
                });
            dx
        } else {
            Vec::new()
        };
        let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
        let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
        Ok((
            gradient_tensor(need_x, dx, x)?,
            gradient_tensor(need_g, dgamma, gamma)?,
            gradient_tensor(need_b, dbeta, beta)?,
        ))
    }
}
