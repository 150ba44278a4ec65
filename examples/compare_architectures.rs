//! Compares sharing architectures on a Pareto-MTL benchmark (Multi-Fashion by default): hard
//! parameter sharing (one LeNet, `hps`) against MMoE, CGC, PLE, cross-stitch and MTAN built
//! from the same LeNet, each trained from the same seed with the same budget (epochs, batch,
//! learning rate, equal weighting). Prints each task's test accuracy, Delta-m against hard
//! sharing, parameter count and time per step.
//!
//! ```text
//! cargo run --release --example compare_architectures -- --train 10000 --epochs 3
//! ```

mod common;

use std::time::Instant;

use candle_mtl::architecture::{CrossStitch, Mmoe, MmoeConfig, Mtan, MtanConfig, Ple, PleConfig};
use candle_mtl::metrics::delta_m;
use candle_mtl::params::ParamPath;
use candle_mtl::prelude::*;
use candle_mtl::weighting::by_name;
use common::multi::multi_digits;
use common::{main_with, Args};

const USAGE: &str = "compare_architectures: hard sharing vs MMoE, CGC, PLE, cross-stitch, MTAN

USAGE: cargo run --release --example compare_architectures -- [FLAGS]

  --archs LIST          comma-separated (default hps,mmoe,cgc,ple,cross-stitch,mtan)
  --dataset NAME        multi-fashion (default) | multi-mnist | multi-fashion-mnist
  --train N             training composites (default 10000)
  --test N              test composites (default 2000)
  --epochs N            epochs (default 3)
  --batch-size N        batch size (default 128)
  --lr X                Adam learning rate (default 1e-3)
  --weighting NAME      strategy for every architecture (default equal)
  --seed N              seed (default 0)
  --fashion-dir DIR     Fashion-MNIST IDX files (else found or downloaded)
  --mnist-dir DIR       MNIST IDX files (else found or downloaded)";

const TASKS: [&str; 2] = ["left", "right"];
/// LeNet's representation size.
const WIDTH: usize = 50;

fn lenet(p: &ParamPath) -> Result<ConvNet> {
    ConvNet::new(&ConvNetConfig::lenet_36(), p)
}

/// A two-layer perceptron expert for PLE's second level.
fn dense_expert(p: &ParamPath) -> Result<Mlp> {
    Mlp::new(
        &MlpConfig {
            input_dim: WIDTH,
            hidden: vec![WIDTH],
            ..Default::default()
        },
        p,
    )
}

fn model(arch: &str, device: &candle_core::Device, seed: u64) -> Result<MultiTaskModel> {
    let b = MultiTaskModel::builder(device, seed);
    let gate_input_dim = 36 * 36;
    let b = match arch {
        "hps" => b.encoder(lenet)?,
        "mmoe" => b.encoder(|p| {
            Mmoe::new(
                &MmoeConfig {
                    experts: 3,
                    tasks: 2,
                    gate_input_dim,
                },
                p,
                lenet,
            )
        })?,
        "cgc" | "ple" => b.encoder(|p| {
            Ple::new(
                &PleConfig {
                    tasks: 2,
                    shared_experts: 1,
                    task_experts: 1,
                    levels: if arch == "cgc" { 1 } else { 2 },
                    gate_input_dim,
                },
                p,
                |level, e| -> Result<Box<dyn SharedEncoder>> {
                    Ok(if level == 0 {
                        Box::new(lenet(e)?)
                    } else {
                        Box::new(dense_expert(e)?)
                    })
                },
            )
        })?,
        "cross-stitch" => b.encoder(|p| CrossStitch::new(2, p, lenet))?,
        "mtan" => b.encoder(|p| {
            Mtan::new(
                &MtanConfig {
                    tasks: 2,
                    input_shape: vec![1, 36, 36],
                },
                p,
                lenet,
            )
        })?,
        other => {
            return Err(Error::config(
                "--archs",
                other,
                "expected hps, mmoe, cgc, ple, cross-stitch or mtan",
            ))
        }
    };
    let mut b = b;
    for t in TASKS {
        b = b.task(TaskSpec::classification(t), |p| {
            LinearHead::new(WIDTH, 10, p)
        })?;
    }
    b.build()
}

