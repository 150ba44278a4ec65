//! The one protocol of the gradient-based strategies.
//!
//! A gradient-based method implements [`GradientMethod`]: from a [`GradientStep`] (the step's
//! per-task gradients, read as a Gramian, as rows or as a cross-batch product) it returns an
//! [`Aggregate`], either weights on the tasks or a direction. Every [`GradientMethod`] is a
//! [`TaskWeighting`] through one blanket implementation, so no strategy writes trainer glue.
//!
//! Stateless methods that only need the Gramian implement the smaller [`GramianWeighting`]
//! instead (`name` and `weights`); they are [`GradientMethod`]s through a second blanket
//! implementation, the way torchjd builds every Gramian method as `weighting << gramian`.

use std::collections::HashMap;

use candle_core::{Tensor, Var};

use crate::error::{Error, Result};
use crate::solvers::matrix::{combine, gramian};
use crate::weighting::support::direction;
use crate::weighting::{
    Decision, GradientSource, Needs, StepInput, TaskGradients, TaskWeighting, WeightingSetup,
};

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
    pub fn direction(&self, rows: &[Vec<f64>]) -> std::result::Result<Vec<f64>, String> {
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

/// Both gradient sources, shared parameters preferred: what most gradient-based methods accept.
pub fn any_source() -> Needs {
    Needs::gradients(vec![
        GradientSource::SharedParameters,
        GradientSource::Representation,
    ])
}

/// Two batches per step and shared-parameter gradients (MoDo, SDMGrad): the weights come from
/// `G_1 G_2^T` of two independent batches (an unbiased estimate of the Gramian's products), the
/// update is applied to the first batch's gradients.
pub fn two_batches() -> Needs {
    Needs {
        batches_per_step: 2,
        ..Needs::gradients(vec![GradientSource::SharedParameters])
    }
}

/// A state holding one optional weight vector, saved under `key` (nothing before the first
/// step).
pub(crate) fn lambda_state(key: &str, weights: Option<&[f64]>) -> Vec<(String, Vec<f64>)> {
    weights
        .map(|l| vec![(key.to_string(), l.to_vec())])
        .unwrap_or_default()
}

/// The gradients of one step, as a gradient-based method reads them.
///
/// Each view is computed when asked for: a Gramian method never copies the `K x d` rows to the
/// host.
#[derive(Debug, Clone, Copy)]
pub struct GradientStep<'a> {
    strategy: &'a str,
    input: &'a StepInput<'a>,
    gradients: &'a TaskGradients,
}

impl<'a> GradientStep<'a> {
    /// The step of `input` for the strategy called `strategy`; refused when the trainer gave no
    /// gradients.
    pub fn new(strategy: &'a str, input: &'a StepInput<'a>) -> Result<Self> {
        let gradients = input.gradients.ok_or_else(|| Error::InvalidDecision {
            strategy: strategy.to_string(),
            reason: "needs per-task gradients but the trainer gave none".into(),
        })?;
        Ok(Self {
            strategy,
            input,
            gradients,
        })
    }

    /// The K x K Gramian `G G^T` of the step's gradients.
    pub fn gramian(&self) -> Result<Vec<Vec<f64>>> {
        self.gradients.gramian()
    }

    /// The K x d gradient rows on the host.
    pub fn rows(&self) -> Result<Vec<Vec<f64>>> {
        self.gradients.rows_f64()
    }

    /// The K x K cross product `G_1 G_2^T` of this batch's gradients and a second, independent
    /// batch's ([`Needs::batches_per_step`] = 2).
    pub fn cross_gramian(&self) -> Result<Vec<Vec<f64>>> {
        let second = self.input.second_gradients.ok_or_else(|| {
            self.fail("needs the gradients of a second batch (Trainer::train_step_pair)".into())
        })?;
        self.gradients.cross_gramian(second)
    }

