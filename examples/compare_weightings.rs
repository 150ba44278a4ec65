//! Compares task-weighting strategies on a Pareto-MTL benchmark built from real images.
//!
//! Multi-Fashion (default), Multi-MNIST or Multi-(Fashion+MNIST): two 28x28 images on a 36x36
//! canvas (top-left and bottom-right, each shifted up to 4 px), one 10-way task per image, and
//! the LeNet of that recipe (conv 1->10 9x9, pool, conv 10->20 5x5, pool, linear 500->50) shared
//! by two linear heads. Every strategy trains a fresh model from the same initial weights with
//! the same budget; single-task baselines train one model per task alone. The table gives each
//! task's test accuracy, Delta-m against the baselines, and time per step relative to equal
//! weighting.
//!
//! ```text
//! cargo run --release --example compare_weightings -- --epochs 2 --train 20000
//! ```

mod common;

use std::time::Instant;

use candle_mtl::metrics::delta_m;
use candle_mtl::prelude::*;
use candle_mtl::weighting::by_name;
use common::multi::multi_digits;
use common::runs::{number, write_json};
use common::{build_trainer, main_with, Args};

const USAGE: &str = "compare_weightings: task-weighting strategies on Multi-Fashion / Multi-MNIST

USAGE: cargo run --release --example compare_weightings -- [FLAGS]

  --dataset NAME        multi-fashion (default) | multi-mnist | multi-fashion-mnist
  --strategies LIST     comma-separated names (default: equal,uncertainty,dwa,mgda-ub,pcgrad,
                        cagrad,nash-mtl,upgrad,famo); the names are listed below
  --train N             training composites (default 20000)
  --test N              test composites (default 4000)
  --epochs N            epochs per strategy (default 2)
  --batch-size N        batch size (default 256)
  --lr X                Adam learning rate (default 1e-3)
  --seed N              seed of the data, the initial weights and the order (default 0)
  --fashion-dir DIR     Fashion-MNIST IDX files (else found or downloaded)
  --mnist-dir DIR       MNIST IDX files (else found or downloaded)
  --summary-json PATH   write the table as JSON";

const DEFAULT_STRATEGIES: &str = "equal,uncertainty,dwa,mgda-ub,pcgrad,cagrad,nash-mtl,upgrad,famo";

struct Row {
    name: String,
    accuracy: [f64; 2],
    delta_m: Option<f64>,
    seconds_per_step: f64,
}

fn model(tasks: &[&str], device: &candle_core::Device, seed: u64) -> Result<MultiTaskModel> {
    let mut b = MultiTaskModel::builder(device, seed)
        .encoder(|p| ConvNet::new(&ConvNetConfig::lenet_36(), p))?;
    for t in tasks {
        b = b.task(TaskSpec::classification(*t), |p| LinearHead::new(50, 10, p))?;
    }
    b.build()
}

/// Trains `weighting` on `tasks` and returns each task's final test accuracy and the mean
/// seconds per training step.
#[allow(clippy::too_many_arguments)]
fn run(
    weighting: Box<dyn TaskWeighting>,
    tasks: &[&str],
    train: &TensorDataset,
    test: &TensorDataset,
    epochs: usize,
    config: &TrainerConfig,
    device: &candle_core::Device,
    seed: u64,
) -> Result<(Vec<f64>, f64)> {
    let (mut trainer, train) = build_trainer(
        model(tasks, device, seed)?,
        weighting,
        config.clone(),
        train,
    )?;
    let fit = trainer.fit(TaskData::Shared(&train), None, epochs, &mut |_| Ok(()))?;
    let steps: usize = fit.epochs.iter().map(|e| e.steps).sum();
    let seconds: f64 = fit.epochs.iter().map(|e| e.seconds).sum();
    let eval = trainer.evaluate(TaskData::Shared(test))?;
    let acc = tasks
        .iter()
        .map(|t| {
            eval.task(t)
                .and_then(|e| e.metric(Metric::Accuracy))
                .unwrap_or(f64::NAN)
        })
        .collect();
    Ok((acc, seconds / steps.max(1) as f64))
}

