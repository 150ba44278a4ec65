//! Training modes (joint, alternating, progressive), freezing and layer-wise unfreezing, head
//! penalties and per-sample label masks, each on real digits from the committed fixture. Every
//! test compares with the same run with the feature switched off, so it fails if the feature
//! does nothing.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_mtl::data::ImageDataset;
use candle_mtl::metrics::Metric;
use candle_mtl::model::Component;
use candle_mtl::prelude::*;
use candle_mtl::train::{HeadRegularizer, StepBatch, TaskOrder, TrainingMode, UnfreezeSchedule};
use candle_mtl::weighting::by_name;

/// Values of every parameter, by name.
fn snapshot(model: &MultiTaskModel) -> Vec<(String, Vec<f32>)> {
    model
        .params()
        .named_vars()
        .into_iter()
        .map(|(n, v)| {
            let values = v.as_tensor().flatten_all().and_then(|t| t.to_vec1::<f32>());
            (n, values.expect("parameter values"))
        })
        .collect()
}

/// Names of the parameters whose values differ between two snapshots.
fn changed(before: &[(String, Vec<f32>)], after: &[(String, Vec<f32>)]) -> Vec<String> {
    before
        .iter()
        .zip(after)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((n, _), _)| n.clone())
        .collect()
}

fn any_changed(names: &[String], prefix: &str) -> bool {
    names.iter().any(|n| n.starts_with(prefix))
}

/// Digit class, digit value, and parity (0 even, 1 odd) of the fixture's digits.
fn three_targets(images: &ImageDataset) -> TensorDataset {
    let parity: Vec<u32> = images.labels().iter().map(|l| l % 2).collect();
    common::cls_reg_dataset(images)
        .with_target(
            "parity",
            Tensor::from_vec(parity, images.len(), &Device::Cpu).expect("tensor"),
        )
        .expect("dataset")
}

fn three_task_model(seed: u64) -> MultiTaskModel {
    common::mlp_tasks(
        seed,
        64,
        &[
            (TaskSpec::classification("digit"), 10),
            (TaskSpec::regression("value"), 1),
            (TaskSpec::classification("parity"), 2),
        ],
    )
}

fn config(mode: TrainingMode) -> TrainerConfig {
    TrainerConfig {
        batch_size: 50,
        optimizer: OptimizerConfig::adam(2e-3),
        mode,
        ..Default::default()
    }
}

fn equal() -> Box<dyn TaskWeighting> {
    by_name("equal").expect("equal")
}

#[test]
fn alternating_round_robin_trains_one_head_per_step_and_joint_trains_all() -> Result<()> {
    let mnist = common::fixture();
    let data = three_targets(&mnist.train);
    let batch = StepBatch::Shared(data.batch(&(0..50).collect::<Vec<u32>>(), &Device::Cpu)?);

    let mut alt = Trainer::new(
        three_task_model(0),
        equal(),
        config(TrainingMode::Alternating(TaskOrder::RoundRobin)),
    )?;
    for (step, task) in ["digit", "value", "parity", "digit"].iter().enumerate() {
        let before = snapshot(alt.model());
        let r = alt.train_step(&batch)?;
        let after = snapshot(alt.model());
        let moved = changed(&before, &after);
        assert!(
            any_changed(&moved, &format!("heads.{task}.")),
            "step {step}: {moved:?}"
        );
        for other in ["digit", "value", "parity"].iter().filter(|o| *o != task) {
            assert!(
                !any_changed(&moved, &format!("heads.{other}.")),
                "step {step} trained '{task}' but moved '{other}': {moved:?}"
            );
        }
        assert!(any_changed(&moved, "encoder."));
        let k = ["digit", "value", "parity"]
            .iter()
            .position(|t| t == task)
            .unwrap_or(0);
        assert!(r.losses[k].is_finite());
        assert_eq!(r.losses.iter().filter(|l| l.is_nan()).count(), 2);
        let mut one_hot = vec![0.0; 3];
        one_hot[k] = 1.0;
        assert_eq!(r.weights.as_deref(), Some(one_hot.as_slice()));
    }

    // Switched off (joint): one step moves every head.
    let mut joint = Trainer::new(three_task_model(0), equal(), config(TrainingMode::Joint))?;
    let before = snapshot(joint.model());
    let r = joint.train_step(&batch)?;
    let moved = changed(&before, &snapshot(joint.model()));
    for task in ["digit", "value", "parity"] {
        assert!(any_changed(&moved, &format!("heads.{task}.")), "{moved:?}");
    }
    assert!(r.losses.iter().all(|l| l.is_finite()));
    Ok(())
}

