//! Helpers of the strategies that work on the full gradient rows (K x d) and the losses:
//! the [`Aggregator`] trait, input checks, small linear algebra and a seeded generator for
//! the randomised methods' own tests.
//!
//! Conventions used throughout the crate:
//! * `rows` is a slice of `K` per-task gradients, each of length `d` (the Jacobian, one row per task).
//! * `losses` is a slice of `K` per-task loss values (only read by methods that need them).
//! * The Gramian is the `K x K` matrix `G[i][j] = rows[i] . rows[j]`.

pub use super::common::Aggregate;

/// A gradient aggregator: turns the per-task gradients (and, for some methods, the losses) of one
/// training step into an update. Methods that need randomness draw it from an internal
/// [`StrategyRng`](crate::weighting::StrategyRng) when called through this trait; each method also has an entry point
/// taking the draws explicitly.
pub trait Aggregator {
    /// Aggregates `rows` (`K` gradients of length `d`); `losses` (length `K`) is ignored by methods
    /// that do not read losses (pass `&[]`).
    fn aggregate(&mut self, rows: &[Vec<f64>], losses: &[f64]) -> Result<Aggregate, String>;
}

/// Checks that `rows` is a non-empty `K x d` matrix of finite numbers and returns `(K, d)`.
pub fn check_rows(rows: &[Vec<f64>]) -> Result<(usize, usize), String> {
    let k = rows.len();
    if k == 0 {
        return Err("rows: expected at least one task gradient, got 0 rows".to_string());
    }
    let d = rows[0].len();
    if d == 0 {
        return Err("rows: gradients have length 0".to_string());
    }
    for (i, r) in rows.iter().enumerate() {
        if r.len() != d {
            return Err(format!(
                "rows: row {i} has length {} but row 0 has length {d}",
                r.len()
            ));
        }
        if let Some((j, v)) = r.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(format!("rows: entry [{i}][{j}] = {v} is not finite"));
        }
    }
    Ok((k, d))
}

/// Checks that `values` has length `k` and finite entries; `name` is used in the error message.
pub fn check_vec(name: &str, values: &[f64], k: usize) -> Result<(), String> {
    if values.len() != k {
        return Err(format!(
            "{name}: expected {k} values (one per task), got {}",
            values.len()
        ));
    }
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(format!("{name}: entry {i} = {v} is not finite"));
    }
    Ok(())
}

/// Checks that `values` has length `k` and strictly positive finite entries.
pub fn check_positive(name: &str, values: &[f64], k: usize) -> Result<(), String> {
    check_vec(name, values, k)?;
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| **v <= 0.0) {
        return Err(format!("{name}: entry {i} = {v} must be > 0"));
    }
    Ok(())
}

/// Checks that `m` is a `k x k` matrix of finite numbers.
pub fn check_square(name: &str, m: &[Vec<f64>], k: usize) -> Result<(), String> {
    if m.len() != k {
        return Err(format!("{name}: expected {k} rows, got {}", m.len()));
    }
    for (i, r) in m.iter().enumerate() {
        if r.len() != k {
            return Err(format!(
                "{name}: row {i} has length {}, expected {k}",
                r.len()
            ));
        }
        if let Some((j, v)) = r.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(format!("{name}: entry [{i}][{j}] = {v} is not finite"));
        }
    }
    Ok(())
}

/// Dot product of two equal-length slices (extra entries of the longer one are ignored).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Squared Euclidean norm.
pub fn norm_sq(a: &[f64]) -> f64 {
    dot(a, a)
}

/// Euclidean norm.
pub fn norm(a: &[f64]) -> f64 {
    norm_sq(a).sqrt()
}

/// The Gramian `G[i][j] = rows[i] . rows[j]` (`K x K`, symmetric positive semi-definite).
pub fn gramian(rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let k = rows.len();
    let mut g = vec![vec![0.0; k]; k];
    for i in 0..k {
        for j in i..k {
            let v = dot(&rows[i], &rows[j]);
            g[i][j] = v;
            g[j][i] = v;
        }
    }
    g
}

/// Matrix-vector product `m v` for a square matrix stored by rows.
pub fn mat_vec(m: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
    m.iter().map(|r| dot(r, v)).collect()
}

/// Numerically stable softmax.
pub fn softmax(x: &[f64]) -> Vec<f64> {
    let mx = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - mx).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting (`a` is `n x n`), like an LU
/// solve. Errors when a pivot is exactly zero or not finite (an ill-conditioned but non-singular
/// matrix is solved as is, as `torch.inverse` would).
pub fn solve_linear(a: &[Vec<f64>], b: &[f64]) -> Result<Vec<f64>, String> {
    let n = b.len();
    if a.len() != n || a.iter().any(|r| r.len() != n) {
        return Err(format!("solve_linear: matrix is not {n} x {n}"));
    }
    let mut m: Vec<Vec<f64>> = a
        .iter()
        .zip(b)
        .map(|(r, &bi)| {
            let mut row = r.clone();
            row.push(bi);
            row
        })
        .collect();
    let scale = a
        .iter()
        .flat_map(|r| r.iter())
        .fold(0.0_f64, |acc, v| acc.max(v.abs()));
    for col in 0..n {
        let mut piv = col;
        for r in col + 1..n {
            if m[r][col].abs() > m[piv][col].abs() {
                piv = r;
            }
        }
        if m[piv][col] == 0.0 || !m[piv][col].is_finite() || scale == 0.0 {
            return Err(format!(
                "solve_linear: matrix is singular (pivot {} at column {col})",
                m[piv][col]
            ));
        }
        m.swap(col, piv);
        for r in col + 1..n {
            let f = m[r][col] / m[col][col];
            if f != 0.0 {
                let (top, bottom) = m.split_at_mut(r);
                let pivot_row = &top[col];
                for (x, p) in bottom[0][col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= f * p;
                }
            }
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = m[i][n];
        for j in i + 1..n {
            s -= m[i][j] * x[j];
        }
        x[i] = s / m[i][i];
    }
    Ok(x)
}

/// Checks that `order` only holds task indices below `k`; `name` is used in the error message.
pub fn check_order(name: &str, order: &[usize], k: usize) -> Result<(), String> {
    if let Some(&bad) = order.iter().find(|&&j| j >= k) {
        return Err(format!(
            "{name}: task index {bad} out of range for {k} tasks"
        ));
    }
    Ok(())
}