fn main_inner(args: &Args) -> Result<()> {
    let dataset = args.get("dataset").unwrap_or("multi-fashion");
    let n_train: usize = args.parse_or("train", 20_000, "expected a count")?;
    let n_test: usize = args.parse_or("test", 4_000, "expected a count")?;
    let epochs: usize = args.parse_or("epochs", 2, "expected a count")?;
    let batch_size: usize = args.parse_or("batch-size", 256, "expected a count")?;
    let lr: f64 = args.parse_or("lr", 1e-3, "expected a number")?;
    let seed: u64 = args.parse_or("seed", 0, "expected an integer")?;
    let names: Vec<String> = args
        .get("strategies")
        .unwrap_or(DEFAULT_STRATEGIES)
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    // Fail on a bad name before any training.
    for n in &names {
        by_name(n)?;
    }
    let (train, test) = multi_digits(args, dataset, n_train, n_test, seed)?;
    let device = best_device(false);
    let config = TrainerConfig {
        optimizer: OptimizerConfig::adam(lr),
        batch_size,
        seed,
        ..Default::default()
    };
    println!(
        "{dataset}: {n_train} train / {n_test} test composites, LeNet, {epochs} epochs, batch {batch_size}, Adam {lr}"
    );

    let mut baseline = [f64::NAN; 2];
    for (k, task) in ["left", "right"].iter().enumerate() {
        let (acc, _) = run(
            Box::new(Equal::sum()),
            &[task],
            &train,
            &test,
            epochs,
            &config,
            &device,
            seed,
        )?;
        baseline[k] = acc[0];
        println!(
            "single-task baseline {task}: accuracy {:.2}%",
            100.0 * acc[0]
        );
    }
    let mut rows = Vec::new();
    for name in &names {
        let start = Instant::now();
        let (acc, sps) = run(
            by_name(name)?,
            &["left", "right"],
            &train,
            &test,
            epochs,
            &config,
            &device,
            seed,
        )?;
        let dm = delta_m(&[
            (Metric::Accuracy, acc[0], baseline[0]),
            (Metric::Accuracy, acc[1], baseline[1]),
        ]);
        println!(
            "{name}: left {:.2}% right {:.2}% Delta-m {:+.2}% ({:.1} ms/step, {:.0} s)",
            100.0 * acc[0],
            100.0 * acc[1],
            100.0 * dm.unwrap_or(f64::NAN),
            1000.0 * sps,
            start.elapsed().as_secs_f64()
        );
        rows.push(Row {
            name: name.clone(),
            accuracy: [acc[0], acc[1]],
            delta_m: dm,
            seconds_per_step: sps,
        });
    }
    let reference = rows
        .iter()
        .find(|r| r.name == "equal")
        .map(|r| r.seconds_per_step);
    println!("\n| strategy | left acc % | right acc % | Delta-m % | time/step vs equal |");
    println!("|---|---|---|---|---|");
    println!(
        "| single-task baselines | {:.2} | {:.2} | 0 | |",
        100.0 * baseline[0],
        100.0 * baseline[1]
    );
    for r in &rows {
        println!(
            "| {} | {:.2} | {:.2} | {:+.2} | {} |",
            r.name,
            100.0 * r.accuracy[0],
            100.0 * r.accuracy[1],
            100.0 * r.delta_m.unwrap_or(f64::NAN),
            reference
                .map(|t| format!("{:.2}x", r.seconds_per_step / t))
                .unwrap_or_else(|| "n/a".into())
        );
    }
    if let Some(path) = args.get("summary-json") {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "strategy": r.name,
                    "left_accuracy": number(r.accuracy[0]),
                    "right_accuracy": number(r.accuracy[1]),
                    "delta_m": r.delta_m.map(number),
                    "seconds_per_step": number(r.seconds_per_step),
                })
            })
            .collect();
        let json = serde_json::json!({
            "dataset": dataset,
            "epochs": epochs,
            "train": n_train,
            "baseline": [number(baseline[0]), number(baseline[1])],
            "rows": items,
        });
        write_json(path, &json)?;
    }
    Ok(())
}

fn main() {
    main_with(
        USAGE,
        &[],
        &[
            "dataset",
            "strategies",
            "train",
            "test",
            "epochs",
            "batch-size",
            "lr",
            "seed",
            "fashion-dir",
            "mnist-dir",
            "summary-json",
        ],
        main_inner,
    );
}