#[test]
fn alternating_multi_input_visits_each_dataset_once_in_proportion() -> Result<()> {
    let mnist = common::fixture();
    let data = three_targets(&mnist.train);
    // Task "digit" reads 600 samples, task "value" 200: 12 and 4 batches of 50.
    let digit_ds = data.subset(&(0..600).collect::<Vec<u32>>())?;
    let value_ds = data.subset(&(600..800).collect::<Vec<u32>>())?;
    let per_task = [digit_ds, value_ds];
    let model = |seed| common::mlp_model(seed);
    let mut cfg = config(TrainingMode::Alternating(TaskOrder::Proportional));
    cfg.input_mode = InputMode::MultiInput;
    let mut trainer = Trainer::new(model(1), equal(), cfg.clone())?;
    let report = trainer.train_epoch(TaskData::PerTask(&per_task))?;
    assert_eq!(report.steps, 16);
    assert_eq!(report.samples, 800);
    let shares = report.mean_weights.clone().expect("weights");
    assert!(
        (shares[0] - 0.75).abs() < 1e-9 && (shares[1] - 0.25).abs() < 1e-9,
        "{shares:?}"
    );

    // Round-robin: the same steps.
    cfg.mode = TrainingMode::Alternating(TaskOrder::RoundRobin);
    let mut trainer = Trainer::new(model(1), equal(), cfg.clone())?;
    assert_eq!(trainer.train_epoch(TaskData::PerTask(&per_task))?.steps, 16);
    // Joint multi-input over the same data: 12 steps, each with both tasks.
    cfg.mode = TrainingMode::Joint;
    let mut joint = Trainer::new(model(1), equal(), cfg)?;
    let joint_report = joint.train_epoch(TaskData::PerTask(&per_task))?;
    assert_eq!(joint_report.steps, 12);
    assert!(joint_report
        .mean_weights
        .expect("weights")
        .iter()
        .all(|w| *w == 1.0));
    Ok(())
}

/// Records which task each step trained.
struct OrderLog(std::sync::Arc<std::sync::Mutex<Vec<usize>>>);

impl candle_mtl::train::Observer for OrderLog {
    fn on_step(&mut self, _names: &[String], r: &candle_mtl::train::StepReport) -> Result<()> {
        if let (Some(w), Ok(mut v)) = (&r.weights, self.0.lock()) {
            v.push(w.iter().position(|x| *x == 1.0).unwrap_or(usize::MAX));
        }
        Ok(())
    }
}

#[test]
fn round_robin_interleaves_tasks_until_the_smaller_runs_out() -> Result<()> {
    let mnist = common::fixture();
    let data = three_targets(&mnist.train);
    let per_task = [
        data.subset(&(0..300).collect::<Vec<u32>>())?,
        data.subset(&(300..400).collect::<Vec<u32>>())?,
    ];
    let mut cfg = config(TrainingMode::Alternating(TaskOrder::RoundRobin));
    cfg.input_mode = InputMode::MultiInput;
    let mut trainer = Trainer::new(common::mlp_model(2), equal(), cfg)?;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    trainer.add_observer(Box::new(OrderLog(seen.clone())));
    trainer.train_epoch(TaskData::PerTask(&per_task))?;
    let order = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(order, vec![0, 1, 0, 1, 0, 0, 0, 0]);
    Ok(())
}

