//! A graph head: the representation read as node features over a fixed graph.

use candle_core::Tensor;

use super::TaskHead;
use crate::error::{Error, Result};
use crate::layers::{Adjacency, Dense, GraphConvKind, GraphStack};
use crate::params::ParamPath;

/// How a [`GraphHead`] reads its representation `(N, D)` as node features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeLayout {
    /// A feature map `(C, H, W)` flattened channel by channel (a
    /// [`ConvNet`](crate::encoder::ConvNet) with `hidden: 0`): `H * W` nodes of `C` features.
    FeatureMap {
        /// Channels: features per node.
        channels: usize,
        /// Rows of the grid.
        height: usize,
        /// Columns of the grid.
        width: usize,
    },
    /// `nodes` nodes of `features` features, node by node.
    Nodes {
        /// Number of nodes.
        nodes: usize,
        /// Features per node.
        features: usize,
    },
}

impl NodeLayout {
    fn nodes_features(self) -> (usize, usize) {
        match self {
            NodeLayout::FeatureMap {
                channels,
                height,
                width,
            } => (height * width, channels),
            NodeLayout::Nodes { nodes, features } => (nodes, features),
        }
    }
}

/// How a [`GraphHead`] turns node features into one vector per sample.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Readout {
    /// Mean over the nodes: graph-level, the same for any numbering of the nodes.
    #[default]
    Mean,
    /// Every node's features side by side: keeps which node is where (a fixed structure
    /// such as a feature-map grid, where positions matter).
    Nodes,
}

/// The layers of a [`GraphHead`].
///
/// | name | default | meaning |
/// | --- | --- | --- |
/// | `kind` | GCN | graph convolution or attention |
/// | `widths` | `[64]` | width of each graph layer |
/// | `readout` | mean | [`Readout`] from node features to the output layer |
/// | `outputs` | — | the task's outputs (classes or values) |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphHeadConfig {
    /// Layer kind.
    pub kind: GraphConvKind,
    /// Layer widths.
    pub widths: Vec<usize>,
    /// Readout.
    pub readout: Readout,
    /// Outputs.
    pub outputs: usize,
}

impl GraphHeadConfig {
    /// One GCN layer of 64, mean readout, `outputs` outputs.
    pub fn new(outputs: usize) -> Self {
        Self {
            kind: GraphConvKind::Gcn,
            widths: vec![64],
            readout: Readout::Mean,
            outputs,
        }
    }
}

/// Graph layers ([`GcnLayer`](crate::layers::GcnLayer) or
/// [`GatLayer`](crate::layers::GatLayer), ReLU after each) over the nodes the representation is
/// read as, a [`Readout`] (mean over the nodes, or the nodes side by side), then a linear layer
/// to the task's outputs.
///
/// Over a CNN's last feature map with [`Adjacency::grid`], the head sees which positions are
/// neighbours, which a linear head over the flattened map does not know. Parameters:
/// `heads.<task>.graph<i>.*`, `heads.<task>.out.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct GraphHead {
    layout: NodeLayout,
    stack: GraphStack,
    prepared: Tensor,
    readout: Readout,
    out: Dense,
}

impl GraphHead {
    /// A head of `config`'s layers over `adjacency`; refused when the adjacency's node count
    /// differs from the layout's (both named).
    pub fn new(
        layout: NodeLayout,
        adjacency: &Adjacency,
        config: &GraphHeadConfig,
        path: &ParamPath,
    ) -> Result<Self> {
        let (nodes, features) = layout.nodes_features();
        if adjacency.nodes() != nodes {
            return Err(Error::config(
                "graph head adjacency",
                format!("{:?}", adjacency.matrix().dims()),
                format!("must be ({nodes}, {nodes}): the layout {layout:?} has {nodes} nodes"),
            ));
        }
        let stack = GraphStack::new(config.kind, features, &config.widths, path)?;
        let prepared = stack.prepare(&adjacency.matrix().to_device(path.device())?)?;
        let read = match config.readout {
            Readout::Mean => stack.out_dim(),
            Readout::Nodes => stack.out_dim() * nodes,
        };
        Ok(Self {
            out: Dense::new(read, config.outputs, &path.pp("out"))?,
            layout,
            stack,
            prepared,
            readout: config.readout,
        })
    }

