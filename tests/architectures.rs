//! Soft-sharing architectures (MMoE, CGC, PLE, cross-stitch, MTAN): output shapes, gradients
//! reaching every parameter that should learn, and a short real training run on the fixture's
//! digits that improves every task.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_mtl::architecture::{CrossStitch, Mmoe, MmoeConfig, Mtan, MtanConfig, Ple, PleConfig};
use candle_mtl::data::ImageDataset;
use candle_mtl::encoder::Representation;
use candle_mtl::metrics::Metric;
use candle_mtl::params::ParamPath;
use candle_mtl::prelude::*;
use candle_mtl::weighting::by_name;

const WIDTH: usize = 32;

fn mlp(input_dim: usize, p: &ParamPath) -> Result<Mlp> {
    Mlp::new(
        &MlpConfig {
            input_dim,
            hidden: vec![WIDTH],
            ..Default::default()
        },
        p,
    )
}

fn small_cnn(p: &ParamPath) -> Result<ConvNet> {
    ConvNet::new(
        &ConvNetConfig {
            channels: vec![4, 8],
            hidden: WIDTH,
            ..Default::default()
        },
        p,
    )
}

/// The architectures under test, by name.
const ARCHITECTURES: [&str; 6] = ["mmoe", "cgc", "ple", "cross-stitch", "mtan", "mtan-mlp"];

/// A model with `arch` as encoder and two tasks: digit class and parity.
fn model(arch: &str, seed: u64) -> Result<MultiTaskModel> {
    let b = MultiTaskModel::builder(&Device::Cpu, seed);
    let b = match arch {
        "mmoe" => b.encoder(|p| {
            Mmoe::new(
                &MmoeConfig {
                    experts: 3,
                    tasks: 2,
                    gate_input_dim: 784,
                },
                p,
                |e| mlp(784, e),
            )
        })?,
        "cgc" | "ple" => b.encoder(|p| {
            Ple::new(
                &PleConfig {
                    tasks: 2,
                    shared_experts: 2,
                    task_experts: 1,
                    levels: if arch == "cgc" { 1 } else { 2 },
                    gate_input_dim: 784,
                },
                p,
                |level, e| mlp(if level == 0 { 784 } else { WIDTH }, e),
            )
        })?,
        "cross-stitch" => b.encoder(|p| CrossStitch::new(2, p, small_cnn))?,
        "mtan" => b.encoder(|p| {
            Mtan::new(
                &MtanConfig {
                    tasks: 2,
                    input_shape: vec![1, 28, 28],
                },
                p,
                small_cnn,
            )
        })?,
        _ => b.encoder(|p| {
            Mtan::new(
                &MtanConfig {
                    tasks: 2,
                    input_shape: vec![784],
                },
                p,
                |t| {
                    Mlp::new(
                        &MlpConfig {
                            input_dim: 784,
                            hidden: vec![64, WIDTH],
                            ..Default::default()
                        },
                        t,
                    )
                },
            )
        })?,
    };
    b.task(TaskSpec::classification("digit"), |p| {
        LinearHead::new(WIDTH, 10, p)
    })?
    .task(TaskSpec::classification("parity"), |p| {
        LinearHead::new(WIDTH, 2, p)
    })?
    .build()
}

fn data(images: &ImageDataset) -> TensorDataset {
    let parity: Vec<u32> = images.labels().iter().map(|l| l % 2).collect();
    TensorDataset::from_images(images, Normalize::mnist())
        .and_then(|d| d.with_target("digit", images.labels_tensor()?))
        .and_then(|d| {
            d.with_target(
                "parity",
                Tensor::from_vec(parity, images.len(), &Device::Cpu)?,
            )
        })
        .expect("dataset")
}

#[test]
fn every_architecture_gives_one_representation_per_task() -> Result<()> {
    let xs = Tensor::randn(0f32, 1.0, (5, 1, 28, 28), &Device::Cpu)?;
    for arch in ARCHITECTURES {
        let m = model(arch, 0)?;
        let rep = m.encode(&xs, true)?;
        let Representation::PerTask(zs) = rep else {
            panic!("{arch}: a shared representation");
        };
        assert_eq!(zs.len(), 2, "{arch}");
        for z in &zs {
            assert_eq!(z.dims(), &[5, WIDTH], "{arch}");
        }
        let diff = (&zs[0] - &zs[1])?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert!(
            diff > 0.0,
            "{arch}: both tasks read the same representation"
        );
        // A model with a different number of tasks is refused, naming the counts.
        let err = m.encoder().forward_tasks(&xs, 3, true).unwrap_err();
        assert!(err.to_string().contains('3'), "{arch}: {err}");
    }
    Ok(())
}

