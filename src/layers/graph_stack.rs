//! A stack of graph layers with ReLU between them and mean pooling over nodes, shared by
//! [`GraphHead`](crate::head::GraphHead) and [`GraphEncoder`](crate::encoder::GraphEncoder).

use candle_core::Tensor;

use super::graph::{GatLayer, GcnLayer};
use crate::error::{Error, Result};
use crate::params::ParamPath;

/// Which graph layer a stack is made of.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphConvKind {
    /// Graph convolution, [`GcnLayer`].
    #[default]
    Gcn,
    /// Graph attention, [`GatLayer`].
    Gat,
}

#[derive(Debug, Clone)]
enum Layer {
    Gcn(GcnLayer),
    Gat(GatLayer),
}

/// Graph layers `in_dim -> widths[0] -> ... -> widths[last]`, each followed by ReLU.
/// Parameters: `<path>.graph<i>.*`.
#[derive(Debug, Clone)]
pub struct GraphStack {
    layers: Vec<Layer>,
    kind: GraphConvKind,
    out_dim: usize,
}

impl GraphStack {
    /// Refuses an empty `widths` or a zero width.
    pub fn new(
        kind: GraphConvKind,
        in_dim: usize,
        widths: &[usize],
        path: &ParamPath,
    ) -> Result<Self> {
        if widths.is_empty() || widths.contains(&0) {
            return Err(Error::config(
                "graph layer widths",
                format!("{widths:?}"),
                "need at least one layer, each at least 1 wide",
            ));
        }
        let mut layers = Vec::with_capacity(widths.len());
        let mut d = in_dim;
        for (i, &w) in widths.iter().enumerate() {
            let p = path.pp(&format!("graph{i}"));
            layers.push(match kind {
                GraphConvKind::Gcn => Layer::Gcn(GcnLayer::new(d, w, &p)?),
                GraphConvKind::Gat => Layer::Gat(GatLayer::new(d, w, &p)?),
            });
            d = w;
        }
        Ok(Self {
            layers,
            kind,
            out_dim: d,
        })
    }

    /// Width of the last layer.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// What the layers read for a 0/1 adjacency `(V, V)` or `(N, V, V)`: its GCN
    /// normalisation, or the adjacency itself for attention. Computed once per batch (once
    /// for good for a fixed structure).
    pub fn prepare(&self, adjacency: &Tensor) -> Result<Tensor> {
        match self.kind {
            GraphConvKind::Gcn => GcnLayer::normalize(adjacency),
            GraphConvKind::Gat => Ok(adjacency.clone()),
        }
    }

    /// Node features `(N, V, F)` through every layer (ReLU after each), with an adjacency
    /// from [`prepare`](Self::prepare).
    pub fn forward(&self, x: &Tensor, prepared: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.layers {
            h = match layer {
                Layer::Gcn(l) => l.forward(&h, prepared)?,
                Layer::Gat(l) => l.forward(&h, prepared)?,
            }
            .relu()?;
        }
        Ok(h)
    }

    /// Mean over the nodes: `(N, V, F)` to `(N, F)`.
    pub fn mean_pool(h: &Tensor) -> Result<Tensor> {
        Ok(h.mean(1)?)
    }
}
