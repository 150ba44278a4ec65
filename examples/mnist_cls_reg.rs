//! MNIST digit classification and regression from one shared CNN.
//!
//! The classic "MultiTaskNet": a shared feature extractor (conv 32 / pool / conv 64 / pool /
//! linear 128) with a classification head (10 digits, cross-entropy) and a regression head
//! (the digit's value as a number, MSE), trained jointly with Adam (lr 1e-3, batch 64).
//!
//! ```text
//! cargo run --release --example mnist_cls_reg -- --data-dir data/mnist --epochs 2
//! ```
//! prints, per epoch, each task's training loss, test accuracy and regression errors, and the
//! throughput; `--summary-json PATH` writes the final metrics. Run with `--help` for the flags.

mod common;

use std::time::Instant;

use candle_mtl::data::load_mnist;
use candle_mtl::device::describe;
use candle_mtl::prelude::*;
use candle_mtl::train::{CsvLog, JsonlLog};
use common::cls_reg_dataset as dataset;
use common::runs::{
    apply_checkpoint_flags, number, parameter_digest, resume_if_asked, write_json,
    CHECKPOINT_FLAGS, CHECKPOINT_USAGE, RESUME_FLAG,
};
use common::{
    build_trainer, cls_reg_metrics, cls_reg_model, locate_mnist, main_with, peak_memory_mib, Args,
};

const USAGE: &str = "mnist_cls_reg: MNIST digit class + digit value from one shared CNN

USAGE: cargo run --release --example mnist_cls_reg -- [FLAGS]

  --data-dir DIR        MNIST IDX files (raw or .gz). Without it: data/mnist when present,
                        else MNIST is downloaded into
                        $CANDLE_MTL_DATA/mnist (default: the platform cache, e.g.
                        ~/.cache/candle-mtl/mnist); offline, the 1,000-digit test fixture
  --epochs N            training epochs (default 2)
  --batch-size N        batch size (default 64)
  --lr X                learning rate (default 1e-3)
  --optimizer NAME      adam | adamw | sgd (default adam)
  --weighting NAME      equal (default) | inverse-loss | uncertainty | dwa | famo | mgda |
                        mgda-ub | pcgrad | cagrad | nash-mtl | upgrad | ... | fixed:W_CLS,W_REG
                        (every name of candle_mtl::weighting::STRATEGIES)
  --seed N              seed of the initial weights and the data order (default 0)
  --train-limit N       use only the first N training digits
  --cpu                 train on the CPU even when a GPU is available
  --summary-json PATH   write the final per-task metrics, losses and a digest of the parameters
                        as JSON (the same seed gives the same file, on any thread count)
  --timing-json PATH    write samples/s, seconds and peak memory as JSON
  --tensorboard-dir DIR write a TensorBoard event file there (tensorboard --logdir DIR)
  --save-model PATH     save the trained model (weights and task spec) for the predict example
  --log-dir DIR         write run.jsonl and steps.csv / epochs.csv there (plot them with
                        cargo run --release --example report -- DIR)
{CHECKPOINTS}";

fn usage() -> String {
    USAGE.replace("{CHECKPOINTS}", CHECKPOINT_USAGE)
}

