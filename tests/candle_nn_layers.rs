//! A model written as a dependent crate would write it: plain `candle_nn::linear` layers built
//! through `ParamPath::var_builder`, trained by the crate's trainer. Seeded, frozen,
//! checkpointed and seen by gradient-based weighting like the built-in layers.

mod common;

use candle_core::{Device, Module, Tensor};
use candle_mtl::model::Component;
use candle_mtl::params::ParamPath;
use candle_mtl::prelude::*;
use candle_mtl::weighting::by_name;
use common::{cls_reg_dataset, fixture, temp_dir};

/// Two candle-nn linear layers with ReLU: 784 -> 64 -> 32.
struct NnEncoder {
    fc1: candle_nn::Linear,
    fc2: candle_nn::Linear,
}

impl NnEncoder {
    fn new(p: &ParamPath) -> Result<Self> {
        let vb = p.var_builder();
        Ok(Self {
            fc1: candle_nn::linear(784, 64, vb.pp("fc1"))?,
            fc2: candle_nn::linear(64, 32, vb.pp("fc2"))?,
        })
    }
}

impl SharedEncoder for NnEncoder {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let h = self.fc1.forward(&xs.flatten_from(1)?)?.relu()?;
        Ok(self.fc2.forward(&h)?.relu()?)
    }
    fn output_dim(&self) -> usize {
        32
    }
    fn layer_groups(&self) -> Vec<String> {
        vec!["fc1".into(), "fc2".into()]
    }
}

/// One candle-nn linear layer.
struct NnHead {
    fc: candle_nn::Linear,
    outputs: usize,
}

impl NnHead {
    fn new(outputs: usize, p: &ParamPath) -> Result<Self> {
        Ok(Self {
            fc: candle_nn::linear(32, outputs, p.var_builder().pp("fc"))?,
            outputs,
        })
    }
}

impl TaskHead for NnHead {
    fn forward_t(&self, z: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(self.fc.forward(z)?)
    }
    fn input_dim(&self) -> usize {
        32
    }
    fn output_dim(&self) -> usize {
        self.outputs
    }
}

fn model(seed: u64) -> MultiTaskModel {
    MultiTaskModel::builder(&Device::Cpu, seed)
        .encoder(NnEncoder::new)
        .and_then(|b| b.task(TaskSpec::classification("digit"), |p| NnHead::new(10, p)))
        .and_then(|b| b.task(TaskSpec::regression("value"), |p| NnHead::new(1, p)))
        .and_then(|b| b.build())
        .expect("model builds")
}

fn model_frozen() -> MultiTaskModel {
    let m = model(1);
    m.freeze(&Component::Encoder).unwrap();
    m
}

fn values(m: &MultiTaskModel, prefix: &str) -> Vec<Vec<f32>> {
    m.params()
        .named_vars()
        .iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

fn trainer(m: MultiTaskModel, strategy: &str) -> Trainer {
    let config = TrainerConfig {
        batch_size: 50,
        seed: 3,
        ..Default::default()
    };
    Trainer::new(m, by_name(strategy).unwrap(), config).unwrap()
}

#[test]
fn candle_nn_layers_are_ordinary_parameters() {
    let m = model(1);
    let names: Vec<String> = m
        .params()
        .named_vars()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "encoder.fc1.bias",
            "encoder.fc1.weight",
            "encoder.fc2.bias",
            "encoder.fc2.weight",
            "heads.digit.fc.bias",
            "heads.digit.fc.weight",
            "heads.value.fc.bias",
            "heads.value.fc.weight",
        ]
    );
    assert_eq!(m.shared_vars().len(), 4, "the encoder's layers are shared");
    assert_eq!(m.params().count("encoder"), 784 * 64 + 64 + 64 * 32 + 32);
    // Seeded: same seed, same weights; another seed, other weights.
    assert_eq!(values(&model(1), ""), values(&m, ""));
    assert_ne!(values(&model(2), "encoder"), values(&m, "encoder"));
}

#[test]
fn trains_with_a_gradient_based_strategy_and_learns() {
    let mnist = fixture();
    let train = cls_reg_dataset(&mnist.train);
    let test = cls_reg_dataset(&mnist.test);
    let mut t = trainer(model(1), "pcgrad");
    assert_eq!(
        t.gradient_source(),
        Some(candle_mtl::weighting::GradientSource::SharedParameters)
    );
    let before = t.evaluate(TaskData::Shared(&test)).unwrap();
    t.fit(TaskData::Shared(&train), None, 3, &mut |_| Ok(()))
        .unwrap();
    let after = t.evaluate(TaskData::Shared(&test)).unwrap();
    let acc = |r: &candle_mtl::train::EvalReport| r.tasks[0].metrics[0].1;
    assert!(
        acc(&after) > acc(&before) + 0.3,
        "accuracy {} -> {}",
        acc(&before),
        acc(&after)
    );
}

#[test]
fn freezing_reaches_candle_nn_layers() {
    let mnist = fixture();
    let train = cls_reg_dataset(&mnist.train);
    let m = model(1);
    assert_eq!(m.freeze(&Component::Encoder).unwrap(), 4);
    let encoder_before = values(&m, "encoder");
    let heads_before = values(&m, "heads");
    // A gradient-based strategy sees that nothing shared is left to compare.
    let mut refused = trainer(model_frozen(), "mgda");
    assert!(refused
        .fit(TaskData::Shared(&train), None, 1, &mut |_| Ok(()))
        .is_err());
    let mut t = trainer(m, "equal");
    t.fit(TaskData::Shared(&train), None, 1, &mut |_| Ok(()))
        .unwrap();
    assert_eq!(
        values(t.model(), "encoder"),
        encoder_before,
        "a frozen layer moved"
    );
    assert_ne!(
        values(t.model(), "heads"),
        heads_before,
        "the heads did not train"
    );
    // One layer of the encoder, by its layer group.
    let m = model(1);
    assert_eq!(m.freeze(&Component::EncoderLayer("fc1".into())).unwrap(), 2);
    let fc1 = values(&m, "encoder.fc1");
    let fc2 = values(&m, "encoder.fc2");
    let mut t = trainer(m, "mgda");
    assert_eq!(t.model().trainable_shared_vars().len(), 2);
    t.fit(TaskData::Shared(&train), None, 1, &mut |_| Ok(()))
        .unwrap();
    assert_eq!(values(t.model(), "encoder.fc1"), fc1);
    assert_ne!(values(t.model(), "encoder.fc2"), fc2);
}

#[test]
fn checkpoints_resume_exactly() {
    let mnist = fixture();
    let train = cls_reg_dataset(&mnist.train);
    let mut straight = trainer(model(4), "cagrad");
    straight
        .fit(TaskData::Shared(&train), None, 2, &mut |_| Ok(()))
        .unwrap();

    let path = temp_dir("candle-nn-resume").join("ckpt.safetensors");
    let mut first = trainer(model(4), "cagrad");
    first
        .fit(TaskData::Shared(&train), None, 1, &mut |_| Ok(()))
        .unwrap();
    first.save_checkpoint(&path).unwrap();
    drop(first);
    let mut resumed = trainer(model(4), "cagrad");
    resumed.load_checkpoint(&path).unwrap();
    resumed
        .fit(TaskData::Shared(&train), None, 1, &mut |_| Ok(()))
        .unwrap();
    assert_eq!(values(straight.model(), ""), values(resumed.model(), ""));
}