    /// The detached task losses of the step.
    pub fn losses(&self) -> &'a [f64] {
        self.input.losses
    }

    /// Length `d` of each gradient row.
    pub fn dim(&self) -> usize {
        self.gradients.dim()
    }

    /// The step's per-task gradients.
    pub fn gradients(&self) -> &'a TaskGradients {
        self.gradients
    }

    /// Weights from the step's Gramian by `weights`, its failure named as the strategy's.
    pub fn weigh_gramian(
        &self,
        weights: impl FnOnce(&[Vec<f64>]) -> std::result::Result<Vec<f64>, String>,
    ) -> Result<Aggregate> {
        let gram = self.gramian()?;
        Ok(Aggregate::Weights(
            weights(&gram).map_err(|e| self.fail(e))?,
        ))
    }

    /// Weights from the cross matrix of two batches' gradients by `weights` (the cross-batch
    /// methods), its failure named as the strategy's.
    pub fn weigh_cross_gramian(
        &self,
        weights: impl FnOnce(&[Vec<f64>]) -> std::result::Result<Vec<f64>, String>,
    ) -> Result<Aggregate> {
        let cross = self.cross_gramian()?;
        Ok(Aggregate::Weights(
            weights(&cross).map_err(|e| self.fail(e))?,
        ))
    }

    /// A solver's error message as this strategy's error.
    pub fn fail(&self, reason: String) -> Error {
        Error::InvalidDecision {
            strategy: self.strategy.to_string(),
            reason,
        }
    }
}

/// A gradient-based method: per-task gradients in, weights or a direction out.
///
/// Only [`name`](GradientMethod::name) and [`combine`](GradientMethod::combine) are required;
/// the hooks have the same meaning as those of [`TaskWeighting`], which every `GradientMethod`
/// implements. Hyper-parameters are checked when the method is built (its constructor returns
/// `Result`), and once more by [`validate`](GradientMethod::validate) when a trainer is built,
/// never per step.
///
/// ```
/// use candle_mtl::weighting::gradient_based::{Aggregate, GradientMethod, GradientStep};
/// /// The plain sum of the task gradients.
/// struct Sum;
/// impl GradientMethod for Sum {
///     fn name(&self) -> &str { "sum" }
///     fn combine(&mut self, step: &GradientStep) -> candle_mtl::Result<Aggregate> {
///         Ok(Aggregate::Weights(vec![1.0; step.losses().len()]))
///     }
/// }
/// ```
pub trait GradientMethod: Send {
    /// Short name used in errors and logs.
    fn name(&self) -> &str;

    /// What the method needs; by default per-task gradients of either source, shared
    /// parameters preferred, and at least two tasks.
    fn needs(&self) -> Needs {
        any_source()
    }

    /// Checks the hyper-parameters (the constructors already did; this catches values changed
    /// afterwards, for example by deserialisation). Called once when the trainer is built.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// The step's update: weights on the tasks or a direction.
    fn combine(&mut self, step: &GradientStep) -> Result<Aggregate>;

    /// See [`TaskWeighting::prepare`].
    fn prepare(&mut self, setup: &WeightingSetup) -> Result<()> {
        let _ = setup;
        Ok(())
    }

    /// See [`TaskWeighting::seed`].
    fn seed(&mut self, seed: u64) {
        let _ = seed;
    }

    /// See [`TaskWeighting::parameters`].
    fn parameters(&self) -> Vec<(String, Var)> {
        Vec::new()
    }

    /// See [`TaskWeighting::auxiliary_loss`].
    fn auxiliary_loss(&self, detached_losses: &[Tensor]) -> Result<Option<Tensor>> {
        let _ = detached_losses;
        Ok(None)
    }

    /// See [`TaskWeighting::state`].
    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        Ok(Vec::new())
    }

    /// See [`TaskWeighting::load_state`].
    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

impl<M: GradientMethod> TaskWeighting for M {
    fn name(&self) -> &str {
        GradientMethod::name(self)
    }

