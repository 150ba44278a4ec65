//! MNIST digits and CIFAR-10 objects as two tasks over one shared CNN encoder.
//!
//! The two datasets have different inputs (1x28x28 grey, 3x32x32 colour). Two standard ways
//! to share one encoder between them, picked with `--adapt`:
//! - `pad` (default): adapt the inputs to one shape: MNIST padded to 32x32 and its grey
//!   channel replicated into RGB, so one ConvNet on 3x32x32 reads both;
//! - `stem`: give each task a small input stem (a 3x3 convolution to 16 channels, padded so
//!   that both give 16x32x32) before the shared trunk; the stems belong to their task.
//!
//! Training is multi-input: each step takes one batch from each dataset, and the task weights
//! are dynamic (`--weighting`; by default FAMO, which balances the rate at which the tasks'
//! losses fall: MNIST is easy, CIFAR-10 is not). Each epoch prints both test accuracies; at the
//! end a summary table, and with `--baseline` each task trained alone with the same number of
//! steps and the multi-task result relative to it (Delta-m).
//!
//! ```text
//! cargo run --release --example mnist_cifar
//! cargo run --release --example mnist_cifar -- --mnist-dir data/mnist --cifar-dir DIR --baseline
//! ```

mod common;

use std::time::Instant;

use candle_core::Device;
use candle_mtl::data::{load_cifar10, load_mnist, ImageDataset, StandardDataset};
use candle_mtl::device::describe;
use candle_mtl::encoder::ConvStem;
use candle_mtl::metrics::delta_m;
use candle_mtl::prelude::*;
use candle_mtl::train::{EpochLength, EvalReport, JsonlLog};
use candle_mtl::weighting::by_name;
use common::runs::{
    apply_checkpoint_flags, number, parameter_digest, resume_if_asked, write_json,
    CHECKPOINT_FLAGS, CHECKPOINT_USAGE, RESUME_FLAG,
};
use common::{locate_dataset, main_with, peak_memory_mib, Args};

const USAGE: &str = "mnist_cifar: MNIST + CIFAR-10 as two tasks over one shared CNN encoder

USAGE: cargo run --release --example mnist_cifar -- [FLAGS]

  --mnist-dir DIR       MNIST IDX files. Without it: data/mnist when present, else downloaded
                        into $CANDLE_MTL_DATA/mnist (default: the platform cache, e.g.
                        ~/.cache/candle-mtl/mnist)
  --cifar-dir DIR       CIFAR-10 binary files (data_batch_1.bin ... test_batch.bin, or the folder
                        holding cifar-10-batches-bin). Without it: data/cifar-10 when present,
                        else downloaded into $CANDLE_MTL_DATA/cifar-10 (170 MB)
  --adapt pad|stem      pad MNIST to 3x32x32 (default), or one input stem per task
  --epochs N            training epochs (default 2); an epoch runs until the larger dataset is
                        used up, the smaller one is cycled (see --epoch-length)
  --epoch-length P      cycle (default) | shortest: stop at the smaller dataset
  --batch-size N        batch size per task (default 64)
  --lr X                Adam learning rate (default 1e-3)
  --weighting NAME      famo (default: weights re-decided every step so that the tasks' losses
                        fall at the same relative rate) | equal | inverse-loss | uncertainty |
                        dwa | mgda | pcgrad | cagrad | nash-mtl | upgrad | ...
                        (candle_mtl::weighting::STRATEGIES)
  --train-limit N       use at most N training images of each dataset
  --test-limit N        evaluate on at most N test images of each dataset
  --seed N              seed of the weights, the data order and the strategy (default 0)
  --baseline            also train each task alone, same steps, and report Delta-m
  --cpu                 train on the CPU even when a GPU is available
  --summary-json PATH   write the final metrics and a digest of the parameters as JSON (the same
                        seed gives the same file, on any thread count)
  --timing-json PATH    write samples/s, seconds and peak memory as JSON
  --log-dir DIR         write run.jsonl there
{CHECKPOINTS}";

/// How the two input shapes meet in one encoder.
#[derive(Clone, Copy, PartialEq)]
enum Adapt {
    Pad,
    Stem,
}

const TASKS: [&str; 2] = ["mnist", "cifar"];
const HIDDEN: usize = 128;
const STEM_CHANNELS: usize = 16;

