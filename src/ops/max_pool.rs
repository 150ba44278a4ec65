//! 2-D max pooling (no padding) as a candle custom op whose backward routes each output's
//! gradient to the input that won its window, in one pass and in parallel over planes.

use candle_core::utils::with_threadpool;
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{storage_f32, CpuSlice};

/// Max pooling over `kernel x kernel` windows every `stride` pixels.
pub(crate) struct MaxPool2dOp {
    pub kernel: usize,
    pub stride: usize,
    /// Input `(N, C, H, W)`.
    pub dims: [usize; 4],
}

impl MaxPool2dOp {
    pub fn out_size(&self, size: usize) -> usize {
        (size - self.kernel) / self.stride + 1
    }

    /// The index (within the plane) of the first maximum of the window at `(oy, ox)`; NaN
    /// wins, as it propagates in the forward pass.
    fn argmax(&self, plane: &[f32], width: usize, oy: usize, ox: usize) -> usize {
        let (y0, x0) = (oy * self.stride, ox * self.stride);
        let mut best = y0 * width + x0;
        for y in y0..y0 + self.kernel {
            for x in x0..x0 + self.kernel {
                let i = y * width + x;
                let (v, m) = (plane[i], plane[best]);
                if v > m || (v.is_nan() && !m.is_nan()) {
                    best = i;
                }
            }
        }
        best
    }
}

impl CustomOp1 for MaxPool2dOp {
    fn name(&self) -> &'static str {
        "candle-mtl-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let [n, c, h, w] = self.dims;
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let x = storage_f32(s, l, "max-pool input")?;
        let mut out = vec![0f32; n * c * oh * ow];
        with_threadpool(|| {
            out.par_chunks_mut(oh * ow)
                .zip(x.par_chunks(h * w))
                .for_each(|(o, plane)| {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            o[oy * ow + ox] = plane[self.argmax(plane, w, oy, ox)];
                        }
                    }
                })
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        let [_, _, h, w] = self.dims;
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let grad = grad.contiguous()?;
        let grad = CpuSlice::new(&grad, "max-pool output gradient")?;
        let x = CpuSlice::new(arg, "max-pool input")?;
        let mut dx = vec![0f32; x.as_slice().len()];
        let (xs, gs) = (x.as_slice(), grad.as_slice());
        with_threadpool(|| {
            dx.par_chunks_mut(h * w)
                .zip(xs.par_chunks(h * w))
                .zip(gs.par_chunks(oh * ow))
                .for_each(|((d, plane), g)| {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            d[self.argmax(plane, w, oy, ox)] += g[oy * ow + ox];
                        }
                    }
                })
        });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), &Device::Cpu)?))
    }
}
