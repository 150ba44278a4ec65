//! Checkpoints: exact resume on the CPU, crash safety, architecture mismatches, and the keep
//! policies of `fit`.

mod common;

use candle_core::{Device, Tensor};
use candle_mtl::prelude::*;
use candle_mtl::train::CheckpointPolicy;
use candle_mtl::weighting::by_name;
use common::{cls_reg_dataset, fixture, mlp_model, temp_dir};

fn params(t: &Trainer) -> Vec<Vec<f32>> {
    t.model()
        .params()
        .named_vars()
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

fn trainer(strategy: &str) -> Trainer {
    let config = TrainerConfig {
        batch_size: 50,
        seed: 5,
        ..Default::default()
    };
    Trainer::new(mlp_model(5), by_name(strategy).unwrap(), config).unwrap()
}

#[test]
fn resumed_runs_are_bit_identical_to_uninterrupted_ones() {
    let mnist = fixture();
    let data = cls_reg_dataset(&mnist.train);
    // Stateful strategies: FAMO (logits + its Adam), DWA (loss history), RLW (generator),
    // uncertainty (learned parameters), PCGrad (generator, per-task gradients).
    for strategy in ["famo", "dwa", "rlw", "uncertainty", "pcgrad"] {
        let mut straight = trainer(strategy);
        let full = straight
            .fit(TaskData::Shared(&data), None, 3, &mut |_| Ok(()))
            .unwrap();

        let path = temp_dir(&format!("resume-{strategy}")).join("ckpt.safetensors");
        let mut first = trainer(strategy);
        first
            .fit(TaskData::Shared(&data), None, 1, &mut |_| Ok(()))
            .unwrap();
        first.save_checkpoint(&path).unwrap();
        drop(first);

        let mut resumed = trainer(strategy);
        resumed.load_checkpoint(&path).unwrap();
        assert_eq!((resumed.steps_done(), resumed.epochs_done()), (16, 1));
        let rest = resumed
            .fit(TaskData::Shared(&data), None, 2, &mut |_| Ok(()))
            .unwrap();
        for (a, b) in full.epochs[1..].iter().zip(&rest.epochs) {
            assert_eq!(
                a.train_losses, b.train_losses,
                "{strategy}: epoch {} losses differ",
                a.epoch
            );
            assert_eq!(
                a.mean_weights, b.mean_weights,
                "{strategy}: epoch {} weights differ",
                a.epoch
            );
        }
        assert_eq!(
            params(&straight),
            params(&resumed),
            "{strategy}: final weights differ"
        );
    }
}

#[test]
fn a_crash_while_writing_leaves_the_previous_checkpoint_loadable() {
    let mnist = fixture();
    let data = cls_reg_dataset(&mnist.train);
    let dir = temp_dir("crash");
    let path = dir.join("run.safetensors");
    let mut t = trainer("equal");
    t.fit(TaskData::Shared(&data), None, 1, &mut |_| Ok(()))
        .unwrap();
    t.save_checkpoint(&path).unwrap();
    let saved = params(&t);
    let good = std::fs::read(&path).unwrap();

    // A second save dies halfway: what it leaves is its temporary file, half written.
    t.fit(TaskData::Shared(&data), None, 1, &mut |_| Ok(()))
        .unwrap();
    let torn = dir.join(format!(".run.safetensors.tmp-{}", std::process::id()));
    std::fs::write(&torn, &good[..good.len() / 2]).unwrap();

    let mut fresh = trainer("equal");
    fresh.load_checkpoint(&path).unwrap();
    assert_eq!(params(&fresh), saved);
    // The torn file itself is refused cleanly, naming it.
    let msg = trainer("equal")
        .load_checkpoint(&torn)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(".run.safetensors.tmp"), "{msg}");
    // A truncated final file (a file system that lost the tail) too.
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &good[..good.len() - 100]).unwrap();
    let mut victim = trainer("equal");
    let before = params(&victim);
    assert!(victim.load_checkpoint(&cut).is_err());
    assert_eq!(
        params(&victim),
        before,
        "a failed load changed the parameters"
    );
}

