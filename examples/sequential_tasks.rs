//! Sequential MNIST: each digit read as a sequence of its 28 rows (28 pixels per step) by a
//! recurrent encoder, with three tasks: the digit's class (cross-entropy), its value (MSE)
//! and its parity (cross-entropy).
//!
//! ```text
//! cargo run --release --example sequential_tasks -- --encoder gru
//! cargo run --release --example sequential_tasks -- --encoder lstm --bidirectional
//! ```

mod common;

use candle_mtl::data::load_mnist;
use candle_mtl::device::describe;
use candle_mtl::encoder::{
    CellKind, Recurrent, RecurrentConfig, TransformerConfig, TransformerEncoder,
};
use candle_mtl::prelude::*;
use candle_mtl::weighting::by_name;
use common::{digit_value_parity, locate_mnist, main_with, peak_memory_mib, Args};

const USAGE: &str = "sequential_tasks: MNIST read row by row; digit class, value and parity

USAGE: cargo run --release --example sequential_tasks -- [FLAGS]

  --data-dir DIR        MNIST IDX files (default: data/mnist when present, else downloaded
                        into $CANDLE_MTL_DATA/mnist; offline, the 1,000-digit test fixture)
  --encoder NAME        gru (default) | lstm | transformer
  --hidden N            hidden size per direction, or the Transformer's width (default 128;
                        64 for the Transformer)
  --layers N            stacked layers or Transformer blocks (default 1; 2 for the Transformer)
  --bidirectional       read the rows in both directions (recurrent encoders)
  --epochs N            training epochs (default 5)
  --batch-size N        batch size (default 64)
  --lr X                Adam learning rate (default 2e-3)
  --weighting NAME      any strategy (default fixed:1,0.1,1)
  --train-limit N       use only the first N training digits
  --seed N              seed (default 0)
  --cpu                 train on the CPU even when a GPU is available";

fn run(args: &Args) -> Result<()> {
    let epochs: usize = args.parse_or("epochs", 5, "expected a whole number of epochs")?;
    let batch_size: usize = args.parse_or("batch-size", 64, "expected a whole number >= 1")?;
    let lr: f64 = args.parse_or("lr", 2e-3, "expected a number such as 2e-3")?;
    let seed: u64 = args.parse_or("seed", 0, "expected a non-negative integer")?;
    let kind = args.get("encoder").unwrap_or("gru");
    let transformer = kind == "transformer";
    let hidden: usize = args.parse_or(
        "hidden",
        if transformer { 64 } else { 128 },
        "expected a whole number >= 1",
    )?;
    let layers: usize = args.parse_or(
        "layers",
        if transformer { 2 } else { 1 },
        "expected a whole number >= 1",
    )?;
    let train_limit: usize = args.parse_or("train-limit", usize::MAX, "expected a whole number")?;
    let cell = match kind {
        "gru" | "transformer" => CellKind::Gru,
        "lstm" => CellKind::Lstm,
        other => {
            return Err(Error::config(
                "--encoder",
                other,
                "expected gru, lstm or transformer",
            ))
        }
    };
    let weighting_name = args.get("weighting").unwrap_or("fixed:1,0.1,1");
    let weighting = by_name(weighting_name)?;
    let (dir, how) = locate_mnist(args.get("data-dir"))?;
    let mnist = load_mnist(&dir)?;
    let train = digit_value_parity(&mnist.train.take(train_limit))?;
    let test = digit_value_parity(&mnist.test)?;
    let device = best_device(args.flag("cpu"));
    let config = RecurrentConfig {
        cell,
        input_dim: 28,
        hidden,
        layers,
        bidirectional: args.flag("bidirectional"),
        ..Default::default()
    };
    println!(
        "data: {} ({how}): {} train / {} test digits as 28 steps of 28 pixels | device: {} | weighting: {weighting_name}",
        dir.display(),
        train.len(),
        test.len(),
        describe(&device)
    );
    let transformer_config = TransformerConfig {
        input_dim: 28,
        model_dim: hidden,
        heads: 4,
        layers,
        ff_dim: 2 * hidden,
        dropout_seed: seed,
        ..Default::default()
    };
    let model =
        MultiTaskModel::builder(&device, seed).encoder(|p| -> Result<Box<dyn SharedEncoder>> {
            Ok(if transformer {
                Box::new(TransformerEncoder::new(&transformer_config, p)?)
            } else {
                Box::new(Recurrent::new(&config, p)?)
            })
        })?;
    let width = if transformer {
        hidden
    } else {
        model_width(&config)
    };
    let encoder_name = if transformer {
        format!("{transformer_config:?}")
    } else {
        format!("{config:?}")
    };
    println!("encoder: {encoder_name}");
    let model = model
        .task(TaskSpec::classification("digit"), |p| {
            LinearHead::new(width, 10, p)
        })?
        .task(TaskSpec::regression("value"), |p| {
            LinearHead::new(width, 1, p)
        })?
        .task(TaskSpec::classification("parity"), |p| {
            LinearHead::new(width, 2, p)
        })?
        .build()?;
    let trainer_config = TrainerConfig {
        optimizer: OptimizerConfig::adam(lr),
        batch_size,
        seed,
        max_grad_norm: Some(5.0),
        ..Default::default()
    };
    let mut trainer = Trainer::new(model, weighting, trainer_config)?;
    let fit = trainer.fit(TaskData::Shared(&train), Some(TaskData::Shared(&test)), epochs, &mut |r| {
        let e = r.eval.as_ref();
        let m = |t: &str, metric| e.and_then(|e| e.task(t)).and_then(|t| t.metric(metric)).unwrap_or(f64::NAN);
        println!(
            "epoch {}/{epochs} | train loss digit {:.4} value {:.4} parity {:.4} | test digit {:.2}% value MAE {:.3} parity {:.2}% | {:.0} samples/s",
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
    let seconds: f64 = fit.epochs.iter().map(|e| e.seconds).sum();
    let samples: usize = fit.epochs.iter().map(|e| e.samples).sum();
    if let Some(eval) = fit.last().and_then(|e| e.eval.as_ref()) {
        let get = |t: &str, metric| {
            eval.task(t)
                .and_then(|t| t.metric(metric))
                .unwrap_or(f64::NAN)
        };
        println!(
            "final | {kind} | digit accuracy {:.2}% | value MAE {:.3} | parity accuracy {:.2}% | {:.0} samples/s | peak memory {}",
            100.0 * get("digit", Metric::Accuracy),
            get("value", Metric::Mae),
            100.0 * get("parity", Metric::Accuracy),
            samples as f64 / seconds.max(1e-9),
            peak_memory_mib().map_or_else(|| "n/a".into(), |m| format!("{m:.0} MiB"))
        );
    }
    Ok(())
}

fn model_width(config: &RecurrentConfig) -> usize {
    config.hidden * if config.bidirectional { 2 } else { 1 }
}

fn main() {
    main_with(
        USAGE,
        &["cpu", "bidirectional"],
        &[
            "data-dir",
            "encoder",
            "hidden",
            "layers",
            "epochs",
            "batch-size",
            "lr",
            "weighting",
            "train-limit",
            "seed",
        ],
        run,
    );
}
