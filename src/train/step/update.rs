//! The update pipeline, in one fixed order: the strategy's auxiliary loss (for its learned
//! parameters), the head penalty, the frozen-parameter filter, gradient clipping. The
//! optimiser step follows in the trainer.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use super::forward::squared_norm;
use crate::error::{Error, Result};
use crate::model::{MultiTaskModel, HEADS_PREFIX};
use crate::train::HeadRegularizer;
use crate::weighting::TaskWeighting;

/// What the pipeline reads besides the gradients.
pub(crate) struct Pipeline<'a> {
    pub model: &'a MultiTaskModel,
    pub weighting: &'a dyn TaskWeighting,
    /// The strategy's learned parameters (`weighting.*`).
    pub weighting_vars: &'a [(String, Var)],
    /// Whether the strategy was consulted this step (its auxiliary loss applies only then).
    pub consults_strategy: bool,
    pub head_regularizer: Option<HeadRegularizer>,
    pub max_grad_norm: Option<f64>,
    pub step: u64,
}

/// The gradients after the pipeline, the head penalty's value and the norm before clipping.
pub(crate) struct Finished {
    pub grads: GradStore,
    pub regularization: Option<f64>,
    pub grad_norm: Option<f64>,
}

impl Pipeline<'_> {
    /// Runs every stage on `grads` for a step over `active` whose losses are `losses`.
    pub fn run(
        &self,
        losses: &[Tensor],
        active: &[usize],
        mut grads: GradStore,
    ) -> Result<Finished> {
        if self.consults_strategy && !self.weighting_vars.is_empty() {
            let detached = losses.iter().map(Tensor::detach).collect::<Vec<_>>();
            if let Some(aux) = self.weighting.auxiliary_loss(&detached)? {
                let aux_grads = aux.backward()?;
                for (_, var) in self.weighting_vars {
                    if let Some(g) = aux_grads.get(var) {
                        grads.insert(var.as_tensor(), g.clone());
                    }
                }
            }
        }
        let regularization = match self.head_regularizer {
            Some(r) => Some(self.add_head_penalty(&r, active, &mut grads)?),
            None => None,
        };
        // Frozen parameters of layers that do not read them through `Param` may still have
        // received a gradient: they are not updated either way.
        for (name, var) in self.model.params().named_vars() {
            if self.model.is_frozen(&name) {
                grads.remove(var.as_tensor());
            }
        }
        let grad_norm = match self.max_grad_norm {
            Some(max) => Some(self.clip(&mut grads, max)?),
            None => None,
        };
        Ok(Finished {
            grads,
            regularization,
            grad_norm,
        })
    }

    /// Adds the gradient of the head penalties to `grads`; returns the penalty's value.
    fn add_head_penalty(
        &self,
        r: &HeadRegularizer,
        active: &[usize],
        grads: &mut GradStore,
    ) -> Result<f64> {
        // Same-named, same-shaped head parameters are grouped for the pull towards their mean.
        let mut groups: Vec<(String, Vec<Tensor>)> = Vec::new();
        let mut vars = Vec::new();
        let mut l1: Option<Tensor> = None;
        for &k in active {
            let prefix = format!("{HEADS_PREFIX}.{}.", self.model.tasks()[k].name());
            for (name, var) in self.model.head_vars(k) {
                if self.model.is_frozen(&name) {
                    continue;
                }
                let inner = name.strip_prefix(&prefix).unwrap_or(&name).to_string();
                let t = var.as_tensor().clone();
                if r.l1 > 0.0 && inner.ends_with("weight") {
                    let term = t.abs()?.sum_all()?;
                    l1 = Some(match l1 {
                        Some(a) => (a + term)?,
                        None => term,
                    });
                }
                let key = format!("{inner}{:?}", t.dims());
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, members)) => members.push(t),
                    None => groups.push((key, vec![t])),
                }
                vars.push(var);
            }
        }
        let mut penalty: Option<Tensor> = l1.map(|a| a.affine(r.l1, 0.0)).transpose()?;
        if r.mean_l2 > 0.0 {
            for (_, members) in groups.iter().filter(|(_, m)| m.len() > 1) {
                let stacked = Tensor::stack(members, 0)?;
                let mean = stacked.mean_keepdim(0)?;
                let term = stacked
                    .broadcast_sub(&mean)?
                    .sqr()?
                    .sum_all()?
                    .affine(r.mean_l2, 0.0)?;
                penalty = Some(match penalty {
                    Some(p) => (p + term)?,
                    None => term,
                });
            }
        }
        let Some(penalty) = penalty else {
            return Ok(0.0);
        };
        let value = f64::from(penalty.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        let penalty_grads = penalty.backward()?;
        for var in vars {
            if let Some(g) = penalty_grads.get(&var) {
                let g = match grads.remove(var.as_tensor()) {
                    Some(prev) => (prev + g)?,
                    None => g.clone(),
                };
                grads.insert(var.as_tensor(), g);
            }
        }
        Ok(value)
    }

    /// Scales `grads` so that their global L2 norm is at most `max`; returns the norm before.
    /// The squares are added in parameter-name order.
    fn clip(&self, grads: &mut GradStore, max: f64) -> Result<f64> {
        let mut vars = self.model.params().named_vars();
        vars.extend(self.weighting_vars.iter().cloned());
        let mut sq = 0.0;
        for (_, v) in &vars {
            if let Some(g) = grads.get(v) {
                sq += squared_norm(g)?;
            }
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(Error::NonFinite {
                quantity: "gradient",
                task: "(all tasks, global norm)".into(),
                step: self.step,
                value: norm,
            });
        }
        if norm > max {
            let scale = max / norm;
            for (_, v) in &vars {
                if let Some(g) = grads.remove(v.as_tensor()) {
                    grads.insert(v.as_tensor(), g.affine(scale, 0.0)?);
                }
            }
        }
        Ok(norm)
    }
}
