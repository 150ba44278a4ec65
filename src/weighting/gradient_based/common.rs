//! What the gradient-based strategies share: [`Aggregate`], the [`GramianWeighting`] trait and
//! the matrix helpers of [`crate::solvers`].

pub use crate::solvers::matrix::*;

/// What an aggregation step produces.
///
/// `Weights(w)`: the update is `sum_k w[k] * g[k]` (length K).
/// `Direction(v)`: the update itself (length d), for methods that cannot be written as weights.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregate {
    /// Per-task weights `w`; the update is `sum_k w[k] * g[k]`.
    Weights(Vec<f64>),
    /// The update vector itself (length d).
    Direction(Vec<f64>),
}

impl Aggregate {
    /// Turns the aggregate into an update direction using the task gradients `rows` (K x d).
    ///
    /// For `Weights` this is `sum_k w[k] * rows[k]`; a `Direction` is returned as is.
    pub fn direction(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        match self {
            Aggregate::Weights(w) => combine(w, rows),
            Aggregate::Direction(v) => Ok(v.clone()),
        }
    }

    /// The weights, when the aggregate is a combination of the rows.
    pub fn weights(&self) -> Option<&[f64]> {
        match self {
            Aggregate::Weights(w) => Some(w),
            Aggregate::Direction(_) => None,
        }
    }
}

/// A stateless method that maps a K x K Gramian `G G^T` to K weights.
///
/// Because only the Gramian is needed, such methods also serve representation-level gradients
/// (the Gramian of the Jacobian with respect to a shared representation) and never touch the
/// d-dimensional gradients beyond forming `G G^T` (O(K^2 d)).
pub trait GramianWeighting {
    /// Weights `w` (length K) for the Gramian; the update is `sum_k w[k] * g[k]`.
    fn weights(&self, gramian: &[Vec<f64>]) -> Result<Vec<f64>, String>;

    /// Forms the Gramian of `rows` (K x d) and returns [`Aggregate::Weights`].
    fn aggregate(&self, rows: &[Vec<f64>]) -> Result<Aggregate, String> {
        let g = gramian(rows)?;
        Ok(Aggregate::Weights(self.weights(&g)?))
    }
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
