//! Transfer with a ResNet: pretrain a ResNet-18 encoder (or load pretrained weights, for
//! example a PyTorch `state_dict` exported to safetensors, with `--weights`), freeze it, train
//! new heads for two tasks on a CIFAR-10-format folder (the image class and "vehicle or
//! animal"), then fine-tune everything with a lower learning rate; against the same model
//! trained from scratch for the same number of steps on the same labelled images.
//!
//! Pretraining sources (`--source`):
//! - `rotation` (default): the folder's training images beyond the labelled ones, their
//!   labels unused, each shown at 0, 90, 180 and 270 degrees with the rotation as the class
//!   (self-supervised rotation prediction, Gidaris et al., 2018, "Unsupervised
//!   Representation Learning by Predicting Image Rotations"): many unlabelled images, few
//!   labelled ones;
//! - `mnist`: MNIST digits padded to 32x32 RGB, a supervised source from another domain.
//!
//! ```text
//! cargo run --release --example fashion_as_cifar -- data/fashion-mnist data/cifar-standin
//! cargo run --release --example resnet_transfer -- --cifar-dir data/cifar-standin --train-limit 1000
//! cargo run --release --example resnet_transfer -- --weights resnet.safetensors --width 64
//! ```

mod common;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use candle_mtl::data::{load_cifar10, load_mnist, ImageDataset, StandardDataset};
use candle_mtl::device::describe;
use candle_mtl::encoder::{ResNet, ResNetConfig};
use candle_mtl::model::{Component, PretrainedOptions};
use candle_mtl::prelude::*;
use candle_mtl::train::EvalReport;
use common::runs::{number, write_json};
use common::{locate_dataset, main_with, peak_memory_mib, Args};

const USAGE: &str = "resnet_transfer: ResNet-18 pretrained on MNIST (or given weights) -> frozen, new heads on CIFAR-10-format data -> fine-tuned; vs scratch