#[test]
fn progressive_training_adds_a_task_and_keeps_the_old_ones() -> Result<()> {
    let mnist = common::fixture();
    let train = three_targets(&mnist.train);
    let test = three_targets(&mnist.test);
    let mode = TrainingMode::Progressive(vec![("parity".into(), 2)]);
    let mut trainer = Trainer::new(three_task_model(3), equal(), config(mode))?;
    let parity_head = |m: &MultiTaskModel| {
        snapshot(m)
            .into_iter()
            .filter(|(n, _)| n.starts_with("heads.parity."))
            .collect::<Vec<_>>()
    };
    let initial = parity_head(trainer.model());
    let mut old_before = None;
    for epoch in 0..4 {
        let mut r = trainer.train_epoch(TaskData::Shared(&train))?;
        r.eval = Some(trainer.evaluate(TaskData::Shared(&test))?);
        let eval = r.eval.as_ref().expect("eval");
        let parity_moved = parity_head(trainer.model()) != initial;
        if epoch < 2 {
            assert!(
                !parity_moved,
                "parity trained before it joined (epoch {epoch})"
            );
            assert!(r.train_losses[2].is_nan());
            assert_eq!(trainer.active_tasks(), ["digit", "value"]);
            let w = r.mean_weights.clone().expect("weights");
            assert_eq!(w[2], 0.0);
        } else {
            assert!(parity_moved, "parity did not train after joining");
            assert!(r.train_losses[2].is_finite());
            assert_eq!(trainer.active_tasks(), ["digit", "value", "parity"]);
        }
        if epoch == 1 {
            old_before = Some((
                eval.task("digit")
                    .and_then(|t| t.metric(Metric::Accuracy))
                    .unwrap_or(0.0),
                eval.task("value")
                    .and_then(|t| t.metric(Metric::Mae))
                    .unwrap_or(f64::MAX),
            ));
        }
        if epoch == 3 {
            let (acc_before, mae_before) = old_before.expect("epoch 1 evaluated");
            let acc = eval
                .task("digit")
                .and_then(|t| t.metric(Metric::Accuracy))
                .unwrap_or(0.0);
            let mae = eval
                .task("value")
                .and_then(|t| t.metric(Metric::Mae))
                .unwrap_or(f64::MAX);
            let parity = eval
                .task("parity")
                .and_then(|t| t.metric(Metric::Accuracy))
                .unwrap_or(0.0);
            println!(
                "old tasks before parity joined: digit {acc_before:.3}, value MAE {mae_before:.3}; \
                 after: digit {acc:.3}, value MAE {mae:.3}; parity {parity:.3}"
            );
            assert!(
                acc >= acc_before - 0.03,
                "digit forgotten: {acc_before} -> {acc}"
            );
            assert!(
                mae <= mae_before + 0.15,
                "value forgotten: {mae_before} -> {mae}"
            );
            assert!(parity > 0.75, "parity did not learn: {parity}");
        }
    }
    Ok(())
}

#[test]
fn layerwise_unfreezing_releases_the_encoder_from_the_top() -> Result<()> {
    let mnist = common::fixture();
    let train = common::cls_reg_dataset(&mnist.train.take(200));
    let mut cfg = config(TrainingMode::Joint);
    cfg.unfreeze = Some(UnfreezeSchedule::top_down(1, 1));
    // ConvNet layers from the input: conv0, conv1, fc.
    let mut trainer = Trainer::new(common::small_cnn_model(4), equal(), cfg)?;
    let expect = [
        (0, vec![]),
        (1, vec!["encoder.fc."]),
        (2, vec!["encoder.fc.", "encoder.conv1."]),
        (3, vec!["encoder.fc.", "encoder.conv1.", "encoder.conv0."]),
    ];
    for (epoch, released) in expect {
        let before = snapshot(trainer.model());
        trainer.train_epoch(TaskData::Shared(&train))?;
        let moved = changed(&before, &snapshot(trainer.model()));
        for layer in ["encoder.conv0.", "encoder.conv1.", "encoder.fc."] {
            assert_eq!(
                any_changed(&moved, layer),
                released.contains(&layer),
                "epoch {epoch}, layer {layer}: moved {moved:?}"
            );
        }
        assert!(any_changed(&moved, "heads.digit."));
    }
    // Switched off: the first epoch already moves every layer.
    let mut plain = Trainer::new(
        common::small_cnn_model(4),
        equal(),
        config(TrainingMode::Joint),
    )?;
    let before = snapshot(plain.model());
    plain.train_epoch(TaskData::Shared(&train))?;
    let moved = changed(&before, &snapshot(plain.model()));
    assert!(any_changed(&moved, "encoder.conv0."));
    Ok(())
}

