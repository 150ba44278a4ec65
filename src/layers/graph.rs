//! Graph layers: an adjacency, graph convolution (GCN) and graph attention (GAT).
//!
//! Node features are `(N, V, F)`: `N` graphs (or samples) of `V` nodes. An adjacency is one
//! `(V, V)` matrix shared by every graph, or `(N, V, V)`, one per graph; self-loops are added
//! by the layers.

use candle_core::{DType, Device, Tensor, D};

use crate::error::{Error, Result};
use crate::layers::Dense;
use crate::params::{Param, ParamPath};

/// The structure of a graph of `nodes` nodes: a symmetric 0/1 matrix, built from a dense
/// matrix, an edge list (the sparse form), a grid or the nearest neighbours of points.
#[derive(Debug, Clone)]
pub struct Adjacency {
    matrix: Tensor,
}

impl Adjacency {
    /// From a dense `(V, V)` matrix (non-zero: an edge; made symmetric).
    pub fn dense(matrix: &Tensor) -> Result<Self> {
        match matrix.dims() {
            [a, b] if a == b => {}
            dims => {
                return Err(Error::config(
                    "adjacency",
                    format!("{dims:?}"),
                    "must be a square (V, V) matrix",
                ))
            }
        }
        let edges = matrix
            .to_dtype(DType::F32)?
            .ne(0f32)?
            .to_dtype(DType::F32)?;
        let symmetric = edges.maximum(&edges.t()?)?;
        Ok(Self {
            matrix: symmetric.to_device(&Device::Cpu)?,
        })
    }

    /// From an edge list over `nodes` nodes (undirected); an index out of range is refused,
    /// naming the edge.
    pub fn from_edges(nodes: usize, edges: &[(usize, usize)]) -> Result<Self> {
        let mut m = vec![0f32; nodes * nodes];
        for (i, &(a, b)) in edges.iter().enumerate() {
            if a >= nodes || b >= nodes {
                return Err(Error::config(
                    format!("adjacency edge {i}"),
                    format!("({a}, {b})"),
                    format!("node index out of range for {nodes} nodes"),
                ));
            }
            m[a * nodes + b] = 1.0;
            m[b * nodes + a] = 1.0;
        }
        Ok(Self {
            matrix: Tensor::from_vec(m, (nodes, nodes), &Device::Cpu)?,
        })
    }

    /// The 4-neighbour grid of `height x width` nodes (8 neighbours with `diagonals`), nodes
    /// numbered row by row: the pixels of a feature map.
    pub fn grid(height: usize, width: usize, diagonals: bool) -> Result<Self> {
        let mut edges = Vec::new();
        for r in 0..height {
            for c in 0..width {
                let at = r * width + c;
                if c + 1 < width {
                    edges.push((at, at + 1));
                }
                if r + 1 < height {
                    edges.push((at, at + width));
                    if diagonals && c + 1 < width {
                        edges.push((at, at + width + 1));
                    }
                    if diagonals && c > 0 {
                        edges.push((at, at + width - 1));
                    }
                }
            }
        }
        Self::from_edges(height * width, &edges)
    }

    /// Each of the `points` (one row each) joined to its `k` nearest others (Euclidean; ties
    /// to the lower index), made symmetric.
    pub fn k_nearest(points: &[Vec<f32>], k: usize) -> Result<Self> {
        let n = points.len();
        let mut edges = Vec::new();
        for (i, p) in points.iter().enumerate() {
            let mut d: Vec<(f32, usize)> = points
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, q)| (p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), j))
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            edges.extend(d.iter().take(k).map(|&(_, j)| (i, j)));
        }
        Self::from_edges(n, &edges)
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.matrix.dims()[0]
    }

    /// The 0/1 matrix `(V, V)`.
    pub fn matrix(&self) -> &Tensor {
        &self.matrix
    }
}

/// `A + I` for a batch of 0/1 adjacencies `(.., V, V)`.
fn with_self_loops(adjacency: &Tensor) -> Result<Tensor> {
    let v = adjacency.dim(D::Minus1)?;
    let eye = Tensor::eye(v, DType::F32, adjacency.device())?;
    Ok(adjacency
        .to_dtype(DType::F32)?
        .broadcast_add(&eye)?
        .ne(0f32)?
        .to_dtype(DType::F32)?)
}

