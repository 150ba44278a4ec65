use candle_core::Tensor;

use super::Activation;
use crate::error::{Error, Result};
use crate::ops;
use crate::params::{Param, ParamPath};

/// A fully connected layer `y = x W^T + b`, initialised as PyTorch's `nn.Linear`:
/// weight and bias from U(-1/sqrt(in), 1/sqrt(in)).
///
/// Shapes: input `(..., in)`, output `(..., out)`. Parameters: `<path>.weight` `(out, in)` and
/// `<path>.bias` `(out)`.
#[derive(Debug, Clone)]
pub struct Dense {
    weight: Param,
    bias: Param,
    in_dim: usize,
    out_dim: usize,
}

impl Dense {
    /// Creates the layer's parameters under `path`.
    pub fn new(in_dim: usize, out_dim: usize, path: &ParamPath) -> Result<Self> {
        if in_dim == 0 || out_dim == 0 {
            return Err(Error::config(
                path.full_name("shape"),
                format!("{in_dim}x{out_dim}"),
                "a dense layer needs at least one input and one output",
            ));
        }
        let bound = 1.0 / (in_dim as f64).sqrt();
        let weight = path.uniform("weight", &[out_dim, in_dim], bound)?;
        let bias = path.uniform("bias", &[out_dim], bound)?;
        Ok(Self {
            weight,
            bias,
            in_dim,
            out_dim,
        })
    }

    /// Input size.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Output size.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Applies the layer (with [`ops::linear`]: one fused op on the CPU).
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_fused(xs, false)
    }

    /// Applies the layer followed by ReLU (`relu == true`), fused on the CPU.
    pub fn forward_fused(&self, xs: &Tensor, relu: bool) -> Result<Tensor> {
        let (w, b) = (self.weight.tensor(), self.bias.tensor());
        match xs.dims() {
            [_, _] => ops::linear(xs, w, b, relu),
            [.., last] => {
                let rows = xs.elem_count() / (*last).max(1);
                let mut out_dims = xs.dims().to_vec();
                if let Some(l) = out_dims.last_mut() {
                    *l = self.out_dim;
                }
                let ys = ops::linear(&xs.reshape((rows, *last))?, w, b, relu)?;
                Ok(ys.reshape(out_dims)?)
            }
            [] => Err(Error::DataMismatch(
                "a dense layer needs an input with at least one dimension".into(),
            )),
        }
    }
}

/// Dense layers with an activation after each one; optionally none after the last.
///
/// Used by the [`Mlp`](crate::encoder::Mlp) encoder and the [`MlpHead`](crate::head::MlpHead).
#[derive(Debug, Clone)]
pub struct DenseStack {
    layers: Vec<Dense>,
    activation: Activation,
    activate_last: bool,
}

impl DenseStack {
    /// Layers `widths[0] -> widths[1] -> ...`, named `<path>.layer0`, `<path>.layer1`, ...
    pub fn new(
        widths: &[usize],
        activation: Activation,
        activate_last: bool,
        path: &ParamPath,
    ) -> Result<Self> {
        if widths.len() < 2 {
            return Err(Error::config(
                path.full_name("widths"),
                format!("{widths:?}"),
                "needs an input width and at least one layer width",
            ));
        }
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| Dense::new(w[0], w[1], &path.pp(&format!("layer{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            activation,
            activate_last,
        })
    }

    /// Input size of the first layer.
    pub fn in_dim(&self) -> usize {
        self.layers[0].in_dim()
    }

    /// Output size of the last layer.
    pub fn out_dim(&self) -> usize {
        self.layers[self.layers.len() - 1].out_dim()
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Always false: a stack has at least one layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Applies layer `i` and the activation that follows it.
    pub fn forward_layer(&self, i: usize, xs: &Tensor) -> Result<Tensor> {
        let layer = self.layers.get(i).ok_or_else(|| {
            Error::DataMismatch(format!("layer {i} of a {}-layer stack", self.layers.len()))
        })?;
        let activate = i + 1 < self.layers.len() || self.activate_last;
        match (activate, self.activation) {
            (true, Activation::Relu) => layer.forward_fused(xs, true),
            (true, activation) => activation.apply(&layer.forward(xs)?),
            (false, _) => layer.forward(xs),
        }
    }

    /// Applies every layer in turn.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut h = xs.clone();
        for i in 0..self.layers.len() {
            h = self.forward_layer(i, &h)?;
        }
        Ok(h)
    }
}
