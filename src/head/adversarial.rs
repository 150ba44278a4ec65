//! An adversarial head: a generator decoding the representation, with a discriminator of
//! its own trained by alternating min-max steps.

use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{Tensor, Var};

use super::TaskHead;
use crate::error::{Error, Result};
use crate::layers::Dense;
use crate::metrics::Metric;
use crate::params::ParamPath;
use crate::task::{regression_prediction, TargetForm, TaskLoss};

/// The shape and the discriminator's optimiser of an [`AdversarialHead`].
///
/// | name | default | range | meaning |
/// | --- | --- | --- | --- |
/// | `outputs` | — | >= 1 | size of what is generated (for example 784 pixels) |
/// | `hidden` | 256 | >= 1 | the generator's hidden layer (ReLU) |
/// | `discriminator_hidden` | 128 | >= 1 | the discriminator's hidden layer (LeakyReLU 0.2) |
/// | `lr` | 2e-4 | finite, > 0 | the discriminator's Adam learning rate |
/// | `beta1`, `beta2` | 0.5, 0.999 | [0, 1) | its Adam moment decays (DCGAN's choice) |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct AdversarialConfig {
    /// Size of the generated output.
    pub outputs: usize,
    /// Generator hidden width.
    pub hidden: usize,
    /// Discriminator hidden width.
    pub discriminator_hidden: usize,
    /// Discriminator learning rate.
    pub lr: f64,
    /// Discriminator Adam first-moment decay.
    pub beta1: f64,
    /// Discriminator Adam second-moment decay.
    pub beta2: f64,
}

impl AdversarialConfig {
    /// Generates `outputs` values; the other fields at their defaults.
    pub fn new(outputs: usize) -> Self {
        Self {
            outputs,
            hidden: 256,
            discriminator_hidden: 128,
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
        }
    }

    fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("outputs", self.outputs),
            ("hidden", self.hidden),
            ("discriminator_hidden", self.discriminator_hidden),
        ] {
            if v == 0 {
                return Err(Error::config(
                    format!("AdversarialConfig::{field}"),
                    v,
                    "must be at least 1",
                ));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config(
                "AdversarialConfig::lr",
                self.lr,
                "must be finite and > 0",
            ));
        }
        for (field, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::config(
                    format!("AdversarialConfig::{field}"),
                    b,
                    "must be in [0, 1)",
                ));
            }
        }
        Ok(())
    }
}

/// One discriminator weight with its Adam moments, all buffers.
#[derive(Debug)]
struct Weight {
    value: Var,
    m: Var,
    v: Var,
}

/// The discriminator `D(x) = w2 · LeakyReLU(W1 x + b1) + b2`: buffers of the model (saved,
/// loaded and checkpointed with it, never trained by the trainer), updated by its own Adam.
#[derive(Debug)]
struct Discriminator {
    weights: Vec<Weight>,
    step: Var,
    config: AdversarialConfig,
    /// The labelled rows `(real, generated)` of the step's first training pass.
    pending: Mutex<Option<(Tensor, Tensor)>>,
}

impl Discriminator {
    fn new(config: &AdversarialConfig, path: &ParamPath) -> Result<Self> {
        let (n, h) = (config.outputs, config.discriminator_hidden);
        let shapes: [(&str, Vec<usize>, usize); 4] = [
            ("fc1.weight", vec![h, n], n),
            ("fc1.bias", vec![h], n),
            ("fc2.weight", vec![1, h], h),
            ("fc2.bias", vec![1], h),
        ];
        let mut weights = Vec::with_capacity(4);
        for (name, shape, fan_in) in shapes {
            weights.push(Weight {
                value: path.uniform_buffer(name, &shape, 1.0 / (fan_in as f64).sqrt())?,
                m: path.buffer(&format!("{name}.adam_m"), &shape, 0.0)?,
                v: path.buffer(&format!("{name}.adam_v"), &shape, 0.0)?,
            });
        }
        Ok(Self {
            weights,
            step: path.buffer("adam_step", &[], 0.0)?,
            config: config.clone(),
            pending: Mutex::new(None),
        })
    }

