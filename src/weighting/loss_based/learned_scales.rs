//! The [`TaskWeighting`](crate::weighting::TaskWeighting) implementation shared by the
//! strategies that learn one log-scale per task ([`Uncertainty`](super::Uncertainty),
//! [`ImtlL`](super::ImtlL)): the scales are a learnable variable updated by the trainer's
//! optimiser through the linear surrogate of their analytic gradient, and each step's loss
//! weights come from the strategy's own `scalarize`.
//!
//! A strategy of this kind holds a `Vec<f64>` field (the scales' initial and current values)
//! and a `learned: LearnedParameters`, and has `scalarize(&self, &[f64]) -> Result<Scalarized,
//! String>` and `parameter_gradient(&self, &[f64]) -> Result<Vec<f64>, String>`.

/// Implements `TaskWeighting` for `$strategy`, named `$name`, whose scales live in the field
/// `$field` and are exposed as the parameter `$parameter` (`$what` names them in errors).
macro_rules! learned_scale_weighting {
    ($strategy:ty, $name:literal, $field:ident, $parameter:literal, $what:literal) => {
        impl $crate::weighting::TaskWeighting for $strategy {
            fn name(&self) -> &str {
                $name
            }

            fn prepare(
                &mut self,
                setup: &$crate::weighting::WeightingSetup,
            ) -> $crate::error::Result<()> {
                super::scalarize::sized_for(
                    &mut self.$field,
                    setup.task_names.len(),
                    $name,
                    $what,
                )?;
                self.learned.init(&self.$field)
            }

            fn parameters(&self) -> Vec<(String, candle_core::Var)> {
                self.learned.named($parameter)
            }

            fn decide(
                &mut self,
                input: &$crate::weighting::StepInput,
            ) -> $crate::error::Result<$crate::weighting::Decision> {
                self.learned.refresh(&mut self.$field)?;
                let s = self
                    .scalarize(input.losses)
                    .map_err($crate::weighting::support::solver_error($name))?;
                Ok($crate::weighting::Decision::Weights(s.loss_weights))
            }

            fn auxiliary_loss(
                &self,
                detached_losses: &[candle_core::Tensor],
            ) -> $crate::error::Result<Option<candle_core::Tensor>> {
                let losses = super::scalarize::loss_values(detached_losses)?;
                let g = self
                    .parameter_gradient(&losses)
                    .map_err($crate::weighting::support::solver_error($name))?;
                self.learned.surrogate(&g)
            }
        }
    };
}

pub(super) use learned_scale_weighting;
