//! Optimisers with their state in the open, per parameter by name.
//!
//! candle's `AdamW` keeps its moments private, shares one step count between all parameters
//! and has no SGD momentum. These optimisers keep per-parameter state (step count, moments)
//! keyed by parameter name, so a parameter that skips steps (a frozen layer, an alternating
//! task's head) gets correct bias correction and the state can be checkpointed.

mod adam;
mod sgd;

pub use adam::AdamConfig;
pub use sgd::SgdConfig;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::{Error, Result};

/// Which optimiser to train with, chosen at run time.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub enum OptimizerConfig {
    /// Adam (Kingma & Ba, 2015); `weight_decay` is an L2 penalty added to the gradient, as
    /// `torch.optim.Adam`.
    Adam(AdamConfig),
    /// AdamW (Loshchilov & Hutter, 2019); `weight_decay` decays the weights directly.
    AdamW(AdamConfig),
    /// Stochastic gradient descent with optional momentum (PyTorch's formulation).
    Sgd(SgdConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Adam(AdamConfig::default())
    }
}

impl OptimizerConfig {
    /// Adam with learning rate `lr` and PyTorch's other defaults.
    pub fn adam(lr: f64) -> Self {
        OptimizerConfig::Adam(AdamConfig {
            lr,
            ..Default::default()
        })
    }

    /// AdamW with learning rate `lr` and weight decay 0.01 (PyTorch's default).
    pub fn adamw(lr: f64) -> Self {
        OptimizerConfig::AdamW(AdamConfig {
            lr,
            weight_decay: 0.01,
            ..Default::default()
        })
    }

    /// SGD with learning rate `lr` and `momentum`.
    pub fn sgd(lr: f64, momentum: f64) -> Self {
        OptimizerConfig::Sgd(SgdConfig {
            lr,
            momentum,
            ..Default::default()
        })
    }

    /// Parses `adam`, `adamw` or `sgd` with learning rate `lr` (SGD with momentum 0.9).
    pub fn from_name(name: &str, lr: f64) -> Result<Self> {
        match name {
            "adam" => Ok(Self::adam(lr)),
            "adamw" => Ok(Self::adamw(lr)),
            "sgd" => Ok(Self::sgd(lr, 0.9)),
            other => Err(Error::config(
                "optimizer",
                other,
                "expected adam, adamw or sgd",
            )),
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Adam(c) | OptimizerConfig::AdamW(c) => c.lr,
            OptimizerConfig::Sgd(c) => c.lr,
        }
    }

    /// Checks every hyper-parameter's range.
    pub fn validate(&self) -> Result<()> {
        match self {
            OptimizerConfig::Adam(c) | OptimizerConfig::AdamW(c) => c.validate(),
            OptimizerConfig::Sgd(c) => c.validate(),
        }
    }
}

/// Per-parameter optimiser state.
#[derive(Debug, Clone, Default)]
struct ParamState {
    steps: u64,
    first: Option<Tensor>,
    second: Option<Tensor>,
}

/// An optimiser over a fixed, named list of parameters.
#[derive(Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<(String, Var)>,
    state: Vec<ParamState>,
}

impl Optimizer {
    /// An optimiser for `params` (`(name, var)` pairs).
    pub fn new(config: OptimizerConfig, params: Vec<(String, Var)>) -> Result<Self> {
        config.validate()?;
        let state = vec![ParamState::default(); params.len()];
        Ok(Self {
            config,
            params,
            state,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// The current learning rate.
    pub fn learning_rate(&self) -> f64 {
        self.config.lr()
    }

    /// Changes the learning rate (for schedules).
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::config(
                "learning rate",
                lr,
                "must be finite and >= 0",
            ));
        }
        match &mut self.config {
            OptimizerConfig::Adam(c) | OptimizerConfig::AdamW(c) => c.lr = lr,
            OptimizerConfig::Sgd(c) => c.lr = lr,
        }
        Ok(())
    }

