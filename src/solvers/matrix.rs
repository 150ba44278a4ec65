//! Small dense-matrix helpers (K x K Gramians, K x d gradient rows) in plain `f64`: the one
//! set every solver and gradient-based strategy uses.
//!
//! Conventions: `rows` is a slice of `K` per-task gradients of length `d` (the Jacobian, one row
//! per task); a Gramian is the `K x K` matrix `G[i][j] = rows[i] . rows[j]`. Checks return
//! `Err` with a message naming the bad entry and its value.

/// Checks that `rows` is a non-empty K x d matrix of finite numbers with d >= 1.
pub fn check_rows(rows: &[Vec<f64>]) -> Result<(usize, usize), String> {
    let k = rows.len();
    if k == 0 {
        return Err("the gradient matrix has no rows (K = 0)".to_string());
    }
    let d = rows[0].len();
    if d == 0 {
        return Err("the gradient rows are empty (d = 0)".to_string());
    }
    for (i, r) in rows.iter().enumerate() {
        if r.len() != d {
            return Err(format!(
                "gradient row {i} has length {} but row 0 has length {d}",
                r.len()
            ));
        }
        if let Some(j) = r.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "gradient entry [{i}][{j}] is not finite ({})",
                r[j]
            ));
        }
    }
    Ok((k, d))
}

/// Checks that `m` is a non-empty square matrix of finite numbers and returns its size.
pub fn check_square(m: &[Vec<f64>], name: &str) -> Result<usize, String> {
    let k = m.len();
    if k == 0 {
        return Err(format!("the {name} is empty (K = 0)"));
    }
    for (i, r) in m.iter().enumerate() {
        if r.len() != k {
            return Err(format!(
                "the {name} must be square: row {i} has length {} but there are {k} rows",
                r.len()
            ));
        }
        if let Some(j) = r.iter().position(|x| !x.is_finite()) {
            return Err(format!("{name} entry [{i}][{j}] is not finite ({})", r[j]));
        }
    }
    Ok(k)
}

/// Checks that `g` is a square, finite, symmetric (to a relative 1e-8) matrix: a Gramian.
pub fn check_gramian(g: &[Vec<f64>]) -> Result<usize, String> {
    let k = check_square(g, "Gramian")?;
    let scale = g
        .iter()
        .flat_map(|r| r.iter())
        .fold(0.0_f64, |a, &x| a.max(x.abs()));
    for i in 0..k {
        if g[i][i] < -1e-12 * scale.max(f64::MIN_POSITIVE) {
            return Err(format!(
                "Gramian diagonal entry [{i}][{i}] is negative ({})",
                g[i][i]
            ));
        }
        for j in 0..i {
            if (g[i][j] - g[j][i]).abs() > 1e-8 * scale.max(1e-300) {
                return Err(format!(
                    "Gramian is not symmetric: [{i}][{j}] = {} but [{j}][{i}] = {}",
                    g[i][j], g[j][i]
                ));
            }
        }
    }
    Ok(k)
}

/// Checks that a vector has length `k` and finite entries.
pub fn check_vector(v: &[f64], k: usize, name: &str) -> Result<(), String> {
    if v.len() != k {
        return Err(format!(
            "{name} has length {} but {k} was expected",
            v.len()
        ));
    }
    if let Some(j) = v.iter().position(|x| !x.is_finite()) {
        return Err(format!("{name}[{j}] is not finite ({})", v[j]));
    }
    Ok(())
}

/// Checks that `v` has length `k` and finite, strictly positive entries.
pub fn check_positive(v: &[f64], k: usize, name: &str) -> Result<(), String> {
    check_vector(v, k, name)?;
    if let Some(j) = v.iter().position(|x| *x <= 0.0) {
        return Err(format!("{name}[{j}] must be > 0 ({})", v[j]));
    }
    Ok(())
}

/// Checks that `m` is a finite `k x k` matrix (`k` may be 0).
pub fn check_square_of(m: &[Vec<f64>], k: usize, name: &str) -> Result<(), String> {
    if m.len() != k {
        return Err(format!("the {name} has {} rows, expected {k}", m.len()));
    }
    if k == 0 {
        return Ok(());
    }
    check_square(m, name).map(|_| ())
}

/// Checks that every index of `order` is below `k` (a visiting order of the tasks).
pub fn check_indices(order: &[usize], k: usize, name: &str) -> Result<(), String> {
    if let Some(&bad) = order.iter().find(|&&j| j >= k) {
        return Err(format!(
            "{name}: task index {bad} out of range for {k} tasks"
        ));
    }
    Ok(())
}