#[test]
fn a_different_architecture_is_refused_with_names_and_shapes() {
    let path = temp_dir("mismatch").join("m.safetensors");
    trainer("equal").save_checkpoint(&path).unwrap();
    let wider = common::mlp_tasks(
        0,
        32,
        &[
            (TaskSpec::classification("digit"), 10),
            (TaskSpec::regression("age"), 1),
        ],
    );
    let mut other = Trainer::new(wider, Box::new(Equal::sum()), TrainerConfig::default()).unwrap();
    let msg = other.load_checkpoint(&path).unwrap_err().to_string();
    assert!(msg.contains("m.safetensors"), "{msg}");
    assert!(
        msg.contains("model.encoder.layer0.weight: checkpoint [64, 784], model [32, 784]"),
        "{msg}"
    );
    assert!(
        msg.contains("model.heads.age.linear.bias [1] is missing"),
        "{msg}"
    );
    assert!(
        msg.contains("model.heads.value.linear.bias [1] is in the checkpoint but not in the model"),
        "{msg}"
    );

    let not_a_checkpoint = temp_dir("mismatch").join("plain.safetensors");
    candle_core::safetensors::save(
        &std::collections::HashMap::from([(
            "x".to_string(),
            Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap(),
        )]),
        &not_a_checkpoint,
    )
    .unwrap();
    let msg = other
        .load_checkpoint(&not_a_checkpoint)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a candle-mtl checkpoint"), "{msg}");
}

#[test]
fn fit_keeps_the_last_checkpoints_and_the_best() {
    let mnist = fixture();
    let (train, test) = (cls_reg_dataset(&mnist.train), cls_reg_dataset(&mnist.test));
    let dir = temp_dir("policy");
    let policy = CheckpointPolicy {
        dir: dir.clone(),
        keep_last: 2,
        best: Some(("digit".into(), Metric::Accuracy)),
        every_steps: None,
    };
    let config = TrainerConfig {
        batch_size: 50,
        checkpoint: Some(policy.clone()),
        ..Default::default()
    };
    let mut t = Trainer::new(mlp_model(0), Box::new(Equal::sum()), config.clone()).unwrap();
    let fit = t
        .fit(
            TaskData::Shared(&train),
            Some(TaskData::Shared(&test)),
            3,
            &mut |_| Ok(()),
        )
        .unwrap();
    assert!(!policy.epoch_path(0).exists());
    assert!(policy.epoch_path(1).exists() && policy.epoch_path(2).exists());
    assert!(policy.best_path().exists());
    // The best checkpoint holds the epoch with the highest accuracy.
    let accs: Vec<f64> = fit
        .epochs
        .iter()
        .map(|e| {
            e.eval
                .as_ref()
                .unwrap()
                .task("digit")
                .unwrap()
                .metric(Metric::Accuracy)
                .unwrap()
        })
        .collect();
    let best_epoch = (0..3).fold(0, |b, i| if accs[i] > accs[b] { i } else { b });
    // A checkpoint resumes a run under its own configuration only: another one is refused,
    // naming the field.
    let mut other = Trainer::new(
        mlp_model(0),
        Box::new(Equal::sum()),
        TrainerConfig::default(),
    )
    .unwrap();
    let msg = other
        .load_checkpoint(policy.best_path())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("config.batch_size: checkpoint 50, trainer 64"),
        "{msg}"
    );
    let mut restored = Trainer::new(mlp_model(0), Box::new(Equal::sum()), config).unwrap();
    restored.load_checkpoint(policy.best_path()).unwrap();
    assert_eq!(restored.epochs_done(), best_epoch + 1);
}

/// Every parameter and buffer, by name.
fn state(t: &Trainer) -> Vec<(String, Vec<f32>)> {
    t.model()
        .params()
        .named_state()
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                v.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
            )
        })
        .collect()
}

/// Two epochs straight, and one epoch + checkpoint + a fresh trainer resumed for the second:
/// both trainers, for the caller to compare.
fn straight_and_resumed(
    encoder: impl Fn(&candle_mtl::params::ParamPath) -> Result<Box<dyn SharedEncoder>>,
    width: usize,
    seed: u64,
    samples: usize,
    name: &str,
) -> (Trainer, Trainer) {
    let data = cls_reg_dataset(&fixture().train.take(samples));
    let make = || {
        let model = MultiTaskModel::builder(&Device::Cpu, seed)
            .encoder(&encoder)
            .and_then(|b| {
                b.task(TaskSpec::classification("digit"), |p| {
                    LinearHead::new(width, 10, p)
                })
            })
            .and_then(|b| {
                b.task(TaskSpec::regression("value"), |p| {
                    LinearHead::new(width, 1, p)
                })
            })
            .and_then(|b| b.build())
            .unwrap();
        let config = TrainerConfig {
            batch_size: 32,
            seed: seed + 1,
            ..Default::default()
        };
        Trainer::new(model, by_name("equal").unwrap(), config).unwrap()
    };
    let mut straight = make();
    straight
        .fit(TaskData::Shared(&data), None, 2, &mut |_| Ok(()))
        .unwrap();
    let path = temp_dir(name).join("ckpt.safetensors");
    let mut first = make();
    first
        .fit(TaskData::Shared(&data), None, 1, &mut |_| Ok(()))
        .unwrap();
    first.save_checkpoint(&path).unwrap();
    drop(first);
    let mut resumed = make();
    resumed.load_checkpoint(&path).unwrap();
    resumed
        .fit(TaskData::Shared(&data), None, 1, &mut |_| Ok(()))
        .unwrap();
    (straight, resumed)
}

