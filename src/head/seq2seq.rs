//! A GRU decoder head: the shared representation decoded into a token sequence.

use candle_core::{DType, Tensor};
use candle_nn::rnn::{GRUConfig, GRUState, RNN};
use candle_nn::{Embedding, Module, GRU};

use super::TaskHead;
use crate::error::{Error, Result};
use crate::layers::Dense;
use crate::params::ParamPath;

/// The shape and special tokens of a [`GruDecoderHead`].
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `vocab` | — | >= 3 | tokens, special ones included (the head's `output_dim`) |
/// | `hidden` | 128 | >= 1 | GRU state size |
/// | `embedding` | 32 | >= 1 | token embedding size |
/// | `max_len` | — | >= 1 | steps decoded without a target (prediction); longer targets are refused |
/// | `bos` | — | < `vocab` | start token fed at the first step |
/// | `eos` | — | < `vocab` | end-of-sequence token (a target ends with it, then padding) |
/// | `pad` | — | < `vocab` | padding after `eos`, ignored by [`SequenceCrossEntropy`](crate::task::SequenceCrossEntropy) and the sequence metrics |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seq2SeqConfig {
    /// Number of tokens, special ones included.
    pub vocab: usize,
    /// GRU state size.
    pub hidden: usize,
    /// Token embedding size.
    pub embedding: usize,
    /// Steps decoded when no target gives the length.
    pub max_len: usize,
    /// Start token.
    pub bos: u32,
    /// End-of-sequence token.
    pub eos: u32,
    /// Padding token.
    pub pad: u32,
}