fn run(args: &Args) -> Result<()> {
    let epochs: usize = args.parse_or("epochs", 2, "expected a whole number of epochs")?;
    let batch_size: usize = args.parse_or("batch-size", 64, "expected a whole number >= 1")?;
    let lr: f64 = args.parse_or("lr", 1e-3, "expected a number such as 1e-3")?;
    let seed: u64 = args.parse_or("seed", 0, "expected a non-negative integer")?;
    let train_limit: usize = args.parse_or("train-limit", usize::MAX, "expected a whole number")?;
    let weighting_name = args.get("weighting").unwrap_or("equal");
    let weighting = candle_mtl::weighting::by_name(weighting_name)?;
    let optimizer = OptimizerConfig::from_name(args.get("optimizer").unwrap_or("adam"), lr)?;

    let (dir, how) = locate_mnist(args.get("data-dir"))?;
    let mnist = load_mnist(&dir)?;
    let train_images = mnist.train.take(train_limit);
    let train = dataset(&train_images)?;
    let test = dataset(&mnist.test)?;
    let device = best_device(args.flag("cpu"));
    println!(
        "data: {} ({how}): {} train / {} test digits | device: {} | weighting: {} | seed {seed}",
        dir.display(),
        train.len(),
        test.len(),
        describe(&device),
        weighting.name()
    );

    let model = cls_reg_model(&device, seed, mnist.train.image_shape())?;
    let mut config = TrainerConfig {
        optimizer,
        batch_size,
        seed,
        ..Default::default()
    };
    apply_checkpoint_flags(args, &mut config)?;
    let (mut trainer, train) = build_trainer(model, weighting, config, &train)?;
    trainer.describe_run(
        "data",
        format!("{} train / {} test", train.len(), test.len()),
    );
    trainer.describe_run("weighting", weighting_name);
    resume_if_asked(args, &mut trainer)?;
    let remaining = epochs.saturating_sub(trainer.epochs_done());

    // A bar with the live losses on a terminal (feature `progress`, on for the examples).
    trainer.add_observer(Box::new(candle_mtl::train::Progress::new()));
    if let Some(dir) = args.get("log-dir") {
        trainer.add_observer(Box::new(JsonlLog::create(
            std::path::Path::new(dir).join("run.jsonl"),
        )?));
        trainer.add_observer(Box::new(CsvLog::create(dir)?));
        println!("logging to {dir}/run.jsonl, steps.csv, epochs.csv");
    }
    if let Some(dir) = args.get("tensorboard-dir") {
        let log = candle_mtl::train::TensorBoardLog::create(dir)?;
        println!("TensorBoard events in {}", log.path().display());
        trainer.add_observer(Box::new(log));
    }
    let start = Instant::now();
    let fit = trainer.fit(TaskData::Shared(&train), Some(TaskData::Shared(&test)), remaining, &mut |r| {
        let eval = r.eval.as_ref();
        let metric = |task: &str, m: Metric| eval.and_then(|e| e.task(task)).and_then(|t| t.metric(m));
        let weights = r
            .mean_weights
            .as_ref()
            .map(|w| format!(" | mean weights {:.3}/{:.3}", w[0], w[1]))
            .unwrap_or_default();
        println!(
            "epoch {}/{epochs} | train loss digit {:.4} value {:.4} | test acc {:.2}% MAE {:.3} RMSE {:.3} | {:.0} samples/s, data wait {:.1}%{weights}",
            r.epoch + 1,
            r.train_losses[0],
            r.train_losses[1],
            100.0 * metric("digit", Metric::Accuracy).unwrap_or(f64::NAN),
            metric("value", Metric::Mae).unwrap_or(f64::NAN),
            metric("value", Metric::Rmse).unwrap_or(f64::NAN),
            r.samples_per_second(),
            100.0 * r.data_share(),
        );
        Ok(())
    })?;
    let total = start.elapsed().as_secs_f64();
    let samples: usize = fit.epochs.iter().map(|e| e.samples).sum();
    let train_seconds: f64 = fit.epochs.iter().map(|e| e.seconds).sum();
    let throughput = samples as f64 / train_seconds.max(1e-9);
    let peak = peak_memory_mib();
    let eval = match fit.last().and_then(|e| e.eval.clone()) {
        Some(e) => Some(e),
        // Resumed after the last epoch: nothing left to train, evaluate as it stands.
        None => Some(trainer.evaluate(TaskData::Shared(&test))?),
    };
    let get = |task: &str, m: Metric| {
        eval.as_ref()
            .and_then(|e| e.task(task))
            .and_then(|t| t.metric(m))
            .unwrap_or(f64::NAN)
    };
    println!(
        "final | digit accuracy {:.2}% | value MAE {:.3} RMSE {:.3} MSE {:.3} | {:.0} samples/s training | {:.1} s total | peak memory {}",
        100.0 * get("digit", Metric::Accuracy),
        get("value", Metric::Mae),
        get("value", Metric::Rmse),
        get("value", Metric::Mse),
        throughput,
        total,
        peak.map(|m| format!("{m:.0} MiB")).unwrap_or_else(|| "n/a".into()),
    );

    if let Some(path) = args.get("save-model") {
        trainer.model().save(path)?;
        println!("model saved to {path} (predict with: cargo run --release --example predict -- --model {path})");
    }
    if let Some(path) = args.get("summary-json") {
        let train_losses = fit
            .last()
            .map(|e| e.train_losses.clone())
            .unwrap_or_default();
        let json = serde_json::json!({
            "example": "mnist_cls_reg",
            "weighting": weighting_name,
            "seed": seed,
            "epochs": epochs,
            "steps": trainer.steps_done(),
            "train_samples": train.len(),
            "test_samples": test.len(),
            "device": describe(&device),
            "tasks": cls_reg_metrics(&get),
            "final_epoch_train_losses": train_losses.iter().map(|&l| number(l)).collect::<Vec<_>>(),
            "parameters_digest": parameter_digest(trainer.model())?,
        });
        write_json(path, &json)?;
        println!("summary written to {path}");
    }
    if let Some(path) = args.get("timing-json") {
        let json = serde_json::json!({
            "example": "mnist_cls_reg",
            "samples_per_second": number(throughput),
            "seconds": number(total),
            "peak_memory_mib": peak.map(number),
        });
        write_json(path, &json)?;
    }
    Ok(())
}

fn main() {
    let usage = usage();
    let known = [
        "data-dir",
        "epochs",
        "batch-size",
        "lr",
        "optimizer",
        "weighting",
        "seed",
        "train-limit",
        "summary-json",
        "timing-json",
        "log-dir",
        "save-model",
        "tensorboard-dir",
        CHECKPOINT_FLAGS[0],
        CHECKPOINT_FLAGS[1],
    ];
    main_with(&usage, &["cpu", RESUME_FLAG], &known, run);
}