#[test]
fn frozen_components_are_not_updated_and_gradient_strategies_say_why() -> Result<()> {
    let mnist = common::fixture();
    let train = common::cls_reg_dataset(&mnist.train.take(200));
    let model = common::mlp_model(5);
    model.freeze(&Component::Encoder)?;
    model.freeze(&Component::Head("value".into()))?;
    let mut trainer = Trainer::new(model, equal(), config(TrainingMode::Joint))?;
    let before = snapshot(trainer.model());
    trainer.train_epoch(TaskData::Shared(&train))?;
    let moved = changed(&before, &snapshot(trainer.model()));
    assert!(!any_changed(&moved, "encoder."), "{moved:?}");
    assert!(!any_changed(&moved, "heads.value."), "{moved:?}");
    assert!(any_changed(&moved, "heads.digit."), "{moved:?}");
    trainer.model().unfreeze(&Component::Encoder)?;
    let before = snapshot(trainer.model());
    trainer.train_epoch(TaskData::Shared(&train))?;
    assert!(any_changed(
        &changed(&before, &snapshot(trainer.model())),
        "encoder."
    ));

    // A strategy that compares shared-parameter gradients cannot work on a frozen encoder.
    let model = common::mlp_model(5);
    model.freeze(&Component::Encoder)?;
    let mut cfg = config(TrainingMode::Joint);
    cfg.gradient_source = Some(GradientSource::SharedParameters);
    let mut mgda = Trainer::new(model, by_name("mgda")?, cfg)?;
    let err = mgda.train_epoch(TaskData::Shared(&train)).unwrap_err();
    assert!(err.to_string().contains("frozen"), "{err}");
    // Unknown components are named.
    let err = mgda
        .model()
        .freeze(&Component::Head("age".into()))
        .unwrap_err();
    assert!(err.to_string().contains("age"), "{err}");
    Ok(())
}

/// Two 10-class heads (digit and the next digit) so that the pull towards the mean applies
/// to every head parameter.
fn twin_head_data_and_model(seed: u64) -> (TensorDataset, MultiTaskModel) {
    let mnist = common::fixture();
    let images = mnist.train.take(400);
    let next: Vec<u32> = images.labels().iter().map(|l| (l + 1) % 10).collect();
    let data = TensorDataset::from_images(&images, Normalize::mnist())
        .and_then(|d| d.with_target("digit", images.labels_tensor()?))
        .and_then(|d| d.with_target("next", Tensor::from_vec(next, images.len(), &Device::Cpu)?))
        .expect("dataset");
    let model = MultiTaskModel::builder(&Device::Cpu, seed)
        .encoder(|p| {
            Mlp::new(
                &MlpConfig {
                    hidden: vec![32],
                    ..Default::default()
                },
                p,
            )
        })
        .and_then(|b| {
            b.task(TaskSpec::classification("digit"), |p| {
                LinearHead::new(32, 10, p)
            })
        })
        .and_then(|b| {
            b.task(TaskSpec::classification("next"), |p| {
                LinearHead::new(32, 10, p)
            })
        })
        .and_then(|b| b.build())
        .expect("model");
    (data, model)
}

fn head_stats(model: &MultiTaskModel) -> (f64, f64) {
    let get = |name: &str| -> Tensor {
        model
            .params()
            .named_vars()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_tensor().clone())
            .expect("parameter")
    };
    let a = get("heads.digit.linear.weight");
    let b = get("heads.next.linear.weight");
    let scalar = |t: Tensor| -> f64 {
        t.to_dtype(DType::F64)
            .and_then(|t| t.to_scalar::<f64>())
            .expect("scalar")
    };
    let distance = scalar(
        (&a - &b)
            .and_then(|d| d.sqr())
            .and_then(|d| d.sum_all())
            .expect("d"),
    );
    let l1 = scalar(
        (a.abs().and_then(|x| x.sum_all()).expect("a")
            + b.abs().and_then(|x| x.sum_all()).expect("b"))
        .expect("sum"),
    );
    (distance, l1)
}