    fn nodes(&self, z: &Tensor) -> Result<Tensor> {
        let (nodes, features) = self.layout.nodes_features();
        let n = z.dims().first().copied().unwrap_or(0);
        if z.dims() != [n, nodes * features] {
            return Err(Error::DataMismatch(format!(
                "the graph head reads representations (N, {}) ({nodes} nodes x {features} \
                 features), got {:?}",
                nodes * features,
                z.dims()
            )));
        }
        Ok(match self.layout {
            NodeLayout::FeatureMap { channels, .. } => z
                .reshape((n, channels, nodes))?
                .transpose(1, 2)?
                .contiguous()?,
            NodeLayout::Nodes { .. } => z.reshape((n, nodes, features))?,
        })
    }
}

impl TaskHead for GraphHead {
    fn forward_t(&self, z: &Tensor, _train: bool) -> Result<Tensor> {
        let h = self.stack.forward(&self.nodes(z)?, &self.prepared)?;
        let read = match self.readout {
            Readout::Mean => GraphStack::mean_pool(&h)?,
            Readout::Nodes => h.flatten_from(1)?,
        };
        self.out.forward(&read)
    }

    fn input_dim(&self) -> usize {
        let (nodes, features) = self.layout.nodes_features();
        nodes * features
    }

    fn output_dim(&self) -> usize {
        self.out.out_dim()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;
    use candle_core::{DType, Device, Var};

    #[test]
    fn feature_map_nodes_shapes_gradients_and_mismatches() -> Result<()> {
        for kind in [GraphConvKind::Gcn, GraphConvKind::Gat] {
            let store = ParamStore::new(&Device::Cpu, 4);
            let layout = NodeLayout::FeatureMap {
                channels: 3,
                height: 2,
                width: 2,
            };
            let grid = Adjacency::grid(2, 2, false)?;
            let config = GraphHeadConfig {
                kind,
                widths: vec![5, 4],
                ..GraphHeadConfig::new(2)
            };
            let head = GraphHead::new(layout, &grid, &config, &store.path("heads.g"))?;
            assert_eq!((head.input_dim(), head.output_dim()), (12, 2));
            let z = Var::randn(0f32, 1.0, (6, 12), &Device::Cpu)?;
            let y = head.forward_t(z.as_tensor(), true)?;
            assert_eq!(y.dims(), [6, 2]);
            let grads = y.sqr()?.sum_all()?.backward()?;
            for (name, var) in store.trainable_vars() {
                assert!(
                    grads.get(&var).is_some(),
                    "{kind:?}: no gradient for {name}"
                );
            }
            let wrong = Tensor::zeros((6, 10), DType::F32, &Device::Cpu)?;
            let err = head.forward_t(&wrong, false).unwrap_err().to_string();
            assert!(err.contains("(N, 12)") && err.contains("[6, 10]"), "{err}");
            let path = Adjacency::from_edges(3, &[(0, 1), (1, 2)])?;
            let nodes = GraphHeadConfig {
                readout: Readout::Nodes,
                ..config.clone()
            };
            let by_node = GraphHead::new(layout, &grid, &nodes, &store.path("heads.n"))?;
            assert_eq!(by_node.forward_t(z.as_tensor(), false)?.dims(), [6, 2]);
            let err = GraphHead::new(layout, &path, &config, &store.path("heads.h"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("[3, 3]") && err.contains("(4, 4)"), "{err}");
        }
        Ok(())
    }

    #[test]
    fn the_feature_map_is_read_channel_by_channel() -> Result<()> {
        // One channel per node position: node (r, c) gets the values of every channel there.
        let z = Tensor::new(
            &[[1f32, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0]],
            &Device::Cpu,
        )?;
        let store = ParamStore::new(&Device::Cpu, 0);
        let layout = NodeLayout::FeatureMap {
            channels: 2,
            height: 2,
            width: 2,
        };
        let head = GraphHead::new(
            layout,
            &Adjacency::grid(2, 2, false)?,
            &GraphHeadConfig {
                widths: vec![1],
                ..GraphHeadConfig::new(1)
            },
            &store.path("heads.g"),
        )?;
        let nodes = head.nodes(&z)?.to_vec3::<f32>()?;
        assert_eq!(nodes[0][1], vec![2.0, 20.0]);
        Ok(())
    }
}
