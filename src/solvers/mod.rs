// Dense linear algebra on small matrices reads best with explicit indices.
#![allow(clippy::needless_range_loop)]
//! Small dense numerical solvers used by the gradient-based weighting strategies.
//!
//! Everything here works on K x K matrices (K = number of tasks, typically 2..20), in plain `f64`
//! with `std` only. Every function validates its input and returns `Err` with a message naming the
//! bad value instead of panicking.
//!
//! | solver | problem | exactness |
//! |---|---|---|
//! | [`project_simplex`] | Euclidean projection onto the probability simplex | exact (sort based) |
//! | [`nonneg_qp`] | `min 1/2 z^T H z + c^T z` s.t. `z >= 0`, H positive definite | exact (primal active set, Lawson-Hanson style) |
//! | [`dual_cone_weights`] | `min v^T H v` s.t. `v >= u` (torchjd's dual-cone projection) | exact, via [`nonneg_qp`] |
//! | [`min_norm_hull`] | min-norm point of the convex hull of points given by their Gram matrix | exact (Wolfe's algorithm) |
//! | [`frank_wolfe_min_norm`] | same problem, torchjd's early-stopped Frank-Wolfe iteration | iterative (reference stopping rule) |
//! | [`sym_eigen`] | symmetric eigendecomposition | cyclic Jacobi, to machine precision |
//! | [`pinv_sym`] | pseudo-inverse of a symmetric matrix with a relative cut-off | via [`sym_eigen`] |
//! | [`solve_linear`] | square linear system | Gaussian elimination, partial pivoting |
//! | [`solve_power_balance`] | `M x = x^(-1/alpha)`, `x > 0` (Nash-MTL / FairGrad) | damped Newton to machine precision |

pub mod matrix;
pub mod min_norm;

use matrix::{check_square, check_vector, dot, mat_vec, quad_form};

/// Euclidean projection of `y` onto the probability simplex `{x >= 0, sum x = 1}`.
///
/// Sort-based algorithm (Held et al. 1974; the variant used by torchjd, MoDo and SDMGrad):
/// find the threshold `t` such that `sum max(y_i - t, 0) = 1`. Cost O(K log K).
pub fn project_simplex(y: &[f64]) -> Result<Vec<f64>, String> {
    let m = y.len();
    if m == 0 {
        return Err("cannot project an empty vector onto the simplex".to_string());
    }
    check_vector(y, m, "vector to project onto the simplex")?;
    let mut sorted = y.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut tmax_f = (y.iter().sum::<f64>() - 1.0) / m as f64;
    let mut acc = 0.0;
    for i in 0..m - 1 {
        acc += sorted[i];
        let tmax = (acc - 1.0) / (i as f64 + 1.0);
        if tmax > sorted[i + 1] {
            tmax_f = tmax;
            break;
        }
    }
    Ok(y.iter().map(|v| (v - tmax_f).max(0.0)).collect())
}

/// Solves the square linear system `a x = b` by Gaussian elimination with partial pivoting.
///
/// Returns `Err` if the matrix is (numerically) singular: a pivot below `1e-14` times the largest
/// entry of `a`. [`solve_linear_with`] takes that threshold as an argument.
pub fn solve_linear(a: &[Vec<f64>], b: &[f64]) -> Result<Vec<f64>, String> {
    solve_linear_with(a, b, 1e-14)
}