    fn needs(&self) -> Needs {
        GradientMethod::needs(self)
    }

    fn check(&self, _setup: &WeightingSetup) -> Result<()> {
        self.validate()
    }

    fn prepare(&mut self, setup: &WeightingSetup) -> Result<()> {
        GradientMethod::prepare(self, setup)
    }

    fn seed(&mut self, seed: u64) {
        GradientMethod::seed(self, seed);
    }

    fn parameters(&self) -> Vec<(String, Var)> {
        GradientMethod::parameters(self)
    }

    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let name = GradientMethod::name(self).to_string();
        let step = GradientStep::new(&name, input)?;
        match self.combine(&step)? {
            Aggregate::Weights(w) => Ok(Decision::Weights(w)),
            Aggregate::Direction(d) => direction(d, step.gradients()),
        }
    }

    fn auxiliary_loss(&self, detached_losses: &[Tensor]) -> Result<Option<Tensor>> {
        GradientMethod::auxiliary_loss(self, detached_losses)
    }

    fn state(&self) -> Result<Vec<(String, Vec<f64>)>> {
        GradientMethod::state(self)
    }

    fn load_state(&mut self, state: &HashMap<String, Vec<f64>>) -> Result<()> {
        GradientMethod::load_state(self, state)
    }
}

/// A stateless method that maps a K x K Gramian `G G^T` to K weights.
///
/// Because only the Gramian is needed, such methods also serve representation-level gradients
/// (the Gramian of the Jacobian with respect to a shared representation) and never touch the
/// d-dimensional gradients beyond forming `G G^T` (O(K^2 d)). Every `GramianWeighting` that is
/// `Send` is a [`GradientMethod`] (and so a [`TaskWeighting`]).
pub trait GramianWeighting {
    /// Short name used in errors and logs.
    fn name(&self) -> &str;

    /// What the method needs; per-task gradients of either source by default.
    fn needs(&self) -> Needs {
        any_source()
    }

    /// See [`GradientMethod::validate`].
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// Weights `w` (length K) for the Gramian; the update is `sum_k w[k] * g[k]`.
    fn weights(&self, gramian: &[Vec<f64>]) -> std::result::Result<Vec<f64>, String>;

    /// Forms the Gramian of `rows` (K x d) and returns [`Aggregate::Weights`].
    fn aggregate(&self, rows: &[Vec<f64>]) -> std::result::Result<Aggregate, String> {
        let g = gramian(rows)?;
        Ok(Aggregate::Weights(self.weights(&g)?))
    }
}

impl<W: GramianWeighting + Send> GradientMethod for W {
    fn name(&self) -> &str {
        GramianWeighting::name(self)
    }

    fn needs(&self) -> Needs {
        GramianWeighting::needs(self)
    }

    fn validate(&self) -> Result<()> {
        GramianWeighting::validate(self)
    }

    fn combine(&mut self, step: &GradientStep) -> Result<Aggregate> {
        let w = self.weights(&step.gramian()?).map_err(|e| step.fail(e))?;
        Ok(Aggregate::Weights(w))
    }
}

/// The `seed` and `combine` of a [`GradientMethod`] that visits the tasks in random orders:
/// a field `rng: StrategyRng` and a `weights_from_gramian(gram, orders)`, inside its
/// `impl GradientMethod` block.
macro_rules! random_orders_method {
    () => {
        fn seed(&mut self, seed: u64) {
            self.rng = $crate::weighting::StrategyRng::new(seed);
        }

        fn combine(
            &mut self,
            step: &$crate::weighting::gradient_based::GradientStep,
        ) -> $crate::Result<$crate::weighting::gradient_based::Aggregate> {
            let orders = self.rng.orders(step.gradients().num_tasks());
            step.weigh_gramian(|gram| self.weights_from_gramian(gram, &orders))
        }
    };
}

pub(crate) use random_orders_method;
