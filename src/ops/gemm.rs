//! A bounds-checked front to the `gemm` crate's f32 matrix product (the one candle's CPU
//! backend uses), taking strided views so transposes cost nothing.

use gemm::Parallelism;

/// A read-only strided view of a matrix stored in a slice: element `(i, j)` is
/// `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, as a view of the same memory.
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst = a @ b` (or `dst += a @ b` with `accumulate`), `dst` row-major `a.rows x b.cols`.
/// `threads > 1` lets the gemm split the product over the rayon pool.
///
/// # Panics
/// When the shapes disagree or a view reaches past its slice (a bug in the caller, never
/// user input: the ops check shapes before they get here).
pub(crate) fn matmul(
    dst: &mut [f32],
    accumulate: bool,
    a: MatRef<'_>,
    b: MatRef<'_>,
    threads: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions differ");
    assert!(dst.len() >= m * n, "gemm: destination too small");
    assert!(a.fits() && b.fits(), "gemm: view past the end of its slice");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every index the product touches inside `dst`, `a.data`
    // and `b.data`; `dst` is borrowed mutably, so it cannot alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
        let mut out = vec![0f32; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols)
                    .map(|p| {
                        a.data[i * a.row_stride + p * a.col_stride]
                            * b.data[p * b.row_stride + j * b.col_stride]
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn strided_products_match_the_definition() {
        let a: Vec<f32> = (0..35).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..35).map(|i| (i as f32 * 0.11).cos()).collect();
        let a = MatRef::row_major(&a, 5, 7);
        let b = MatRef::row_major(&b, 7, 5);
        for (x, y) in [(a, b), (b.t(), a.t()), (a, a.t()), (b.t(), b)] {
            let mut dst = vec![0f32; x.rows * y.cols];
            matmul(&mut dst, false, x, y, 2);
            let want = naive(x, y);
            for (d, w) in dst.iter().zip(&want) {
                assert!((d - w).abs() < 1e-5);
            }
            matmul(&mut dst, true, x, y, 1);
            for (d, w) in dst.iter().zip(&want) {
                assert!((d - 2.0 * w).abs() < 1e-5);
            }
        }
    }
}
