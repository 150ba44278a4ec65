//! 2-D convolution + bias (+ ReLU) (+ max-pool) as one candle custom op: im2col + gemm per
//! image, in parallel over the batch, with its own backward (both gradients are gemms too).

use std::sync::OnceLock;

use candle_core::utils::with_threadpool;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::buffers;
use super::cpu::{gradient_tensor, relu_gradient, storage_f32, CpuSlice};
use super::gemm::{matmul, MatRef};
use super::im2col::ConvGeometry;

/// The fused op. `keep_patches` caches each image's patch matrix from the forward pass for
/// the weight gradient; with `pool`, the position of each window's maximum is kept for the
/// backward pass.
pub(crate) struct Conv2dOp {
    geometry: ConvGeometry,
    relu: bool,
    pool: Option<usize>,
    keep_patches: bool,
    /// Threads of each image's gemm: 1 when the batch is the parallel axis.
    gemm_threads: usize,
    patches: OnceLock<Vec<f32>>,
    winners: OnceLock<Vec<u32>>,
}

/// Scratch buffers of one worker in the forward pass.
struct ForwardScratch {
    cols: Vec<f32>,
    conv: Vec<f32>,
}

/// Largest patch cache (elements, all images) kept from the forward pass for the backward
/// one: 16 Mi elements, 64 MiB. Larger batches (an evaluation pass, say) recompute each
/// image's patches in the backward pass instead.
const MAX_CACHED_PATCHES: usize = 16 << 20;

impl Conv2dOp {
    /// `weight_needs_grad`: whether the weight takes part in backward (then the patches are
    /// cached, within [`MAX_CACHED_PATCHES`]).
    pub fn new(
        geometry: ConvGeometry,
        relu: bool,
        pool: Option<usize>,
        weight_needs_grad: bool,
    ) -> Self {
        // candle's CPU thread pool, which these ops run in, has this many threads.
        let threads = candle_core::utils::get_num_threads();
        Self {
            geometry,
            relu,
            pool,
            keep_patches: weight_needs_grad
                && geometry.batch * geometry.cols_len() <= MAX_CACHED_PATCHES,
            gemm_threads: if geometry.batch < threads { threads } else { 1 },
            patches: OnceLock::new(),
            winners: OnceLock::new(),
        }
    }

    /// Output `(height, width)` after the optional pooling.
    pub fn output_hw(&self) -> (usize, usize) {
        let g = &self.geometry;
        match self.pool {
            Some(k) => (g.out_height / k, g.out_width / k),
            None => (g.out_height, g.out_width),
        }
    }

    fn output_len(&self) -> usize {
        let (h, w) = self.output_hw();
        self.geometry.out_channels * h * w
    }

    /// One image: patches, gemm, bias, ReLU into `conv`; then pooled into `out` (recording
    /// each window's winner in `winners`), or `conv` is `out` itself.
    fn forward_image(&self, x: &[f32], w: &[f32], b: &[f32], cols: &mut [f32], conv: &mut [f32]) {
        let g = &self.geometry;
        g.im2col(x, cols);
        matmul(
            conv,
            false,
            MatRef::row_major(w, g.out_channels, g.patch_len()),
            MatRef::row_major(cols, g.patch_len(), g.out_plane()),
            self.gemm_threads,
        );
        for (plane, &bias) in conv.chunks_mut(g.out_plane()).zip(b) {
            for v in plane {
                *v += bias;
                // `< 0` keeps NaN visible, as candle's relu does.
                if self.relu && *v < 0.0 {
                    *v = 0.0;
                }
            }
        }
    }

    /// Max-pools one image's `conv` output into `out`, recording each window's winner (its
    /// index in `conv`); the first maximum wins (a NaN only when it comes first).
    fn pool_image(&self, k: usize, conv: &[f32], out: &mut [f32], winners: &mut [u32]) {
        let g = &self.geometry;
        let (ph, pw) = self.output_hw();
        let (plane, ow) = (g.out_plane(), g.out_width);
        let rows = out.chunks_mut(pw).zip(winners.chunks_mut(pw));
        for (r, (out_row, win_row)) in rows.enumerate() {
            let (c, py) = (r / ph, r % ph);
            let top = c * plane + py * k * ow;
            for (px, (o, at)) in out_row.iter_mut().zip(win_row.iter_mut()).enumerate() {
                let mut best = top + px * k;
                let mut value = conv[best];
                for y in 0..k {
                    let row = top + y * ow + px * k;
                    for (x, &v) in conv[row..row + k].iter().enumerate() {
                        if v > value {
                            value = v;
                            best = row + x;
                        }
                    }
                }
                *o = value;
                *at = best as u32;
            }
        }
    }

