//! A fully connected layer `relu?(x W^T + b)` as one candle custom op: one gemm forward with
//! bias and ReLU in the same pass, two gemms backward, nothing for inputs that need no
//! gradient. candle builds it from a transpose, a matmul, a broadcast add and a ReLU, each
//! with its own gradient buffer.

use candle_core::utils::with_threadpool;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{gradient_tensor, relu_gradient, storage_f32, CpuSlice};
use super::gemm::{matmul, MatRef};

/// `rows x inputs` times the transpose of `outputs x inputs`, plus the bias.
pub(crate) struct LinearOp {
    pub rows: usize,
    pub inputs: usize,
    pub outputs: usize,
    pub relu: bool,
}

impl LinearOp {
    fn threads() -> usize {
        candle_core::utils::get_num_threads()
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "candle-mtl-linear"
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
        let x = storage_f32(s1, l1, "linear input")?;
        let w = storage_f32(s2, l2, "linear weight")?;
        let b = storage_f32(s3, l3, "linear bias")?;
        let (n, o) = (self.rows, self.outputs);
        let mut y = vec![0f32; n * o];
        with_threadpool(|| {
            matmul(
                &mut y,
                false,
                MatRef::row_major(x, n, self.inputs),
                MatRef::row_major(w, o, self.inputs).t(),
                Self::threads(),
            );
            y.par_chunks_mut(o.max(1)).for_each(|row| {
                for (v, &bias) in row.iter_mut().zip(b) {
                    *v += bias;
                    // `< 0` keeps NaN visible, as candle's relu does.
                    if self.relu && *v < 0.0 {
                        *v = 0.0;
                    }
                }
            });
        });
        Ok((CpuStorage::F32(y), Shape::from((n, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (need_x, need_w, need_b) = (x.track_op(), w.track_op(), b.track_op());
        if !(need_x || need_w || need_b) {
            return Ok((None, None, None));
        }
        let (n, i, o) = (self.rows, self.inputs, self.outputs);
        let grad = grad.contiguous()?;
        let grad = CpuSlice::new(&grad, "linear output gradient")?;
        let res = CpuSlice::new(res, "linear output")?;
        // The gradient before the ReLU.
        let mut dz = vec![0f32; n * o];
        relu_gradient(self.relu, grad.as_slice(), res.as_slice(), &mut dz);
        let dz_m = MatRef::row_major(&dz, n, o);
        let dx = if need_x {
            let w = CpuSlice::new(w, "linear weight")?;
            let mut dx = vec![0f32; n * i];
            let w = MatRef::row_major(w.as_slice(), o, i);
            with_threadpool(|| matmul(&mut dx, false, dz_m, w, Self::threads()));
            dx
        } else {
            Vec::new()
        };
        let dw = if need_w {
            let x_s = CpuSlice::new(x, "linear input")?;
            let mut dw = vec![0f32; o * i];
            let xs = MatRef::row_major(x_s.as_slice(), n, i);
            with_threadpool(|| matmul(&mut dw, false, dz_m.t(), xs, Self::threads()));
            dw
        } else {
            Vec::new()
        };
        let mut db = vec![0f32; if need_b { o } else { 0 }];
        for row in dz.chunks(o.max(1)) {
            for (d, v) in db.iter_mut().zip(row) {
                *d += v;
            }
        }
        Ok((
            gradient_tensor(need_x, dx, x)?,
            gradient_tensor(need_w, dw, w)?,
            gradient_tensor(need_b, db, b)?,
        ))
    }
}