/// Builds a model over the tasks in `which` (both, or one for a single-task baseline).
fn build_model(
    device: &Device,
    seed: u64,
    adapt: Adapt,
    which: &[usize],
) -> Result<MultiTaskModel> {
    let in_channels = match adapt {
        Adapt::Pad => 3,
        Adapt::Stem => STEM_CHANNELS,
    };
    let encoder = ConvNetConfig {
        in_channels,
        height: 32,
        width: 32,
        channels: vec![32, 64],
        hidden: HIDDEN,
        ..Default::default()
    };
    let mut builder =
        MultiTaskModel::builder(device, seed).encoder(|p| ConvNet::new(&encoder, p))?;
    for &k in which {
        builder = builder.task(TaskSpec::classification(TASKS[k]), |p| {
            LinearHead::new(HIDDEN, 10, p)
        })?;
        if adapt == Adapt::Stem {
            // 28 + 2*3 - 3 + 1 = 32 for MNIST; 32 + 2*1 - 3 + 1 = 32 for CIFAR-10.
            let (c, pad) = if k == 0 { (1, 3) } else { (3, 1) };
            builder = builder.stem(TASKS[k], |p| ConvStem::new(c, STEM_CHANNELS, 3, pad, p))?;
        }
    }
    builder.build()
}

/// The training and test sets of both tasks, each with a target named after its task.
fn datasets(args: &Args, adapt: Adapt) -> Result<([TensorDataset; 2], [TensorDataset; 2], String)> {
    let train_limit: usize = args.parse_or("train-limit", usize::MAX, "expected a whole number")?;
    let test_limit: usize = args.parse_or("test-limit", usize::MAX, "expected a whole number")?;
    let (mnist_dir, mnist_how) = locate_dataset(
        StandardDataset::Mnist,
        args.get("mnist-dir"),
        &["data/mnist"],
        None,
    )?;
    let (cifar_dir, cifar_how) = locate_dataset(
        StandardDataset::Cifar10,
        args.get("cifar-dir"),
        &["data/cifar-10"],
        None,
    )?;
    let mnist = load_mnist(&mnist_dir)?;
    let cifar = load_cifar10(&cifar_dir)?;
    let mnist_set = |images: &ImageDataset| -> Result<TensorDataset> {
        let (images, normalize) = match adapt {
            Adapt::Pad => (
                images.pad_to(32, 32)?.grey_to_rgb()?,
                Normalize::mnist().repeated(3),
            ),
            Adapt::Stem => (images.clone(), Normalize::mnist()),
        };
        TensorDataset::from_images(&images, normalize)?
            .with_target("mnist", images.labels_tensor()?)
    };
    let cifar_set = |images: &ImageDataset| -> Result<TensorDataset> {
        TensorDataset::from_images(images, Normalize::cifar10())?
            .with_target("cifar", images.labels_tensor()?)
    };
    let train = [
        mnist_set(&mnist.train.take(train_limit))?,
        cifar_set(&cifar.train.take(train_limit))?,
    ];
    let test = [
        mnist_set(&mnist.test.take(test_limit))?,
        cifar_set(&cifar.test.take(test_limit))?,
    ];
    let about = format!(
        "MNIST {} ({mnist_how}), CIFAR-10 {} ({cifar_how})",
        mnist_dir.display(),
        cifar_dir.display()
    );
    Ok((train, test, about))
}

fn accuracy(eval: &EvalReport, task: &str) -> f64 {
    eval.task(task)
        .and_then(|t| t.metric(Metric::Accuracy))
        .unwrap_or(f64::NAN)
}

/// Result of one training run.
struct RunResult {
    eval: EvalReport,
    steps: usize,
    samples_per_second: f64,
}