#[test]
fn gradients_reach_every_parameter() -> Result<()> {
    let mnist = common::fixture();
    let ds = data(&mnist.train.take(16));
    let batch = ds.batch(&(0..16).collect::<Vec<u32>>(), &Device::Cpu)?;
    for arch in ARCHITECTURES {
        let m = model(arch, 1)?;
        let preds = m.forward_all(&batch.inputs, true)?;
        let mut total: Option<Tensor> = None;
        for (k, task) in m.tasks().iter().enumerate() {
            let target = batch.target(task.name()).expect("target");
            let l = task.spec().loss.compute(task.name(), &preds[k], target)?;
            total = Some(match total {
                Some(t) => (t + l)?,
                None => l,
            });
        }
        let grads = total.expect("loss").backward()?;
        for (name, var) in m.params().named_vars() {
            let g = grads
                .get(&var)
                .unwrap_or_else(|| panic!("{arch}: no gradient for {name}"));
            let norm = g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{arch}: gradient of {name} is {norm}"
            );
        }
    }
    Ok(())
}

#[test]
fn a_short_real_run_improves_every_task() -> Result<()> {
    let mnist = common::fixture();
    let train = data(&mnist.train);
    let test = data(&mnist.test);
    for arch in ARCHITECTURES {
        let config = TrainerConfig {
            batch_size: 32,
            optimizer: OptimizerConfig::adam(2e-3),
            ..Default::default()
        };
        let mut trainer = Trainer::new(model(arch, 2)?, by_name("equal")?, config)?;
        let before = trainer.evaluate(TaskData::Shared(&test))?;
        for _ in 0..3 {
            trainer.train_epoch(TaskData::Shared(&train))?;
        }
        let after = trainer.evaluate(TaskData::Shared(&test))?;
        for (task, floor) in [("digit", 0.5), ("parity", 0.7)] {
            let acc = |e: &candle_mtl::train::EvalReport| {
                e.task(task)
                    .and_then(|t| t.metric(Metric::Accuracy))
                    .unwrap_or(0.0)
            };
            let loss =
                |e: &candle_mtl::train::EvalReport| e.task(task).map_or(f64::MAX, |t| t.loss);
            println!(
                "{arch} {task}: accuracy {:.3} -> {:.3}",
                acc(&before),
                acc(&after)
            );
            assert!(
                loss(&after) < loss(&before),
                "{arch} {task}: loss did not fall"
            );
            assert!(
                acc(&after) > floor,
                "{arch} {task}: accuracy {}",
                acc(&after)
            );
        }
    }
    Ok(())
}

#[test]
fn gradient_strategies_work_on_soft_sharing() -> Result<()> {
    // Per-task gradients of the shared parameters (every encoder parameter) for MGDA.
    let mnist = common::fixture();
    let train = data(&mnist.train.take(128));
    for arch in ["mmoe", "cross-stitch"] {
        let config = TrainerConfig {
            batch_size: 32,
            ..Default::default()
        };
        let mut trainer = Trainer::new(model(arch, 3)?, by_name("mgda")?, config)?;
        let r = trainer.train_epoch(TaskData::Shared(&train))?;
        assert!(r.train_losses.iter().all(|l| l.is_finite()), "{arch}");
    }
    Ok(())
}

/// A sequence encoder reading the digits row by row ("gru", "lstm-bi" or "transformer"), with
/// digit and parity heads.
fn sequence_model(kind: &str) -> Result<MultiTaskModel> {
    use candle_mtl::encoder::{
        CellKind, Recurrent, RecurrentConfig, SharedEncoder, TransformerConfig, TransformerEncoder,
    };
    let bidirectional = kind == "lstm-bi";
    let width = if bidirectional { 2 * WIDTH } else { WIDTH };
    MultiTaskModel::builder(&Device::Cpu, 4)
        .encoder(|p| -> Result<Box<dyn SharedEncoder>> {
            Ok(match kind {
                "transformer" => Box::new(TransformerEncoder::new(
                    &TransformerConfig {
                        model_dim: WIDTH,
                        heads: 4,
                        layers: 1,
                        ff_dim: 64,
                        dropout: 0.0,
                        ..Default::default()
                    },
                    p,
                )?),
                _ => Box::new(Recurrent::new(
                    &RecurrentConfig {
                        cell: if bidirectional {
                            CellKind::Lstm
                        } else {
                            CellKind::Gru
                        },
                        input_dim: 28,
                        hidden: WIDTH,
                        bidirectional,
                        ..Default::default()
                    },
                    p,
                )?),
            })
        })?
        .task(TaskSpec::classification("digit"), |p| {
            LinearHead::new(width, 10, p)
        })?
        .task(TaskSpec::classification("parity"), |p| {
            LinearHead::new(width, 2, p)
        })?
        .build()
}

