//! Trains a multi-task model from your own data: a CSV manifest of images or numeric
//! features, one column per task.
//!
//! ```text
//! cargo run --release --example from_csv -- --manifest data/train.csv --test-manifest data/test.csv
//! ```
//! The manifest's first row names the columns. With images, a `path` column (relative to the
//! manifest's folder) lists PNG or JPEG files and a ConvNet is trained; with
//! `--features a,b,c`, those numeric columns are the input and an MLP is trained. Every other
//! column is a task: whole numbers are classes, decimals regression values, an empty cell a
//! missing label. Prints how many samples carry each task's label, per-epoch losses and test
//! metrics, samples/s and peak memory. Run with `--help` for the flags.

mod common;

use std::time::Instant;

use candle_core::Device;
use candle_mtl::data::{
    ColumnKind, CsvManifest, Dataset, DatasetExt, ImageFit, ImageOptions, ManifestConfig,
};
use candle_mtl::device::describe;
use candle_mtl::prelude::*;
use common::runs::fit_and_report;
use common::{main_with, Args};

const USAGE: &str = "from_csv: a multi-task model trained from a CSV manifest

USAGE: cargo run --release --example from_csv -- --manifest FILE [FLAGS]

  --manifest FILE       training manifest (header row; one row per sample)
  --test-manifest FILE  test manifest read like the training one (default: 10% of the
                        training rows, held out by a seeded split)
  --features A,B,C      numeric input columns (an MLP); without it, images from --path-column
                        (a ConvNet)
  --path-column NAME    column of image paths (default path)
  --image-size N        resize every image to N x N (default: the first image's size)
  --pad                 pad images to --image-size instead of resizing
  --channels 1|3        grey or RGB (default: those of the first image)
  --ignore A,B          columns that are neither input nor task (ids, notes)
  --classes TASK=N,...  declare class counts (a larger class in a row is a bad row)
  --values TASK,...     read these whole-number columns as regression values
  --skip-bad-rows       count and report bad rows instead of stopping at the first
  --epochs N            training epochs (default 3)
  --batch-size N        batch size (default 64)
  --lr X                learning rate (default 1e-3)
  --weighting NAME      task weighting (default equal; every name of
                        candle_mtl::weighting::STRATEGIES)
  --workers N           threads decoding batches (default 2; 0: on the training thread)
  --in-memory           decode every sample into memory before training (for comparison)
  --seed N              seed (default 0)
  --cpu                 train on the CPU even when a GPU is available
  --summary-json PATH   write per-task metrics, throughput and peak memory as JSON";

fn list(args: &Args, name: &str) -> Vec<String> {
    args.get(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn manifest_config(args: &Args) -> Result<ManifestConfig> {
    let mut config = match args.get("features") {
        Some(_) => ManifestConfig::features(list(args, "features")),
        None => ManifestConfig::images(ImageOptions {
            channels: args
                .get("channels")
                .map(|_| args.parse_or("channels", 1, "expected 1 or 3"))
                .transpose()?,
            size: args
                .get("image-size")
                .map(|_| {
                    args.parse_or("image-size", 28usize, "expected a side in pixels")
                        .map(|s| (s, s))
                })
                .transpose()?,
            fit: if args.flag("pad") {
                ImageFit::Pad
            } else {
                ImageFit::Resize
            },
        }),
    };
    if let Some(p) = args.get("path-column") {
        config.path_column = p.to_string();
    }
    config = config
        .ignoring(list(args, "ignore"))
        .skip_bad_rows(args.flag("skip-bad-rows"));
    for entry in list(args, "classes") {
        let (task, count) = entry
            .split_once('=')
            .and_then(|(t, n)| Some((t.to_string(), n.parse::<usize>().ok()?)))
            .ok_or_else(|| Error::config("--classes", &entry, "expected TASK=COUNT"))?;
        config = config.with_kind(task, ColumnKind::Classes { count: Some(count) });
    }
    for task in list(args, "values") {
        config = config.with_kind(task, ColumnKind::Values);
    }
    Ok(config)
}

fn open(path: &str, config: &ManifestConfig) -> Result<CsvManifest> {
    let m = CsvManifest::open(path, config)?;
    if !m.skipped().is_empty() {
        println!("{path}: {} bad rows skipped", m.skipped().len());
        for s in m.skipped().iter().take(5) {
            let column = s
                .column
                .as_deref()
                .map(|c| format!(", column '{c}'"))
                .unwrap_or_default();
            println!("  line {}{column}: {}", s.line, s.problem);
        }
    }
    Ok(m)
}

/// Per-channel (images) or per-column (features) mean and standard deviation of up to
/// 2,000 training samples, for the inputs' normalisation.
fn input_statistics(ds: &dyn Dataset) -> Result<Normalize> {
    let n = ds.len().min(2000) as u32;
    let x = ds.read_batch(&(0..n).collect::<Vec<_>>())?.inputs;
    let scale = if x.dtype() == candle_core::DType::U8 {
        1.0 / 255.0
    } else {
        1.0
    };
    let x = (x.to_dtype(candle_core::DType::F64)? * scale)?;
    let c = x.dims()[1];
    let x = x.transpose(0, 1)?.reshape((c, ()))?;
    let mean: Vec<f64> = x.mean(1)?.to_vec1()?;
    let var: Vec<f64> = x
        .broadcast_sub(&x.mean_keepdim(1)?)?
        .sqr()?
        .mean(1)?
        .to_vec1()?;
    let std: Vec<f64> = var.iter().map(|v| v.sqrt().max(1e-6)).collect();
    Normalize::new(mean, std)
}

fn build_model(
    device: &Device,
    seed: u64,
    train: &CsvManifest,
    features: bool,
) -> Result<MultiTaskModel> {
    let shape = train.input_shape();
    let hidden = if features { 64 } else { 128 };
    let mut builder = MultiTaskModel::builder(device, seed);
    builder = if features {
        let cfg = MlpConfig {
            input_dim: shape[0],
            hidden: vec![hidden],
            ..Default::default()
        };
        builder.encoder(|p| Mlp::new(&cfg, p))?
    } else {
        let cfg = ConvNetConfig {
            in_channels: shape[0],
            height: shape[1],
            width: shape[2],
            hidden,
            ..Default::default()
        };
        builder.encoder(|p| ConvNet::new(&cfg, p))?
    };
    for task in train.task_names() {
        builder = match train.class_count(task) {
            Some(classes) => builder.task(TaskSpec::classification(task), |p| {
                LinearHead::new(hidden, classes, p)
            })?,
            None => builder.task(TaskSpec::regression(task), |p| {
                LinearHead::new(hidden, 1, p)
            })?,
        };
    }
    builder.build()
}

fn run(args: &Args) -> Result<()> {
    let manifest = args.get("manifest").ok_or_else(|| {
        Error::config(
            "--manifest",
            "missing",
            "give the training manifest (a CSV file)",
        )
    })?;
    let epochs: usize = args.parse_or("epochs", 3, "expected a whole number of epochs")?;
    let batch_size: usize = args.parse_or("batch-size", 64, "expected a whole number >= 1")?;
    let lr: f64 = args.parse_or("lr", 1e-3, "expected a number such as 1e-3")?;
    let seed: u64 = args.parse_or("seed", 0, "expected a non-negative integer")?;
    let workers: usize = args.parse_or("workers", 2, "expected a number of threads")?;
    let weighting_name = args.get("weighting").unwrap_or("equal");
    let weighting = candle_mtl::weighting::by_name(weighting_name)?;
    let features = args.get("features").is_some();

    let config = manifest_config(args)?;
    let start = Instant::now();
    let train = open(manifest, &config)?;
    let test_manifest = match args.get("test-manifest") {
        Some(path) => Some(open(path, &train.resolved_config())?),
        None => None,
    };
    println!(
        "{manifest}: {} samples, inputs {:?}, read in {:.2} s",
        train.len(),
        train.input_shape(),
        start.elapsed().as_secs_f64()
    );
    for task in train.task_names() {
        let kind = match train.class_count(task) {
            Some(c) => format!("classes ({c})"),
            None => "values".into(),
        };
        println!(
            "  task {task}: {kind}, {} of {} samples labelled",
            train.labelled(task).unwrap_or(0),
            train.len()
        );
    }
    let device = best_device(args.flag("cpu"));
    let model = build_model(&device, seed, &train, features)?;
    let normalize = input_statistics(&train)?;
    let (train_part, test_part): (Box<dyn Dataset>, Box<dyn Dataset>) = match test_manifest {
        Some(test) => (Box::new(train.clone()), Box::new(test)),
        None => {
            let (a, b) = train.clone().split(0.9, seed)?;
            println!(
                "no --test-manifest: {} samples held out for testing",
                b.len()
            );
            (Box::new(a), Box::new(b))
        }
    };
    let (train_data, test_data): (Box<dyn Dataset>, Box<dyn Dataset>) = if args.flag("in-memory") {
        let t = Instant::now();
        let a = TensorDataset::from_dataset(&train_part)?.with_normalize(normalize.clone());
        let b = TensorDataset::from_dataset(&test_part)?.with_normalize(normalize);
        println!("decoded into memory in {:.1} s", t.elapsed().as_secs_f64());
        (Box::new(a), Box::new(b))
    } else {
        (
            Box::new(train_part.normalized(normalize.clone())),
            Box::new(test_part.normalized(normalize)),
        )
    };
    println!(
        "{} train / {} test samples | device {} | weighting {weighting_name} | {} | seed {seed}",
        train_data.len(),
        test_data.len(),
        describe(&device),
        if args.flag("in-memory") {
            "in memory".to_string()
        } else {
            format!("{workers} loader workers")
        }
    );
    let config = TrainerConfig {
        optimizer: OptimizerConfig::adam(lr),
        batch_size,
        seed,
        prefetch_depth: if workers == 0 { 0 } else { 2 * workers },
        loader_workers: workers,
        ..Default::default()
    };
    let mut trainer = Trainer::new(model, weighting, config)?;
    let run = fit_and_report(&mut trainer, &train_data, &test_data, epochs)?;
    let (throughput, peak) = (run.samples_per_second, run.peak_mib);
    println!(
        "final | {throughput:.0} samples/s training | peak memory {}",
        peak.map(|m| format!("{m:.0} MiB"))
            .unwrap_or_else(|| "n/a".into())
    );
    if let Some(path) = args.get("summary-json") {
        let fields = serde_json::json!({
            "example": "from_csv",
            "manifest": manifest,
            "in_memory": args.flag("in-memory"),
            "workers": workers,
            "seed": seed,
            "epochs": epochs,
            "train_samples": train_data.len(),
            "test_samples": test_data.len(),
            "skipped_rows": train.skipped().len(),
        });
        run.write_summary(path, fields, &trainer)?;
    }
    Ok(())
}

fn main() {
    let known = [
        "manifest",
        "test-manifest",
        "features",
        "path-column",
        "image-size",
        "channels",
        "ignore",
        "classes",
        "values",
        "epochs",
        "batch-size",
        "lr",
        "weighting",
        "workers",
        "seed",
        "summary-json",
    ];
    main_with(
        USAGE,
        &["cpu", "pad", "skip-bad-rows", "in-memory"],
        &known,
        run,
    );
}