#[test]
fn head_penalties_pull_heads_together_and_sparsify_them() -> Result<()> {
    let run = |reg: Option<HeadRegularizer>| -> Result<(f64, f64, Option<f64>)> {
        let (data, model) = twin_head_data_and_model(6);
        let mut cfg = config(TrainingMode::Joint);
        cfg.head_regularizer = reg;
        let mut trainer = Trainer::new(model, equal(), cfg)?;
        let mut last = None;
        for _ in 0..3 {
            last = trainer
                .train_epoch(TaskData::Shared(&data))?
                .mean_regularization;
        }
        let (d, l1) = head_stats(trainer.model());
        Ok((d, l1, last))
    };
    let (d_off, l1_off, reg_off) = run(None)?;
    assert!(reg_off.is_none());
    let (d_pull, _, reg_pull) = run(Some(HeadRegularizer {
        mean_l2: 0.5,
        l1: 0.0,
    }))?;
    let (_, l1_sparse, reg_sparse) = run(Some(HeadRegularizer {
        mean_l2: 0.0,
        l1: 1e-2,
    }))?;
    println!("head distance {d_off:.3} -> {d_pull:.3}; head L1 {l1_off:.2} -> {l1_sparse:.2}");
    assert!(d_pull < 0.5 * d_off, "mean pull: {d_off} -> {d_pull}");
    assert!(l1_sparse < 0.8 * l1_off, "L1: {l1_off} -> {l1_sparse}");
    assert!(reg_pull.is_some_and(|r| r > 0.0) && reg_sparse.is_some_and(|r| r > 0.0));
    Ok(())
}

#[test]
fn label_masks_ignore_unlabelled_samples_and_a_batch_without_labels_is_not_nan() -> Result<()> {
    let mnist = common::fixture();
    let images = mnist.train.take(400);
    // The value task is labelled on every other sample; the others hold a wild placeholder.
    let mask: Vec<u8> = (0..images.len()).map(|i| (i % 2 == 0) as u8).collect();
    let values: Vec<f32> = images
        .labels()
        .iter()
        .enumerate()
        .map(|(i, &l)| if i % 2 == 0 { l as f32 } else { 1000.0 })
        .collect();
    let base = TensorDataset::from_images(&images, Normalize::mnist())?
        .with_target("digit", images.labels_tensor()?)?
        .with_target(
            "value",
            Tensor::from_vec(values, images.len(), &Device::Cpu)?,
        )?;
    let masked = base
        .clone()
        .with_label_mask("value", Tensor::from_vec(mask, images.len(), &Device::Cpu)?)?;
    let test = common::cls_reg_dataset(&mnist.test);
    let run = |data: &TensorDataset| -> Result<f64> {
        let mut trainer = Trainer::new(common::mlp_model(7), equal(), config(TrainingMode::Joint))?;
        for _ in 0..4 {
            trainer.train_epoch(TaskData::Shared(data))?;
        }
        let e = trainer.evaluate(TaskData::Shared(&test))?;
        Ok(e.task("value")
            .and_then(|t| t.metric(Metric::Mae))
            .unwrap_or(f64::MAX))
    };
    let mae_masked = run(&masked)?;
    let mae_unmasked = run(&base)?;
    println!("value MAE with mask {mae_masked:.3}, placeholders used as labels {mae_unmasked:.3}");
    assert!(mae_masked < 2.0, "{mae_masked}");
    assert!(
        mae_unmasked > 2.0 * mae_masked,
        "{mae_unmasked} vs {mae_masked}"
    );

    // Evaluation counts labelled samples only.
    let mut trainer = Trainer::new(common::mlp_model(7), equal(), config(TrainingMode::Joint))?;
    let e = trainer.evaluate(TaskData::Shared(&masked))?;
    assert_eq!(e.task("value").map(|t| t.samples), Some(200));
    assert_eq!(e.task("digit").map(|t| t.samples), Some(400));

    // A batch in which the value task has no label at all: finite losses, and a zero loss
    // for that task; gradient-based strategies get a finite step as well.
    let odd: Vec<u32> = (0..50).map(|i| 2 * i + 1).collect();
    let batch = StepBatch::Shared(masked.batch(&odd, &Device::Cpu)?);
    for name in ["equal", "inverse-loss", "mgda", "pcgrad", "upgrad"] {
        let mut t = Trainer::new(
            common::mlp_model(8),
            by_name(name)?,
            config(TrainingMode::Joint),
        )?;
        let r = t.train_step(&batch)?;
        assert!(
            r.losses.iter().all(|l| l.is_finite()),
            "{name}: {:?}",
            r.losses
        );
        assert_eq!(r.losses[1], 0.0, "{name}");
        let after = snapshot(t.model());
        assert!(
            after.iter().all(|(_, v)| v.iter().all(|x| x.is_finite())),
            "{name}: parameters became non-finite"
        );
    }
    Ok(())
}