/// [`solve_linear`] with the singularity threshold given: a pivot whose magnitude is at most
/// `singular_below` times the largest entry of `a` is refused. `0.0` refuses only exactly zero
/// pivots and solves an ill-conditioned but non-singular matrix as is (as `torch.inverse` does).
pub fn solve_linear_with(
    a: &[Vec<f64>],
    b: &[f64],
    singular_below: f64,
) -> Result<Vec<f64>, String> {
    let n = check_square(a, "linear-system matrix")?;
    check_vector(b, n, "right-hand side")?;
    let mut m: Vec<Vec<f64>> = a.to_vec();
    let mut x = b.to_vec();
    let scale = a
        .iter()
        .flat_map(|r| r.iter())
        .fold(0.0_f64, |s, v| s.max(v.abs()));
    if scale == 0.0 {
        return Err("linear-system matrix is zero".to_string());
    }
    for col in 0..n {
        let mut piv = col;
        for r in col + 1..n {
            if m[r][col].abs() > m[piv][col].abs() {
                piv = r;
            }
        }
        if !m[piv][col].is_finite() || m[piv][col].abs() <= singular_below * scale {
            return Err(format!(
                "linear-system matrix is singular (pivot {} at column {col})",
                m[piv][col]
            ));
        }
        m.swap(col, piv);
        x.swap(col, piv);
        for r in col + 1..n {
            let f = m[r][col] / m[col][col];
            if f != 0.0 {
                for c in col..n {
                    m[r][c] -= f * m[col][c];
                }
                x[r] -= f * x[col];
            }
        }
    }
    for col in (0..n).rev() {
        let s: f64 = (col + 1..n).map(|c| m[col][c] * x[c]).sum();
        x[col] = (x[col] - s) / m[col][col];
    }
    Ok(x)
}

/// Solves `h x = b` for a symmetric positive-definite `h` by Cholesky factorisation.
fn cholesky_solve(h: &[Vec<f64>], b: &[f64]) -> Result<Vec<f64>, String> {
    let n = h.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let v = h[i][i] - s;
                if v <= 0.0 || !v.is_finite() {
                    return Err(format!(
                        "matrix is not positive definite (pivot {v} at index {i})"
                    ));
                }
                l[i][i] = v.sqrt();
            } else {
                l[i][j] = (h[i][j] - s) / l[j][j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i][k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k][i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i][i];
    }
    Ok(x)
}

/// Extracts the principal sub-matrix `h[idx][idx]`.
fn sub_matrix(h: &[Vec<f64>], idx: &[usize]) -> Vec<Vec<f64>> {
    idx.iter()
        .map(|&i| idx.iter().map(|&j| h[i][j]).collect())
        .collect()
}

