use candle_core::{Tensor, D};

use super::SharedEncoder;
use crate::error::{Error, Result};
use crate::params::{Param, ParamPath};

/// The recurrent cell of a [`Recurrent`] encoder.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CellKind {
    /// Gated recurrent unit (Cho et al., 2014), PyTorch's gate order `r, z, n`.
    #[default]
    Gru,
    /// Long short-term memory (Hochreiter & Schmidhuber, 1997), PyTorch's order `i, f, g, o`.
    Lstm,
}

/// What a [`Recurrent`] encoder returns.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SequenceOutput {
    /// The last valid step's hidden state, `(N, D)` (both directions' final states when
    /// bidirectional): for sequence classification and regression.
    #[default]
    Last,
    /// Every step's hidden state, `(N, T, D)` (zeros on padded steps): for per-step tagging.
    AllSteps,
    /// The mean of the valid steps' states, `(N, D)` (the Transformer's default).
    Mean,
}

/// `(N, T, 1)`: 1 for real steps, 0 for trailing padding (steps whose features all equal
/// `pad`, with only such steps after them).
pub(crate) fn trailing_padding_mask(xs: &Tensor, pad: f32) -> Result<Tensor> {
    let real = xs.ne(pad)?.to_dtype(xs.dtype())?.max_keepdim(D::Minus1)?;
    let t = xs.dim(1)?;
    let mut after = Vec::with_capacity(t);
    let mut running: Option<Tensor> = None;
    for i in (0..t).rev() {
        let step = real.narrow(1, i, 1)?;
        let r = match running {
            Some(prev) => step.maximum(&prev)?,
            None => step,
        };
        after.push(r.clone());
        running = Some(r);
    }
    after.reverse();
    Ok(Tensor::cat(&after, 1)?)
}

/// Mean over the steps of `h (N, T, D)` where `mask (N, T, 1)` is 1 (all steps without mask).
pub(crate) fn masked_mean(h: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        None => Ok(h.mean(1)?),
        Some(m) => {
            let total = h.broadcast_mul(m)?.sum(1)?;
            let count = m.sum(1)?.maximum(1.0)?;
            Ok(total.broadcast_div(&count)?)
        }
    }
}

/// Configuration of [`Recurrent`].
///
/// | field | default | meaning |
/// |---|---|---|
/// | `cell` | GRU | GRU or LSTM |
/// | `input_dim` | 28 | features per step |
/// | `hidden` | 64 | hidden size per direction |
/// | `layers` | 1 | stacked layers |
/// | `bidirectional` | false | also read the sequence backwards; outputs are concatenated |
/// | `output` | last | last valid step, or every step |
/// | `pad_value` | `None` | steps at the end of a sequence whose features all equal this value are padding |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct RecurrentConfig {
    /// GRU or LSTM.
    pub cell: CellKind,
    /// Features per step.
    pub input_dim: usize,
    /// Hidden size per direction.
    pub hidden: usize,
    /// Number of stacked layers.
    pub layers: usize,
    /// Read the sequence in both directions.
    pub bidirectional: bool,
    /// Last state or every step.
    pub output: SequenceOutput,
    /// Marks trailing padding: sequences of different lengths are padded at the end with
    /// steps whose features all equal this value; padded steps leave the state unchanged and
    /// give zero outputs.
    pub pad_value: Option<f32>,
}

impl Default for RecurrentConfig {
    fn default() -> Self {
        Self {
            cell: CellKind::Gru,
            input_dim: 28,
            hidden: 64,
            layers: 1,
            bidirectional: false,
            output: SequenceOutput::Last,
            pad_value: None,
        }
    }
}

/// One direction of one layer: `W_ih (G*H, in)`, `W_hh (G*H, H)`, biases `(G*H)`, with `G = 3`
/// (GRU) or `4` (LSTM), initialised as PyTorch does, from U(-1/sqrt(H), 1/sqrt(H)).
#[derive(Debug, Clone)]
struct Cell {
    w_ih: Param,
    w_hh: Param,
    b_ih: Param,
    b_hh: Param,
}

