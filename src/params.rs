//! Parameters named by path and initialised from the crate's own seeded generator.
//!
//! candle cannot seed its CPU random generator, so layers built through
//! `candle_nn::VarBuilder` start from different weights on every run. [`ParamStore`] creates
//! every parameter itself, from a ChaCha generator seeded by the caller, always on the CPU
//! (so a seed gives the same initial weights on every device) and then moves it to the model's
//! device. Parameters are registered in a [`VarMap`] under dotted paths such as
//! `encoder.conv1.weight` or `heads.digit.linear.bias`.
//!
//! Besides trainable parameters the store holds *buffers*: tensors that are part of a model's
//! state but are never trained (batch norm's running mean and variance). They are saved in
//! checkpoints and components, never given to the optimiser or to gradient strategies.
//!
//! Layers from `candle-nn` or `candle-transformers` create their variables through
//! [`ParamPath::var_builder`], which draws them from the same seeded generator.

mod init;
mod var_builder;

use init::sample_init;
pub use var_builder::{is_buffer_name, BUFFER_NAMES};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Owns every trainable parameter of a model, by name.
pub struct ParamStore {
    varmap: VarMap,
    buffers: Mutex<BTreeMap<String, Var>>,
    rng: Mutex<ChaCha8Rng>,
    device: Device,
    frozen: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

/// A parameter as a layer holds it: the live tensor, or a detached view of the same storage
/// while the parameter is frozen.
///
/// A frozen parameter enters the forward pass as a detached tensor, so candle records no graph
/// for it: backward computes no gradient for it, nor for anything below it that depends only on
/// frozen parameters and data. Updates made through the [`Var`] (the optimiser's) are visible
/// through both views, which share one storage.
#[derive(Debug, Clone)]
pub struct Param {
    tracked: Tensor,
    detached: Tensor,
    frozen: Arc<AtomicBool>,
}

impl Param {
    /// The tensor to compute with: tracked by autograd unless the parameter is frozen.
    pub fn tensor(&self) -> &Tensor {
        if self.frozen.load(Ordering::Relaxed) {
            &self.detached
        } else {
            &self.tracked
        }
    }

    /// True while the parameter is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Relaxed)
    }
}

impl ParamStore {
    /// A store whose parameters live on `device`, initialised from `seed`.
    pub fn new(device: &Device, seed: u64) -> Self {
        Self {
            varmap: VarMap::new(),
            buffers: Mutex::new(BTreeMap::new()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            device: device.clone(),
            frozen: Mutex::new(HashMap::new()),
        }
    }

    /// Freezes (`true`) or releases every parameter whose name is `prefix` or starts with
    /// `prefix.`; returns how many parameters matched. Frozen parameters get no gradient and
    /// are not updated by the trainer.
    pub fn set_frozen(&self, prefix: &str, frozen: bool) -> usize {
        let flags = match self.frozen.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let dotted = format!("{prefix}.");
        let mut n = 0;
        for (name, flag) in flags.iter() {
            if prefix.is_empty() || name == prefix || name.starts_with(&dotted) {
                flag.store(frozen, Ordering::Relaxed);
                n += 1;
            }
        }
        n
    }

    /// True when parameter `name` is frozen.
    pub fn is_frozen(&self, name: &str) -> bool {
        let flags = match self.frozen.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        flags.get(name).is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Parameters that are not frozen, as `(name, var)`, sorted by name.
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.named_vars()
            .into_iter()
            .filter(|(n, _)| !self.is_frozen(n))
            .collect()
    }

    /// The device parameters are placed on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A handle that creates parameters under `prefix` (dotted path, may be empty).
    pub fn path(&self, prefix: &str) -> ParamPath<'_> {
        ParamPath {
            store: self,
            prefix: prefix.to_string(),
        }
    }