USAGE: cargo run --release --example resnet_transfer -- [FLAGS]

  --cifar-dir DIR       target data: CIFAR-10 binary files (data/cifar-10 when present, else
                        downloaded into $CANDLE_MTL_DATA/cifar-10); a stand-in is written by
                        the fashion_as_cifar example
  --source NAME         pretraining: rotation (default; rotation prediction on the folder's
                        unlabelled training images after the first --train-limit) | mnist
  --source-dir DIR      MNIST IDX files for --source mnist (data/mnist when present, else
                        downloaded), padded to 32x32 RGB
  --weights FILE        skip pretraining: load the encoder from a safetensors file (a saved
                        encoder, or a torchvision-style ResNet state_dict; fc.* is ignored)
  --partial             load --weights partially (layers that fit), reporting the rest
  --save-encoder FILE   where the pretrained encoder is written (default: a temporary file)
  --width N             channels of the first stage (default 16; torchvision's is 64)
  --pretrain-epochs N   epochs on the source data (default 1)
  --pretrain-limit N    source images used (default 5000; rotation shows each 4 times)
  --train-limit N       labelled target images (default 300)
  --test-limit N        target test images (default all)
  --head-epochs N       epochs training the new heads on the frozen encoder (default 2)
  --epochs N            epochs fine-tuning everything afterwards (default 14); scratch trains
                        head-epochs + epochs, the same number of steps
  --batch-size N        batch size (default 64)
  --lr X                learning rate of pretraining, of the new heads and of scratch (1e-3)
  --finetune-lr X       learning rate of fine-tuning (default 5e-4)
  --weighting NAME      task weighting on the target tasks (default equal)
  --seed N              seed (default 0)
  --summary-json PATH   write the accuracies per task and phase, and samples/s, as JSON
  --cpu                 train on the CPU even when a GPU is available";

/// Target tasks: the CIFAR-10 class, and whether it is a vehicle (airplane, automobile, ship,
/// truck) or an animal.
const TASKS: [&str; 2] = ["class", "vehicle"];
const VEHICLES: [u32; 4] = [0, 1, 8, 9];

fn encoder_config(width: usize) -> ResNetConfig {
    ResNetConfig::small(3, width)
}

fn target_model(device: &Device, seed: u64, width: usize) -> Result<MultiTaskModel> {
    let out = width * 8;
    MultiTaskModel::builder(device, seed)
        .encoder(|p| ResNet::new(&encoder_config(width), p))?
        .task(TaskSpec::classification(TASKS[0]), |p| {
            LinearHead::new(out, 10, p)
        })?
        .task(TaskSpec::classification(TASKS[1]), |p| {
            LinearHead::new(out, 2, p)
        })?
        .build()
}

fn target_set(images: &ImageDataset) -> Result<TensorDataset> {
    let vehicle: Vec<u32> = images
        .labels()
        .iter()
        .map(|l| u32::from(VEHICLES.contains(l)))
        .collect();
    let n = vehicle.len();
    TensorDataset::from_images(images, Normalize::cifar10())?
        .with_target(TASKS[0], images.labels_tensor()?)?
        .with_target(
            TASKS[1],
            candle_core::Tensor::from_vec(vehicle, n, &Device::Cpu)?,
        )
}

/// Each image at 0, 90, 180 and 270 degrees (counter-clockwise), labelled by the rotation.
fn rotations(images: &ImageDataset) -> Result<ImageDataset> {
    let [c, h, w] = images.image_shape();
    if h != w {
        return Err(Error::config(
            "--source rotation",
            format!("{h}x{w} images"),
            "needs square images",
        ));
    }
    let size = c * h * w;
    let mut pixels = Vec::with_capacity(images.len() * 4 * size);
    let mut labels = Vec::with_capacity(images.len() * 4);
    for image in images.pixels().chunks(size) {
        let mut current = image.to_vec();
        for r in 0..4u32 {
            pixels.extend_from_slice(&current);
            labels.push(r);
            // (i, j) <- (j, n - 1 - i): a quarter turn.
            let mut turned = vec![0u8; size];
            for ch in 0..c {
                let plane = &current[ch * h * w..(ch + 1) * h * w];
                for i in 0..h {
                    for j in 0..w {
                        turned[ch * h * w + i * w + j] = plane[j * w + (w - 1 - i)];
                    }
                }
            }
            current = turned;
        }
    }
    ImageDataset::new(pixels, labels, [c, h, w])
}

fn accuracies(e: &EvalReport) -> Vec<f64> {
    TASKS
        .iter()
        .map(|t| {
            e.task(t)
                .and_then(|r| r.metric(Metric::Accuracy))
                .unwrap_or(f64::NAN)
        })
        .collect()
}

/// Trains for `epochs`, printing each epoch's training losses; returns the test accuracies
/// after the last one and the mean training samples/s.
fn phase(
    label: &str,
    trainer: &mut Trainer,
    train: &TensorDataset,
    test: &TensorDataset,
    epochs: usize,
) -> Result<(Vec<f64>, f64)> {
    let (mut samples, mut seconds) = (0usize, 0.0);
    for epoch in 0..epochs {
        let r = trainer.train_epoch(TaskData::Shared(train))?;
        samples += r.samples;
        seconds += r.seconds;
        let names = trainer.model().task_names();
        let shown: Vec<String> = names
            .iter()
            .zip(&r.train_losses)
            .map(|(n, l)| format!("{n} {l:.4}"))
            .collect();
        println!(
            "{label} epoch {}/{epochs} | train loss {} | {:.0} samples/s",
            epoch + 1,
            shown.join(", "),
            r.samples_per_second()
        );
    }
    let acc = accuracies(&trainer.evaluate(TaskData::Shared(test))?);
    let shown: Vec<String> = TASKS
        .iter()
        .zip(&acc)
        .map(|(t, a)| format!("{t} {:.2}%", 100.0 * a))
        .collect();
    println!("{label}: test accuracy {}", shown.join(", "));
    Ok((acc, samples as f64 / seconds.max(1e-9)))
}

fn config(lr: f64, seed: u64, batch_size: usize) -> TrainerConfig {
    TrainerConfig {
        optimizer: OptimizerConfig::adam(lr),
        seed,
        batch_size,
        ..Default::default()
    }
}

fn run(args: &Args) -> Result<()> {
    let width: usize = args.parse_or("width", 16, "expected a whole number >= 1")?;
    let pretrain_epochs: usize = args.parse_or("pretrain-epochs", 1, "expected a whole number")?;
    let pretrain_limit: usize = args.parse_or("pretrain-limit", 5000, "expected a whole number")?;
    let source = args.get("source").unwrap_or("rotation");
    let train_limit: usize = args.parse_or("train-limit", 300, "expected a whole number >= 1")?;
    let test_limit: usize = args.parse_or("test-limit", usize::MAX, "expected a whole number")?;
    let head_epochs: usize = args.parse_or("head-epochs", 2, "expected a whole number")?;
    let epochs: usize = args.parse_or("epochs", 14, "expected a whole number")?;
    let batch_size: usize = args.parse_or("batch-size", 64, "expected a whole number >= 1")?;
    let lr: f64 = args.parse_or("lr", 1e-3, "expected a number such as 1e-3")?;
    let finetune_lr: f64 = args.parse_or("finetune-lr", 5e-4, "expected a number such as 5e-4")?;
    let seed: u64 = args.parse_or("seed", 0, "expected a non-negative integer")?;
    let weighting = args.get("weighting").unwrap_or("equal");
    candle_mtl::weighting::by_name(weighting)?;
    let device = best_device(args.flag("cpu"));

    let (cifar_dir, cifar_how) = locate_dataset(
        StandardDataset::Cifar10,
        args.get("cifar-dir"),
        &["data/cifar-10"],
        None,
    )?;
    let cifar = load_cifar10(&cifar_dir)?;
    let train = target_set(&cifar.train.take(train_limit))?;
    let test = target_set(&cifar.test.take(test_limit))?;
    println!(
        "target: {} ({cifar_how}): {} labelled / {} test images, tasks {} | ResNet-18, width {width} | device: {}",
        cifar_dir.display(),
        train.len(),
        test.len(),
        TASKS.join(" + "),
        describe(&device)
    );

    // 1. The pretrained encoder: given, or trained here on MNIST digits.
    let started = Instant::now();
    let (weights, pretrain_summary) = match args.get("weights") {
        Some(file) => (PathBuf::from(file), serde_json::Value::Null),
        None => {
            let (source_train, source_test, source_name) = match source {
                "rotation" => {
                    // Images after the labelled ones, labels unused; the check set is the
                    // next 1,000 after those, rotated too. The target's test set is never seen.
                    let rest: Vec<usize> = (train.len()..cifar.train.len()).collect();
                    let unlabelled = cifar.train.select(&rest)?;
                    if unlabelled.len() < 2 {
                        return Err(Error::config(
                            "--train-limit",
                            train.len(),
                            format!("leaves {} unlabelled training images for --source rotation; lower it or use --source mnist", unlabelled.len()),
                        ));
                    }
                    let n = pretrain_limit.min(
                        unlabelled
                            .len()
                            .saturating_sub(1000)
                            .max(unlabelled.len() / 2),
                    );
                    let fit = unlabelled.take(n);
                    let check = unlabelled
                        .select(&(n..unlabelled.len().min(n + 1000)).collect::<Vec<_>>())?;
                    let set = |d: &ImageDataset| -> Result<TensorDataset> {
                        let r = rotations(d)?;
                        TensorDataset::from_images(&r, Normalize::cifar10())?
                            .with_target("source", r.labels_tensor()?)
                    };
                    println!(
                        "source: rotation prediction on {} unlabelled training images of {} (x4 rotations), checked on {} more",
                        fit.len(),
                        cifar_dir.display(),
                        check.len()
                    );
                    (set(&fit)?, set(&check)?, "rotation")
                }
                "mnist" => {
                    let (dir, how) = locate_dataset(
                        StandardDataset::Mnist,
                        args.get("source-dir"),
                        &["data/mnist"],
                        Some("tests/fixtures/mnist-1k"),
                    )?;
                    let mnist = load_mnist(&dir)?;
                    let rgb = |d: &ImageDataset| d.pad_to(32, 32)?.grey_to_rgb();
                    let set = |d: &ImageDataset| -> Result<TensorDataset> {
                        TensorDataset::from_images(&rgb(d)?, Normalize::mnist().repeated(3))?
                            .with_target("source", d.labels_tensor()?)
                    };
                    println!("source: MNIST digits {} ({how})", dir.display());
                    (
                        set(&mnist.train.take(pretrain_limit))?,
                        set(&mnist.test)?,
                        "mnist",
                    )
                }
                other => {
                    return Err(Error::config(
                        "--source",
                        other,
                        "expected rotation or mnist",
                    ))
                }
            };
            let classes = if source_name == "rotation" { 4 } else { 10 };
            let model = MultiTaskModel::builder(&device, seed)
                .encoder(|p| ResNet::new(&encoder_config(width), p))?
                .task(TaskSpec::classification("source"), |p| {
                    LinearHead::new(width * 8, classes, p)
                })?
                .build()?;
            let mut pretrain = Trainer::new(
                model,
                candle_mtl::weighting::by_name("equal")?,
                config(lr, seed, batch_size),
            )?;
            let mut acc = f64::NAN;
            let mut rate = 0.0;
            for epoch in 0..pretrain_epochs {
                let r = pretrain.train_epoch(TaskData::Shared(&source_train))?;
                let e = pretrain.evaluate(TaskData::Shared(&source_test))?;
                acc = e
                    .task("source")
                    .and_then(|t| t.metric(Metric::Accuracy))
                    .unwrap_or(f64::NAN);
                rate = r.samples_per_second();
                println!(
                    "pretrain epoch {}/{pretrain_epochs} | train loss {:.4} | source check accuracy {:.2}% | {rate:.0} samples/s",
                    epoch + 1,
                    r.train_losses[0],
                    100.0 * acc
                );
            }
            let file = match args.get("save-encoder") {
                Some(f) => PathBuf::from(f),
                None => std::env::temp_dir().join(format!(
                    "candle-mtl-resnet-{}.safetensors",
                    std::process::id()
                )),
            };
            pretrain
                .model()
                .save_component(&Component::Encoder, &file)?;
            println!(
                "pretrained encoder saved to {} (reuse it with --weights)",
                file.display()
            );
            let summary = serde_json::json!({
                "source": source_name,
                "source_accuracy": number(acc),
                "samples_per_second": number(rate),
                "epochs": pretrain_epochs,
                "samples": source_train.len(),
            });
            (file, summary)
        }
    };
    let options = if args.flag("partial") {
        PretrainedOptions::partial()
    } else {
        PretrainedOptions::strict()
    }
    .ignore("fc");

    // 2. New heads on the frozen encoder, 3. fine-tuning everything.
    let transferred = target_model(&device, seed + 1, width)?;
    let report = transferred.load_pretrained(&Component::Encoder, &weights, &options)?;
    println!("{report}");
    transferred.freeze(&Component::Encoder)?;
    let strategy = || candle_mtl::weighting::by_name(weighting);
    let mut frozen = Trainer::new(transferred, strategy()?, config(lr, seed, batch_size))?;
    let (frozen_acc, frozen_rate) =
        phase("frozen encoder", &mut frozen, &train, &test, head_epochs)?;
    let transferred = frozen.into_model();
    transferred.unfreeze(&Component::Encoder)?;
    let mut finetune = Trainer::new(
        transferred,
        strategy()?,
        config(finetune_lr, seed, batch_size),
    )?;
    let (finetune_acc, finetune_rate) = phase("fine-tune", &mut finetune, &train, &test, epochs)?;

    // 4. The same model from scratch, the same number of steps.
    let mut scratch = Trainer::new(
        target_model(&device, seed + 1, width)?,
        strategy()?,
        config(lr, seed, batch_size),
    )?;
    let (scratch_acc, scratch_rate) = phase(
        "from scratch",
        &mut scratch,
        &train,
        &test,
        head_epochs + epochs,
    )?;

    println!(
        "\n| model ({} labelled images, {} steps after pretraining) | {} | {} |\n|---|---|---|",
        train.len(),
        scratch.steps_done(),
        TASKS[0],
        TASKS[1]
    );
    let row = |label: &str, a: &[f64]| {
        println!("| {label} | {:.2}% | {:.2}% |", 100.0 * a[0], 100.0 * a[1])
    };
    row("pretrained, frozen, new heads", &frozen_acc);
    row("... then fine-tuned", &finetune_acc);
    row("from scratch", &scratch_acc);
    let peak = peak_memory_mib();
    println!(
        "transfer vs scratch: {:+.2} / {:+.2} points | samples/s frozen {frozen_rate:.0}, fine-tune {finetune_rate:.0}, scratch {scratch_rate:.0} | {:.0} s | peak memory {}",
        100.0 * (finetune_acc[0] - scratch_acc[0]),
        100.0 * (finetune_acc[1] - scratch_acc[1]),
        started.elapsed().as_secs_f64(),
        peak.map(|m| format!("{m:.0} MiB")).unwrap_or_else(|| "n/a".into())
    );
    if let Some(path) = args.get("summary-json") {
        let per_task = |a: &[f64]| -> serde_json::Value {
            TASKS
                .iter()
                .zip(a)
                .map(|(t, v)| (t.to_string(), number(*v)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let json = serde_json::json!({
            "example": "resnet_transfer",
            "width": width,
            "seed": seed,
            "train_samples": train.len(),
            "test_samples": test.len(),
            "weights": weights.display().to_string(),
            "loaded_tensors": report.loaded.len(),
            "pretrain": pretrain_summary,
            "accuracy": {
                "transfer_frozen": per_task(&frozen_acc),
                "transfer": per_task(&finetune_acc),
                "scratch": per_task(&scratch_acc),
            },
            "samples_per_second": {
                "frozen": number(frozen_rate),
                "finetune": number(finetune_rate),
                "scratch": number(scratch_rate),
            },
            "peak_memory_mib": peak.map(number),
        });
        write_json(path, &json)?;
        println!("summary written to {path}");
    }
    Ok(())
}

fn main() {
    main_with(
        USAGE,
        &["cpu", "partial"],
        &[
            "cifar-dir",
            "source",
            "source-dir",
            "weights",
            "save-encoder",
            "width",
            "pretrain-epochs",
            "pretrain-limit",
            "train-limit",
            "test-limit",
            "head-epochs",
            "epochs",
            "batch-size",
            "lr",
            "finetune-lr",
            "weighting",
            "seed",
            "summary-json",
        ],
        run,
    );
}
