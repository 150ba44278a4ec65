//! An encoder for batches of small graphs, each with its own structure.

use candle_core::Tensor;

use super::SharedEncoder;
use crate::error::{Error, Result};
use crate::layers::{GraphConvKind, GraphStack};
use crate::params::ParamPath;

/// The shape of a [`GraphEncoder`].
///
/// | name | default | meaning |
/// | --- | --- | --- |
/// | `nodes` | — | nodes per graph `V` (every graph has `V` nodes: padding nodes would count in the mean) |
/// | `features` | — | features per node `F` |
/// | `kind` | GCN | graph convolution or attention layers |
/// | `widths` | `[64, 64]` | width of each graph layer; the last is the representation size |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphEncoderConfig {
    /// Nodes per graph.
    pub nodes: usize,
    /// Features per node.
    pub features: usize,
    /// Layer kind.
    pub kind: GraphConvKind,
    /// Layer widths.
    pub widths: Vec<usize>,
}

impl GraphEncoderConfig {
    /// Graphs of `nodes` nodes with `features` features each, two GCN layers of 64.
    pub fn new(nodes: usize, features: usize) -> Self {
        Self {
            nodes,
            features,
            kind: GraphConvKind::Gcn,
            widths: vec![64, 64],
        }
    }
}

/// Encodes graphs given as one tensor per batch, `(N, V, F + V)`: for each node its `F`
/// features, then its row of the graph's 0/1 adjacency (so a batch of graphs of different
/// structures travels as an ordinary input: a dataset row is a graph). Graph layers (ReLU
/// after each) and a mean over the nodes give the representation `(N, widths[last])`.
/// Parameters: `encoder.graph<i>.*`.
#[derive(Debug, Clone)]
pub struct GraphEncoder {
    config: GraphEncoderConfig,
    stack: GraphStack,
}

impl GraphEncoder {
    /// Builds the layers; refuses zero nodes or features and empty or zero widths.
    pub fn new(config: &GraphEncoderConfig, path: &ParamPath) -> Result<Self> {
        if config.nodes == 0 || config.features == 0 {
            return Err(Error::config(
                "GraphEncoderConfig nodes x features",
                format!("{} x {}", config.nodes, config.features),
                "must both be at least 1",
            ));
        }
        Ok(Self {
            stack: GraphStack::new(config.kind, config.features, &config.widths, path)?,
            config: config.clone(),
        })
    }

    /// Packs node features `(N, V, F)` and adjacencies `(N, V, V)` into the encoder's input.
    pub fn pack(features: &Tensor, adjacency: &Tensor) -> Result<Tensor> {
        Ok(Tensor::cat(
            &[features, &adjacency.to_dtype(features.dtype())?],
            2,
        )?)
    }
}

impl SharedEncoder for GraphEncoder {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let (v, f) = (self.config.nodes, self.config.features);
        let n = xs.dims().first().copied().unwrap_or(0);
        if xs.dims() != [n, v, f + v] {
            return Err(Error::DataMismatch(format!(
                "GraphEncoder expects graphs (N, {v}, {}) ({v} nodes: {f} features, then the \
                 node's adjacency row of {v}), got {:?}",
                f + v,
                xs.dims()
            )));
        }
        let features = xs.narrow(2, 0, f)?;
        let adjacency = xs.narrow(2, f, v)?.contiguous()?;
        let h = self
            .stack
            .forward(&features, &self.stack.prepare(&adjacency)?)?;
        GraphStack::mean_pool(&h)
    }

    fn output_dim(&self) -> usize {
        self.stack.out_dim()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;
    use candle_core::{DType, Device};

    #[test]
    fn packed_graphs_encode_and_wrong_shapes_are_named() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 0);
        let config = GraphEncoderConfig {
            widths: vec![8],
            ..GraphEncoderConfig::new(3, 2)
        };
        let enc = GraphEncoder::new(&config, &store.path("encoder"))?;
        let x = Tensor::randn(0f32, 1.0, (4, 3, 2), &Device::Cpu)?;
        let a = Tensor::zeros((4, 3, 3), DType::F32, &Device::Cpu)?;
        let y = enc.forward_t(&GraphEncoder::pack(&x, &a)?, false)?;
        assert_eq!(y.dims(), [4, 8]);
        let err = enc.forward_t(&x, false).unwrap_err().to_string();
        assert!(
            err.contains("(N, 3, 5)") && err.contains("[4, 3, 2]"),
            "{err}"
        );
        Ok(())
    }
}