    /// The underlying candle `VarMap` (for `save`/`load` of the weights).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// All parameters as `(name, var)`, sorted by name: a fixed order, unlike `VarMap::all_vars`.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = match self.varmap.data().lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Number of scalar parameters whose name starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.named_vars()
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, v)| v.elem_count())
            .sum()
    }

    /// Buffers (state that is not trained, such as batch norm's running statistics) as
    /// `(name, var)`, sorted by name.
    pub fn named_buffers(&self) -> Vec<(String, Var)> {
        lock(&self.buffers)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every tensor of the model's state, parameters and buffers, as `(name, var)` sorted by
    /// name: what checkpoints and saved models hold.
    pub fn named_state(&self) -> Vec<(String, Var)> {
        let mut all = self.named_vars();
        all.extend(self.named_buffers());
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The parameter or buffer called `name`, if the store has one.
    pub fn get(&self, name: &str) -> Option<Var> {
        if let Some(v) = lock(self.varmap.data()).get(name) {
            return Some(v.clone());
        }
        lock(&self.buffers).get(name).cloned()
    }

    fn register_buffer(&self, name: String, value: Tensor) -> Result<Var> {
        let var = Var::from_tensor(&value.to_device(&self.device)?)?;
        let params = lock(self.varmap.data());
        let mut buffers = lock(&self.buffers);
        if params.contains_key(&name) || buffers.contains_key(&name) {
            return Err(Error::config(
                "buffer name",
                &name,
                "is defined twice; give each layer a distinct path",
            ));
        }
        buffers.insert(name, var.clone());
        Ok(var)
    }

    fn register(&self, name: String, value: Tensor) -> Result<Param> {
        let var = Var::from_tensor(&value.to_device(&self.device)?)?;
        let mut data = match self.varmap.data().lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if data.contains_key(&name) || lock(&self.buffers).contains_key(&name) {
            return Err(Error::config(
                "parameter name",
                &name,
                "is defined twice; give each layer a distinct path",
            ));
        }
        let tracked = var.as_tensor().clone();
        data.insert(name.clone(), var);
        let frozen = Arc::new(AtomicBool::new(false));
        let mut flags = match self.frozen.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        flags.insert(name, frozen.clone());
        Ok(Param {
            detached: tracked.detach(),
            tracked,
            frozen,
        })
    }

    /// Runs `f` with the store's seeded generator (the one every initialisation draws from).
    fn with_rng<T>(&self, f: impl FnOnce(&mut ChaCha8Rng) -> T) -> T {
        f(&mut lock(&self.rng))
    }

    fn uniform_values(&self, n: usize, bound: f64) -> Vec<f32> {
        let mut rng = match self.rng.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let bound = bound as f32;
        (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
    }
}

/// Locks `m`, going on with the data when another thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Creates parameters under a dotted path of a [`ParamStore`]; see [`ParamPath::pp`].
#[derive(Clone)]
pub struct ParamPath<'a> {
    store: &'a ParamStore,
    prefix: String,
}

impl<'a> ParamPath<'a> {
    /// A sub-path: `encoder` then `pp("conv1")` gives `encoder.conv1`.
    pub fn pp(&self, name: &str) -> ParamPath<'a> {
        ParamPath {
            store: self.store,
            prefix: self.full_name(name),
        }
    }

    /// The full dotted name of `name` under this path.
    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    /// The device parameters are created on.
    pub fn device(&self) -> &Device {
        self.store.device()
    }

    /// A parameter drawn from U(-bound, bound), the rule PyTorch uses by default for linear and
    /// convolution layers with `bound = 1/sqrt(fan_in)`.
    pub fn uniform(&self, name: &str, shape: &[usize], bound: f64) -> Result<Param> {
        let t = self.uniform_tensor(name, shape, bound)?;
        self.store.register(self.full_name(name), t)
    }

    /// Values of `shape` drawn from U(-bound, bound); `name` for the error on a bad bound.
    fn uniform_tensor(&self, name: &str, shape: &[usize], bound: f64) -> Result<Tensor> {
        if !(bound.is_finite() && bound >= 0.0) {
            return Err(Error::config(
                self.full_name(name),
                bound,
                "initialisation bound must be finite and >= 0",
            ));
        }
        let n: usize = shape.iter().product();
        Ok(Tensor::from_vec(
            self.store.uniform_values(n, bound),
            shape,
            &Device::Cpu,
        )?)
    }

    /// A parameter with the given values (row-major, `shape`'s element count).
    pub fn values(&self, name: &str, shape: &[usize], values: Vec<f32>) -> Result<Param> {
        let n: usize = shape.iter().product();
        if values.len() != n {
            return Err(Error::config(
                self.full_name(name),
                format!("{} values", values.len()),
                format!("shape {shape:?} needs {n}"),
            ));
        }
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?;
        self.store.register(self.full_name(name), t)
    }

    /// A parameter filled with `value`.
    pub fn constant(&self, name: &str, shape: &[usize], value: f64) -> Result<Param> {
        let t = (Tensor::ones(shape, DType::F32, &Device::Cpu)? * value)?;
        self.store.register(self.full_name(name), t)
    }

    /// A parameter initialised following a candle-nn [`Init`](candle_nn::Init) hint
    /// (constant, uniform, normal or Kaiming), drawn from the store's seeded generator.
    pub fn init(&self, name: &str, shape: &[usize], init: candle_nn::Init) -> Result<Param> {
        let values = self.store.with_rng(|rng| sample_init(&init, shape, rng));
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?;
        self.store.register(self.full_name(name), t)
    }

    /// A buffer drawn from U(-bound, bound) with the store's seeded generator: weights that
    /// the trainer neither trains nor offers its strategies, updated by their layer itself
    /// (an adversarial head's discriminator), saved and loaded with the model.
    pub fn uniform_buffer(&self, name: &str, shape: &[usize], bound: f64) -> Result<Var> {
        let t = self.uniform_tensor(name, shape, bound)?;
        self.store.register_buffer(self.full_name(name), t)
    }

    /// A buffer filled with `value`: model state that is saved and loaded with the
    /// parameters but never trained (running statistics). The layer updates it with
    /// [`Var::set`].
    pub fn buffer(&self, name: &str, shape: &[usize], value: f64) -> Result<Var> {
        let t = (Tensor::ones(shape, DType::F32, &Device::Cpu)? * value)?;
        self.store.register_buffer(self.full_name(name), t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_values_and_sorted_names() -> Result<()> {
        let a = ParamStore::new(&Device::Cpu, 7);
        let b = ParamStore::new(&Device::Cpu, 7);
        let ta = a.path("enc").uniform("w", &[3, 4], 0.5)?;
        let tb = b.path("enc").uniform("w", &[3, 4], 0.5)?;
        assert_eq!(ta.tensor().to_vec2::<f32>()?, tb.tensor().to_vec2::<f32>()?);
        a.path("enc").pp("z").constant("b", &[2], 0.0)?;
        a.path("a").constant("b", &[2], 1.0)?;
        let names: Vec<String> = a.named_vars().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["a.b", "enc.w", "enc.z.b"]);
        assert_eq!(a.count("enc"), 14);
        Ok(())
    }

    #[test]
    fn values_stay_within_bound_and_duplicates_are_refused() -> Result<()> {
        let s = ParamStore::new(&Device::Cpu, 1);
        let t = s.path("").uniform("w", &[1000], 0.1)?;
        let v = t.tensor().to_vec1::<f32>()?;
        assert!(v.iter().all(|x| x.abs() <= 0.1));
        assert!(v.iter().any(|x| *x > 0.05) && v.iter().any(|x| *x < -0.05));
        let err = s.path("").uniform("w", &[2], 0.1).unwrap_err();
        assert!(err.to_string().contains("'w'") || err.to_string().contains("w"));
        Ok(())
    }

    #[test]
    fn frozen_parameters_enter_the_graph_detached_and_follow_updates() -> Result<()> {
        let s = ParamStore::new(&Device::Cpu, 3);
        let w = s.path("encoder").uniform("w", &[3], 1.0)?;
        let h = s.path("heads.a").uniform("w", &[3], 1.0)?;
        assert_eq!(s.set_frozen("encoder", true), 1);
        assert!(w.is_frozen() && !h.is_frozen() && s.is_frozen("encoder.w"));
        let loss = (w.tensor() * h.tensor())?.sum_all()?;
        let grads = loss.backward()?;
        let vars = s.named_vars();
        let var = |n: &str| {
            vars.iter()
                .find(|(m, _)| m == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert!(
            grads.get(&var("encoder.w")).is_none(),
            "a frozen parameter got a gradient"
        );
        assert!(grads.get(&var("heads.a.w")).is_some());
        // An update through the Var is seen by the detached view.
        var("encoder.w").set(&Tensor::new(&[1f32, 2., 3.], &Device::Cpu)?)?;
        assert_eq!(w.tensor().to_vec1::<f32>()?, vec![1., 2., 3.]);
        assert_eq!(s.trainable_vars().len(), 1);
        assert_eq!(s.set_frozen("encoder", false), 1);
        assert!(!w.is_frozen());
        assert_eq!(
            s.set_frozen("enc", true),
            0,
            "prefixes match whole path components"
        );
        Ok(())
    }
}