/// Solves the non-negatively constrained convex QP `min 1/2 z^T H z + c^T z` s.t. `z >= 0`.
///
/// `h` must be symmetric positive definite (so the solution is unique). Primal active-set method in
/// the style of Lawson-Hanson NNLS (Lawson & Hanson, *Solving Least Squares Problems*, 1974,
/// generalised to a quadratic objective): the free set grows by the index of the most negative
/// gradient entry, and the minimiser on the free set (a Cholesky solve) is clipped back to the
/// feasible region when it leaves it. Terminates in a finite number of steps with the exact KKT
/// point up to rounding. Cost O(K^3) per step, typically K steps or fewer.
pub fn nonneg_qp(h: &[Vec<f64>], c: &[f64]) -> Result<Vec<f64>, String> {
    let n = check_square(h, "QP matrix")?;
    check_vector(c, n, "QP linear term")?;
    let h_scale = (0..n).fold(0.0_f64, |s, i| s.max(h[i][i].abs()));
    let c_scale = c.iter().fold(0.0_f64, |s, v| s.max(v.abs()));
    let mut z: Vec<f64> = vec![0.0; n];
    let mut free: Vec<bool> = vec![false; n];
    let mut blocked: Vec<bool> = vec![false; n];
    let max_outer = 5 * n + 20;
    for _ in 0..max_outer {
        let z_scale = z.iter().fold(0.0_f64, |s, v| s.max(v.abs()));
        let tol = 1e-13 * (c_scale + h_scale * z_scale).max(f64::MIN_POSITIVE);
        let grad: Vec<f64> = mat_vec(h, &z).iter().zip(c).map(|(a, b)| a + b).collect();
        let mut best: Option<usize> = None;
        for j in 0..n {
            if !free[j] && !blocked[j] && grad[j] < -tol && best.is_none_or(|b| grad[j] < grad[b]) {
                best = Some(j);
            }
        }
        let Some(j_new) = best else {
            return Ok(z);
        };
        free[j_new] = true;
        let mut first = true;
        loop {
            let idx: Vec<usize> = (0..n).filter(|&i| free[i]).collect();
            if idx.is_empty() {
                break;
            }
            let hs = sub_matrix(h, &idx);
            let rhs: Vec<f64> = idx.iter().map(|&i| -c[i]).collect();
            let s_free = cholesky_solve(&hs, &rhs)
                .map_err(|e| format!("QP matrix must be positive definite: {e}"))?;
            if s_free.iter().all(|&v| v > 0.0) {
                for (p, &i) in idx.iter().enumerate() {
                    z[i] = s_free[p];
                }
                for b in blocked.iter_mut() {
                    *b = false;
                }
                break;
            }
            let pos_new = idx.iter().position(|&i| i == j_new);
            if first && pos_new.is_some_and(|p| s_free[p] <= 0.0) {
                // Rounding made the entering index useless: do not try it again for now.
                free[j_new] = false;
                blocked[j_new] = true;
                break;
            }
            first = false;
            // Step from z towards s until the first free variable hits zero.
            let mut alpha = 1.0_f64;
            let mut hit = idx[0];
            for (p, &i) in idx.iter().enumerate() {
                if s_free[p] <= 0.0 {
                    let a = z[i] / (z[i] - s_free[p]);
                    if a < alpha {
                        alpha = a;
                        hit = i;
                    }
                }
            }
            for (p, &i) in idx.iter().enumerate() {
                z[i] += alpha * (s_free[p] - z[i]);
                if z[i] <= 0.0 {
                    z[i] = 0.0;
                    free[i] = false;
                }
            }
            z[hit] = 0.0;
            free[hit] = false;
        }
    }
    Err(format!(
        "non-negative QP did not terminate after {max_outer} active-set steps"
    ))
}

/// Weights of the projection of `J^T u` onto the dual cone of the rows of `J`, from the Gramian.
///
/// Solves `min_v v^T H v` s.t. `v >= u` (Proposition 1 of Quinton & Rey, "Jacobian Descent for
/// Multi-Objective Optimization", 2024) by substituting `v = u + z`, `z >= 0` and calling
/// [`nonneg_qp`]. `h` must be positive definite (add a ridge first).
pub fn dual_cone_weights(h: &[Vec<f64>], u: &[f64]) -> Result<Vec<f64>, String> {
    let n = check_square(h, "Gramian")?;
    check_vector(u, n, "preference vector")?;
    let c = mat_vec(h, u);
    let z = nonneg_qp(h, &c)?;
    Ok(u.iter().zip(&z).map(|(a, b)| a + b).collect())
}

