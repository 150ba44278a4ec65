//! Min-norm element of the convex hull of the task gradients, computed on the Gramian.
//!
//! [`frank_wolfe_min_norm`] reproduces the early-stopped iteration used by MGDA in LibMTL 1.1.5
//! (itself taken from the official code of Sener & Koltun, 2018): start from the best pair of
//! tasks, then repeatedly move towards a projected-gradient point and do an exact line search on
//! the segment, stopping as soon as one step changes the weights by less than `stop_crit` in L1
//! norm. The returned point is the one *before* that last small step, exactly as in the reference.
//! It is not the exact minimiser (the golden files report gaps up to about 6e-6 on the weights).
//!
//! Cost: `O(K^2)` per pair search and `O(K^2)` per iteration, on top of the `O(K^2 d)` Gramian.

use super::matrix::{check_square_of, mat_vec};

/// Iteration settings of [`frank_wolfe_min_norm`].
///
/// LibMTL 1.1.5 (the version the golden files were made with) declares `MAX_ITER = 250` but never
/// increments its counter, so it iterates until the stopping rule fires; the default cap here is
/// therefore 1,000,000 (a guard against non-termination). Set `max_iter = 250` to get the capped
/// behaviour of later LibMTL versions and of the original MGDA-UB code.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrankWolfeSettings {
    /// Largest number of iterations (default 1,000,000; see above).
    pub max_iter: usize,
    /// Stop when the L1 change of the weights in one step is below this (`STOP_CRIT`, 1e-5).
    pub stop_crit: f64,
}

impl Default for FrankWolfeSettings {
    fn default() -> Self {
        Self {
            max_iter: 1_000_000,
            stop_crit: 1e-5,
        }
    }
}

/// Minimiser of `|gamma v1 + (1 - gamma) v2|^2` over `gamma` in `[0, 1]`, from the three inner
/// products. Returns `(gamma, cost)`. Like the reference, the end points are reported as
/// `gamma = 0.999` / `0.001` rather than 1 / 0.
pub fn min_norm_two(v1v1: f64, v1v2: f64, v2v2: f64) -> (f64, f64) {
    if v1v2 >= v1v1 {
        return (0.999, v1v1);
    }
    if v1v2 >= v2v2 {
        return (0.001, v2v2);
    }
    let gamma = -((v1v2 - v2v2) / (v1v1 + v2v2 - 2.0 * v1v2));
    let cost = v2v2 + gamma * (v1v2 - v2v2);
    (gamma, cost)
}

/// Euclidean projection of `y` onto the probability simplex (sort-based, as in the reference).
pub fn project_to_simplex(y: &[f64]) -> Vec<f64> {
    let m = y.len();
    let mut sorted = y.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut tmax_f = (y.iter().sum::<f64>() - 1.0) / m as f64;
    let mut tmpsum = 0.0;
    for i in 0..m.saturating_sub(1) {
        tmpsum += sorted[i];
        let tmax = (tmpsum - 1.0) / (i as f64 + 1.0);
        if tmax > sorted[i + 1] {
            tmax_f = tmax;
            break;
        }
    }
    y.iter().map(|v| (v - tmax_f).max(0.0)).collect()
}

fn next_point(cur: &[f64], grad: &[f64]) -> Vec<f64> {
    let n = cur.len() as f64;
    let mean = grad.iter().sum::<f64>() / n;
    let proj: Vec<f64> = grad.iter().map(|g| g - mean).collect();
    let mut t = 1.0_f64;
    let mut t1: Option<f64> = None;
    for (p, c) in proj.iter().zip(cur) {
        if *p < 0.0 {
            let v = -c / p;
            if v > 1e-7 {
                t1 = Some(t1.map_or(v, |m| m.min(v)));
            }
        }
    }
    if let Some(v) = t1 {
        t = v;
    }
    for (p, c) in proj.iter().zip(cur) {
        if *p > 0.0 {
            let v = (1.0 - c) / p;
            if v > 1e-7 {
                t = t.min(v);
            }
        }
    }
    let y: Vec<f64> = proj.iter().zip(cur).map(|(p, c)| p * t + c).collect();
    project_to_simplex(&y)
}