fn run(args: &Args) -> Result<()> {
    let epochs: usize = args.parse_or("epochs", 2, "expected a whole number of epochs")?;
    let batch_size: usize = args.parse_or("batch-size", 64, "expected a whole number >= 1")?;
    let lr: f64 = args.parse_or("lr", 1e-3, "expected a number such as 1e-3")?;
    let seed: u64 = args.parse_or("seed", 0, "expected a non-negative integer")?;
    let adapt = match args.get("adapt").unwrap_or("pad") {
        "pad" => Adapt::Pad,
        "stem" => Adapt::Stem,
        other => return Err(Error::config("--adapt", other, "expected pad or stem")),
    };
    let epoch_length = match args.get("epoch-length").unwrap_or("cycle") {
        "cycle" => EpochLength::CycleShorter,
        "shortest" => EpochLength::StopAtShortest,
        other => {
            return Err(Error::config(
                "--epoch-length",
                other,
                "expected cycle or shortest",
            ))
        }
    };
    let weighting_name = args.get("weighting").unwrap_or("famo");
    let weighting = by_name(weighting_name)?;
    let device = best_device(args.flag("cpu"));
    let (train, test, about) = datasets(args, adapt)?;
    println!("data: {about}");
    println!(
        "train {} + {} images, test {} + {} | inputs: {} | device: {} | weighting: {} | seed {seed}",
        train[0].len(),
        train[1].len(),
        test[0].len(),
        test[1].len(),
        match adapt {
            Adapt::Pad => "MNIST padded to 3x32x32, one ConvNet",
            Adapt::Stem => "one input stem per task (to 16x32x32), then one ConvNet",
        },
        describe(&device),
        weighting.name()
    );
    let config = TrainerConfig {
        optimizer: OptimizerConfig::adam(lr),
        batch_size,
        seed,
        input_mode: InputMode::MultiInput,
        epoch_length,
        ..Default::default()
    };
    let mut multi_config = config.clone();
    apply_checkpoint_flags(args, &mut multi_config)?;

    let model = build_model(&device, seed, adapt, &[0, 1])?;
    let mut trainer = Trainer::new(model, weighting, multi_config)?;
    trainer.describe_run(
        "data",
        format!(
            "{} + {} train, {} + {} test",
            train[0].len(),
            train[1].len(),
            test[0].len(),
            test[1].len()
        ),
    );
    trainer.describe_run("adapt", args.get("adapt").unwrap_or("pad"));
    resume_if_asked(args, &mut trainer)?;
    let remaining = epochs.saturating_sub(trainer.epochs_done());
    trainer.add_observer(Box::new(candle_mtl::train::Progress::new()));
    if let Some(dir) = args.get("log-dir") {
        trainer.add_observer(Box::new(JsonlLog::create(
            std::path::Path::new(dir).join("run.jsonl"),
        )?));
    }
    let start = Instant::now();
    let fit = trainer.fit(
        TaskData::PerTask(&train),
        Some(TaskData::PerTask(&test)),
        remaining,
        &mut |r| {
            let weights = r
                .mean_weights
                .as_ref()
                .map(|w| format!(" | mean weights {:.3}/{:.3}", w[0], w[1]))
                .unwrap_or_default();
            let eval = r.eval.as_ref();
            println!(
                "epoch {}/{epochs} | train loss mnist {:.4} cifar {:.4} | test acc mnist {:.2}% cifar {:.2}% | {} steps, {:.0} samples/s{weights}",
                r.epoch + 1,
                r.train_losses[0],
                r.train_losses[1],
                100.0 * eval.map_or(f64::NAN, |e| accuracy(e, "mnist")),
                100.0 * eval.map_or(f64::NAN, |e| accuracy(e, "cifar")),
                r.steps,
                r.samples_per_second(),
            );
            Ok(())
        },
    )?;
    let seconds: f64 = fit.epochs.iter().map(|e| e.seconds).sum();
    let samples: usize = fit.epochs.iter().map(|e| e.samples).sum();
    let multi = RunResult {
        eval: match fit.last().and_then(|e| e.eval.clone()) {
            Some(e) => e,
            None if epochs > 0 => trainer.evaluate(TaskData::PerTask(&test))?,
            None => return Err(Error::config("--epochs", 0, "train at least one epoch")),
        },
        steps: trainer.steps_done() as usize,
        samples_per_second: samples as f64 / seconds.max(1e-9),
    };

    // Single-task baselines: the same architecture with one task, trained for the same number
    // of steps (each step of the multi-task run took one batch of each task).
    let mut baselines: Vec<Option<RunResult>> = vec![None, None];
    if args.flag("baseline") {
        for k in 0..2 {
            let model = build_model(&device, seed, adapt, &[k])?;
            let single = TrainerConfig {
                input_mode: InputMode::SingleInput,
                ..config.clone()
            };
            let mut alone = Trainer::new(model, by_name("equal")?, single)?;
            let per_epoch = train[k].len().div_ceil(batch_size);
            let mut steps = 0usize;
            let mut seconds = 0.0;
            let mut samples = 0usize;
            while steps < multi.steps {
                let r = alone.train_epoch(TaskData::Shared(&train[k]))?;
                steps += r.steps;
                seconds += r.seconds;
                samples += r.samples;
            }
            let eval = alone.evaluate(TaskData::Shared(&test[k]))?;
            println!(
                "baseline {} alone: {steps} steps ({} epochs of {per_epoch}) | test acc {:.2}%",
                TASKS[k],
                steps.div_ceil(per_epoch),
                100.0 * accuracy(&eval, TASKS[k])
            );
            baselines[k] = Some(RunResult {
                eval,
                steps,
                samples_per_second: samples as f64 / f64::max(seconds, 1e-9),
            });
        }
    }

    let total = start.elapsed().as_secs_f64();
    let peak = peak_memory_mib();
    println!("\n| task | multi-task accuracy | single-task accuracy | relative |");
    println!("|---|---|---|---|");
    let mut entries = Vec::new();
    for (k, task) in TASKS.iter().enumerate() {
        let acc = accuracy(&multi.eval, task);
        match &baselines[k] {
            Some(b) => {
                let base = accuracy(&b.eval, task);
                entries.push((Metric::Accuracy, acc, base));
                println!(
                    "| {task} | {:.2}% | {:.2}% | {:+.2}% |",
                    100.0 * acc,
                    100.0 * base,
                    100.0 * (acc - base) / base
                );
            }
            None => println!("| {task} | {:.2}% | (--baseline) | |", 100.0 * acc),
        }
    }
    let dm = delta_m(&entries);
    if let Some(d) = dm {
        println!(
            "Delta-m (mean relative change over tasks vs single-task): {:+.2}%",
            100.0 * d
        );
    }
    let baseline_speed = baselines
        .iter()
        .flatten()
        .map(|b| format!("{:.0}", b.samples_per_second))
        .collect::<Vec<_>>();
    println!(
        "multi-task training {:.0} samples/s ({} steps){} | {:.1} s total | peak memory {}",
        multi.samples_per_second,
        multi.steps,
        if baseline_speed.is_empty() {
            String::new()
        } else {
            format!(" | single-task {} samples/s", baseline_speed.join(" / "))
        },
        total,
        peak.map(|m| format!("{m:.0} MiB"))
            .unwrap_or_else(|| "n/a".into()),
    );

    if let Some(path) = args.get("summary-json") {
        let task = |k: usize| {
            serde_json::json!({
                "accuracy": number(accuracy(&multi.eval, TASKS[k])),
                "single_task_accuracy": baselines[k].as_ref().map(|b| number(accuracy(&b.eval, TASKS[k]))),
                "train_samples": train[k].len(),
                "test_samples": test[k].len(),
            })
        };
        let json = serde_json::json!({
            "example": "mnist_cifar",
            "adapt": match adapt {
                Adapt::Pad => "pad",
                Adapt::Stem => "stem",
            },
            "weighting": weighting_name,
            "seed": seed,
            "epochs": epochs,
            "steps": multi.steps,
            "device": describe(&device),
            "tasks": {"mnist": task(0), "cifar": task(1)},
            "delta_m": dm.map(number),
            "parameters_digest": parameter_digest(trainer.model())?,
        });
        write_json(path, &json)?;
        println!("summary written to {path}");
    }
    if let Some(path) = args.get("timing-json") {
        let json = serde_json::json!({
            "example": "mnist_cifar",
            "samples_per_second": number(multi.samples_per_second),
            "single_task_samples_per_second": baselines.iter().flatten().map(|b| number(b.samples_per_second)).collect::<Vec<_>>(),
            "seconds": number(total),
            "peak_memory_mib": peak.map(number),
        });
        write_json(path, &json)?;
    }
    Ok(())
}

fn main() {
    let usage = USAGE.replace("{CHECKPOINTS}", CHECKPOINT_USAGE);
    let known = [
        "mnist-dir",
        "cifar-dir",
        "adapt",
        "epochs",
        "epoch-length",
        "batch-size",
        "lr",
        "weighting",
        "train-limit",
        "test-limit",
        "seed",
        "summary-json",
        "timing-json",
        "log-dir",
        CHECKPOINT_FLAGS[0],
        CHECKPOINT_FLAGS[1],
    ];
    main_with(&usage, &["cpu", "baseline", RESUME_FLAG], &known, run);
}