    /// The forward pass over the batch, in parallel over images.
    fn forward_batch(&self, x: &[f32], w: &[f32], b: &[f32], out: &mut [f32]) {
        let g = self.geometry;
        let out_len = self.output_len();
        // Every element is written by im2col: a recycled buffer needs no clearing.
        let mut patches = if self.keep_patches {
            buffers::take(g.batch * g.cols_len())
        } else {
            Vec::new()
        };
        let mut winners = if self.pool.is_some() {
            vec![0u32; g.batch * out_len]
        } else {
            Vec::new()
        };
        let mut patch_slots = optional_chunks(&mut patches, g.cols_len(), g.batch);
        let mut winner_slots = optional_chunks(&mut winners, out_len, g.batch);
        let items: Vec<_> = out
            .chunks_mut(out_len)
            .zip(x.chunks(g.image_len()))
            .zip(patch_slots.drain(..).zip(winner_slots.drain(..)))
            .collect();
        let scratch = || ForwardScratch {
            cols: vec![0f32; if self.keep_patches { 0 } else { g.cols_len() }],
            conv: vec![
                0f32;
                if self.pool.is_some() {
                    g.output_len()
                } else {
                    0
                }
            ],
        };
        items
            .into_par_iter()
            .for_each_init(scratch, |s, ((out_i, x_i), (cols_i, winners_i))| {
                let cols = cols_i.unwrap_or(&mut s.cols);
                match (self.pool, winners_i) {
                    (Some(k), Some(winners_i)) => {
                        self.forward_image(x_i, w, b, cols, &mut s.conv);
                        self.pool_image(k, &s.conv, out_i, winners_i);
                    }
                    _ => self.forward_image(x_i, w, b, cols, out_i),
                }
            });
        // A fresh op per call: the caches are empty, `set` cannot fail.
        if self.keep_patches {
            let _ = self.patches.set(patches);
        }
        if self.pool.is_some() {
            let _ = self.winners.set(winners);
        }
    }
}

impl Drop for Conv2dOp {
    /// The graph that held the op is gone: its patch cache serves the next step's op.
    fn drop(&mut self) {
        if let Some(patches) = self.patches.take() {
            buffers::give_back(patches);
        }
    }
}

