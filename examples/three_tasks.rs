//! Three tasks with three different losses over one MLP encoder, on real MNIST digits:
//! - `digit`: the class (10 logits, cross-entropy);
//! - `value`: the digit as a number (1 output, mean squared error);
//! - `parity`: odd or even (2 log-probabilities from a log-softmax head, negative
//!   log-likelihood).
//!
//! The objective is a weighted sum of the three losses (`--weighting fixed:1,0.1,1` by
//! default: the value task's MSE starts about 30 times larger than the cross-entropies, so it
//! is scaled down), or any other strategy of the crate.
//!
//! ```text
//! cargo run --release --example three_tasks -- --data-dir data/mnist
//! ```

mod common;

use candle_mtl::data::load_mnist;
use candle_mtl::device::describe;
use candle_mtl::head::LogSoftmaxHead;
use candle_mtl::prelude::*;
use candle_mtl::train::TrainingMode;
use candle_mtl::weighting::by_name;
use common::{digit_value_parity, locate_mnist, main_with, peak_memory_mib, Args};

const USAGE: &str = "three_tasks: digit class (CE), digit value (MSE) and parity (NLL) from one MLP

USAGE: cargo run --release --example three_tasks -- [FLAGS]

  --data-dir DIR        MNIST IDX files (default: data/mnist when present, else downloaded
                        into $CANDLE_MTL_DATA/mnist; offline, the 1,000-digit test fixture)
  --epochs N            training epochs (default 5)
  --batch-size N        batch size (default 64)
  --lr X                Adam learning rate (default 1e-3)
  --hidden A,B          encoder widths (default 256,128)
  --weighting NAME      fixed:W_DIGIT,W_VALUE,W_PARITY (default fixed:1,0.1,1) or any strategy
  --parity-joins E      progressive training: parity joins at epoch E (counted from 0), the
                        other tasks train from the start; prints the old tasks' test metrics
                        before and after it joined (default weighting then inverse-loss)
  --seed N              seed (default 0)
  --cpu                 train on the CPU even when a GPU is available";