/// Checks one visiting order per task (`orders.len() == k`, every index below `k`); `method`
/// names the strategy in the message.
pub fn check_orders(orders: &[Vec<usize>], k: usize, method: &str) -> Result<(), String> {
    if orders.len() != k {
        return Err(format!(
            "{method}: expected {k} task orders (one per task), got {}",
            orders.len()
        ));
    }
    for (i, order) in orders.iter().enumerate() {
        check_indices(order, k, &format!("orders[{i}]"))?;
    }
    Ok(())
}

/// Dot product of two equally long slices.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Matrix-vector product `m v` for a row-major matrix.
pub fn mat_vec(m: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
    m.iter().map(|r| dot(r, v)).collect()
}

/// Squared Euclidean norm.
pub fn norm_sq(a: &[f64]) -> f64 {
    dot(a, a)
}

/// Euclidean norm.
pub fn norm(a: &[f64]) -> f64 {
    norm_sq(a).sqrt()
}

/// Numerically stable softmax: `exp(x_k - max x) / sum_i exp(x_i - max x)`.
pub fn softmax(x: &[f64]) -> Vec<f64> {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Quadratic form `v^T m v`.
pub fn quad_form(m: &[Vec<f64>], v: &[f64]) -> f64 {
    dot(v, &mat_vec(m, v))
}

/// The K x K Gramian `G G^T` of the K x d gradient matrix `rows`. Cost O(K^2 d).
pub fn gramian(rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, String> {
    let (k, _) = check_rows(rows)?;
    let mut g = vec![vec![0.0; k]; k];
    for i in 0..k {
        for j in 0..=i {
            let v = dot(&rows[i], &rows[j]);
            g[i][j] = v;
            g[j][i] = v;
        }
    }
    Ok(g)
}

/// The K x K cross matrix `A = G1 G2^T`, `A[i][j] = g1_i . g2_j` (two independent batches).
pub fn cross_matrix(rows1: &[Vec<f64>], rows2: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, String> {
    let (k1, d1) = check_rows(rows1)?;
    let (k2, d2) = check_rows(rows2)?;
    if k1 != k2 || d1 != d2 {
        return Err(format!(
            "the two gradient batches have shapes {k1}x{d1} and {k2}x{d2}; they must match"
        ));
    }
    Ok(rows1
        .iter()
        .map(|a| rows2.iter().map(|b| dot(a, b)).collect())
        .collect())
}

/// `sum_k w[k] * rows[k]`: the update given by weights `w`. Cost O(K d).
pub fn combine(w: &[f64], rows: &[Vec<f64>]) -> Result<Vec<f64>, String> {
    let (k, d) = check_rows(rows)?;
    check_vector(w, k, "weights")?;
    let mut out = vec![0.0; d];
    for (wk, r) in w.iter().zip(rows) {
        for (o, x) in out.iter_mut().zip(r) {
            *o += wk * x;
        }
    }
    Ok(out)
}

/// Divides a Gramian by its trace (the squared Frobenius norm of the gradient matrix).
///
/// If the trace is below `eps` the zero matrix is returned, as torchjd does.
pub fn normalize_by_trace(g: &[Vec<f64>], eps: f64) -> Vec<Vec<f64>> {
    let tr: f64 = (0..g.len()).map(|i| g[i][i]).sum();
    if tr < eps {
        return vec![vec![0.0; g.len()]; g.len()];
    }
    g.iter()
        .map(|r| r.iter().map(|x| x / tr).collect())
        .collect()
}

/// Returns `g + eps * I`.
pub fn add_ridge(g: &[Vec<f64>], eps: f64) -> Vec<Vec<f64>> {
    let mut out = g.to_vec();
    for (i, r) in out.iter_mut().enumerate() {
        r[i] += eps;
    }
    out
}

/// Uniform weights `1/K`.
pub fn uniform(k: usize) -> Vec<f64> {
    vec![1.0 / k as f64; k]
}

/// `true` when `x` is finite and `>= 0` (false for NaN).
pub fn nonneg_finite(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

/// `true` when `x` is finite and `> 0` (false for NaN).
pub fn pos_finite(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// Resolves an optional preference vector: `None` gives uniform weights `1/K`.
pub fn pref_or_uniform(pref: &Option<Vec<f64>>, k: usize) -> Result<Vec<f64>, String> {
    match pref {
        None => Ok(uniform(k)),
        Some(p) => {
            check_vector(p, k, "pref_vector")?;
            Ok(p.clone())
        }
    }
}