/// The sum of `xs` over 8 independent lanes, so that it vectorises (a plain `sum` is one
/// serial chain of additions).
fn lane_sum(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `batch` chunks of `len` elements of `data`, or `batch` `None`s when `data` is empty.
fn optional_chunks<T>(data: &mut [T], len: usize, batch: usize) -> Vec<Option<&mut [T]>> {
    if data.is_empty() {
        (0..batch).map(|_| None).collect()
    } else {
        data.chunks_mut(len).map(Some).collect()
    }
}

/// Images per group of the backward pass's weight and bias sums: the groups are fixed by
/// image index, so the order of the additions does not depend on the thread count.
const IMAGES_PER_PARTIAL: usize = 4;

/// Per-group sums and scratch buffers of the backward pass.
struct Partial {
    dw: Vec<f32>,
    db: Vec<f32>,
    dz: Vec<f32>,
    cols: Vec<f32>,
    dcols: Vec<f32>,
}

impl Partial {
    /// Drops the scratch buffers, keeping the sums (a group's result waits for the merge).
    fn release_scratch(mut self) -> Partial {
        self.dz = Vec::new();
        self.cols = Vec::new();
        self.dcols = Vec::new();
        self
    }

    fn merge(mut self, other: Partial) -> Partial {
        for (a, b) in self.dw.iter_mut().zip(&other.dw) {
            *a += b;
        }
        for (a, b) in self.db.iter_mut().zip(&other.db) {
            *a += b;
        }
        self
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "candle-mtl-conv2d"
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
        let g = self.geometry;
        let x = storage_f32(s1, l1, "conv2d input")?;
        let w = storage_f32(s2, l2, "conv2d weight")?;
        let b = storage_f32(s3, l3, "conv2d bias")?;
        let mut out = vec![0f32; g.batch * self.output_len()];
        with_threadpool(|| self.forward_batch(x, w, b, &mut out));
        let (h, w) = self.output_hw();
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.batch, g.out_channels, h, w)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Inputs that are data or frozen (detached) need no gradient: skip their work.
        let (need_x, need_w, need_b) = (x.track_op(), w.track_op(), b.track_op());
        if !(need_x || need_w || need_b) {
            return Ok((None, None, None));
        }
        let g = self.geometry;
        let out_len = self.output_len();
        let grad = grad.contiguous()?;
        let grad = CpuSlice::new(&grad, "conv2d output gradient")?;
        let grad = grad.as_slice();
        let res = CpuSlice::new(res, "conv2d output")?;
        let res = res.as_slice();
        let w_lock = CpuSlice::new(w, "conv2d weight")?;
        let w_data = w_lock.as_slice();
        let x_lock = CpuSlice::new(x, "conv2d input")?;
        let x_data = x_lock.as_slice();
        let patches = self.patches.get().map(Vec::as_slice);
        let winners = self.winners.get().map(Vec::as_slice);

        let mut dx = if need_x {
            vec![0f32; g.batch * g.image_len()]
        } else {
            Vec::new()
        };
        let dx_images = optional_chunks(&mut dx, g.image_len(), g.batch);
        let (dw_len, db_len) = (g.out_channels * g.patch_len(), g.out_channels);
        let scratch = |wanted: bool| {
            if wanted {
                vec![0f32; g.cols_len()]
            } else {
                Vec::new()
            }
        };
        let new_partial = || Partial {
            dw: vec![0f32; if need_w { dw_len } else { 0 }],
            db: vec![0f32; if need_b { db_len } else { 0 }],
            dz: vec![0f32; g.output_len()],
            cols: scratch(need_w && patches.is_none()),
            dcols: scratch(need_x),
        };
        // Images are grouped by index into fixed groups, each summed in image order, and
        // the groups' sums are added in group order: the same floating-point additions on
        // any number of threads (a work-stealing fold would split by the scheduler).
        let mut groups: Vec<(usize, Vec<Option<&mut [f32]>>)> = Vec::new();
        for (i, dx_i) in dx_images.into_iter().enumerate() {
            if i % IMAGES_PER_PARTIAL == 0 {
                groups.push((i, Vec::with_capacity(IMAGES_PER_PARTIAL)));
            }
            if let Some((_, group)) = groups.last_mut() {
                group.push(dx_i);
            }
        }
        let partials: Vec<Partial> = with_threadpool(|| {
            groups
                .into_par_iter()
                .map(|(first, dx_group)| {
                    let mut acc = new_partial();
                    for (j, dx_i) in dx_group.into_iter().enumerate() {
                        let i = first + j;
                        let span = i * out_len..(i + 1) * out_len;
                        let (grad_i, res_i) = (&grad[span.clone()], &res[span.clone()]);
                        // The gradient at the convolution's output, before ReLU (and pooling).
                        match winners {
                            Some(winners) => {
                                acc.dz.fill(0.0);
                                for ((&at, &gr), &y) in winners[span].iter().zip(grad_i).zip(res_i)
                                {
                                    if !self.relu || y > 0.0 {
                                        acc.dz[at as usize] += gr;
                                    }
                                }
                            }
                            None => relu_gradient(self.relu, grad_i, res_i, &mut acc.dz),
                        }
                        let dz = MatRef::row_major(&acc.dz, g.out_channels, g.out_plane());
                        if need_b {
                            for (db, plane) in acc.db.iter_mut().zip(acc.dz.chunks(g.out_plane())) {
                                *db += lane_sum(plane);
                            }
                        }
                        if need_w {
                            let cols = match patches {
                                Some(p) => &p[i * g.cols_len()..(i + 1) * g.cols_len()],
                                None => {
                                    let image = &x_data[i * g.image_len()..(i + 1) * g.image_len()];
                                    g.im2col(image, &mut acc.cols);
                                    &acc.cols
                                }
                            };
                            let cols = MatRef::row_major(cols, g.patch_len(), g.out_plane());
                            matmul(&mut acc.dw, true, dz, cols.t(), self.gemm_threads);
                        }
                        if let Some(dx_i) = dx_i {
                            let w = MatRef::row_major(w_data, g.out_channels, g.patch_len());
                            matmul(&mut acc.dcols, false, w.t(), dz, self.gemm_threads);
                            g.col2im_add(&acc.dcols, dx_i);
                        }
                    }
                    acc.release_scratch()
                })
                .collect()
        });
        let total = partials.into_iter().reduce(Partial::merge);
        let Some(total) = total else {
            return Ok((None, None, None));
        };
        Ok((
            gradient_tensor(need_x, dx, x)?,
            gradient_tensor(need_w, total.dw, w)?,
            gradient_tensor(need_b, total.db, b)?,
        ))
    }
}
