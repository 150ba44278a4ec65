//! Aligned-MTL: aligning the principal components of the gradient matrix.

use super::method::GramianWeighting;
use crate::error::Result;
use crate::solvers::matrix::{check_gramian, pref_or_uniform};
use crate::solvers::sym_eigen;
use crate::weighting::hyper::{check_all, Rule};

/// How [`AlignedMtl`] picks the scale of the balanced gradients.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScaleMode {
    /// Smallest retained eigenvalue of the Gramian (the paper's choice; torchjd default).
    #[default]
    Min,
    /// Median retained eigenvalue (lower median for an even count, as torch.median).
    Median,
    /// Mean retained eigenvalue (the original implementation's "rmse" mode).
    Rmse,
}

/// Aligned-MTL: makes the task gradients orthogonal with equal norms (condition number 1) and
/// combines the aligned gradients with the preference weights.
///
/// With the eigendecomposition `G G^T = V diag(lambda) V^T`, eigenvalues `<= lambda_max * K * eps`
/// dropped (rank cut-off as torchjd), the balance matrix is
/// `B = sqrt(scale) V_r diag(lambda_r)^(-1/2) V_r^T` and the weights are `w = B p`, `p` the preference
/// vector (default `1/K`), `scale` given by [`ScaleMode`]. If no eigenvalue is kept, `w = p`.
///
/// Paper: D. Senushkin, N. Patakin, A. Kuznetsov and A. Konushin, "Independent Component
/// Alignment for Multi-Task Learning", CVPR 2023.
///
/// | name | default | range | meaning |
/// |---|---|---|---|
/// | `pref_vector` | `None` (= `1/K`) | K finite reals | weights of the aligned gradients |
/// | `scale_mode` | `Min` | `Min`, `Median`, `Rmse` | eigenvalue giving the common scale |
///
/// Needs: the Gramian only. Solver: Jacobi eigendecomposition ([`crate::solvers::sym_eigen`]).
/// Cost per step: O(K^2 d) for the Gramian + O(K^3) per Jacobi sweep.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlignedMtl {
    /// Preference vector; `None` means uniform `1/K`.
    pub pref_vector: Option<Vec<f64>>,
    /// Which eigenvalue sets the scale of the aligned gradients.
    pub scale_mode: ScaleMode,
}

impl AlignedMtl {
    /// Creates the aggregator with uniform preferences and the given scale mode.
    pub fn new(scale_mode: ScaleMode) -> Self {
        AlignedMtl {
            pref_vector: None,
            scale_mode,
        }
    }
}

impl AlignedMtl {
    /// The same method with a preference vector; refused with
    /// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) unless finite.
    pub fn with_pref_vector(self, pref_vector: Vec<f64>) -> Result<Self> {
        let s = AlignedMtl {
            pref_vector: Some(pref_vector),
            ..self
        };
        GramianWeighting::validate(&s)?;
        Ok(s)
    }
}

impl GramianWeighting for AlignedMtl {
    fn name(&self) -> &str {
        "aligned-mtl"
    }

    fn validate(&self) -> Result<()> {
        match &self.pref_vector {
            Some(p) => check_all("aligned-mtl", "pref_vector", p, Rule::Finite),
            None => Ok(()),
        }
    }

    fn weights(&self, gramian: &[Vec<f64>]) -> std::result::Result<Vec<f64>, String> {
        let k = check_gramian(gramian)?;
        let p = pref_or_uniform(&self.pref_vector, k)?;
        let (vals, vecs) = sym_eigen(gramian)?;
        let lmax = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let tol = lmax * k as f64 * f64::EPSILON;
        // Descending order of the kept eigenpairs.
        let kept: Vec<usize> = (0..k).rev().filter(|&i| vals[i] > tol).collect();
        if kept.is_empty() {
            return Ok(p);
        }
        let lam: Vec<f64> = kept.iter().map(|&i| vals[i]).collect();
        let r = lam.len();
        let scale = match self.scale_mode {
            ScaleMode::Min => lam[r - 1],
            ScaleMode::Median => {
                let mut asc = lam.clone();
                asc.sort_by(|a, b| a.total_cmp(b));
                asc[(r - 1) / 2]
            }
            ScaleMode::Rmse => lam.iter().sum::<f64>() / r as f64,
        };
        let sq = scale.sqrt();
        let mut w = vec![0.0; k];
        for (&i, l) in kept.iter().zip(&lam) {
            let v = &vecs[i];
            let coef = sq / l.sqrt() * v.iter().zip(&p).map(|(a, b)| a * b).sum::<f64>();
            for (wj, vj) in w.iter_mut().zip(v) {
                *wj += coef * vj;
            }
        }
        Ok(w)
    }
}