fn run(args: &Args) -> Result<()> {
    let epochs: usize = args.parse_or("epochs", 5, "expected a whole number of epochs")?;
    let batch_size: usize = args.parse_or("batch-size", 64, "expected a whole number >= 1")?;
    let lr: f64 = args.parse_or("lr", 1e-3, "expected a number such as 1e-3")?;
    let seed: u64 = args.parse_or("seed", 0, "expected a non-negative integer")?;
    let hidden = args
        .get("hidden")
        .unwrap_or("256,128")
        .split(',')
        .map(|w| {
            w.trim().parse::<usize>().map_err(|_| {
                Error::config(
                    "--hidden",
                    w,
                    "expected comma-separated widths such as 256,128",
                )
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    let width = *hidden
        .last()
        .ok_or_else(|| Error::config("--hidden", "", "needs at least one width"))?;
    let parity_joins: Option<usize> = match args.get("parity-joins") {
        None => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| Error::config("--parity-joins", v, "expected an epoch number"))?,
        ),
    };
    // Fixed weights are per task: with a task joining later, use a strategy that adapts.
    let default_weighting = if parity_joins.is_some() {
        "inverse-loss"
    } else {
        "fixed:1,0.1,1"
    };
    let weighting_name = args.get("weighting").unwrap_or(default_weighting);
    let weighting = by_name(weighting_name)?;
    let (dir, how) = locate_mnist(args.get("data-dir"))?;
    let mnist = load_mnist(&dir)?;
    let train = digit_value_parity(&mnist.train)?;
    let test = digit_value_parity(&mnist.test)?;
    let device = best_device(args.flag("cpu"));
    println!(
        "data: {} ({how}): {} train / {} test | MLP 784 -> {hidden:?} | device: {} | weighting: {weighting_name}",
        dir.display(),
        train.len(),
        test.len(),
        describe(&device)
    );
    let model = MultiTaskModel::builder(&device, seed)
        .encoder(|p| {
            Mlp::new(
                &MlpConfig {
                    input_dim: 784,
                    hidden: hidden.clone(),
                    ..Default::default()
                },
                p,
            )
        })?
        .task(TaskSpec::classification("digit"), |p| {
            LinearHead::new(width, 10, p)
        })?
        .task(TaskSpec::regression("value"), |p| {
            LinearHead::new(width, 1, p)
        })?
        .task(
            TaskSpec::classification("parity").with_loss(Loss::Nll),
            |p| Ok(LogSoftmaxHead::new(LinearHead::new(width, 2, p)?)),
        )?
        .build()?;
    let mode = match parity_joins {
        Some(epoch) => TrainingMode::Progressive(vec![("parity".into(), epoch)]),
        None => TrainingMode::Joint,
    };
    let config = TrainerConfig {
        optimizer: OptimizerConfig::adam(lr),
        batch_size,
        seed,
        mode,
        ..Default::default()
    };
    let mut trainer = Trainer::new(model, weighting, config)?;
    let fit = trainer.fit(TaskData::Shared(&train), Some(TaskData::Shared(&test)), epochs, &mut |r| {
        let e = r.eval.as_ref();
        let m = |t: &str, metric| e.and_then(|e| e.task(t)).and_then(|t| t.metric(metric)).unwrap_or(f64::NAN);
        println!(
            "epoch {}/{epochs} | train loss CE {:.4} MSE {:.4} NLL {:.4} | test digit {:.2}% value MAE {:.3} parity {:.2}% | {:.0} samples/s",
            r.epoch + 1,
            r.train_losses[0],
            r.train_losses[1],
            r.train_losses[2],
            100.0 * m("digit", Metric::Accuracy),
            m("value", Metric::Mae),
            100.0 * m("parity", Metric::Accuracy),
            r.samples_per_second()
        );
        Ok(())
    })?;
    if let Some(join) = parity_joins.filter(|&e| e >= 1 && e < fit.epochs.len()) {
        // The old tasks' test metrics just before parity joined and at the end.
        let metric = |epoch: usize, task: &str, m: Metric| {
            fit.epochs[epoch]
                .eval
                .as_ref()
                .and_then(|e| e.task(task))
                .and_then(|t| t.metric(m))
                .unwrap_or(f64::NAN)
        };
        let last = fit.epochs.len() - 1;
        println!(
            "\nprogressive: parity joined at epoch {}\n| old task | before parity joined (epoch {join}) | after (epoch {}) |\n|---|---|---|",
            join + 1,
            last + 1
        );
        println!(
            "| digit accuracy | {:.2}% | {:.2}% |",
            100.0 * metric(join - 1, "digit", Metric::Accuracy),
            100.0 * metric(last, "digit", Metric::Accuracy)
        );
        println!(
            "| value MAE | {:.3} | {:.3} |",
            metric(join - 1, "value", Metric::Mae),
            metric(last, "value", Metric::Mae)
        );
    }
    let seconds: f64 = fit.epochs.iter().map(|e| e.seconds).sum();
    let samples: usize = fit.epochs.iter().map(|e| e.samples).sum();
    if let Some(eval) = fit.last().and_then(|e| e.eval.as_ref()) {
        println!("\n| task | loss | test metric |\n|---|---|---|");
        for t in &eval.tasks {
            let (metric, value) = &t.metrics[0];
            println!(
                "| {} | {:.4} | {} {:.4} |",
                t.task,
                t.loss,
                metric.name(),
                value
            );
        }
    }
    println!(
        "{:.0} samples/s training | peak memory {}",
        samples as f64 / seconds.max(1e-9),
        peak_memory_mib().map_or_else(|| "n/a".into(), |m| format!("{m:.0} MiB"))
    );
    Ok(())
}

fn main() {
    main_with(
        USAGE,
        &["cpu"],
        &[
            "data-dir",
            "epochs",
            "batch-size",
            "lr",
            "hidden",
            "weighting",
            "seed",
            "parity-joins",
        ],
        run,
    );
}
