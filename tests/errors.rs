//! Bad input gives errors that name the file, task or value at fault; nothing panics.

mod common;

use candle_core::{Device, Tensor};
use candle_mtl::data::{load_mnist, write_idx, MNIST_FILES};
use candle_mtl::prelude::*;
use common::{cls_reg_dataset, fixture, fixture_dir, mlp_model, temp_dir};

/// Copies the fixture into a fresh directory, then lets `damage` change one file.
fn damaged_copy(name: &str, damage: impl FnOnce(&std::path::Path)) -> std::path::PathBuf {
    let dir = temp_dir(name);
    for f in MNIST_FILES {
        let file = format!("{f}.gz");
        std::fs::copy(fixture_dir().join(&file), dir.join(&file)).unwrap();
    }
    damage(&dir);
    dir
}

#[test]
fn missing_directory_says_where_it_looked_and_what_to_get() {
    let dir = temp_dir("missing").join("no-such-dir");
    let msg = load_mnist(&dir).unwrap_err().to_string();
    assert!(msg.contains("no-such-dir"), "{msg}");
    assert!(
        msg.contains("train-images-idx3-ubyte") && msg.contains("t10k-labels-idx1-ubyte"),
        "{msg}"
    );
}

#[test]
fn truncated_file_is_named_with_sizes() {
    let dir = damaged_copy("truncated", |d| {
        let p = d.join("train-images-idx3-ubyte.gz");
        std::fs::remove_file(&p).unwrap();
        // A raw file whose header declares 800 images but holds 10.
        let mut bytes = vec![0, 0, 8, 3, 0, 0, 3, 32, 0, 0, 0, 28, 0, 0, 0, 28];
        bytes.extend(vec![0u8; 10 * 784]);
        std::fs::write(d.join("train-images-idx3-ubyte"), bytes).unwrap();
    });
    let msg = load_mnist(&dir).unwrap_err().to_string();
    assert!(msg.contains("train-images-idx3-ubyte"), "{msg}");
    assert!(
        msg.contains("truncated") && msg.contains("627200") && msg.contains("7840"),
        "{msg}"
    );
}

#[test]
fn truncated_gzip_stream_is_named() {
    let dir = damaged_copy("truncated-gz", |d| {
        let p = d.join("t10k-images-idx3-ubyte.gz");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    });
    let msg = load_mnist(&dir).unwrap_err().to_string();
    assert!(msg.contains("t10k-images-idx3-ubyte.gz"), "{msg}");
}

#[test]
fn wrong_magic_number_is_named_with_expected_and_found() {
    let dir = damaged_copy("magic", |d| {
        std::fs::remove_file(d.join("train-labels-idx1-ubyte.gz")).unwrap();
        std::fs::write(
            d.join("train-labels-idx1-ubyte"),
            [0x50, 0x4b, 3, 4, 0, 0, 0, 0],
        )
        .unwrap();
    });
    let msg = load_mnist(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("train-labels-idx1-ubyte") && msg.contains("magic"),
        "{msg}"
    );
    assert!(
        msg.contains("0x504b0304") && msg.contains("0x00000801"),
        "{msg}"
    );
}

#[test]
fn images_and_labels_of_different_counts_are_refused() {
    let dir = damaged_copy("count", |d| {
        std::fs::remove_file(d.join("t10k-labels-idx1-ubyte.gz")).unwrap();
        write_idx(d.join("t10k-labels-idx1-ubyte"), &[3], &[1, 2, 3], false).unwrap();
    });
    let msg = load_mnist(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("3 labels") && msg.contains("200 images"),
        "{msg}"
    );
}

#[test]
fn head_that_does_not_fit_the_encoder_is_refused_with_both_sizes() {
    let err = MultiTaskModel::builder(&Device::Cpu, 0)
        .encoder(|p| ConvNet::new(&ConvNetConfig::default(), p))
        .and_then(|b| {
            b.task(TaskSpec::classification("digit"), |p| {
                LinearHead::new(64, 10, p)
            })
        })
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("'digit'") && msg.contains("64") && msg.contains("128"),
        "{msg}"
    );
}

#[test]
fn weighting_the_setup_cannot_serve_is_refused_at_build_time() {
    let config = TrainerConfig {
        gradient_source: Some(GradientSource::Representation),
        ..Default::default()
    };
    let msg = Trainer::new(mlp_model(0), Box::new(InverseLoss::new()), config)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        msg.contains("inverse-loss") && msg.contains("representation"),
        "{msg}"
    );

    let fixed = Fixed::new(vec![1.0, 1.0, 1.0]).unwrap();
    let msg = Trainer::new(mlp_model(0), Box::new(fixed), TrainerConfig::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        msg.contains("fixed") && msg.contains("3 weights") && msg.contains("digit, value"),
        "{msg}"
    );

    let bad = TrainerConfig {
        batch_size: 0,
        ..Default::default()
    };
    let msg = Trainer::new(mlp_model(0), Box::new(Equal::sum()), bad)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("batch_size"), "{msg}");
}