/// Checks features `(N, V, F)` against an adjacency `(V, V)` or `(N, V, V)`; `layer` names the
/// layer in the error.
fn check_graph(layer: &str, x: &Tensor, adjacency: &Tensor) -> Result<()> {
    let (xd, ad) = (x.dims(), adjacency.dims());
    let fits = xd.len() == 3
        && match ad {
            [a, b] => *a == xd[1] && *b == xd[1],
            [n, a, b] => *n == xd[0] && *a == xd[1] && *b == xd[1],
            _ => false,
        };
    if fits {
        Ok(())
    } else {
        Err(Error::DataMismatch(format!(
            "{layer}: node features {xd:?} (N, V, F) do not fit the adjacency {ad:?} \
             ((V, V) or (N, V, V))"
        )))
    }
}

/// Graph convolution (Kipf & Welling, ICLR 2017): `H' = Â H W + b` with the symmetric
/// normalisation `Â = D^{-1/2} (A + I) D^{-1/2}`, the bias added after the propagation.
/// Parameters: `<path>.weight` `(out, in)`, `<path>.bias` (PyTorch's linear initialisation).
#[derive(Debug, Clone)]
pub struct GcnLayer {
    weight: Param,
    bias: Param,
}

impl GcnLayer {
    /// A layer from `in_dim` to `out_dim` features per node.
    pub fn new(in_dim: usize, out_dim: usize, path: &ParamPath) -> Result<Self> {
        let bound = 1.0 / (in_dim.max(1) as f64).sqrt();
        Ok(Self {
            weight: path.uniform("weight", &[out_dim, in_dim], bound)?,
            bias: path.uniform("bias", &[out_dim], bound)?,
        })
    }

    /// `Â` of a 0/1 adjacency `(V, V)` or `(N, V, V)`.
    pub fn normalize(adjacency: &Tensor) -> Result<Tensor> {
        let a = with_self_loops(adjacency)?;
        let d = a.sum_keepdim(D::Minus1)?.powf(-0.5)?;
        let dt = d.transpose(D::Minus1, D::Minus2)?;
        Ok(a.broadcast_mul(&d)?.broadcast_mul(&dt)?)
    }

    /// `Â X W + b` for features `(N, V, F)` and a normalised adjacency from
    /// [`normalize`](Self::normalize).
    pub fn forward(&self, x: &Tensor, normalized: &Tensor) -> Result<Tensor> {
        check_graph("GCN layer", x, normalized)?;
        let (n, v, f) = x.dims3()?;
        let w = self.weight.tensor();
        let xw = x
            .reshape((n * v, f))?
            .matmul(&w.t()?)?
            .reshape((n, v, w.dim(0)?))?;
        Ok(normalized
            .broadcast_matmul(&xw)?
            .broadcast_add(self.bias.tensor())?)
    }
}

/// Single-head graph attention (Veličković et al., ICLR 2018): `h_i' = Σ_j α_ij W h_j` over
/// the neighbours `j` of `i` (itself included), `α_i = softmax_j(LeakyReLU_{0.2}(a_1·W h_i +
/// a_2·W h_j))`, plus the bias of `W`. Parameters: `<path>.linear.{weight,bias}`,
/// `<path>.attention.{source,target}`.
#[derive(Debug, Clone)]
pub struct GatLayer {
    linear: Dense,
    source: Param,
    target: Param,
}

impl GatLayer {
    /// A layer from `in_dim` to `out_dim` features per node.
    pub fn new(in_dim: usize, out_dim: usize, path: &ParamPath) -> Result<Self> {
        let bound = (6.0 / (out_dim + 1) as f64).sqrt();
        let attention = path.pp("attention");
        Ok(Self {
            linear: Dense::new(in_dim, out_dim, &path.pp("linear"))?,
            source: attention.uniform("source", &[out_dim, 1], bound)?,
            target: attention.uniform("target", &[out_dim, 1], bound)?,
        })
    }

