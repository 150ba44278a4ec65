//! MNIST class + value + an adversarial reconstruction of the image, over one shared CNN.
//!
//! The third task's head generates the 28x28 image back from the shared representation and
//! has a discriminator of its own, trained by alternating steps: the discriminator learns to
//! tell real digits from reconstructions (its own Adam), the generator is trained on the
//! reconstruction error plus how well it fools the discriminator, weighed by the trainer like
//! the other two tasks.
//!
//! ```text
//! cargo run --release --example adversarial_reconstruction -- --data-dir data/mnist --epochs 2 \
//!     --png reconstructions.png
//! ```
//! prints every task's metrics and samples/s, and writes a PNG grid: 16 test digits on the
//! top row, their reconstructions below. `--adversarial 0` trains on the reconstruction error
//! alone, for comparison. Run with `--help` for the flags.

mod common;

use candle_core::{Device, Tensor};
use candle_mtl::data::{load_mnist, ImageDataset};
use candle_mtl::head::{AdversarialConfig, AdversarialHead, AdversarialLink, AdversarialLoss};
use candle_mtl::prelude::*;
use common::runs::{fit_and_report, number};
use common::{build_trainer, cls_reg_dataset, locate_mnist, main_with, Args};

const USAGE: &str = "adversarial_reconstruction: MNIST class + value + adversarial reconstruction

USAGE: cargo run --release --example adversarial_reconstruction -- [FLAGS]

  --data-dir DIR        MNIST IDX files; without it as mnist_cls_reg looks (data/mnist,
                        $CANDLE_MTL_DATA/mnist, a download, else the 1,000-digit fixture)
  --epochs N            training epochs (default 2)
  --adversarial W       weight of the adversarial term in the reconstruction loss (default 0.05;
                        0: reconstruction error only)
  --weighting NAME      any name of candle_mtl::weighting::STRATEGIES (default equal)
  --train-limit N       use only the first N training digits
  --seed N              seed (default 0)
  --png PATH            write 16 test digits and their reconstructions as a PNG grid
  --summary-json PATH   write every task's metrics and samples/s as JSON";

/// Pixels in [0, 1], flattened: the reconstruction target.
fn dataset(images: &ImageDataset) -> Result<TensorDataset> {
    let pixels: Vec<f32> = images
        .pixels()
        .iter()
        .map(|&p| f32::from(p) / 255.0)
        .collect();
    let n = images.len();
    let size = pixels.len() / n.max(1);
    cls_reg_dataset(images)?
        .with_target("image", Tensor::from_vec(pixels, (n, size), &Device::Cpu)?)
}

/// Originals on the top row, reconstructions below, 28x28 each.
fn write_grid(
    path: &str,
    originals: &[Vec<f32>],
    generated: &[Vec<f32>],
    side: usize,
) -> Result<()> {
    let cols = originals.len();
    let (w, h) = (cols * side, 2 * side);
    let mut buf = vec![0u8; w * h];
    for (row, images) in [originals, generated].iter().enumerate() {
        for (c, img) in images.iter().enumerate() {
            for (i, v) in img.iter().enumerate() {
                let (y, x) = (row * side + i / side, c * side + i % side);
                buf[y * w + x] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    let image = image::GrayImage::from_raw(w as u32, h as u32, buf)
        .ok_or_else(|| Error::config("--png", path, "could not assemble the grid"))?;
    image
        .save(path)
        .map_err(|e| Error::config("--png", path, e.to_string()))
}

fn run(args: &Args) -> Result<()> {
    let epochs: usize = args.parse_or("epochs", 2, "expected a whole number of epochs")?;
    let adversarial: f64 = args.parse_or("adversarial", 0.05, "expected a number >= 0")?;
    let seed: u64 = args.parse_or("seed", 0, "expected a non-negative integer")?;
    let train_limit: usize = args.parse_or("train-limit", usize::MAX, "expected a whole number")?;
    let weighting_name = args.get("weighting").unwrap_or("equal");
    let weighting = candle_mtl::weighting::by_name(weighting_name)?;

    let (dir, how) = locate_mnist(args.get("data-dir"))?;
    let mnist = load_mnist(&dir)?;
    let train = dataset(&mnist.train.take(train_limit))?;
    let test = dataset(&mnist.test)?;
    let [c, h, w] = mnist.train.image_shape();
    println!(
        "data: {} ({how}): {} train / {} test digits | weighting: {} | adversarial weight \
         {adversarial} | seed {seed}",
        dir.display(),
        train.len(),
        test.len(),
        weighting.name()
    );
    let encoder = ConvNetConfig {
        in_channels: c,
        height: h,
        width: w,
        ..Default::default()
    };
    let link = AdversarialLink::new();
    let model = MultiTaskModel::builder(&Device::Cpu, seed)
        .encoder(|p| ConvNet::new(&encoder, p))?
        .task(TaskSpec::classification("digit"), |p| {
            LinearHead::new(128, 10, p)
        })?
        .task(TaskSpec::regression("value"), |p| {
            LinearHead::new(128, 1, p)
        })?
        .task(
            TaskSpec::new("image", AdversarialLoss::new(&link, 1.0, adversarial)?),
            |p| AdversarialHead::new(128, &AdversarialConfig::new(c * h * w), &link, p),
        )?
        .build()?;
    let config = TrainerConfig {
        batch_size: 64,
        seed,
        ..Default::default()
    };
    let (mut trainer, train) = build_trainer(model, weighting, config, &train)?;
    let outcome = fit_and_report(&mut trainer, &train, &test, epochs)?;
    println!("{:.0} samples/s", outcome.samples_per_second);

    if let Some(path) = args.get("png") {
        let shown: Vec<u32> = (0..16.min(test.len() as u32)).collect();
        let batch = test.batch(&shown, &Device::Cpu)?;
        let generated = trainer.model().predict_tasks(&batch.inputs, &["image"])?;
        let generated = match generated.first() {
            Some((_, t)) => t.to_vec2::<f32>()?,
            None => Vec::new(),
        };
        let originals = batch
            .target("image")
            .map(|t| t.to_vec2::<f32>())
            .transpose()?
            .unwrap_or_default();
        write_grid(path, &originals, &generated, w)?;
        println!(
            "wrote {path}: {} test digits (top) and their reconstructions",
            shown.len()
        );
    }
    if let Some(path) = args.get("summary-json") {
        outcome.write_summary(
            path,
            serde_json::json!({"weighting": weighting_name, "adversarial": number(adversarial)}),
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
            "adversarial",
            "weighting",
            "train-limit",
            "seed",
            "png",
            "summary-json",
        ],
        run,
    );
}
