//! Compares the design documents' optimisation schedules on one budget: the same model, data,
//! seeds and number of optimiser steps for each.
//!
//! | schedule | what trains |
//! |---|---|
//! | joint | every task and every parameter at every step |
//! | task-alternating | one task per step, round robin (`TrainingMode::Alternating`) |
//! | encoder-decoder | heads only for `--phase-steps` steps, then the encoder only, in turn (`TrainingMode::EncoderDecoder`) |
//! | bottom-up | the encoder's layers released from the input upwards, one per period (`UnfreezeSchedule::bottom_up`) |
//! | top-down | released from the layer next to the heads downwards (`UnfreezeSchedule::top_down`) |
//! | progressive | the first task alone for the first epoch, then both (`TrainingMode::Progressive`) |
//! | auto-lambda | joint, task weights meta-learned on a held-out split (Auto-Lambda) |
//!
//! Every schedule trains on the same 90% of the training data (Auto-Lambda's held-out split is
//! the other 10%); single-task baselines give Delta-m. The table holds the mean and standard
//! deviation over `--seeds`.
//!
//! ```text
//! cargo run --release --example compare_schedules
//! cargo run --release --example compare_schedules -- --dataset multi-fashion --seeds 0,1,2
//! ```

mod common;

use std::time::Instant;

use candle_mtl::data::load_mnist;
use candle_mtl::metrics::delta_m;
use candle_mtl::prelude::*;
use candle_mtl::train::{PhaseSchedule, TaskOrder, TrainingMode, UnfreezeSchedule};
use common::multi::multi_digits;
use common::runs::{number, write_json};
use common::{cls_reg_dataset, locate_mnist, main_with, Args};

const USAGE: &str = "compare_schedules: joint, alternating, encoder/decoder, bottom-up, top-down, progressive and Auto-Lambda training on one budget

USAGE: cargo run --release --example compare_schedules -- [FLAGS]

  --dataset NAME        mnist (default: digit class + digit value, the seed CNN) | multi-fashion
                        (two 10-way tasks on Multi-Fashion composites, LeNet)
  --schedules LIST      comma-separated (default: all of joint,task-alternating,encoder-decoder,
                        bottom-up,top-down,progressive,auto-lambda)
  --seeds LIST          seeds (default 0,1,2)
  --epochs N            epochs of every run (default 3)
  --phase-steps N       steps of each encoder/decoder phase (default 25)
  --batch-size N        batch size (default 64)
  --lr X                Adam learning rate (default 1e-3)
  --train-limit N       training samples (default: all; multi-fashion: 20000 composites)
  --test-limit N        test samples (default: all; multi-fashion: 4000)
  --data-dir DIR        MNIST IDX files (mnist; else found or downloaded)
  --fashion-dir DIR     Fashion-MNIST IDX files (multi-fashion)
  --summary-json PATH   write every run and the table as JSON";

const ALL: &str =
    "joint,task-alternating,encoder-decoder,bottom-up,top-down,progressive,auto-lambda";