    /// Attention over the neighbours given by a 0/1 adjacency `(V, V)` or `(N, V, V)`, for
    /// features `(N, V, F)`.
    pub fn forward(&self, x: &Tensor, adjacency: &Tensor) -> Result<Tensor> {
        check_graph("GAT layer", x, adjacency)?;
        let (n, v, f) = x.dims3()?;
        let out = self.linear.out_dim();
        let wh = self.linear.forward(&x.reshape((n * v, f))?)?;
        let s = wh.matmul(self.source.tensor())?.reshape((n, v, 1))?;
        let t = wh.matmul(self.target.tensor())?.reshape((n, 1, v))?;
        let e = s.broadcast_add(&t)?;
        let e = e.maximum(&(&e * 0.2)?)?; // LeakyReLU(0.2)
                                          // Non-edges get -1e9 before the softmax: their weight underflows to exactly 0.
        let edges = with_self_loops(adjacency)?;
        let blocked = (edges.affine(-1.0, 1.0)? * -1e9)?;
        // candle_nn::ops::softmax_last_dim has no backward pass: the composed softmax has one.
        let alpha = candle_nn::ops::softmax(&e.broadcast_add(&blocked)?, D::Minus1)?;
        Ok(alpha.matmul(&wh.reshape((n, v, out))?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;

    #[test]
    fn adjacencies_from_grids_edges_and_neighbours() -> Result<()> {
        let g = Adjacency::grid(2, 3, false)?;
        let m = g.matrix().to_vec2::<f32>()?;
        // Node 1 (row 0, col 1) touches 0, 2 and 4.
        assert_eq!(m[1], vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        assert_eq!(
            Adjacency::grid(2, 2, true)?
                .matrix()
                .sum_all()?
                .to_scalar::<f32>()?,
            12.0
        );
        let err = Adjacency::from_edges(3, &[(0, 1), (1, 3)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("edge 1") && err.contains("(1, 3)"), "{err}");
        let pts = vec![vec![0.0, 0.0], vec![1.0, 0.0], vec![5.0, 0.0]];
        let knn = Adjacency::k_nearest(&pts, 1)?.matrix().to_vec2::<f32>()?;
        assert_eq!(knn[2], vec![0.0, 1.0, 0.0]);
        assert!(Adjacency::dense(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu)?).is_err());
        Ok(())
    }

    #[test]
    fn gcn_normalisation_and_shapes() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 0);
        let a = Adjacency::from_edges(3, &[(0, 1)])?;
        let norm = GcnLayer::normalize(a.matrix())?.to_vec2::<f32>()?;
        // Degrees with self-loops: 2, 2, 1.
        assert!((norm[0][1] - 0.5).abs() < 1e-6 && (norm[2][2] - 1.0).abs() < 1e-6);
        assert_eq!(norm[0][2], 0.0);
        let layer = GcnLayer::new(4, 5, &store.path("g"))?;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4), &Device::Cpu)?;
        let n = GcnLayer::normalize(a.matrix())?;
        assert_eq!(layer.forward(&x, &n)?.dims(), [2, 3, 5]);
        // Node 2 is isolated: its output depends on its own features only.
        let mut x2 = x.to_vec3::<f32>()?;
        x2[0][0][0] += 1.0;
        let x2 = Tensor::new(x2, &Device::Cpu)?;
        let (y, y2) = (layer.forward(&x, &n)?, layer.forward(&x2, &n)?);
        let node2 = |t: &Tensor| {
            t.narrow(1, 2, 1)
                .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
        };
        assert_eq!(node2(&y)?, node2(&y2)?);
        let bad = Tensor::zeros((4, 4), DType::F32, &Device::Cpu)?;
        let err = layer.forward(&x, &bad).unwrap_err().to_string();
        assert!(err.contains("[2, 3, 4]") && err.contains("[4, 4]"), "{err}");
        Ok(())
    }

    #[test]
    fn gat_attends_only_to_neighbours_and_has_gradients() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 1);
        let layer = GatLayer::new(4, 3, &store.path("a"))?;
        // Per-graph adjacencies: graph 0 a path 0-1-2, graph 1 no edges.
        let adj = Tensor::new(
            &[
                [[0f32, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
                [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
            ],
            &Device::Cpu,
        )?;
        let x = candle_core::Var::randn(0f32, 1.0, (2, 3, 4), &Device::Cpu)?;
        let y = layer.forward(x.as_tensor(), &adj)?;
        assert_eq!(y.dims(), [2, 3, 3]);
        // Without edges each node attends to itself only: y = W x.
        let own = layer
            .linear
            .forward(&x.as_tensor().get(1)?)?
            .to_vec2::<f32>()?;
        let got = y.get(1)?.to_vec2::<f32>()?;
        for (a, b) in own.iter().flatten().zip(got.iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let grads = y.sqr()?.sum_all()?.backward()?;
        for (name, var) in store.trainable_vars() {
            assert!(grads.get(&var).is_some(), "no gradient for {name}");
        }
        assert!(grads.get(&x).is_some());
        Ok(())
    }
}
