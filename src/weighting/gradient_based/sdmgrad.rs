//! SDMGrad: stochastic direction-oriented multi-objective gradient descent.

use super::method::GradientMethod;

use super::method::two_batches;
use super::simplex_state::{simplex_state_accessors, simplex_state_method, SimplexState};
use crate::solvers::matrix::{check_square, mat_vec, pref_or_uniform};
use crate::solvers::project_simplex;
use crate::weighting::hyper::{at_least, check, check_all, Rule};
use crate::weighting::Needs;

/// SDMGrad: weights of the direction-oriented MGDA problem
/// `min_{w in simplex} 1/2 ||J (w + lambda_ w~)||^2`, approximated by `n_iter` steps of projected
/// momentum SGD on `w` per training step, with `J J^T` replaced by the cross product `A = J_1 J_2^T`
/// of two independent batches (unbiased).
///
/// Per call: `A' = A / (s^2 + 1e-8)` with `s` the mean of `sqrt(max(A_ii, 0))`; then `n_iter` times
/// `g = A' (w + lambda_ w~)`, `v = momentum v + g` (`v = g` first), `w = proj_simplex(w - lr v)`;
/// returns `(w + lambda_ w~) / (1 + lambda_)`. `w~` is the preference vector (default `1/K`).
///
/// State: `w` (starts at `1/K`; the momentum restarts every call).
///
/// Paper: P. Xiao, H. Ban and K. Ji, "Direction-oriented Multi-objective Learning: Simple and
/// Provable Stochastic Algorithms", NeurIPS 2023.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `lr` | `10.0` | `> 0` | learning rate of the inner SGD |
/// | `momentum` | `0.5` | `[0, 1)` | momentum of the inner SGD |
/// | `n_iter` | `20` | `>= 1` | inner SGD steps per call |
/// | `lambda_` | `0.3` | `>= 0` | pull towards the preference direction |
/// | `pref_vector` | `None` (= `1/K`) | K finite reals | target weights `w~` |
///
/// Needs: the K x K cross matrix `A = J_1 J_2^T` of two independent batches (full gradients of
/// two batches or their cross products); the weights are applied to a third batch.
/// Cost per step: O(K^2 d) for `A` + O(n_iter K^2).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct SdmGrad {
    /// Learning rate of the inner SGD.
    pub lr: f64,
    /// Momentum of the inner SGD.
    pub momentum: f64,
    /// Number of inner SGD steps per call.
    pub n_iter: usize,
    /// Strength of the pull towards the preference direction.
    pub lambda_: f64,
    /// Preference vector `w~`; `None` means `1/K`.
    pub pref_vector: Option<Vec<f64>>,
    w: SimplexState,
}

impl Default for SdmGrad {
    fn default() -> Self {
        SdmGrad {
            lr: 10.0,
            momentum: 0.5,
            n_iter: 20,
            lambda_: 0.3,
            pref_vector: None,
            w: SimplexState::default(),
        }
    }
}

impl SdmGrad {
    /// Creates the method with the given hyper-parameters, fresh state; refused with
    /// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) outside the ranges
    /// of the table above.
    pub fn new(
        lr: f64,
        momentum: f64,
        n_iter: usize,
        lambda_: f64,
        pref_vector: Option<Vec<f64>>,
    ) -> crate::Result<Self> {
        let s = SdmGrad {
            lr,
            momentum,
            n_iter,
            lambda_,
            pref_vector,
            w: SimplexState::default(),
        };
        GradientMethod::validate(&s)?;
        Ok(s)
    }

    simplex_state_accessors!(w, "inner weights `w`");

    /// One call from the cross matrix `a = J_1 J_2^T` (K x K); returns the weights.
    pub fn weights(&mut self, a: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let k = check_square(a, "SDMGrad cross matrix")?;
        let wt = pref_or_uniform(&self.pref_vector, k)?;
        let mut w = self.w.start(k, "SDMGrad state w")?;
        let s = (0..k).map(|i| a[i][i].max(0.0).sqrt()).sum::<f64>() / k as f64;
        let denom = s * s + 1e-8;
        let an: Vec<Vec<f64>> = a
            .iter()
            .map(|r| r.iter().map(|x| x / denom).collect())
            .collect();
        let mut vel: Option<Vec<f64>> = None;
        for _ in 0..self.n_iter {
            let target: Vec<f64> = w
                .iter()
                .zip(&wt)
                .map(|(a, b)| a + self.lambda_ * b)
                .collect();
            let g = mat_vec(&an, &target);
            let v = match vel {
                None => g,
                Some(v) => v
                    .iter()
                    .zip(&g)
                    .map(|(a, b)| self.momentum * a + b)
                    .collect(),
            };
            let y: Vec<f64> = w.iter().zip(&v).map(|(a, b)| a - self.lr * b).collect();
            w = project_simplex(&y)?;
            vel = Some(v);
        }
        self.w.set(Some(w.clone()));
        Ok(w.iter()
            .zip(&wt)
            .map(|(a, b)| (a + self.lambda_ * b) / (1.0 + self.lambda_))
            .collect())
    }
}

impl GradientMethod for SdmGrad {
    fn name(&self) -> &str {
        "sdmgrad"
    }

    fn needs(&self) -> Needs {
        two_batches()
    }

    fn validate(&self) -> crate::Result<()> {
        check("sdmgrad", "lr", self.lr, Rule::Positive)?;
        check("sdmgrad", "momentum", self.momentum, Rule::UnitHalfOpen)?;
        at_least("sdmgrad", "n_iter", self.n_iter, 1)?;
        check("sdmgrad", "lambda_", self.lambda_, Rule::NonNegative)?;
        match &self.pref_vector {
            Some(p) => check_all("sdmgrad", "pref_vector", p, Rule::Finite),
            None => Ok(()),
        }
    }

    simplex_state_method!(w);
}