#[test]
fn alternating_refuses_gradient_strategies_and_progressive_refuses_learned_weights() {
    let err = Trainer::new(
        common::mlp_model(0),
        by_name("mgda").expect("mgda"),
        config(TrainingMode::Alternating(TaskOrder::RoundRobin)),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("alternating"), "{err}");
    let err = Trainer::new(
        common::mlp_model(0),
        by_name("uncertainty").expect("uncertainty"),
        config(TrainingMode::Progressive(vec![("value".into(), 1)])),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("progressive"), "{err}");
}

#[test]
fn components_save_and_load_between_models_and_mismatches_are_listed() -> Result<()> {
    let dir = common::temp_dir("components");
    let source = common::mlp_model(11);
    let target = common::mlp_model(12);
    let file = dir.join("encoder.safetensors");
    source.save_component(&Component::Encoder, &file)?;
    assert_ne!(snapshot(&source)[0], snapshot(&target)[0]);
    assert_eq!(target.load_component(&Component::Encoder, &file)?, 2);
    let enc = |m: &MultiTaskModel| {
        snapshot(m)
            .into_iter()
            .filter(|(n, _)| n.starts_with("encoder."))
            .collect::<Vec<_>>()
    };
    assert_eq!(enc(&source), enc(&target));
    // A head saved from one task loads into another task of the same shape.
    let head = dir.join("head.safetensors");
    source.save_component(&Component::Head("digit".into()), &head)?;
    let renamed = MultiTaskModel::builder(&Device::Cpu, 14)
        .encoder(|p| {
            Mlp::new(
                &MlpConfig {
                    hidden: vec![64],
                    ..Default::default()
                },
                p,
            )
        })?
        .task(TaskSpec::classification("label"), |p| {
            LinearHead::new(64, 10, p)
        })?
        .build()?;
    assert_eq!(
        renamed.load_component(&Component::Head("label".into()), &head)?,
        2
    );
    let (_, twins) = twin_head_data_and_model(0);
    let err = twins
        .load_component(&Component::Head("next".into()), &head)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("linear.weight: file [10, 64], model [10, 32]"),
        "{err}"
    );
    // An encoder of another width is refused, naming the file, the tensors and both shapes,
    // and nothing is changed.
    let other = MultiTaskModel::builder(&Device::Cpu, 13)
        .encoder(|p| {
            Mlp::new(
                &MlpConfig {
                    hidden: vec![32],
                    ..Default::default()
                },
                p,
            )
        })?
        .task(TaskSpec::classification("digit"), |p| {
            LinearHead::new(32, 10, p)
        })?
        .build()?;
    let before = snapshot(&other);
    let err = other
        .load_component(&Component::Encoder, &file)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("encoder.safetensors")
            && text.contains("layer0.weight")
            && text.contains("[64, 784]"),
        "{text}"
    );
    assert_eq!(before, snapshot(&other));
    Ok(())
}