/// Exact minimum-norm point of the convex hull of K points given by their Gram matrix `p`.
///
/// Returns simplex weights `w` minimising `w^T p w`. Wolfe's algorithm (P. Wolfe, "Finding the
/// nearest point in a polytope", Math. Programming 1976): a corral of affinely independent points
/// is grown by the point with the smallest inner product with the current iterate, and the
/// affine min-norm point of the corral (a bordered linear solve) is clipped back to the hull.
/// Exact up to rounding in a finite number of steps. The weights are unique only when the
/// points are affinely independent; the point `sum w_k p_k` is always unique.
pub fn min_norm_hull(p: &[Vec<f64>]) -> Result<Vec<f64>, String> {
    let n = check_square(p, "Gram matrix")?;
    let scale = (0..n).fold(0.0_f64, |s, i| s.max(p[i][i].abs()));
    if scale == 0.0 {
        return Ok(matrix::uniform(n));
    }
    let mut start = 0;
    for i in 1..n {
        if p[i][i] < p[start][start] {
            start = i;
        }
    }
    let mut w = vec![0.0; n];
    w[start] = 1.0;
    let mut in_set = vec![false; n];
    in_set[start] = true;
    let max_major = 10 * n + 50;
    for _ in 0..max_major {
        let pw = mat_vec(p, &w);
        let xx = dot(&w, &pw);
        let mut j = 0;
        for i in 1..n {
            if pw[i] < pw[j] {
                j = i;
            }
        }
        // Optimality: x . (x - p_j) <= tol.
        if xx - pw[j] <= 1e-14 * scale || in_set[j] {
            return Ok(w);
        }
        in_set[j] = true;
        // Minor cycle.
        loop {
            let idx: Vec<usize> = (0..n).filter(|&i| in_set[i]).collect();
            let m = idx.len();
            let mut a = vec![vec![0.0; m + 1]; m + 1];
            for (r, &i) in idx.iter().enumerate() {
                for (c, &k) in idx.iter().enumerate() {
                    a[r][c] = p[i][k];
                }
                a[r][m] = 1.0;
                a[m][r] = 1.0;
            }
            let mut rhs = vec![0.0; m + 1];
            rhs[m] = 1.0;
            let v = match solve_linear(&a, &rhs) {
                Ok(v) => v,
                // Affinely dependent corral (rounding): the current iterate is as good as it gets.
                Err(_) => {
                    in_set[j] = w[j] > 0.0;
                    return Ok(w);
                }
            };
            if (0..m).all(|r| v[r] > 1e-15) {
                for (r, &i) in idx.iter().enumerate() {
                    w[i] = v[r];
                }
                break;
            }
            let mut theta = 1.0_f64;
            for (r, &i) in idx.iter().enumerate() {
                if v[r] <= 1e-15 {
                    let t = w[i] / (w[i] - v[r]);
                    if t < theta {
                        theta = t;
                    }
                }
            }
            for (r, &i) in idx.iter().enumerate() {
                w[i] += theta * (v[r] - w[i]);
                if w[i] <= 1e-15 {
                    w[i] = 0.0;
                    in_set[i] = false;
                }
            }
            let total: f64 = w.iter().sum();
            if total <= 0.0 {
                return Err("Wolfe min-norm iteration lost all its weight".to_string());
            }
            for x in w.iter_mut() {
                *x /= total;
            }
        }
    }
    Err(format!(
        "Wolfe min-norm algorithm did not terminate after {max_major} major cycles"
    ))
}

/// Frank-Wolfe iteration for the min-norm point of the convex hull, as in torchjd's MGDA.
///
/// Algorithm 2 of Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization" (2018):
/// start from uniform weights; at each step pick `t = argmin (G a)_t` (first index on ties), do an
/// exact line search between `a` and `e_t`, and stop once the step `gamma < epsilon` or after
/// `max_iters` steps. This is *not* the exact min-norm point (see [`min_norm_hull`]).
pub fn frank_wolfe_min_norm(
    g: &[Vec<f64>],
    epsilon: f64,
    max_iters: usize,
) -> Result<Vec<f64>, String> {
    let n = check_square(g, "Gramian")?;
    let mut alpha = matrix::uniform(n);
    for _ in 0..max_iters {
        let ga = mat_vec(g, &alpha);
        let mut t = 0;
        for i in 1..n {
            if ga[i] < ga[t] {
                t = i;
            }
        }
        let a = ga[t]; // alpha . (G e_t), G symmetric
        let b = dot(&alpha, &ga);
        let c = g[t][t];
        let gamma = if c <= a {
            1.0
        } else if b <= a {
            0.0
        } else {
            (b - a) / (b + c - 2.0 * a)
        };
        for (i, x) in alpha.iter_mut().enumerate() {
            *x *= 1.0 - gamma;
            if i == t {
                *x += gamma;
            }
        }
        if gamma < epsilon {
            break;
        }
    }
    Ok(alpha)
}