    /// Logits `(N, 1)`; `tracked`: through the weights' variables (for the discriminator's own
    /// step), else through detached copies (gradients reach `x` only).
    fn logits(&self, x: &Tensor, tracked: bool) -> Result<Tensor> {
        let w = |i: usize| -> Tensor {
            let t = self.weights[i].value.as_tensor();
            if tracked {
                t.clone()
            } else {
                t.detach()
            }
        };
        let h = x.matmul(&w(0).t()?)?.broadcast_add(&w(1))?;
        let h = h.maximum(&(&h * 0.2)?)?;
        Ok(h.matmul(&w(2).t()?)?.broadcast_add(&w(3))?)
    }

    /// Keeps the labelled rows of a training pass for the step's end, unless a pass of this
    /// step was noted already (cross-batch and meta-validated steps run several).
    fn note(&self, real: &Tensor, fake: &Tensor, mask: Option<&Tensor>) -> Result<()> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_some() {
            return Ok(());
        }
        let (real, fake) = match mask {
            Some(m) => {
                let Some(idx) = crate::data::labelled_rows(m)? else {
                    return Ok(());
                };
                (real.index_select(&idx, 0)?, fake.index_select(&idx, 0)?)
            }
            None => (real.clone(), fake.clone()),
        };
        *pending = Some((real, fake.detach()));
        Ok(())
    }

    /// The noted step: taken when `applied`, forgotten otherwise.
    fn finish_step(&self, applied: bool) -> Result<()> {
        let noted = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match noted {
            Some((real, fake)) if applied => self.train_step(&real, &fake),
            _ => Ok(()),
        }
    }

    /// One step on `softplus(-D(real)) + softplus(D(fake))` (the discriminator's
    /// cross-entropy), with Adam.
    fn train_step(&self, real: &Tensor, fake: &Tensor) -> Result<()> {
        let loss = (softplus(&self.logits(real, true)?.neg()?)?.mean_all()?
            + softplus(&self.logits(&fake.detach(), true)?)?.mean_all()?)?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(Error::DataMismatch(format!(
                "the discriminator's loss is {value} (non-finite targets or generated values?); \
                 its step was not taken"
            )));
        }
        let grads = loss.backward()?;
        let t = self.step.as_tensor().to_scalar::<f32>()? as i32 + 1;
        self.step.set(&Tensor::new(t as f32, self.step.device())?)?;
        let (b1, b2, lr) = (self.config.beta1, self.config.beta2, self.config.lr);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for w in &self.weights {
            let Some(g) = grads.get(&w.value) else {
                continue;
            };
            let m = ((w.m.as_tensor() * b1)? + (g * (1.0 - b1))?)?;
            let v = ((w.v.as_tensor() * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + 1e-8)?)?;
            w.value.set(&(w.value.as_tensor() - (update * lr)?)?)?;
            w.m.set(&m)?;
            w.v.set(&v)?;
        }
        Ok(())
    }
}

/// `log(1 + e^x)`, stable for large `|x|`.
fn softplus(x: &Tensor) -> Result<Tensor> {
    let relu = x.relu()?;
    let abs = ((&relu * 2.0)? - x)?;
    Ok((relu + (abs.neg()?.exp()? + 1.0)?.log()?)?)
}

/// Joins an [`AdversarialLoss`] to the [`AdversarialHead`] whose discriminator it reads:
/// create one, give a clone to each (the loss is built before the head).
#[derive(Debug, Clone, Default)]
pub struct AdversarialLink(Arc<OnceLock<Arc<Discriminator>>>);