/// A benchmark: its tasks (name, metric, classes or 1 for regression), model and data.
struct Bench {
    tasks: Vec<(&'static str, Metric, usize)>,
    lenet: bool,
    image: [usize; 3],
    train: TensorDataset,
    validation: TensorDataset,
    test: TensorDataset,
}

impl Bench {
    fn model(&self, tasks: &[usize], seed: u64) -> Result<MultiTaskModel> {
        let [c, h, w] = self.image;
        let (config, hidden) = if self.lenet {
            (ConvNetConfig::lenet_36(), 50)
        } else {
            (
                ConvNetConfig {
                    in_channels: c,
                    height: h,
                    width: w,
                    ..Default::default()
                },
                128,
            )
        };
        let mut b = MultiTaskModel::builder(&candle_core::Device::Cpu, seed)
            .encoder(|p| ConvNet::new(&config, p))?;
        for &k in tasks {
            let (name, ref metric, outputs) = self.tasks[k];
            let spec = if metric.is_classification() {
                TaskSpec::classification(name)
            } else {
                TaskSpec::regression(name)
            };
            b = b.task(spec, |p| LinearHead::new(hidden, outputs, p))?;
        }
        b.build()
    }
}

fn load(args: &Args, dataset: &str, seed: u64) -> Result<Bench> {
    let train_limit: usize = args.parse_or("train-limit", usize::MAX, "expected a count")?;
    let test_limit: usize = args.parse_or("test-limit", usize::MAX, "expected a count")?;
    let (tasks, lenet, image, train, test) = match dataset {
        "mnist" => {
            let (dir, how) = locate_mnist(args.get("data-dir"))?;
            println!("MNIST: {} ({how})", dir.display());
            let m = load_mnist(dir)?;
            let tasks = vec![("digit", Metric::Accuracy, 10), ("value", Metric::Mae, 1)];
            let image = m.train.image_shape();
            (
                tasks,
                false,
                image,
                cls_reg_dataset(&m.train.take(train_limit))?,
                cls_reg_dataset(&m.test.take(test_limit))?,
            )
        }
        "multi-fashion" => {
            let (train, test) = multi_digits(
                args,
                dataset,
                train_limit.min(20_000),
                test_limit.min(4_000),
                seed,
            )?;
            (
                vec![
                    ("left", Metric::Accuracy, 10),
                    ("right", Metric::Accuracy, 10),
                ],
                true,
                [1, 36, 36],
                train,
                test,
            )
        }
        other => {
            return Err(Error::config(
                "--dataset",
                other,
                "expected mnist or multi-fashion",
            ))
        }
    };
    let n = train.len() as u32;
    let cut = n - n / 10;
    Ok(Bench {
        tasks,
        lenet,
        image,
        validation: train.subset(&(cut..n).collect::<Vec<_>>())?,
        train: train.subset(&(0..cut).collect::<Vec<_>>())?,
        test,
    })
}

/// The configuration and strategy of `schedule`.
fn setup(
    schedule: &str,
    bench: &Bench,
    phase_steps: usize,
    epochs: usize,
) -> Result<(TrainingMode, Option<UnfreezeSchedule>, &'static str)> {
    // One layer released per period, so that every layer trains by the last epoch.
    let layers = 3; // conv0, conv1, fc
    let period = (epochs / layers).max(1);
    Ok(match schedule {
        "joint" => (TrainingMode::Joint, None, "equal"),
        "task-alternating" => (
            TrainingMode::Alternating(TaskOrder::RoundRobin),
            None,
            "equal",
        ),
        "encoder-decoder" => (
            TrainingMode::EncoderDecoder(PhaseSchedule::steps(phase_steps, phase_steps)),
            None,
            "equal",
        ),
        "bottom-up" => (
            TrainingMode::Joint,
            Some(UnfreezeSchedule::bottom_up(period)),
            "equal",
        ),
        "top-down" => (
            TrainingMode::Joint,
            Some(UnfreezeSchedule::top_down(0, period)),
            "equal",
        ),
        "progressive" => (
            TrainingMode::Progressive(vec![(bench.tasks[1].0.to_string(), 1)]),
            None,
            "equal",
        ),
        "auto-lambda" => (TrainingMode::Joint, None, "auto-lambda"),
        other => {
            return Err(Error::config(
                "--schedules",
                other,
                format!("expected one of {ALL}"),
            ))
        }
    })
}

/// Trains one run; the test value of each task's metric, the steps and the seconds.
fn train_run(
    bench: &Bench,
    tasks: &[usize],
    seed: u64,
    config: TrainerConfig,
    strategy: &str,
    epochs: usize,
) -> Result<(Vec<f64>, u64, f64)> {
    let model = bench.model(tasks, seed)?;
    let weighting = candle_mtl::weighting::by_name(strategy)?;
    let mut trainer = if weighting.needs().meta_validation {
        Trainer::with_meta_validation(model, weighting, config, bench.validation.clone())?
    } else {
        Trainer::new(model, weighting, config)?
    };
    let start = Instant::now();
    trainer.fit(
        TaskData::Shared(&bench.train),
        None,
        epochs,
        &mut |_| Ok(()),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let eval = trainer.evaluate(TaskData::Shared(&bench.test))?;
    let values = tasks
        .iter()
        .map(|&k| {
            let (name, ref metric, _) = bench.tasks[k];
            eval.task(name)
                .and_then(|t| t.metric(metric))
                .unwrap_or(f64::NAN)
        })
        .collect();
    Ok((values, trainer.steps_done(), seconds))
}

/// One schedule's results, one entry per seed.
#[derive(Default)]
struct Row {
    name: String,
    metrics: Vec<Vec<f64>>,
    delta_m: Vec<f64>,
    seconds: Vec<f64>,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn run(args: &Args) -> Result<()> {
    let dataset = args.get("dataset").unwrap_or("mnist");
    let epochs: usize = args.parse_or("epochs", 3, "expected a count")?;
    let phase_steps: usize = args.parse_or("phase-steps", 25, "expected a count >= 1")?;
    let batch_size: usize = args.parse_or("batch-size", 64, "expected a count")?;
    let lr: f64 = args.parse_or("lr", 1e-3, "expected a number")?;
    let seeds: Vec<u64> = args
        .get("seeds")
        .unwrap_or("0,1,2")
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| Error::config("--seeds", s, "expected integers such as 0,1,2"))
        })
        .collect::<Result<_>>()?;
    let schedules: Vec<&str> = args
        .get("schedules")
        .unwrap_or(ALL)
        .split(',')
        .map(str::trim)
        .collect();
    let mut rows: Vec<Row> = schedules
        .iter()
        .map(|s| Row {
            name: s.to_string(),
            ..Row::default()
        })
        .collect();
    let mut baselines: Vec<Vec<f64>> = Vec::new();
    let mut runs = Vec::new();
    let mut task_names = Vec::new();
    for &seed in &seeds {
        let bench = load(args, dataset, seed)?;
        task_names = bench
            .tasks
            .iter()
            .map(|(t, m, _)| format!("{t} {m:?}"))
            .collect();
        for s in &schedules {
            setup(s, &bench, phase_steps, epochs)?; // a bad name fails before any training
        }
        let config = |mode, unfreeze| TrainerConfig {
            optimizer: OptimizerConfig::adam(lr),
            batch_size,
            seed,
            mode,
            unfreeze,
            ..Default::default()
        };
        let mut base = Vec::new();
        for k in 0..bench.tasks.len() {
            let (v, _, _) = train_run(
                &bench,
                &[k],
                seed,
                config(TrainingMode::Joint, None),
                "equal",
                epochs,
            )?;
            println!(
                "seed {seed} | single-task {} | {:?} {:.4}",
                bench.tasks[k].0, bench.tasks[k].1, v[0]
            );
            base.push(v[0]);
        }
        for (i, s) in schedules.iter().enumerate() {
            let (mode, unfreeze, strategy) = setup(s, &bench, phase_steps, epochs)?;
            let all: Vec<usize> = (0..bench.tasks.len()).collect();
            let (v, steps, seconds) =
                train_run(&bench, &all, seed, config(mode, unfreeze), strategy, epochs)?;
            let entries: Vec<(Metric, f64, f64)> = bench
                .tasks
                .iter()
                .zip(&v)
                .zip(&base)
                .map(|((t, m), b)| (t.1.clone(), *m, *b))
                .collect();
            let dm = delta_m(&entries).unwrap_or(f64::NAN);
            let shown: Vec<String> = bench
                .tasks
                .iter()
                .zip(&v)
                .map(|(t, m)| format!("{} {:?} {m:.4}", t.0, t.1))
                .collect();
            println!(
                "seed {seed} | {s} | {} | Delta-m {:+.2}% | {steps} steps, {seconds:.1} s",
                shown.join(", "),
                100.0 * dm
            );
            rows[i].metrics.push(v.clone());
            rows[i].delta_m.push(dm);
            rows[i].seconds.push(seconds);
            runs.push(serde_json::json!({"seed": seed, "schedule": s, "metrics": v.iter().map(|x| number(*x)).collect::<Vec<_>>(), "delta_m": number(dm), "steps": steps, "seconds": number(seconds)}));
        }
        baselines.push(base);
    }

