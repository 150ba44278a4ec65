//! Trains from array files that need not fit in memory: the inputs are memory-mapped
//! (`.npy` or safetensors) and read a batch at a time.
//!
//! ```text
//! cargo run --release --example from_arrays -- --synthesize data/big --rows 4000000 --features 256
//! cargo run --release --example from_arrays -- --inputs data/big/inputs.npy \
//!     --targets class=data/big/class.npy,value=data/big/value.npy --epochs 1
//! ```
//! `--synthesize` writes a dataset of the given size row by row (never all in memory): normal
//! features, a class given by a fixed random linear teacher and a regression value. Training
//! prints samples/s and the peak resident memory next to the file's size. Integer target
//! arrays are classes, float ones regression values. Run with `--help` for the flags.

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_mtl::data::{read_npy, write_npy, Dataset, DatasetExt, MmapDataset, NpyWriter};
use candle_mtl::prelude::*;
use common::runs::{fit_and_report, number};
use common::{main_with, Args};
use rand::{Rng, SeedableRng};

const USAGE: &str = "from_arrays: multi-task training from memory-mapped array files

USAGE: cargo run --release --example from_arrays -- (--inputs FILE.npy --targets T=FILE,... |
                                                      --safetensors FILE) [FLAGS]
       cargo run --release --example from_arrays -- --synthesize DIR --rows N --features F

  --inputs FILE.npy     inputs, one row per sample (u8 or f32), memory-mapped
  --targets T=FILE,...  one .npy per task: integers are classes, floats regression values
  --safetensors FILE    one file with the inputs (see --inputs-name) and a tensor per task
  --inputs-name NAME    the inputs' tensor in --safetensors (default inputs)
  --epochs N            training epochs (default 1)
  --batch-size N        batch size (default 256)
  --lr X                learning rate (default 1e-3)
  --hidden N            width of the MLP encoder (default 64)
  --workers N           threads reading batches (default 2)
  --test-fraction F     seeded fraction held out for testing (default 0.01)
  --keep-pages          keep read pages resident (faster when the file fits in memory)
  --seed N              seed (default 0)
  --cpu                 train on the CPU even when a GPU is available
  --summary-json PATH   write metrics, samples/s, file size and peak memory as JSON
  --synthesize DIR      write DIR/inputs.npy, class.npy, value.npy and exit
  --rows N, --features F   size of the synthesized dataset (default 100000 x 64)";

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut impl Rng) -> f32 {
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

fn synthesize(dir: &Path, rows: usize, features: usize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let classes = 4;
    let teacher: Vec<f32> = (0..classes * features).map(|_| normal(&mut rng)).collect();
    let mut writer = NpyWriter::create_f32(dir.join("inputs.npy"), &[rows, features])?;
    let mut class = Vec::with_capacity(rows);
    let mut value = Vec::with_capacity(rows);
    let mut row = vec![0f32; features];
    let scale = 1.0 / (features as f32).sqrt();
    for _ in 0..rows {
        row.iter_mut().for_each(|x| *x = normal(&mut rng));
        let scores: Vec<f32> = teacher
            .chunks_exact(features)
            .map(|w| w.iter().zip(&row).map(|(a, b)| a * b).sum::<f32>() * scale)
            .collect();
        let best = (0..classes)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap_or(0);
        class.push(best as u32);
        value.push(scores[0] - scores[1]);
        writer.append(&row)?;
    }
    writer.finish()?;
    write_npy(
        dir.join("class.npy"),
        &Tensor::from_vec(class, rows, &Device::Cpu)?,
    )?;
    write_npy(
        dir.join("value.npy"),
        &Tensor::from_vec(value, rows, &Device::Cpu)?,
    )?;
    let bytes = std::fs::metadata(dir.join("inputs.npy"))
        .map_err(|e| Error::io(dir, e))?
        .len();
    println!(
        "wrote {rows} x {features} f32 inputs ({:.2} GB) and the targets class (4 classes), value to {}",
        bytes as f64 / 1e9,
        dir.display()
    );
    Ok(())
}

fn open(args: &Args) -> Result<(MmapDataset, u64)> {
    let (ds, file) = match (args.get("inputs"), args.get("safetensors")) {
        (Some(inputs), None) => {
            let mut ds = MmapDataset::open_npy(inputs)?;
            for entry in args
                .get("targets")
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
            {
                let (task, path) = entry
                    .split_once('=')
                    .ok_or_else(|| Error::config("--targets", entry, "expected TASK=FILE.npy"))?;
                ds = ds.with_target(task, read_npy(path)?)?;
            }
            (ds, inputs)
        }
        (None, Some(file)) => (
            MmapDataset::open_safetensors(file, args.get("inputs-name").unwrap_or("inputs"))?,
            file,
        ),
        _ => {
            return Err(Error::config(
                "--inputs / --safetensors",
                "both or neither",
                "give exactly one",
            ))
        }
    };
    let bytes = std::fs::metadata(file)
        .map_err(|e| Error::io(file, e))?
        .len();
    Ok((
        if args.flag("keep-pages") {
            ds.keep_pages()
        } else {
            ds
        },
        bytes,
    ))
}

fn run(args: &Args) -> Result<()> {
    if let Some(dir) = args.get("synthesize") {
        let rows: usize = args.parse_or("rows", 100_000, "expected a number of rows")?;
        let features: usize = args.parse_or("features", 64, "expected a number of features")?;
        return synthesize(Path::new(dir), rows, features);
    }
    let epochs: usize = args.parse_or("epochs", 1, "expected a whole number of epochs")?;
    let batch_size: usize = args.parse_or("batch-size", 256, "expected a whole number >= 1")?;
    let lr: f64 = args.parse_or("lr", 1e-3, "expected a number such as 1e-3")?;
    let hidden: usize = args.parse_or("hidden", 64, "expected a width")?;
    let workers: usize = args.parse_or("workers", 2, "expected a number of threads")?;
    let test_fraction: f64 = args.parse_or("test-fraction", 0.01, "expected a fraction")?;
    let seed: u64 = args.parse_or("seed", 0, "expected a non-negative integer")?;
    let (ds, file_bytes) = open(args)?;
    let shape = ds.input_shape();
    let targets = ds.targets();
    if targets.is_empty() {
        return Err(Error::config(
            "--targets",
            "none",
            "give at least one task's target array",
        ));
    }
    println!(
        "{}: {} samples of {shape:?} ({:.2} GB mapped), tasks {}",
        ds.path().display(),
        ds.len(),
        file_bytes as f64 / 1e9,
        targets
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Statistics of the first rows, for the normalisation: per feature for rows of numbers,
    // one pair for anything of more dimensions.
    let probe = ds
        .read_batch(&(0..ds.len().min(2000) as u32).collect::<Vec<_>>())?
        .inputs;
    let probe = probe.to_dtype(candle_core::DType::F64)?;
    let probe = if shape.len() == 1 {
        probe
    } else {
        probe.flatten_all()?.unsqueeze(1)?
    };
    let mean: Vec<f64> = probe.mean(0)?.to_vec1()?;
    let std: Vec<f64> = probe
        .broadcast_sub(&probe.mean_keepdim(0)?)?
        .sqr()?
        .mean(0)?
        .to_vec1::<f64>()?
        .iter()
        .map(|v| v.sqrt().max(1e-6))
        .collect();
    let normalize = Normalize::new(mean, std)?;
    let (train, test) = (&ds).split(1.0 - test_fraction, seed)?;
    let (train, test) = (
        train.normalized(normalize.clone()),
        test.normalized(normalize),
    );
    let device = best_device(args.flag("cpu"));
    let mut builder = MultiTaskModel::builder(&device, seed).encoder(|p| {
        Mlp::new(
            &MlpConfig {
                input_dim: shape.iter().product(),
                hidden: vec![hidden],
                ..Default::default()
            },
            p,
        )
    })?;
    for t in &targets {
        builder = match ds.class_range(&t.name)? {
            Some(range) => builder.task(TaskSpec::classification(t.name.as_str()), |p| {
                LinearHead::new(hidden, range.max as usize + 1, p)
            })?,
            None => builder.task(TaskSpec::regression(t.name.as_str()), |p| {
                LinearHead::new(hidden, 1, p)
            })?,
        };
    }
    let config = TrainerConfig {
        optimizer: OptimizerConfig::adam(lr),
        batch_size,
        eval_batch_size: 4096,
        seed,
        prefetch_depth: 2 * workers.max(1),
        loader_workers: workers,
        ..Default::default()
    };
    let mut trainer = Trainer::new(
        builder.build()?,
        candle_mtl::weighting::by_name("equal")?,
        config,
    )?;
    let run = fit_and_report(&mut trainer, &train, &test, epochs)?;
    let (throughput, peak) = (run.samples_per_second, run.peak_mib);
    let file_mib = file_bytes as f64 / (1024.0 * 1024.0);
    println!(
        "final | {throughput:.0} samples/s training | peak memory {} for a {file_mib:.0} MiB file{}",
        peak.map(|m| format!("{m:.0} MiB")).unwrap_or_else(|| "n/a".into()),
        peak.map(|m| format!(" ({:.1}% of it)", 100.0 * m / file_mib)).unwrap_or_default()
    );
    if let Some(path) = args.get("summary-json") {
        let fields = serde_json::json!({
            "example": "from_arrays",
            "samples": ds.len(),
            "file_mib": number(file_mib),
        });
        run.write_summary(path, fields, &trainer)?;
    }
    Ok(())
}

fn main() {
    let known = [
        "inputs",
        "targets",
        "safetensors",
        "inputs-name",
        "epochs",
        "batch-size",
        "lr",
        "hidden",
        "workers",
        "test-fraction",
        "seed",
        "summary-json",
        "synthesize",
        "rows",
        "features",
    ];
    main_with(USAGE, &["cpu", "keep-pages"], &known, run);
}