/// Batch norm statistics are buffers: saved in checkpoints and restored on resume, so the
/// resumed model evaluates exactly as the uninterrupted one.
#[test]
fn buffers_are_checkpointed_and_resumed() {
    use candle_mtl::encoder::{ResNet, ResNetConfig};
    let (straight, resumed) = straight_and_resumed(
        |p| Ok(Box::new(ResNet::new(&ResNetConfig::small(1, 2), p)?)),
        16,
        1,
        128,
        "resume-buffers",
    );
    let buffers = resumed.model().params().named_buffers();
    assert!(buffers.iter().any(|(n, _)| n == "encoder.bn1.running_mean"));
    assert_eq!(
        state(&straight),
        state(&resumed),
        "parameters or buffers differ after resume"
    );
    let names: Vec<String> = straight
        .model()
        .params()
        .named_vars()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("running_")),
        "statistics are not parameters"
    );
}

/// A Transformer's dropout generator is part of the model's state: a run resumed in a fresh
/// trainer draws the same dropout masks as an uninterrupted one.
#[test]
fn transformer_dropout_resumes_exactly() {
    use candle_mtl::encoder::{TransformerConfig, TransformerEncoder};
    let config = TransformerConfig {
        input_dim: 28,
        model_dim: 16,
        heads: 2,
        layers: 1,
        ff_dim: 32,
        dropout: 0.2,
        ..Default::default()
    };
    let (straight, resumed) = straight_and_resumed(
        |p| Ok(Box::new(TransformerEncoder::new(&config, p)?)),
        16,
        3,
        96,
        "resume-dropout",
    );
    assert_eq!(
        params(&straight),
        params(&resumed),
        "dropout masks differ after resume"
    );
    assert!(straight
        .model()
        .params()
        .named_buffers()
        .iter()
        .any(|(n, _)| n == "encoder.dropout_rng"));
}

/// Fails at one step, as a crash would, after the step's checkpoint was written.
struct StopAt(u64);

impl candle_mtl::train::Observer for StopAt {
    fn on_step(
        &mut self,
        _: &[String],
        r: &candle_mtl::train::StepReport,
    ) -> candle_mtl::Result<()> {
        if r.step + 1 == self.0 {
            return Err(candle_mtl::Error::DataMismatch(format!(
                "stopped at step {}",
                self.0
            )));
        }
        Ok(())
    }
}

#[test]
fn evaluations_every_n_steps_survive_a_mid_epoch_resume() {
    let mnist = fixture();
    let (train, test) = (cls_reg_dataset(&mnist.train), cls_reg_dataset(&mnist.test));
    let config = |dir: &std::path::Path| TrainerConfig {
        batch_size: 50,
        seed: 2,
        eval_every_steps: Some(3),
        checkpoint: Some(CheckpointPolicy {
            dir: dir.to_path_buf(),
            keep_last: 3,
            best: None,
            every_steps: Some(4),
        }),
        ..Default::default()
    };
    let run = |trainer: &mut Trainer| {
        trainer.fit(
            TaskData::Shared(&train),
            Some(TaskData::Shared(&test)),
            1,
            &mut |_| Ok(()),
        )
    };
    let straight_dir = temp_dir("step-evals-straight");
    let mut straight = Trainer::new(
        mlp_model(5),
        by_name("equal").unwrap(),
        config(&straight_dir),
    )
    .unwrap();
    let expected = run(&mut straight).unwrap().epochs[0].step_evals.clone();
    // 800 samples in batches of 50: 16 steps, evaluated after steps 3, 6, ..., 15.
    assert_eq!(
        expected.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![3, 6, 9, 12, 15]
    );

    let dir = temp_dir("step-evals-resumed");
    let mut first = Trainer::new(mlp_model(5), by_name("equal").unwrap(), config(&dir)).unwrap();
    first.add_observer(Box::new(StopAt(10)));
    assert!(run(&mut first)
        .unwrap_err()
        .to_string()
        .contains("stopped at step 10"));
    let newest = candle_mtl::train::latest_checkpoint(&dir)
        .unwrap()
        .expect("a checkpoint");
    let mut resumed = Trainer::new(mlp_model(5), by_name("equal").unwrap(), config(&dir)).unwrap();
    resumed.load_checkpoint(&newest).unwrap();
    assert_eq!(resumed.steps_done(), 8);
    let report = run(&mut resumed).unwrap();
    assert_eq!(report.epochs[0].step_evals, expected);
    assert_eq!(params(&resumed), params(&straight));
}