impl AdversarialLink {
    /// A link not joined yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A generator `G(z) = W2 ReLU(W1 z + b1) + b2` decoding the representation into an output
/// (an image to reconstruct or complete), and a discriminator `D` of the head's own that
/// tells the targets from generated outputs (Goodfellow et al., NeurIPS 2014; the
/// reconstruction-plus-adversarial objective of Pathak et al., "Context Encoders", CVPR 2016).
///
/// The min-max steps alternate: the trainer updates the generator (and the encoder) on
/// [`AdversarialLoss`], weighed like any task's loss, with `D` fixed; then, once per applied
/// training step ([`TaskHead::end_step`]), the head takes one Adam step of `D` on
/// `softplus(-D(y)) + softplus(D(G(z)))` over the labelled rows of the step's first training
/// pass (its own optimiser; `D`'s weights are buffers, which the trainer saves and
/// checkpoints but neither trains nor shows its strategies). A skipped step takes no `D`
/// step, nor do evaluation and prediction. Parameters:
/// `heads.<task>.generator.*`; buffers `heads.<task>.discriminator.*`.
#[derive(Debug, Clone)]
pub struct AdversarialHead {
    fc1: Dense,
    fc2: Dense,
    discriminator: Arc<Discriminator>,
}

impl AdversarialHead {
    /// A head reading `input_dim` features, joined to the loss holding `link`; refused when
    /// `config` breaks its table or the link was joined already.
    pub fn new(
        input_dim: usize,
        config: &AdversarialConfig,
        link: &AdversarialLink,
        path: &ParamPath,
    ) -> Result<Self> {
        config.validate()?;
        let g = path.pp("generator");
        let discriminator = Arc::new(Discriminator::new(config, &path.pp("discriminator"))?);
        link.0.set(discriminator.clone()).map_err(|_| {
            Error::config(
                "AdversarialLink",
                "joined",
                "joins one loss to one head; create a link per adversarial task",
            )
        })?;
        Ok(Self {
            fc1: Dense::new(input_dim, config.hidden, &g.pp("fc1"))?,
            fc2: Dense::new(config.hidden, config.outputs, &g.pp("fc2"))?,
            discriminator,
        })
    }

    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward_fused(z, true)?)
    }
}

impl TaskHead for AdversarialHead {
    fn forward_t(&self, z: &Tensor, _train: bool) -> Result<Tensor> {
        self.generate(z)
    }

    /// Generates, and notes the step's first training batch (its labelled rows) for the
    /// discriminator's step in [`end_step`](TaskHead::end_step).
    fn forward_with_target(
        &self,
        z: &Tensor,
        target: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let fake = self.generate(z)?;
        let real = target.to_dtype(fake.dtype())?;
        if real.dims() != fake.dims() {
            return Err(Error::DataMismatch(format!(
                "the adversarial head generates {:?} but the targets are {:?}",
                fake.dims(),
                real.dims()
            )));
        }
        if train {
            self.discriminator.note(&real, &fake, mask)?;
        }
        Ok(fake)
    }

    /// One discriminator step on the noted batch when the step was applied.
    fn end_step(&self, applied: bool) -> Result<()> {
        self.discriminator.finish_step(applied)
    }

    fn input_dim(&self) -> usize {
        self.fc1.in_dim()
    }

    fn output_dim(&self) -> usize {
        self.fc2.out_dim()
    }
}

/// The generator's loss of an [`AdversarialHead`]: per sample, `reconstruction` times the mean
/// squared error to the target plus `adversarial` times the non-saturating GAN term
/// `softplus(-D(G(z)))` (the discriminator's weights held fixed: its gradient reaches the
/// generator and, through it, the shared encoder).
#[derive(Debug, Clone)]
pub struct AdversarialLoss {
    link: AdversarialLink,
    reconstruction: f64,
    adversarial: f64,
}

impl AdversarialLoss {
    /// Refused unless both weights are finite and `>= 0`, and one is positive.
    pub fn new(link: &AdversarialLink, reconstruction: f64, adversarial: f64) -> Result<Self> {
        let ok = |w: f64| w.is_finite() && w >= 0.0;
        if !(ok(reconstruction) && ok(adversarial) && reconstruction + adversarial > 0.0) {
            return Err(Error::config(
                "adversarial loss weights",
                format!("reconstruction {reconstruction}, adversarial {adversarial}"),
                "must be finite, >= 0 and not both 0",
            ));
        }
        Ok(Self {
            link: link.clone(),
            reconstruction,
            adversarial,
        })
    }
}

