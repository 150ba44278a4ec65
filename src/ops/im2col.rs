//! Patch extraction ("im2col") and its adjoint ("col2im") for one image, which turn a
//! convolution and both of its gradients into matrix products.

/// The sizes of one 2-D convolution (no dilation, no groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub out_channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub padding: usize,
    pub stride: usize,
    pub out_height: usize,
    pub out_width: usize,
}

impl ConvGeometry {
    /// Rows of one image's patch matrix: `in_channels * kernel_h * kernel_w`.
    pub fn patch_len(&self) -> usize {
        self.in_channels * self.kernel_h * self.kernel_w
    }

    /// Output pixels per channel: `out_height * out_width`.
    pub fn out_plane(&self) -> usize {
        self.out_height * self.out_width
    }

    /// Elements of one input image.
    pub fn image_len(&self) -> usize {
        self.in_channels * self.height * self.width
    }

    /// Elements of one output image.
    pub fn output_len(&self) -> usize {
        self.out_channels * self.out_plane()
    }

    /// Elements of one image's patch matrix.
    pub fn cols_len(&self) -> usize {
        self.patch_len() * self.out_plane()
    }

    /// The output positions `o` along one axis whose input position `o * stride + offset -
    /// padding` lies inside `0..size`, as a half-open range.
    fn valid_outputs(&self, offset: usize, size: usize, outputs: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.padding);
        let lo = if p > offset {
            (p - offset).div_ceil(s)
        } else {
            0
        };
        let hi = if size + p > offset {
            ((size - 1 + p - offset) / s + 1).min(outputs)
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// Fills `cols` (`patch_len x out_plane`, row-major; row `(c * kh + ki) * kw + kj`) with the
    /// patches of one image `x` (`in_channels x height x width`); padding reads as zero.
    pub fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        let (kh, kw, s, p) = (self.kernel_h, self.kernel_w, self.stride, self.padding);
        let (ow, plane) = (self.out_width, self.out_plane());
        for c in 0..self.in_channels {
            let image = &x[c * self.height * self.width..(c + 1) * self.height * self.width];
            for ki in 0..kh {
                let (oy_lo, oy_hi) = self.valid_outputs(ki, self.height, self.out_height);
                for kj in 0..kw {
                    let (ox_lo, ox_hi) = self.valid_outputs(kj, self.width, self.out_width);
                    let row = (c * kh + ki) * kw + kj;
                    let dst = &mut cols[row * plane..(row + 1) * plane];
                    dst.fill(0.0);
                    for oy in oy_lo..oy_hi {
                        let iy = oy * s + ki - p;
                        let src = &image[iy * self.width..(iy + 1) * self.width];
                        let out = &mut dst[oy * ow..(oy + 1) * ow];
                        if s == 1 {
                            let ix0 = ox_lo + kj - p;
                            out[ox_lo..ox_hi].copy_from_slice(&src[ix0..ix0 + ox_hi - ox_lo]);
                        } else {
                            for ox in ox_lo..ox_hi {
                                out[ox] = src[ox * s + kj - p];
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds the patch gradients `cols` (laid out as by [`Self::im2col`]) back onto the
    /// image gradient `dx` (the adjoint of `im2col`).
    pub fn col2im_add(&self, cols: &[f32], dx: &mut [f32]) {
        let (kh, kw, s, p) = (self.kernel_h, self.kernel_w, self.stride, self.padding);
        let (ow, plane) = (self.out_width, self.out_plane());
        for c in 0..self.in_channels {
            let image = &mut dx[c * self.height * self.width..(c + 1) * self.height * self.width];
            for ki in 0..kh {
                let (oy_lo, oy_hi) = self.valid_outputs(ki, self.height, self.out_height);
                for kj in 0..kw {
                    let (ox_lo, ox_hi) = self.valid_outputs(kj, self.width, self.out_width);
                    let row = (c * kh + ki) * kw + kj;
                    let src = &cols[row * plane..(row + 1) * plane];
                    for oy in oy_lo..oy_hi {
                        let iy = oy * s + ki - p;
                        let dst = &mut image[iy * self.width..(iy + 1) * self.width];
                        let grad = &src[oy * ow..(oy + 1) * ow];
                        if s == 1 {
                            let ix0 = ox_lo + kj - p;
                            for (d, g) in dst[ix0..ix0 + ox_hi - ox_lo]
                                .iter_mut()
                                .zip(&grad[ox_lo..ox_hi])
                            {
                                *d += g;
                            }
                        } else {
                            for ox in ox_lo..ox_hi {
                                dst[ox * s + kj - p] += grad[ox];
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(
        h: usize,
        w: usize,
        (kh, kw): (usize, usize),
        padding: usize,
        stride: usize,
    ) -> ConvGeometry {
        ConvGeometry {
            batch: 1,
            in_channels: 2,
            height: h,
            width: w,
            out_channels: 1,
            kernel_h: kh,
            kernel_w: kw,
            padding,
            stride,
            out_height: (h + 2 * padding - kh) / stride + 1,
            out_width: (w + 2 * padding - kw) / stride + 1,
        }
    }

    /// The patch matrix entry by the definition: zero outside the image.
    fn patch(g: &ConvGeometry, x: &[f32], row: usize, oy: usize, ox: usize) -> f32 {
        let (c, ki, kj) = (
            row / (g.kernel_h * g.kernel_w),
            (row / g.kernel_w) % g.kernel_h,
            row % g.kernel_w,
        );
        let iy = (oy * g.stride + ki) as isize - g.padding as isize;
        let ix = (ox * g.stride + kj) as isize - g.padding as isize;
        if iy < 0 || ix < 0 || iy >= g.height as isize || ix >= g.width as isize {
            0.0
        } else {
            x[(c * g.height + iy as usize) * g.width + ix as usize]
        }
    }

    #[test]
    fn patches_and_their_adjoint_match_the_definition() {
        for (h, w, (kh, kw), p, s) in [
            (5, 7, (3, 3), 1, 1),
            (6, 5, (3, 3), 0, 2),
            (4, 4, (5, 5), 2, 1),
            (7, 3, (2, 2), 1, 3),
            (3, 3, (1, 1), 0, 1),
            (6, 7, (1, 3), 1, 1),
            (8, 5, (4, 2), 0, 2),
        ] {
            let g = geometry(h, w, (kh, kw), p, s);
            let x: Vec<f32> = (0..g.image_len()).map(|i| i as f32 + 1.0).collect();
            let mut cols = vec![f32::NAN; g.cols_len()];
            g.im2col(&x, &mut cols);
            for row in 0..g.patch_len() {
                for oy in 0..g.out_height {
                    for ox in 0..g.out_width {
                        let got = cols[row * g.out_plane() + oy * g.out_width + ox];
                        assert_eq!(
                            got,
                            patch(&g, &x, row, oy, ox),
                            "{h}x{w} k{kh}x{kw} p{p} s{s}"
                        );
                    }
                }
            }
            // <im2col(x), y> == <x, col2im(y)> for the adjoint.
            let y: Vec<f32> = (0..g.cols_len())
                .map(|i| ((i * 7) % 11) as f32 - 5.0)
                .collect();
            let mut back = vec![0f32; g.image_len()];
            g.col2im_add(&y, &mut back);
            let lhs: f32 = cols.iter().zip(&y).map(|(a, b)| a * b).sum();
            let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() <= 1e-3 * lhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
        }
    }
}