#[test]
fn sequence_encoders_learn_sequential_mnist_and_every_weight_gets_a_gradient() -> Result<()> {
    let mnist = common::fixture();
    let train = data(&mnist.train);
    let test = data(&mnist.test);
    for kind in ["gru", "lstm-bi", "transformer"] {
        let m = sequence_model(kind)?;
        // Gradients reach every weight of every direction.
        let b = train.batch(&(0..8).collect::<Vec<u32>>(), &Device::Cpu)?;
        let preds = m.forward_all(&b.inputs, true)?;
        let loss = (m.tasks()[0].spec().loss.compute(
            "digit",
            &preds[0],
            b.target("digit").expect("t"),
        )? + m.tasks()[1].spec().loss.compute(
            "parity",
            &preds[1],
            b.target("parity").expect("t"),
        )?)?;
        let grads = loss.backward()?;
        for (name, var) in m.params().named_vars() {
            let g = grads
                .get(&var)
                .unwrap_or_else(|| panic!("{kind}: no gradient for {name}"));
            assert!(
                g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0,
                "{kind}: zero gradient for {name}"
            );
        }
        let config = TrainerConfig {
            batch_size: 32,
            optimizer: OptimizerConfig::adam(3e-3),
            ..Default::default()
        };
        let mut trainer = Trainer::new(m, by_name("equal")?, config)?;
        let before = trainer.evaluate(TaskData::Shared(&test))?;
        for _ in 0..4 {
            trainer.train_epoch(TaskData::Shared(&train))?;
        }
        let after = trainer.evaluate(TaskData::Shared(&test))?;
        for (task, floor) in [("digit", 0.4), ("parity", 0.65)] {
            let acc = after
                .task(task)
                .and_then(|t| t.metric(Metric::Accuracy))
                .unwrap_or(0.0);
            println!("{kind} {task}: accuracy {acc:.3}");
            assert!(after.task(task).map(|t| t.loss) < before.task(task).map(|t| t.loss));
            assert!(acc > floor, "{kind} {task}: {acc}");
        }
    }
    Ok(())
}

#[test]
fn per_step_tagging_heads_train_on_every_step() -> Result<()> {
    use candle_mtl::encoder::{Recurrent, RecurrentConfig, SequenceOutput};
    // Tag each row of a digit with whether it has any ink (a real per-step label).
    let mnist = common::fixture();
    let images = mnist.train.take(256);
    let pixels = images.pixels();
    let tags: Vec<u32> = (0..images.len() * 28)
        .map(|r| pixels[r * 28..(r + 1) * 28].iter().any(|&p| p > 0) as u32)
        .collect();
    let ds = TensorDataset::from_images(&images, Normalize::mnist())?.with_target(
        "ink",
        Tensor::from_vec(tags, (images.len(), 28), &Device::Cpu)?,
    )?;
    let config = RecurrentConfig {
        input_dim: 28,
        hidden: 16,
        output: SequenceOutput::AllSteps,
        ..Default::default()
    };
    let model = MultiTaskModel::builder(&Device::Cpu, 5)
        .encoder(|p| Recurrent::new(&config, p))?
        .task(TaskSpec::classification("ink"), |p| {
            LinearHead::new(16, 2, p)
        })?
        .build()?;
    let mut trainer = Trainer::new(
        model,
        by_name("equal")?,
        TrainerConfig {
            batch_size: 32,
            optimizer: OptimizerConfig::adam(1e-2),
            ..Default::default()
        },
    )?;
    for _ in 0..3 {
        trainer.train_epoch(TaskData::Shared(&ds))?;
    }
    let e = trainer.evaluate(TaskData::Shared(&ds))?;
    let t = e.task("ink").expect("ink");
    assert_eq!(t.samples, 256);
    assert!(t.metric(Metric::Accuracy).unwrap_or(0.0) > 0.9, "{t:?}");
    Ok(())
}