fn quad(a: &[f64], m: &[Vec<f64>], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for (i, ai) in a.iter().enumerate() {
        for (j, bj) in b.iter().enumerate() {
            s += ai * bj * m[i][j];
        }
    }
    s
}

/// Result of [`frank_wolfe_min_norm_detailed`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct FrankWolfeResult {
    /// Weights on the simplex.
    pub weights: Vec<f64>,
    /// Number of iterations run (0 for `K <= 2`).
    pub iterations: usize,
    /// Whether the stopping rule fired (always true for `K <= 2`).
    pub converged: bool,
}

/// LibMTL's early-stopped Frank-Wolfe min-norm solver on a `K x K` Gramian `gram`.
///
/// Returns weights on the simplex (length `K`). For `K = 2` this is the closed form (with the
/// 0.999 / 0.001 end-point convention); for `K = 1` it is `[1]`.
/// Errors when `gram` is not square and finite, or when no pair has a cost below 1e8 (the
/// reference fails there too).
pub fn frank_wolfe_min_norm(
    gram: &[Vec<f64>],
    settings: FrankWolfeSettings,
) -> Result<Vec<f64>, String> {
    frank_wolfe_min_norm_detailed(gram, settings).map(|r| r.weights)
}

/// [`frank_wolfe_min_norm`] with the iteration count and convergence flag.
pub fn frank_wolfe_min_norm_detailed(
    gram: &[Vec<f64>],
    settings: FrankWolfeSettings,
) -> Result<FrankWolfeResult, String> {
    let done = |weights: Vec<f64>, iterations: usize, converged: bool| FrankWolfeResult {
        weights,
        iterations,
        converged,
    };
    let n = gram.len();
    check_square_of(gram, n, "gramian")?;
    if n == 0 {
        return Err("gramian: empty (0 tasks)".to_string());
    }
    if n == 1 {
        return Ok(done(vec![1.0], 0, true));
    }
    let mut dmin = 1e8;
    let mut best: Option<(usize, usize, f64)> = None;
    for i in 0..n {
        for j in i + 1..n {
            let (c, d) = min_norm_two(gram[i][i], gram[i][j], gram[j][j]);
            if d < dmin {
                dmin = d;
                best = Some((i, j, c));
            }
        }
    }
    let (bi, bj, c) = best.ok_or_else(|| {
        "min-norm solver: every pair of tasks has a min-norm cost >= 1e8 (gradients too large)"
            .to_string()
    })?;
    let mut sol = vec![0.0; n];
    sol[bi] = c;
    sol[bj] = 1.0 - c;
    if n < 3 {
        return Ok(done(sol, 0, true));
    }
    for it in 0..settings.max_iter {
        let grad_dir: Vec<f64> = mat_vec(gram, &sol).into_iter().map(|v| -v).collect();
        let new_point = next_point(&sol, &grad_dir);
        let v1v1 = quad(&sol, gram, &sol);
        let v1v2 = quad(&sol, gram, &new_point);
        let v2v2 = quad(&new_point, gram, &new_point);
        let (nc, _) = min_norm_two(v1v1, v1v2, v2v2);
        let new_sol: Vec<f64> = sol
            .iter()
            .zip(&new_point)
            .map(|(s, p)| nc * s + (1.0 - nc) * p)
            .collect();
        let change: f64 = new_sol.iter().zip(&sol).map(|(a, b)| (a - b).abs()).sum();
        if change < settings.stop_crit {
            return Ok(done(sol, it, true));
        }
        sol = new_sol;
    }
    Ok(done(sol, settings.max_iter, false))
}