    /// Number of updates applied to parameter `name`, if it is optimised here.
    pub fn steps_of(&self, name: &str) -> Option<u64> {
        self.params
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| self.state[i].steps)
    }

    /// The optimiser state as named tensors (`<param>.steps`, `<param>.first`, `<param>.second`)
    /// for checkpoints.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for ((name, _), st) in self.params.iter().zip(&self.state) {
            out.push((
                format!("{name}.steps"),
                Tensor::from_vec(vec![st.steps as i64], 1, &candle_core::Device::Cpu)?,
            ));
            if let Some(m) = &st.first {
                out.push((format!("{name}.first"), m.clone()));
            }
            if let Some(v) = &st.second {
                out.push((format!("{name}.second"), v.clone()));
            }
        }
        Ok(out)
    }

    /// Restores the state written by [`state_tensors`](Self::state_tensors); `get` looks a
    /// tensor up by name. Every parameter's step count must be present.
    pub fn load_state_tensors(&mut self, get: &dyn Fn(&str) -> Option<Tensor>) -> Result<()> {
        for ((name, var), st) in self.params.iter().zip(self.state.iter_mut()) {
            let steps = get(&format!("{name}.steps")).ok_or_else(|| {
                Error::config(
                    "checkpoint optimiser state",
                    name,
                    "has no step count for this parameter",
                )
            })?;
            st.steps = steps
                .to_dtype(candle_core::DType::I64)?
                .to_vec1::<i64>()?
                .first()
                .copied()
                .unwrap_or(0)
                .max(0) as u64;
            let moment = |t: Option<Tensor>| -> Result<Option<Tensor>> {
                match t {
                    Some(t) if t.dims() == var.dims() => {
                        Ok(Some(t.to_device(var.device())?.to_dtype(var.dtype())?))
                    }
                    Some(t) => Err(Error::config(
                        "checkpoint optimiser state",
                        name,
                        format!(
                            "has a moment of shape {:?}, the parameter is {:?}",
                            t.dims(),
                            var.dims()
                        ),
                    )),
                    None => Ok(None),
                }
            };
            st.first = moment(get(&format!("{name}.first")))?;
            st.second = moment(get(&format!("{name}.second")))?;
        }
        Ok(())
    }

    /// Applies one update to every parameter that has a gradient in `grads`; the others keep
    /// their values and state.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        for ((_, var), state) in self.params.iter().zip(self.state.iter_mut()) {
            let Some(grad) = grads.get(var) else { continue };
            let theta = var.as_detached_tensor();
            let grad = grad.detach();
            let updated = match &self.config {
                OptimizerConfig::Adam(c) => adam::update(c, false, &theta, &grad, state)?,
                OptimizerConfig::AdamW(c) => adam::update(c, true, &theta, &grad, state)?,
                OptimizerConfig::Sgd(c) => sgd::update(c, &theta, &grad, state)?,
            };
            var.set(&updated)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use candle_core::Device;

    fn run(config: OptimizerConfig, steps: usize) -> Result<Vec<f32>> {
        // Minimise (x - 3)^2 from x = [0, 1].
        let x = Var::new(&[0f32, 1.0], &Device::Cpu)?;
        let mut opt = Optimizer::new(config, vec![("x".into(), x.clone())])?;
        for _ in 0..steps {
            let loss = (x.as_tensor() - 3.0)?.sqr()?.sum_all()?;
            opt.step(&loss.backward()?)?;
        }
        Ok(x.as_tensor().to_vec1::<f32>()?)
    }

    #[test]
    fn adam_steps_move_each_coordinate_by_about_lr() -> Result<()> {
        // Adam (lr 0.1) on ((x-3)^2).sum() from x0 = [0, 1], 3 steps, as torch.optim.Adam does it:
        // the first Adam step moves each coordinate by lr (sign of the gradient), and with a
        // constant-sign gradient every step moves it by almost exactly lr.
        let x = run(OptimizerConfig::adam(0.1), 3)?;
        assert_abs_diff_eq!(x[0], 0.3, epsilon = 1e-3);
        assert_abs_diff_eq!(x[1], 1.3, epsilon = 1e-3);
        Ok(())
    }

    #[test]
    fn every_optimizer_converges() -> Result<()> {
        for cfg in [
            OptimizerConfig::adam(0.1),
            OptimizerConfig::adamw(0.1),
            OptimizerConfig::sgd(0.1, 0.0),
            OptimizerConfig::sgd(0.05, 0.9),
        ] {
            let x = run(cfg.clone(), 300)?;
            assert_abs_diff_eq!(x[0], 3.0, epsilon = 0.05);
            assert_abs_diff_eq!(x[1], 3.0, epsilon = 0.05);
        }
        Ok(())
    }

    #[test]
    fn sgd_matches_hand_computation() -> Result<()> {
        // x=0, g=-6: buf=-6, x=0.6; g=-4.8: buf=0.9*-6-4.8=-10.2, x=0.6+1.02=1.62
        let x = run(OptimizerConfig::sgd(0.1, 0.9), 2)?;
        assert_abs_diff_eq!(x[0], 1.62, epsilon = 1e-5);
        Ok(())
    }

    #[test]
    fn vars_without_gradient_keep_values_and_step_counts() -> Result<()> {
        let a = Var::new(&[1f32], &Device::Cpu)?;
        let b = Var::new(&[1f32], &Device::Cpu)?;
        let mut opt = Optimizer::new(
            OptimizerConfig::adam(0.1),
            vec![("a".into(), a.clone()), ("b".into(), b.clone())],
        )?;
        let loss = a.as_tensor().sum_all()?;
        opt.step(&loss.backward()?)?;
        assert_eq!(b.as_tensor().to_vec1::<f32>()?, vec![1.0]);
        assert_eq!(opt.steps_of("a"), Some(1));
        assert_eq!(opt.steps_of("b"), Some(0));
        assert!(Optimizer::new(OptimizerConfig::adam(-1.0), vec![]).is_err());
        Ok(())
    }
}
