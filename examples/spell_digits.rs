//! MNIST digits as three tasks over one shared CNN: the class, the value, and the digit's
//! English name spelled letter by letter by a sequence-to-sequence head (a GRU decoder,
//! teacher-forced in training, greedy at evaluation).
//!
//! ```text
//! cargo run --release --example spell_digits -- --data-dir data/mnist --epochs 2
//! ```
//! prints each epoch's losses and samples/s, every task's metrics (accuracy; MAE; token and
//! whole-word accuracy of the spelling) and a few test digits with the words decoded for them.
//! Run with `--help` for the flags.

mod common;

use candle_core::{Device, Tensor};
use candle_mtl::data::{load_mnist, ImageDataset};
use candle_mtl::head::{GruDecoderHead, Seq2SeqConfig};
use candle_mtl::prelude::*;
use candle_mtl::task::SequenceCrossEntropy;
use common::runs::{fit_and_report, number};
use common::{build_trainer, cls_reg_dataset, locate_mnist, main_with, Args};

const USAGE: &str = "spell_digits: MNIST class + value + the digit's name spelled by a GRU decoder

USAGE: cargo run --release --example spell_digits -- [FLAGS]

  --data-dir DIR        MNIST IDX files; without it as mnist_cls_reg looks (data/mnist,
                        $CANDLE_MTL_DATA/mnist, a download, else the 1,000-digit fixture)
  --epochs N            training epochs (default 2)
  --weighting NAME      any name of candle_mtl::weighting::STRATEGIES (default equal)
  --train-limit N       use only the first N training digits
  --seed N              seed (default 0)
  --summary-json PATH   write every task's metrics and samples/s as JSON";

const NAMES: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];
/// The letters of the ten names, then bos, eos, pad.
const LETTERS: &str = "efghinorstuvwxz";
/// Longest name (5 letters) plus end-of-sequence.
const MAX_LEN: usize = 6;

fn spelling() -> Seq2SeqConfig {
    Seq2SeqConfig {
        hidden: 64,
        embedding: 16,
        ..Seq2SeqConfig::new(LETTERS.len() + 3, MAX_LEN)
    }
}

/// A digit's name as tokens: its letters, `eos`, then `pad` up to `MAX_LEN`.
fn tokens(digit: u32, config: &Seq2SeqConfig) -> Vec<u32> {
    let mut out: Vec<u32> = NAMES[digit as usize % 10]
        .chars()
        .filter_map(|c| LETTERS.find(c).map(|i| i as u32))
        .collect();
    out.push(config.eos);
    out.resize(MAX_LEN, config.pad);
    out
}

/// The letters of a decoded token row, up to its first `eos`.
fn word(row: &[u32], config: &Seq2SeqConfig) -> String {
    row.iter()
        .take_while(|&&t| t != config.eos)
        .map(|&t| LETTERS.chars().nth(t as usize).unwrap_or('?'))
        .collect()
}

fn dataset(images: &ImageDataset, config: &Seq2SeqConfig) -> Result<TensorDataset> {
    let words: Vec<u32> = images
        .labels()
        .iter()
        .flat_map(|&d| tokens(d, config))
        .collect();
    let n = images.len();
    cls_reg_dataset(images)?
        .with_target("name", Tensor::from_vec(words, (n, MAX_LEN), &Device::Cpu)?)
}

fn run(args: &Args) -> Result<()> {
    let epochs: usize = args.parse_or("epochs", 2, "expected a whole number of epochs")?;
    let seed: u64 = args.parse_or("seed", 0, "expected a non-negative integer")?;
    let train_limit: usize = args.parse_or("train-limit", usize::MAX, "expected a whole number")?;
    let weighting_name = args.get("weighting").unwrap_or("equal");
    let weighting = candle_mtl::weighting::by_name(weighting_name)?;
    let config = spelling();

    let (dir, how) = locate_mnist(args.get("data-dir"))?;
    let mnist = load_mnist(&dir)?;
    let train = dataset(&mnist.train.take(train_limit), &config)?;
    let test = dataset(&mnist.test, &config)?;
    println!(
        "data: {} ({how}): {} train / {} test digits | weighting: {} | seed {seed}",
        dir.display(),
        train.len(),
        test.len(),
        weighting.name()
    );
    let [c, h, w] = mnist.train.image_shape();
    let encoder = ConvNetConfig {
        in_channels: c,
        height: h,
        width: w,
        ..Default::default()
    };
    let model = MultiTaskModel::builder(&Device::Cpu, seed)
        .encoder(|p| ConvNet::new(&encoder, p))?
        .task(TaskSpec::classification("digit"), |p| {
            LinearHead::new(128, 10, p)
        })?
        .task(TaskSpec::regression("value"), |p| {
            LinearHead::new(128, 1, p)
        })?
        .task(
            TaskSpec::new("name", SequenceCrossEntropy::new(config.pad)),
            |p| GruDecoderHead::new(128, config.clone(), p),
        )?
        .build()?;
    let trainer_config = TrainerConfig {
        batch_size: 64,
        seed,
        ..Default::default()
    };
    let (mut trainer, train) = build_trainer(model, weighting, trainer_config, &train)?;
    let outcome = fit_and_report(&mut trainer, &train, &test, epochs)?;
    println!("{:.0} samples/s", outcome.samples_per_second);

    // A few test digits, spelled by greedy decoding without any target.
    let shown: Vec<u32> = (0..8).collect();
    let batch = test.batch(&shown, &Device::Cpu)?;
    let decoded = trainer.model().predict_tasks(&batch.inputs, &["name"])?;
    let names = match decoded.first() {
        Some((_, logits)) => logits.argmax(2)?.to_vec2::<u32>()?,
        None => Vec::new(),
    };
    let labels = mnist.test.labels();
    for (i, row) in names.iter().enumerate() {
        println!("digit {} -> \"{}\"", labels[i], word(row, &config));
    }
    if let Some(path) = args.get("summary-json") {
        outcome.write_summary(
            path,
            serde_json::json!({"weighting": weighting_name, "epochs": number(epochs as f64)}),
            &trainer,
        )?;
    }
    Ok(())
}

fn main() {
    main_with(
        USAGE,
        &[],
        &[
            "data-dir",
            "epochs",
            "weighting",
            "train-limit",
            "seed",
            "summary-json",
        ],
        run,
    );
}