fn run(args: &Args) -> Result<()> {
    let dataset = args.get("dataset").unwrap_or("multi-fashion");
    let n_train: usize = args.parse_or("train", 10_000, "expected a count")?;
    let n_test: usize = args.parse_or("test", 2_000, "expected a count")?;
    let epochs: usize = args.parse_or("epochs", 3, "expected a count")?;
    let batch_size: usize = args.parse_or("batch-size", 128, "expected a count")?;
    let lr: f64 = args.parse_or("lr", 1e-3, "expected a number")?;
    let seed: u64 = args.parse_or("seed", 0, "expected an integer")?;
    let weighting = args.get("weighting").unwrap_or("equal");
    by_name(weighting)?;
    let archs: Vec<String> = args
        .get("archs")
        .unwrap_or("hps,mmoe,cgc,ple,cross-stitch,mtan")
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let device = best_device(false);
    for a in &archs {
        model(a, &device, seed)?;
    }
    let (train, test) = multi_digits(args, dataset, n_train, n_test, seed)?;
    println!(
        "{dataset}: {n_train} train / {n_test} test composites, LeNet-based, {epochs} epochs, batch {batch_size}, Adam {lr}, weighting {weighting}"
    );
    let config = TrainerConfig {
        optimizer: OptimizerConfig::adam(lr),
        batch_size,
        seed,
        ..Default::default()
    };
    let mut rows: Vec<(String, [f64; 2], usize, f64)> = Vec::new();
    for arch in &archs {
        let start = Instant::now();
        let m = model(arch, &device, seed)?;
        let params = m.params().count("");
        let mut trainer = Trainer::new(m, by_name(weighting)?, config.clone())?;
        let fit = trainer.fit(TaskData::Shared(&train), None, epochs, &mut |_| Ok(()))?;
        let steps: usize = fit.epochs.iter().map(|e| e.steps).sum();
        let seconds: f64 = fit.epochs.iter().map(|e| e.seconds).sum();
        let eval = trainer.evaluate(TaskData::Shared(&test))?;
        let acc = TASKS.map(|t| {
            eval.task(t)
                .and_then(|e| e.metric(Metric::Accuracy))
                .unwrap_or(f64::NAN)
        });
        println!(
            "{arch}: left {:.2}% right {:.2}% | {params} parameters | {:.1} ms/step | {:.0} s",
            100.0 * acc[0],
            100.0 * acc[1],
            1000.0 * seconds / steps.max(1) as f64,
            start.elapsed().as_secs_f64()
        );
        rows.push((arch.clone(), acc, params, seconds / steps.max(1) as f64));
    }
    let hps = rows.iter().find(|r| r.0 == "hps").map(|r| (r.1, r.3));
    println!("\n| architecture | left acc % | right acc % | Delta-m vs hps % | parameters | time/step vs hps |");
    println!("|---|---|---|---|---|---|");
    for (arch, acc, params, sps) in &rows {
        let (dm, time) = match hps {
            Some((base, t)) => (
                delta_m(&[
                    (Metric::Accuracy, acc[0], base[0]),
                    (Metric::Accuracy, acc[1], base[1]),
                ])
                .map_or_else(|| "n/a".into(), |d| format!("{:+.2}", 100.0 * d)),
                format!("{:.2}x", sps / t),
            ),
            None => ("(no hps)".into(), "n/a".into()),
        };
        println!(
            "| {arch} | {:.2} | {:.2} | {dm} | {params} | {time} |",
            100.0 * acc[0],
            100.0 * acc[1]
        );
    }
    Ok(())
}

fn main() {
    main_with(
        USAGE,
        &[],
        &[
            "archs",
            "dataset",
            "train",
            "test",
            "epochs",
            "batch-size",
            "lr",
            "weighting",
            "seed",
            "fashion-dir",
            "mnist-dir",
        ],
        run,
    );
}
