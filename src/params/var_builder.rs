//! A `candle_nn::VarBuilder` over the crate's [`ParamStore`]: layers from `candle-nn` and
//! models from `candle-transformers` create their weights in the store, seeded.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use super::{ParamPath, ParamStore};

/// Last path components that name buffers rather than trainable parameters when a variable is
/// created through [`ParamPath::var_builder`]: PyTorch's and candle-nn's names for batch norm
/// state.
pub const BUFFER_NAMES: [&str; 3] = ["running_mean", "running_var", "num_batches_tracked"];

/// True when a variable called `name` is a buffer (its last component is in [`BUFFER_NAMES`]).
pub fn is_buffer_name(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    BUFFER_NAMES.contains(&last)
}

/// The store as candle-nn's backend: `get` creates a variable the first time a name is asked
/// for and hands back the same one after that.
struct StoreBackend<'a> {
    store: &'a ParamStore,
}

impl StoreBackend<'_> {
    fn existing(&self, name: &str, shape: Option<&Shape>) -> candle_core::Result<Option<Tensor>> {
        let Some(var) = self.store.get(name) else {
            return Ok(None);
        };
        if let Some(shape) = shape {
            if var.dims() != shape.dims() {
                candle_core::bail!(
                    "variable '{name}' is asked for with shape {:?} but exists with shape {:?}",
                    shape.dims(),
                    var.dims()
                );
            }
        }
        Ok(Some(var.as_tensor().clone()))
    }
}

fn check_dtype(name: &str, dtype: DType) -> candle_core::Result<()> {
    if dtype != DType::F32 {
        candle_core::bail!(
            "variable '{name}' is asked for in {dtype:?}; candle-mtl trains f32 parameters \
             (convert activations, not weights)"
        );
    }
    Ok(())
}

impl SimpleBackend for StoreBackend<'_> {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        _device: &Device,
    ) -> candle_core::Result<Tensor> {
        check_dtype(name, dtype)?;
        if let Some(t) = self.existing(name, Some(&shape))? {
            return Ok(t);
        }
        let values = self
            .store
            .with_rng(|rng| super::sample_init(&init, shape.dims(), rng));
        let value = Tensor::from_vec(values, shape, &Device::Cpu)?;
        let to_candle = |e: crate::Error| candle_core::Error::Msg(e.to_string());
        if is_buffer_name(name) {
            let var = self
                .store
                .register_buffer(name.to_string(), value)
                .map_err(to_candle)?;
            Ok(var.as_tensor().clone())
        } else {
            let param = self
                .store
                .register(name.to_string(), value)
                .map_err(to_candle)?;
            Ok(param.tensor().clone())
        }
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        _device: &Device,
    ) -> candle_core::Result<Tensor> {
        check_dtype(name, dtype)?;
        match self.existing(name, None)? {
            Some(t) => Ok(t),
            None => candle_core::bail!(
                "variable '{name}' does not exist yet and no shape was given to create it"
            ),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.store.get(name).is_some()
    }
}

impl<'a> ParamPath<'a> {
    /// A [`VarBuilder`] that creates every variable a `candle-nn` layer or a
    /// `candle-transformers` model asks for in this path's store, under this path
    /// (`<path>.<name>`).
    ///
    /// Each variable is drawn from the store's seeded generator following the
    /// [`candle_nn::Init`] the layer asks for (same seed, same weights, on every device), and
    /// is then an ordinary parameter: optimised, frozen by
    /// [`MultiTaskModel::freeze`](crate::model::MultiTaskModel::freeze), checkpointed, counted
    /// as shared under `encoder.*` and seen by gradient-based strategies. Variables whose last
    /// name component is in [`BUFFER_NAMES`] (batch norm's running statistics) become buffers:
    /// saved, loaded and updated by the layer, never trained. Asking twice for one name gives
    /// the same variable (weight tying) when the shapes agree, and an error naming the
    /// variable and both shapes when they do not.
    ///
    /// Such a layer holds its weight tensors directly, so a frozen one still computes
    /// gradients in backward (they are dropped before the update); the crate's own layers,
    /// built on [`Param`](super::Param), skip that work.
    ///
    /// ```
    /// use candle_core::{Device, Module, Tensor};
    /// use candle_mtl::params::ParamStore;
    /// let store = ParamStore::new(&Device::Cpu, 7);
    /// let path = store.path("encoder");
    /// let fc = candle_nn::linear(4, 3, path.var_builder().pp("fc"))?;
    /// let names: Vec<String> = store.named_vars().into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, ["encoder.fc.bias", "encoder.fc.weight"]);
    /// let y = fc.forward(&Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu)?)?;
    /// assert_eq!(y.dims(), [2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn var_builder(&self) -> VarBuilder<'a> {
        let backend: Box<dyn SimpleBackend + 'a> = Box::new(StoreBackend { store: self.store });
        let root = VarBuilder::from_backend(backend, DType::F32, self.store.device().clone());
        if self.prefix.is_empty() {
            root
        } else {
            root.pp(&self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Module;
    use candle_nn::ModuleT;

    #[test]
    fn seeded_weights_shared_names_and_shape_conflicts() -> crate::Result<()> {
        let make = || -> crate::Result<(ParamStore, candle_nn::Linear)> {
            let store = ParamStore::new(&Device::Cpu, 3);
            let fc = candle_nn::linear(5, 2, store.path("encoder").var_builder().pp("fc"))?;
            Ok((store, fc))
        };
        let (a, fa) = make()?;
        let (_, fb) = make()?;
        assert_eq!(
            fa.weight().to_vec2::<f32>()?,
            fb.weight().to_vec2::<f32>()?,
            "same seed, same weights"
        );
        // Asking again with the same shape gives the same variable; another shape is refused.
        let vb = a.path("encoder").var_builder();
        let again = vb.pp("fc").get((2, 5), "weight")?;
        assert_eq!(again.to_vec2::<f32>()?, fa.weight().to_vec2::<f32>()?);
        let err = vb.pp("fc").get((3, 5), "weight").unwrap_err().to_string();
        assert!(
            err.contains("encoder.fc.weight") && err.contains("[3, 5]") && err.contains("[2, 5]"),
            "{err}"
        );
        let x = Tensor::ones((1, 5), DType::F32, &Device::Cpu)?;
        assert_eq!(fa.forward(&x)?.dims(), [1, 2]);
        Ok(())
    }

    #[test]
    fn batch_norm_statistics_are_buffers_updated_in_training() -> crate::Result<()> {
        let store = ParamStore::new(&Device::Cpu, 0);
        let bn = candle_nn::batch_norm(3, 1e-5, store.path("encoder").var_builder().pp("bn"))?;
        let params: Vec<String> = store.named_vars().into_iter().map(|(n, _)| n).collect();
        let buffers: Vec<String> = store.named_buffers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(params, ["encoder.bn.bias", "encoder.bn.weight"]);
        assert_eq!(
            buffers,
            ["encoder.bn.running_mean", "encoder.bn.running_var"]
        );
        let x = (Tensor::arange(0f32, 24., &Device::Cpu)?.reshape((2, 3, 2, 2))? + 1.0)?;
        bn.forward_t(&x, true)?;
        let mean = store
            .get("encoder.bn.running_mean")
            .map(|v| v.to_vec1::<f32>());
        let mean = mean.transpose()?.unwrap_or_default();
        assert!(
            mean.iter().all(|m| *m > 0.0),
            "running mean not updated: {mean:?}"
        );
        Ok(())
    }
}