#[test]
fn data_that_does_not_match_the_tasks_is_refused() {
    let mnist = fixture();
    let mut trainer = Trainer::new(
        mlp_model(0),
        Box::new(Equal::sum()),
        TrainerConfig::default(),
    )
    .unwrap();
    let no_value = TensorDataset::from_images(&mnist.test, Normalize::mnist())
        .and_then(|d| d.with_target("digit", mnist.test.labels_tensor()?))
        .unwrap();
    let msg = trainer
        .train_epoch(TaskData::Shared(&no_value))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("'value'"), "{msg}");

    let labels: Vec<u32> = mnist.test.labels().iter().map(|l| l + 5).collect();
    let shifted = TensorDataset::from_images(&mnist.test, Normalize::mnist())
        .and_then(|d| d.with_target("digit", Tensor::new(labels.as_slice(), &Device::Cpu)?))
        .and_then(|d| d.with_target("value", mnist.test.label_values_tensor()?))
        .unwrap();
    let msg = trainer
        .evaluate(TaskData::Shared(&shifted))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("'digit'") && msg.contains("14") && msg.contains("10 outputs"),
        "{msg}"
    );

    let both = cls_reg_dataset(&mnist.test);
    let msg = trainer
        .train_epoch(TaskData::PerTask(&[both]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("SingleInput"), "{msg}");
}

#[test]
fn non_finite_loss_stops_before_the_update_naming_task_and_step() {
    let mnist = fixture();
    let mut values: Vec<f32> = mnist.test.labels().iter().map(|&l| l as f32).collect();
    values[0] = f32::NAN;
    let data = TensorDataset::from_images(&mnist.test, Normalize::mnist())
        .and_then(|d| d.with_target("digit", mnist.test.labels_tensor()?))
        .and_then(|d| d.with_target("value", Tensor::new(values.as_slice(), &Device::Cpu)?))
        .unwrap();
    let mut trainer = Trainer::new(
        mlp_model(0),
        Box::new(Equal::sum()),
        TrainerConfig::default(),
    )
    .unwrap();
    let before: Vec<Vec<f32>> = trainer
        .model()
        .params()
        .named_vars()
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let batch = data.batch(&[0, 1, 2], &Device::Cpu).unwrap();
    let msg = trainer
        .train_step(&candle_mtl::train::StepBatch::Shared(batch))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("'value'") && msg.contains("step 0") && msg.contains("NaN"),
        "{msg}"
    );
    let after: Vec<Vec<f32>> = trainer
        .model()
        .params()
        .named_vars()
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    assert_eq!(before, after, "parameters changed despite the error");
}

#[test]
fn epochs_that_cannot_hold_a_batch_and_negative_classes_are_refused() {
    let mnist = fixture();
    let small = mnist.test.take(30);
    let a = TensorDataset::from_images(&small, Normalize::mnist())
        .and_then(|d| d.with_target("digit", small.labels_tensor()?))
        .unwrap();
    let b = TensorDataset::from_images(&mnist.test, Normalize::mnist())
        .and_then(|d| d.with_target("value", mnist.test.label_values_tensor()?))
        .unwrap();
    let config = TrainerConfig {
        input_mode: InputMode::MultiInput,
        batch_size: 50,
        drop_last: true,
        ..Default::default()
    };
    let mut trainer = Trainer::new(mlp_model(0), Box::new(Equal::sum()), config).unwrap();
    let msg = trainer
        .train_epoch(TaskData::PerTask(&[a, b]))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("'digit'") && msg.contains("30 samples") && msg.contains("50"),
        "{msg}"
    );

    let negative: Vec<i64> = (0..mnist.test.len() as i64)
        .map(|i| if i == 3 { -1 } else { 1 })
        .collect();
    let data = TensorDataset::from_images(&mnist.test, Normalize::mnist())
        .and_then(|d| d.with_target("digit", Tensor::new(negative.as_slice(), &Device::Cpu)?))
        .and_then(|d| d.with_target("value", mnist.test.label_values_tensor()?))
        .unwrap();
    let mut trainer = Trainer::new(
        mlp_model(0),
        Box::new(Equal::sum()),
        TrainerConfig::default(),
    )
    .unwrap();
    let msg = trainer
        .evaluate(TaskData::Shared(&data))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("'digit'") && msg.contains("negative"), "{msg}");
}