impl Seq2SeqConfig {
    /// A vocabulary of `vocab` tokens whose last three are `bos`, `eos`, `pad` (in that
    /// order), sequences up to `max_len` tokens (`eos` included), hidden 128, embedding 32.
    pub fn new(vocab: usize, max_len: usize) -> Self {
        let last = vocab.saturating_sub(1) as u32;
        Self {
            vocab,
            hidden: 128,
            embedding: 32,
            max_len,
            bos: last.saturating_sub(2),
            eos: last.saturating_sub(1),
            pad: last,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |field: &str, value: String, rule: &str| {
            Err(Error::config(
                format!("Seq2SeqConfig::{field}"),
                value,
                rule,
            ))
        };
        if self.vocab < 3 {
            return bad(
                "vocab",
                self.vocab.to_string(),
                "must be at least 3 (bos, eos, pad)",
            );
        }
        for (field, v) in [
            ("hidden", self.hidden),
            ("embedding", self.embedding),
            ("max_len", self.max_len),
        ] {
            if v == 0 {
                return bad(field, v.to_string(), "must be at least 1");
            }
        }
        for (field, t) in [("bos", self.bos), ("eos", self.eos), ("pad", self.pad)] {
            if t as usize >= self.vocab {
                return bad(field, t.to_string(), "must be a token below vocab");
            }
        }
        if self.eos == self.pad || self.bos == self.pad || self.bos == self.eos {
            return bad(
                "pad",
                self.pad.to_string(),
                "bos, eos and pad must be three different tokens",
            );
        }
        Ok(())
    }
}

/// Decodes the representation `z` `(N, D)` into token logits `(N, T, vocab)` with a GRU
/// (Cho et al., EMNLP 2014; the decoder of Sutskever, Vinyals & Le, NeurIPS 2014): the
/// initial state is `tanh(W z + b)`, each step reads the previous token's embedding next to
/// `z`, and a linear layer gives the step's logits.
///
/// Every training pass (with the batch's targets `(N, T)`) uses teacher forcing: step `t`
/// reads the target token `t - 1` (`bos` first). Evaluation decodes greedily for `T` steps,
/// feeding back its own arg-max; without targets ([`forward_t`](TaskHead::forward_t),
/// prediction) it decodes `max_len` steps. Targets end with `eos` and are padded with `pad`;
/// train with [`SequenceCrossEntropy`](crate::task::SequenceCrossEntropy) and report
/// [`Metric::TokenAccuracy`](crate::metrics::Metric::TokenAccuracy) and
/// [`Metric::SequenceAccuracy`](crate::metrics::Metric::SequenceAccuracy).
///
/// Parameters: `heads.<task>.{init,embedding,gru,out}.*`.
#[derive(Debug, Clone)]
pub struct GruDecoderHead {
    config: Seq2SeqConfig,
    input_dim: usize,
    init: Dense,
    embedding: Embedding,
    gru: GRU,
    out: Dense,
}

impl GruDecoderHead {
    /// A decoder reading `input_dim` features; refused when `config` breaks the table of
    /// [`Seq2SeqConfig`].
    pub fn new(input_dim: usize, config: Seq2SeqConfig, path: &ParamPath) -> Result<Self> {
        config.validate()?;
        let vb = path.var_builder();
        let embedding = candle_nn::embedding(config.vocab, config.embedding, vb.pp("embedding"))?;
        let gru = candle_nn::rnn::gru(
            config.embedding + input_dim,
            config.hidden,
            GRUConfig::default(),
            vb.pp("gru"),
        )?;
        Ok(Self {
            init: Dense::new(input_dim, config.hidden, &path.pp("init"))?,
            out: Dense::new(config.hidden, config.vocab, &path.pp("out"))?,
            embedding,
            gru,
            input_dim,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Seq2SeqConfig {
        &self.config
    }

    /// Logits `(N, steps, vocab)`; `teacher` gives the tokens read at steps 1.. (teacher
    /// forcing), else the previous step's arg-max is read.
    fn decode(&self, z: &Tensor, steps: usize, teacher: Option<&Tensor>) -> Result<Tensor> {
        let (n, d) = z.dims2().map_err(|_| {
            Error::DataMismatch(format!(
                "the sequence decoder reads representations (N, {}), got {:?}",
                self.input_dim,
                z.dims()
            ))
        })?;
        if d != self.input_dim {
            return Err(Error::DataMismatch(format!(
                "the sequence decoder reads {} features, got {d}",
                self.input_dim
            )));
        }
        let mut state = GRUState {
            h: self.init.forward(z)?.tanh()?,
        };
        let mut token = Tensor::full(self.config.bos, n, z.device())?;
        let mut logits = Vec::with_capacity(steps);
        for t in 0..steps {
            let input = Tensor::cat(&[&self.embedding.forward(&token)?, z], 1)?;
            state = self.gru.step(&input, &state)?;
            let step = self.out.forward(&state.h)?;
            if t + 1 < steps {
                token = match teacher {
                    Some(target) => target.narrow(1, t, 1)?.squeeze(1)?,
                    None => step.argmax(1)?,
                };
            }
            logits.push(step);
        }
        Ok(Tensor::stack(&logits, 1)?)
    }

    /// The target's tokens with anything outside the vocabulary (placeholders of unlabelled
    /// samples) read as `pad`; refuses a target that is not `(N, T)` or longer than `max_len`.
    fn checked_target(&self, z: &Tensor, target: &Tensor) -> Result<Tensor> {
        let n = z.dims().first().copied().unwrap_or(0);
        match target.dims() {
            [tn, t] if *tn == n && *t >= 1 && *t <= self.config.max_len => {}
            dims => {
                return Err(Error::DataMismatch(format!(
                    "sequence targets must be token indices (N, T) with N = {n} and \
                     1 <= T <= max_len = {}, got {dims:?}",
                    self.config.max_len
                )))
            }
        }
        let tokens = target.to_dtype(DType::U32)?;
        let inside = tokens.lt(self.config.vocab as u32)?;
        let pad = Tensor::full(self.config.pad, tokens.shape(), tokens.device())?;
        Ok(inside.where_cond(&tokens, &pad)?)
    }
}

impl TaskHead for GruDecoderHead {
    /// Greedy decoding of `max_len` steps.
    fn forward_t(&self, z: &Tensor, _train: bool) -> Result<Tensor> {
        self.decode(z, self.config.max_len, None)
    }

    /// Teacher forcing: step `t` reads target token `t - 1`.
    fn forward_with_target(
        &self,
        z: &Tensor,
        target: &Tensor,
        _mask: Option<&Tensor>,
        _train: bool,
    ) -> Result<Tensor> {
        let tokens = self.checked_target(z, target)?;
        self.decode(z, tokens.dim(1)?, Some(&tokens))
    }

    /// Greedy decoding of as many steps as the targets have.
    fn forward_for_target(&self, z: &Tensor, target: &Tensor) -> Result<Tensor> {
        let tokens = self.checked_target(z, target)?;
        self.decode(z, tokens.dim(1)?, None)
    }

    fn input_dim(&self) -> usize {
        self.input_dim
    }

    fn output_dim(&self) -> usize {
        self.config.vocab
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;
    use crate::task::{SequenceCrossEntropy, TaskLoss};
    use candle_core::Device;

    fn head(store: &ParamStore) -> Result<GruDecoderHead> {
        let config = Seq2SeqConfig {
            hidden: 16,
            embedding: 8,
            ..Seq2SeqConfig::new(7, 5)
        };
        GruDecoderHead::new(6, config, &store.path("heads.word"))
    }

    #[test]
    fn shapes_teacher_forcing_and_greedy_decoding() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 1);
        let h = head(&store)?;
        let z = Tensor::randn(0f32, 1.0, (3, 6), &Device::Cpu)?;
        assert_eq!(h.forward_t(&z, false)?.dims(), [3, 5, 7]);
        // Tokens 0..3 are letters, 4 bos, 5 eos, 6 pad; a placeholder 99 reads as pad.
        let target = Tensor::new(
            &[[0u32, 1, 5, 6], [2, 5, 6, 6], [99, 99, 99, 99]],
            &Device::Cpu,
        )?;
        let forced = h.forward_with_target(&z, &target, None, true)?;
        assert_eq!(forced.dims(), [3, 4, 7]);
        // Greedy decoding of as many steps as the target has: the prediction's first steps.
        let greedy = h.forward_for_target(&z, &target)?;
        let free = h.forward_t(&z, false)?.narrow(1, 0, 4)?;
        assert_eq!(greedy.to_vec3::<f32>()?, free.to_vec3::<f32>()?);
        // The first step reads bos either way; later steps differ once tokens do.
        assert_eq!(
            forced.narrow(1, 0, 1)?.to_vec3::<f32>()?,
            greedy.narrow(1, 0, 1)?.to_vec3::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn gradients_reach_every_parameter_and_pads_add_nothing() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 2);
        let h = head(&store)?;
        let z = Tensor::randn(0f32, 1.0, (2, 6), &Device::Cpu)?;
        let target = Tensor::new(&[[0u32, 1, 5, 6], [2, 5, 6, 6]], &Device::Cpu)?;
        let loss = SequenceCrossEntropy::new(6);
        let pred = h.forward_with_target(&z, &target, None, true)?;
        let grads = loss.compute("word", &pred, &target)?.backward()?;
        for (name, var) in store.trainable_vars() {
            let g = grads
                .get(&var)
                .map(|g| g.abs()?.sum_all()?.to_scalar::<f32>());
            assert!(
                matches!(g, Some(Ok(v)) if v > 0.0),
                "no gradient for {name}"
            );
        }
        // The loss is the mean over the 5 non-pad steps: changing a pad's logits changes nothing.
        let per = loss.per_sample("word", &pred, &target)?.to_vec2::<f32>()?;
        let total = loss.compute("word", &pred, &target)?.to_scalar::<f32>()?;
        let want = (per[0][0] + per[0][1] + per[0][2] + per[1][0] + per[1][1]) / 5.0;
        assert!((total - want).abs() < 1e-6, "{total} vs {want}");
        Ok(())
    }

    #[test]
    fn targets_longer_than_max_len_and_bad_configs_are_refused() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 3);
        let h = head(&store)?;
        let z = Tensor::zeros((2, 6), DType::F32, &Device::Cpu)?;
        let long = Tensor::zeros((2, 9), DType::U32, &Device::Cpu)?;
        let err = h
            .forward_with_target(&z, &long, None, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[2, 9]") && err.contains("max_len = 5"),
            "{err}"
        );
        let bad = Seq2SeqConfig {
            pad: 9,
            ..Seq2SeqConfig::new(7, 5)
        };
        assert!(GruDecoderHead::new(6, bad, &store.path("heads.other")).is_err());
        Ok(())
    }
}