impl Cell {
    fn new(kind: CellKind, input: usize, hidden: usize, path: &ParamPath) -> Result<Self> {
        let gates = match kind {
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
        };
        let bound = 1.0 / (hidden as f64).sqrt();
        Ok(Self {
            w_ih: path.uniform("weight_ih", &[gates * hidden, input], bound)?,
            w_hh: path.uniform("weight_hh", &[gates * hidden, hidden], bound)?,
            b_ih: path.uniform("bias_ih", &[gates * hidden], bound)?,
            b_hh: path.uniform("bias_hh", &[gates * hidden], bound)?,
        })
    }
}

/// A GRU or LSTM sequence encoder: inputs `(N, T, F)` (or `(N, 1, T, F)`, such as images read
/// row by row: sequential MNIST), several layers, optionally bidirectional, with trailing
/// padding for sequences of different lengths (`pad_value`).
///
/// Output: `(N, D)` (the last valid step) or `(N, T, D)`, `D = hidden * directions`.
/// Parameters: `encoder.layer<l>.<fwd|bwd>.{weight_ih,weight_hh,bias_ih,bias_hh}`.
pub struct Recurrent {
    config: RecurrentConfig,
    /// `cells[layer][direction]`.
    cells: Vec<Vec<Cell>>,
}

impl Recurrent {
    /// Builds the encoder's parameters under `path`.
    pub fn new(config: &RecurrentConfig, path: &ParamPath) -> Result<Self> {
        if config.input_dim == 0 || config.hidden == 0 || config.layers == 0 {
            return Err(Error::config(
                "RecurrentConfig",
                format!(
                    "input_dim {}, hidden {}, layers {}",
                    config.input_dim, config.hidden, config.layers
                ),
                "sizes and layer count must be at least 1",
            ));
        }
        let directions = if config.bidirectional { 2 } else { 1 };
        let cells = (0..config.layers)
            .map(|l| {
                let input = if l == 0 {
                    config.input_dim
                } else {
                    config.hidden * directions
                };
                ["fwd", "bwd"][..directions]
                    .iter()
                    .map(|d| {
                        Cell::new(
                            config.cell,
                            input,
                            config.hidden,
                            &path.pp(&format!("layer{l}")).pp(d),
                        )
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            cells,
        })
    }

    /// `(N, T, 1)` with 1 for real steps and 0 for trailing padding.
    fn step_mask(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        match self.config.pad_value {
            Some(pad) => Ok(Some(trailing_padding_mask(xs, pad)?)),
            None => Ok(None),
        }
    }

    /// Runs one direction of one layer over `xs (N, T, F)`; returns every step's output
    /// `(N, T, H)` and the final state `(N, H)`.
    fn run(
        &self,
        cell: &Cell,
        xs: &Tensor,
        mask: Option<&Tensor>,
        reverse: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (n, t, _) = xs.dims3()?;
        let h_size = self.config.hidden;
        // Input projections of every step at once: (N, T, G*H).
        let x_proj = xs
            .reshape((n * t, xs.dim(2)?))?
            .matmul(&cell.w_ih.tensor().t()?)?
            .broadcast_add(cell.b_ih.tensor())?
            .reshape((n, t, ()))?;
        let w_hh_t = cell.w_hh.tensor().t()?;
        let mut h = Tensor::zeros((n, h_size), xs.dtype(), xs.device())?;
        let mut c = h.clone();
        let mut outputs = vec![None; t];
        let order: Vec<usize> = if reverse {
            (0..t).rev().collect()
        } else {
            (0..t).collect()
        };
        for i in order {
            let gx = x_proj.narrow(1, i, 1)?.squeeze(1)?;
            let gh = h.matmul(&w_hh_t)?.broadcast_add(cell.b_hh.tensor())?;
            let (h_new, c_new) = match self.config.cell {
                CellKind::Gru => {
                    let r = candle_nn::ops::sigmoid(
                        &(gx.narrow(1, 0, h_size)? + gh.narrow(1, 0, h_size)?)?,
                    )?;
                    let z = candle_nn::ops::sigmoid(
                        &(gx.narrow(1, h_size, h_size)? + gh.narrow(1, h_size, h_size)?)?,
                    )?;
                    let cand = (gx.narrow(1, 2 * h_size, h_size)?
                        + (r * gh.narrow(1, 2 * h_size, h_size)?)?)?
                    .tanh()?;
                    // h' = (1 - z) * n + z * h = n + z * (h - n)
                    let h_new = (&cand + (z * (&h - &cand)?)?)?;
                    (h_new, c.clone())
                }
                CellKind::Lstm => {
                    let g = (gx + gh)?;
                    let gate = |k: usize| g.narrow(1, k * h_size, h_size);
                    let i_g = candle_nn::ops::sigmoid(&gate(0)?)?;
                    let f_g = candle_nn::ops::sigmoid(&gate(1)?)?;
                    let g_g = gate(2)?.tanh()?;
                    let o_g = candle_nn::ops::sigmoid(&gate(3)?)?;
                    let c_new = ((f_g * &c)? + (i_g * g_g)?)?;
                    let h_new = (o_g * c_new.tanh()?)?;
                    (h_new, c_new)
                }
            };
            match mask {
                Some(m) => {
                    // Padded steps keep the state and output zeros.
                    let keep = m.narrow(1, i, 1)?.squeeze(1)?; // (N, 1)
                    h = (&h + keep.broadcast_mul(&(&h_new - &h)?)?)?;
                    c = (&c + keep.broadcast_mul(&(&c_new - &c)?)?)?;
                    outputs[i] = Some(keep.broadcast_mul(&h)?);
                }
                None => {
                    h = h_new;
                    c = c_new;
                    outputs[i] = Some(h.clone());
                }
            }
        }
        let outputs = outputs
            .into_iter()
            .map(|o| o.ok_or_else(|| Error::DataMismatch("empty sequence".into())))
            .collect::<Result<Vec<_>>>()?;
        Ok((Tensor::stack(&outputs, 1)?, h))
    }
}

impl SharedEncoder for Recurrent {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let xs = match xs.dims() {
            [_, 1, _, _] => xs.squeeze(1)?,
            [_, _, _] => xs.clone(),
            d => {
                return Err(Error::DataMismatch(format!(
                    "a recurrent encoder reads (N, T, {}) or (N, 1, T, {}), got {d:?}",
                    self.config.input_dim, self.config.input_dim
                )))
            }
        };
        if xs.dim(2)? != self.config.input_dim || xs.dim(1)? == 0 {
            return Err(Error::DataMismatch(format!(
                "a recurrent encoder reads (N, T >= 1, {}) steps, got {:?}",
                self.config.input_dim,
                xs.dims()
            )));
        }
        let mask = self.step_mask(&xs)?;
        let mut layer_input = xs;
        let mut finals = Vec::new();
        for cells in &self.cells {
            finals.clear();
            let mut outs = Vec::with_capacity(cells.len());
            for (d, cell) in cells.iter().enumerate() {
                let (out, last) = self.run(cell, &layer_input, mask.as_ref(), d == 1)?;
                outs.push(out);
                finals.push(last);
            }
            layer_input = Tensor::cat(&outs, 2)?;
        }
        Ok(match self.config.output {
            SequenceOutput::AllSteps => layer_input,
            SequenceOutput::Last => Tensor::cat(&finals, 1)?,
            SequenceOutput::Mean => masked_mean(&layer_input, mask.as_ref())?,
        })
    }

    fn output_dim(&self) -> usize {
        self.config.hidden * if self.config.bidirectional { 2 } else { 1 }
    }

    fn layer_groups(&self) -> Vec<String> {
        (0..self.config.layers)
            .map(|l| format!("layer{l}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;
    use candle_core::{DType, Device};

    fn encoder(
        cell: CellKind,
        bidirectional: bool,
        output: SequenceOutput,
        pad: Option<f32>,
    ) -> Result<(ParamStore, Recurrent)> {
        let store = ParamStore::new(&Device::Cpu, 0);
        let config = RecurrentConfig {
            cell,
            input_dim: 3,
            hidden: 4,
            layers: 2,
            bidirectional,
            output,
            pad_value: pad,
        };
        let enc = Recurrent::new(&config, &store.path("encoder"))?;
        Ok((store, enc))
    }

    #[test]
    fn shapes_of_every_variant() -> Result<()> {
        let xs = Tensor::randn(0f32, 1.0, (2, 5, 3), &Device::Cpu)?;
        for cell in [CellKind::Gru, CellKind::Lstm] {
            for bi in [false, true] {
                let d = if bi { 8 } else { 4 };
                let (_, last) = encoder(cell, bi, SequenceOutput::Last, None)?;
                assert_eq!(last.forward_t(&xs, true)?.dims(), &[2, d]);
                assert_eq!(last.output_dim(), d);
                let (_, all) = encoder(cell, bi, SequenceOutput::AllSteps, None)?;
                assert_eq!(all.forward_t(&xs, true)?.dims(), &[2, 5, d]);
            }
        }
        Ok(())
    }

    #[test]
    fn trailing_padding_changes_nothing() -> Result<()> {
        // A 3-step sequence, and the same padded to 5 steps with zeros: same final state.
        let short = Tensor::randn(0f32, 1.0, (1, 3, 3), &Device::Cpu)?;
        let padded = Tensor::cat(
            &[&short, &Tensor::zeros((1, 2, 3), DType::F32, &Device::Cpu)?],
            1,
        )?;
        for cell in [CellKind::Gru, CellKind::Lstm] {
            for bi in [false, true] {
                let (_, enc) = encoder(cell, bi, SequenceOutput::Last, Some(0.0))?;
                let a = enc.forward_t(&short, false)?.to_vec2::<f32>()?;
                let b = enc.forward_t(&padded, false)?.to_vec2::<f32>()?;
                for (x, y) in a[0].iter().zip(&b[0]) {
                    assert!((x - y).abs() < 1e-5, "{cell:?} bi={bi}: {a:?} vs {b:?}");
                }
                // Without the padding marker the extra steps change the state.
                let (_, plain) = encoder(cell, bi, SequenceOutput::Last, None)?;
                let c = plain.forward_t(&padded, false)?.to_vec2::<f32>()?;
                assert!(a[0].iter().zip(&c[0]).any(|(x, y)| (x - y).abs() > 1e-4));
            }
        }
        Ok(())
    }

    #[test]
    fn gru_step_matches_the_formula() -> Result<()> {
        // One layer, one step, from a zero state: h = (1 - z) * n.
        let store = ParamStore::new(&Device::Cpu, 3);
        let config = RecurrentConfig {
            input_dim: 2,
            hidden: 2,
            ..Default::default()
        };
        let enc = Recurrent::new(&config, &store.path("encoder"))?;
        let x = Tensor::new(&[[[0.5f32, -1.0]]], &Device::Cpu)?;
        let h = enc.forward_t(&x, false)?.to_vec2::<f32>()?;
        let vars = store.named_vars();
        let get = |n: &str| {
            vars.iter()
                .find(|(m, _)| m == n)
                .map(|(_, v)| v.as_tensor().clone())
                .ok_or_else(|| Error::DataMismatch(n.into()))
        };
        let gx = x
            .squeeze(0)?
            .matmul(&get("encoder.layer0.fwd.weight_ih")?.t()?)?
            .broadcast_add(&get("encoder.layer0.fwd.bias_ih")?)?;
        let gh = get("encoder.layer0.fwd.bias_hh")?.unsqueeze(0)?;
        let gx = gx.to_vec2::<f32>()?[0].clone();
        let gh = gh.to_vec2::<f32>()?[0].clone();
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        for j in 0..2 {
            let r = sig(gx[j] + gh[j]);
            let z = sig(gx[2 + j] + gh[2 + j]);
            let n = (gx[4 + j] + r * gh[4 + j]).tanh();
            let expected = (1.0 - z) * n;
            assert!(
                (h[0][j] - expected).abs() < 1e-5,
                "{} vs {expected}",
                h[0][j]
            );
        }
        Ok(())
    }
}