#[test]
fn skip_policy_skips_non_finite_steps_and_counts_them() {
    let mnist = fixture();
    let mut values: Vec<f32> = mnist.test.labels().iter().map(|&l| l as f32).collect();
    values[0] = f32::INFINITY;
    let data = TensorDataset::from_images(&mnist.test, Normalize::mnist())
        .and_then(|d| d.with_target("digit", mnist.test.labels_tensor()?))
        .and_then(|d| d.with_target("value", Tensor::new(values.as_slice(), &Device::Cpu)?))
        .unwrap();
    let config = TrainerConfig {
        non_finite: candle_mtl::train::NonFinitePolicy::Skip,
        batch_size: 20,
        ..Default::default()
    };
    let mut trainer = Trainer::new(mlp_model(0), Box::new(Equal::sum()), config).unwrap();
    let snapshot = |t: &Trainer| -> Vec<Vec<f32>> {
        t.model()
            .params()
            .named_vars()
            .iter()
            .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };
    let before = snapshot(&trainer);
    let batch = data.batch(&[0, 1, 2], &Device::Cpu).unwrap();
    let report = trainer
        .train_step(&candle_mtl::train::StepBatch::Shared(batch))
        .unwrap();
    assert!(report.skipped && report.weights.is_none());
    assert_eq!(
        snapshot(&trainer),
        before,
        "a skipped step changed the parameters"
    );
    let epoch = trainer.train_epoch(TaskData::Shared(&data)).unwrap();
    assert_eq!((epoch.steps, epoch.skipped_steps), (10, 1));
    assert!(
        epoch.train_losses.iter().all(|l| l.is_finite()),
        "{:?}",
        epoch.train_losses
    );
}

#[test]
fn gradient_clipping_bounds_the_update() {
    let mnist = fixture();
    let data = cls_reg_dataset(&mnist.test);
    let config = TrainerConfig {
        optimizer: OptimizerConfig::sgd(1.0, 0.0),
        max_grad_norm: Some(1e-3),
        ..Default::default()
    };
    let mut trainer = Trainer::new(mlp_model(0), Box::new(Equal::sum()), config).unwrap();
    let flat = |t: &Trainer| -> Vec<f32> {
        t.model()
            .params()
            .named_vars()
            .iter()
            .flat_map(|(_, v)| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    };
    let before = flat(&trainer);
    let batch = data
        .batch(&(0..32).collect::<Vec<_>>(), &Device::Cpu)
        .unwrap();
    let report = trainer
        .train_step(&candle_mtl::train::StepBatch::Shared(batch))
        .unwrap();
    let after = flat(&trainer);
    let moved: f64 = before
        .iter()
        .zip(&after)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(report.grad_norm.unwrap() > 1.0, "{:?}", report.grad_norm);
    assert!(
        moved <= 1.001e-3 && moved > 0.9e-3,
        "SGD(lr 1) moved the parameters by {moved}"
    );
    let bad = TrainerConfig {
        max_grad_norm: Some(0.0),
        ..Default::default()
    };
    assert!(Trainer::new(mlp_model(0), Box::new(Equal::sum()), bad).is_err());
}

/// Hyper-parameters set out of range after construction are refused when the trainer is
/// built, as a typed error naming the strategy and the field, not at the first step.
#[test]
fn out_of_range_hyper_parameters_are_refused_when_the_trainer_is_built() {
    use candle_mtl::weighting::gradient_based::{CaGradLibMtl, CaGradRescale};
    use candle_mtl::weighting::{Cosmos, Famo, Pbi, Stch};
    let mut famo = Famo::new(2);
    famo.lr = 0.0;
    let mut cagrad = CaGradLibMtl::new(0.5, CaGradRescale::OnePlusAlphaSquared).unwrap();
    cagrad.max_iter = 0;
    let cases: Vec<(Box<dyn TaskWeighting>, &str, &str)> = vec![
        (Box::new(Cosmos::new(-1.0, Vec::new())), "cosmos", "lambda"),
        (
            Box::new(Pbi::new(f64::NAN, Vec::new(), None)),
            "pbi",
            "theta",
        ),
        (Box::new(Stch::new(0.0, None, None)), "stch", "mu"),
        (Box::new(famo), "famo", "lr"),
        (Box::new(cagrad), "cagrad-libmtl", "max_iter"),
    ];
    for (strategy, name, expected) in cases {
        match Trainer::new(mlp_model(1), strategy, TrainerConfig::default()) {
            Err(Error::InvalidHyperParameter {
                strategy, field, ..
            }) => {
                assert_eq!((strategy.as_str(), field), (name, expected));
            }
            Err(other) => panic!("{name}: another error: {other}"),
            Ok(_) => panic!("{name}: {expected} out of range was accepted"),
        }
    }
}