impl TaskLoss for AdversarialLoss {
    fn name(&self) -> String {
        format!(
            "adversarial(reconstruction={}, adversarial={})",
            self.reconstruction, self.adversarial
        )
    }

    fn targets(&self) -> TargetForm {
        TargetForm::Values
    }

    fn default_metrics(&self) -> Vec<Metric> {
        vec![Metric::Mae, Metric::Mse]
    }

    fn per_sample(&self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let d = self.link.0.get().ok_or_else(|| {
            Error::DataMismatch(format!(
                "task '{task}': the adversarial loss is not joined to an AdversarialHead \
                 (give both the same AdversarialLink)"
            ))
        })?;
        let pred = regression_prediction(task, pred, target)?;
        if pred.rank() != 2 {
            return Err(Error::DataMismatch(format!(
                "task '{task}': the adversarial loss reads outputs (N, L), got {:?}",
                pred.dims()
            )));
        }
        let error = (&pred - target.to_dtype(pred.dtype())?)?.sqr()?.mean(1)?;
        let fooled = softplus(&d.logits(&pred, false)?.neg()?)?.squeeze(1)?;
        Ok(((error * self.reconstruction)? + (fooled * self.adversarial)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;
    use candle_core::{DType, Device};

    fn setup(store: &ParamStore) -> Result<(AdversarialHead, AdversarialLoss)> {
        let link = AdversarialLink::new();
        let loss = AdversarialLoss::new(&link, 1.0, 0.5)?;
        let config = AdversarialConfig {
            hidden: 8,
            discriminator_hidden: 6,
            lr: 1e-2,
            ..AdversarialConfig::new(5)
        };
        let head = AdversarialHead::new(4, &config, &link, &store.path("heads.img"))?;
        Ok((head, loss))
    }

    #[test]
    fn the_discriminator_learns_by_itself_and_the_generator_gets_gradients() -> Result<()> {
        let store = ParamStore::new(&Device::Cpu, 5);
        let (head, loss) = setup(&store)?;
        let z = Tensor::randn(0f32, 1.0, (16, 4), &Device::Cpu)?;
        let real = (Tensor::ones((16, 5), DType::F32, &Device::Cpu)? * 3.0)?;
        let d = head.discriminator.clone();
        let gap = |d: &Discriminator| -> Result<f32> {
            let fake = head.generate(&z)?;
            Ok(
                (d.logits(&real, false)?.mean_all()? - d.logits(&fake, false)?.mean_all()?)?
                    .to_scalar::<f32>()?,
            )
        };
        let before = gap(&d)?;
        for _ in 0..20 {
            head.forward_with_target(&z, &real, None, true)?;
            // A second pass of the same step (cross-batch, meta-validation) is not noted.
            head.forward_with_target(&z, &real, None, true)?;
            head.end_step(true)?;
        }
        assert!(
            gap(&d)? > before + 0.5,
            "D separates real from fake: {before} -> {}",
            gap(&d)?
        );
        assert_eq!(d.step.as_tensor().to_scalar::<f32>()?, 20.0);
        // Only labelled rows reach the discriminator.
        let mask = Tensor::new(
            &[1u8, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0],
            &Device::Cpu,
        )?;
        head.forward_with_target(&z, &real, Some(&mask), true)?;
        let noted = d.pending.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(
            noted.map(|(r, f)| (r.dims().to_vec(), f.dims().to_vec())),
            Some((vec![4, 5], vec![4, 5]))
        );
        head.end_step(false)?;
        // No D step outside training, nor for a skipped step.
        head.forward_with_target(&z, &real, None, false)?;
        head.end_step(true)?;
        head.forward_with_target(&z, &real, None, true)?;
        head.end_step(false)?;
        head.end_step(true)?;
        assert_eq!(d.step.as_tensor().to_scalar::<f32>()?, 20.0);
        // The generator's loss reaches every generator parameter and no discriminator buffer
        // is among the trainable parameters.
        let pred = head.forward_with_target(&z, &real, None, false)?;
        let grads = loss.compute("img", &pred, &real)?.backward()?;
        let trainable = store.trainable_vars();
        assert_eq!(trainable.len(), 4);
        for (name, var) in trainable {
            assert!(
                name.contains("generator") && grads.get(&var).is_some(),
                "{name}"
            );
        }
        assert!(store
            .named_buffers()
            .iter()
            .any(|(n, _)| n.contains("discriminator.fc1.weight")));
        Ok(())
    }

    #[test]
    fn the_discriminator_is_saved_and_loaded_with_the_model() -> Result<()> {
        use crate::encoder::{Mlp, MlpConfig};
        use crate::model::MultiTaskModel;
        use crate::task::TaskSpec;
        let build = |seed| -> Result<(MultiTaskModel, AdversarialHead)> {
            let link = AdversarialLink::new();
            let mut kept = None;
            let model = MultiTaskModel::builder(&Device::Cpu, seed)
                .encoder(|p| {
                    Mlp::new(
                        &MlpConfig {
                            input_dim: 5,
                            hidden: vec![4],
                            ..Default::default()
                        },
                        p,
                    )
                })?
                .task(
                    TaskSpec::new("img", AdversarialLoss::new(&link, 1.0, 1.0)?),
                    |p| {
                        let head = AdversarialHead::new(4, &AdversarialConfig::new(5), &link, p)?;
                        kept = Some(head.clone());
                        Ok(head)
                    },
                )?
                .build()?;
            let head = kept.ok_or_else(|| Error::config("test", "head", "not built"))?;
            Ok((model, head))
        };
        let (a, head) = build(1)?;
        let z = Tensor::randn(0f32, 1.0, (8, 4), &Device::Cpu)?;
        let real = Tensor::ones((8, 5), DType::F32, &Device::Cpu)?;
        head.forward_with_target(&z, &real, None, true)?;
        head.end_step(true)?;
        let file = std::env::temp_dir().join(format!("adv-{}.safetensors", std::process::id()));
        a.save(&file)?;
        let (b, other) = build(2)?;
        b.load_weights(&file)?;
        let _ = std::fs::remove_file(&file);
        let logits = |h: &AdversarialHead| -> Result<Vec<Vec<f32>>> {
            Ok(h.discriminator.logits(&real, false)?.to_vec2::<f32>()?)
        };
        assert_eq!(logits(&head)?, logits(&other)?);
        assert_eq!(
            other.discriminator.step.as_tensor().to_scalar::<f32>()?,
            1.0
        );
        Ok(())
    }

    #[test]
    fn unjoined_links_bad_targets_and_weights_are_refused() -> Result<()> {
        let lone = AdversarialLoss::new(&AdversarialLink::new(), 1.0, 1.0)?;
        let x = Tensor::zeros((2, 5), DType::F32, &Device::Cpu)?;
        let err = lone.compute("img", &x, &x).unwrap_err().to_string();
        assert!(
            err.contains("'img'") && err.contains("AdversarialLink"),
            "{err}"
        );
        assert!(AdversarialLoss::new(&AdversarialLink::new(), 0.0, 0.0).is_err());
        let store = ParamStore::new(&Device::Cpu, 5);
        let (head, loss) = setup(&store)?;
        let z = Tensor::zeros((2, 4), DType::F32, &Device::Cpu)?;
        let wrong = Tensor::zeros((2, 7), DType::F32, &Device::Cpu)?;
        let err = head
            .forward_with_target(&z, &wrong, None, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[2, 5]") && err.contains("[2, 7]"), "{err}");
        let err = loss.compute("img", &x, &wrong).unwrap_err().to_string();
        assert!(err.contains("'img'"), "{err}");
        Ok(())
    }
}