    let metric_names = task_names;
    println!(
        "\n{dataset}, {epochs} epochs, seeds {seeds:?} (mean ± std)\n\n| schedule | {} | Delta-m % | seconds |\n|---|{}---|---|",
        metric_names.join(" | "),
        "---|".repeat(metric_names.len())
    );
    let per_task =
        |values: &[Vec<f64>], k: usize| mean_std(&values.iter().map(|v| v[k]).collect::<Vec<_>>());
    let cells = |values: &[Vec<f64>]| -> Vec<String> {
        (0..metric_names.len())
            .map(|k| {
                let (m, s) = per_task(values, k);
                format!("{m:.4} ± {s:.4}")
            })
            .collect()
    };
    println!(
        "| single-task baselines | {} | 0 | |",
        cells(&baselines).join(" | ")
    );
    let mut table = Vec::new();
    for Row {
        name,
        metrics: values,
        delta_m: dms,
        seconds: secs,
    } in &rows
    {
        let (dm, dm_sd) = mean_std(dms);
        let (sec, _) = mean_std(secs);
        println!(
            "| {name} | {} | {:+.2} ± {:.2} | {sec:.1} |",
            cells(values).join(" | "),
            100.0 * dm,
            100.0 * dm_sd
        );
        table.push(serde_json::json!({"schedule": name, "delta_m_mean": number(dm), "delta_m_std": number(dm_sd), "seconds_mean": number(sec),
            "metrics_mean": (0..metric_names.len()).map(|k| number(per_task(values, k).0)).collect::<Vec<_>>()}));
    }
    if let Some(path) = args.get("summary-json") {
        let json = serde_json::json!({
            "example": "compare_schedules",
            "dataset": dataset,
            "epochs": epochs,
            "seeds": seeds,
            "tasks": metric_names,
            "baselines": baselines,
            "runs": runs,
            "table": table,
        });
        write_json(path, &json)?;
        println!("summary written to {path}");
    }
    Ok(())
}

fn main() {
    main_with(
        USAGE,
        &[],
        &[
            "dataset",
            "schedules",
            "seeds",
            "epochs",
            "phase-steps",
            "batch-size",
            "lr",
            "train-limit",
            "test-limit",
            "data-dir",
            "fashion-dir",
            "mnist-dir",
            "summary-json",
        ],
        run,
    );
}