/// Eigendecomposition of a symmetric matrix by the cyclic Jacobi method.
///
/// Returns `(values, vectors)` with eigenvalues in ascending order and `vectors[i]` the unit
/// eigenvector of `values[i]`. Accurate to a few ulps of the largest eigenvalue. Cost O(K^3)
/// per sweep, typically 5-10 sweeps.
pub fn sym_eigen(m: &[Vec<f64>]) -> Result<(Vec<f64>, Vec<Vec<f64>>), String> {
    let n = check_square(m, "symmetric matrix")?;
    let mut a = m.to_vec();
    // Symmetrise.
    for i in 0..n {
        for j in 0..i {
            let v = 0.5 * (a[i][j] + a[j][i]);
            a[i][j] = v;
            a[j][i] = v;
        }
    }
    let mut v = vec![vec![0.0; n]; n];
    for (i, r) in v.iter_mut().enumerate() {
        r[i] = 1.0;
    }
    let frob2: f64 = a.iter().flat_map(|r| r.iter()).map(|x| x * x).sum();
    let mut converged = false;
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off <= 1e-32 * frob2 || off == 0.0 {
            converged = true;
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p][q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[k][p];
                    let akq = a[k][q];
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p][k];
                    let aqk = a[q][k];
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                a[p][q] = 0.0;
                a[q][p] = 0.0;
                for row in v.iter_mut() {
                    let vkp = row[p];
                    let vkq = row[q];
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    if !converged {
        return Err("Jacobi eigendecomposition did not converge in 100 sweeps".to_string());
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[i][i].total_cmp(&a[j][j]));
    let values = order.iter().map(|&i| a[i][i]).collect();
    let vectors = order
        .iter()
        .map(|&i| (0..n).map(|k| v[k][i]).collect())
        .collect();
    Ok((values, vectors))
}

/// Pseudo-inverse of a symmetric matrix: eigenvalues with `|lambda| <= rtol * max |lambda|` are
/// treated as zero (torch.linalg.pinv's rule on singular values).
pub fn pinv_sym(m: &[Vec<f64>], rtol: f64) -> Result<Vec<Vec<f64>>, String> {
    if !matrix::nonneg_finite(rtol) {
        return Err(format!("pinv rtol must be non-negative, got {rtol}"));
    }
    let (vals, vecs) = sym_eigen(m)?;
    let n = vals.len();
    let smax = vals.iter().fold(0.0_f64, |s, v| s.max(v.abs()));
    let cut = rtol * smax;
    let mut out = vec![vec![0.0; n]; n];
    for (lam, vec) in vals.iter().zip(&vecs) {
        if lam.abs() > cut && *lam != 0.0 {
            for i in 0..n {
                for j in 0..n {
                    out[i][j] += vec[i] * vec[j] / lam;
                }
            }
        }
    }
    Ok(out)
}

/// Solves `M x = x^(-1/alpha)` for `x > 0` (elementwise power), `M` symmetric PSD, `alpha > 0`.
///
/// This is the stationarity condition of the strictly convex function
/// `phi(x) = 1/2 x^T M x - sum_i h(x_i)` with `h(x) = ln x` for `alpha = 1` and
/// `h(x) = x^p / p`, `p = 1 - 1/alpha` otherwise. Damped Newton with Armijo backtracking that keeps
/// `x > 0`, from `x0`, until the Newton step is at rounding level. The solution exists and is unique
/// unless some non-zero `v >= 0` has `M v = 0` (0 in the convex hull of the gradients); then
/// `phi` is unbounded below and `Err` is returned. Used by Nash-MTL (`alpha = 1`) and FairGrad.
pub fn solve_power_balance(m: &[Vec<f64>], alpha: f64, x0: &[f64]) -> Result<Vec<f64>, String> {
    let n = check_square(m, "Gramian")?;
    check_vector(x0, n, "initial point")?;
    if !matrix::pos_finite(alpha) {
        return Err(format!("alpha must be positive and finite, got {alpha}"));
    }
    if let Some(i) = x0.iter().position(|&v| !matrix::pos_finite(v)) {
        return Err(format!(
            "initial point must be positive, x0[{i}] = {}",
            x0[i]
        ));
    }
    let q = -1.0 / alpha;
    let p = 1.0 - 1.0 / alpha;
    let h = |x: f64| if alpha == 1.0 { x.ln() } else { x.powf(p) / p };
    let phi = |x: &[f64]| 0.5 * quad_form(m, x) - x.iter().map(|&v| h(v)).sum::<f64>();
    let residual = |x: &[f64]| -> f64 {
        mat_vec(m, x)
            .iter()
            .zip(x)
            .fold(0.0_f64, |s, (a, &xi)| s.max((a - xi.powf(q)).abs()))
    };
    let mut x = x0.to_vec();
    let mut f = phi(&x);
    for _ in 0..500 {
        let mx = mat_vec(m, &x);
        let grad: Vec<f64> = mx.iter().zip(&x).map(|(a, &xi)| a - xi.powf(q)).collect();
        let mut jac = m.to_vec();
        for i in 0..n {
            jac[i][i] += (1.0 / alpha) * x[i].powf(q - 1.0);
        }
        // Symmetric Jacobi scaling so that wildly different gradient norms stay well posed.
        let sc: Vec<f64> = (0..n).map(|i| 1.0 / jac[i][i].sqrt()).collect();
        let scaled: Vec<Vec<f64>> = (0..n)
            .map(|i| (0..n).map(|j| sc[i] * jac[i][j] * sc[j]).collect())
            .collect();
        let rhs: Vec<f64> = (0..n).map(|i| -sc[i] * grad[i]).collect();
        let step = solve_linear(&scaled, &rhs).map_err(|e| {
            format!(
                "no positive solution of M x = x^(-1/alpha) found: Newton system singular at x = \
                 {x:?} ({e}); 0 is probably in the convex hull of the task gradients"
            )
        })?;
        let step: Vec<f64> = step.iter().zip(&sc).map(|(y, s)| y * s).collect();
        let slope = dot(&grad, &step);
        let mut t = 1.0_f64;
        for i in 0..n {
            if step[i] < 0.0 {
                t = t.min(0.99 * x[i] / -step[i]);
            }
        }
        let rel = step
            .iter()
            .zip(&x)
            .fold(0.0_f64, |s, (d, xi)| s.max(d.abs() / xi));
        if rel < 1e-10 {
            // Quadratic convergence: one full step reaches rounding level.
            if t >= 1.0 {
                for (xi, d) in x.iter_mut().zip(&step) {
                    *xi += d;
                }
            }
            return Ok(x);
        }
        let mut accepted = false;
        for _ in 0..60 {
            let cand: Vec<f64> = x.iter().zip(&step).map(|(a, d)| a + t * d).collect();
            let fc = phi(&cand);
            // Armijo on phi, or (near the solution, where phi is flat at rounding level) a
            // decrease of the residual norm.
            if fc.is_finite()
                && (fc <= f + 1e-4 * t * slope || residual(&cand) < 0.5 * residual(&x))
            {
                x = cand;
                f = fc;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        if !accepted {
            // No decrease possible at rounding level: we are at the solution.
            return Ok(x);
        }
        if x.iter().any(|v| !v.is_finite() || *v > 1e150) {
            return Err(
                "no positive solution of M x = x^(-1/alpha): the iterate diverges (0 is in the \
                 convex hull of the task gradients)"
                    .to_string(),
            );
        }
    }
    Err(
        "Newton iteration for M x = x^(-1/alpha) did not converge in 500 steps (the solution \
         may not exist: 0 may be in the convex hull of the task gradients)"
            .to_string(),
    )
}
