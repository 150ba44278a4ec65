//! Writes an IDX dataset (MNIST, Fashion-MNIST) as PNG files plus CSV manifests, the layout
//! `from_csv` reads: a folder of images and a table with one column per task.
//!
//! ```text
//! cargo run --release --example export_manifest -- --data-dir data/fashion-mnist --out data/fashion-png
//! cargo run --release --example from_csv -- --manifest data/fashion-png/train.csv --test-manifest data/fashion-png/test.csv
//! ```
//! Each manifest has the columns `path,class,ink`: `class` the label, `ink` the image's mean
//! brightness in `[0, 1]` (a regression task); with `--missing F`, a seeded fraction `F` of
//! the training rows leaves `class` empty (a partially labelled task).

mod common;

use std::fmt::Write as _;
use std::path::Path;

use candle_mtl::data::{load_mnist, ImageDataset};
use candle_mtl::Result;
use common::{main_with, Args};
use rand::{Rng, SeedableRng};

const USAGE: &str = "export_manifest: an IDX dataset as PNG files and CSV manifests

USAGE: cargo run --release --example export_manifest -- --data-dir DIR --out DIR [FLAGS]

  --data-dir DIR     the four IDX files of MNIST or Fashion-MNIST (raw or .gz)
  --out DIR          where train.csv, test.csv and the images/ folder are written
  --missing F        fraction of training rows without a class label (default 0)
  --limit N          export only the first N images of each split";

fn export(
    images: &ImageDataset,
    out: &Path,
    split: &str,
    missing: f64,
    limit: usize,
) -> Result<usize> {
    let [_, h, w] = images.image_shape();
    let folder = out.join("images").join(split);
    std::fs::create_dir_all(&folder).map_err(|e| candle_mtl::Error::io(&folder, e))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(if split == "train" { 1 } else { 2 });
    let mut csv = String::from("path,class,ink\n");
    let n = images.len().min(limit);
    for i in 0..n {
        let pixels = &images.pixels()[i * h * w..(i + 1) * h * w];
        let file = folder.join(format!("{i:05}.png"));
        image::GrayImage::from_raw(w as u32, h as u32, pixels.to_vec())
            .ok_or_else(|| candle_mtl::Error::malformed(&file, "pixel count"))?
            .save(&file)
            .map_err(|e| candle_mtl::Error::malformed(&file, e.to_string()))?;
        let ink = pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / (255.0 * (h * w) as f64);
        let class = if rng.random::<f64>() < missing {
            String::new()
        } else {
            images.labels()[i].to_string()
        };
        let _ = writeln!(csv, "images/{split}/{i:05}.png,{class},{ink:.5}");
    }
    let path = out.join(format!("{split}.csv"));
    std::fs::write(&path, csv).map_err(|e| candle_mtl::Error::io(&path, e))?;
    Ok(n)
}

fn run(args: &Args) -> Result<()> {
    let data = args.get("data-dir").ok_or_else(|| {
        candle_mtl::Error::config("--data-dir", "missing", "give the IDX files' folder")
    })?;
    let out =
        Path::new(args.get("out").ok_or_else(|| {
            candle_mtl::Error::config("--out", "missing", "give the output folder")
        })?);
    let missing: f64 = args.parse_or("missing", 0.0, "expected a fraction in [0, 1]")?;
    let limit: usize = args.parse_or("limit", usize::MAX, "expected a whole number")?;
    let ds = load_mnist(data)?;
    let train = export(&ds.train, out, "train", missing, limit)?;
    let test = export(&ds.test, out, "test", 0.0, limit)?;
    println!(
        "wrote {train} training and {test} test images with {}/train.csv and test.csv",
        out.display()
    );
    Ok(())
}

fn main() {
    main_with(USAGE, &[], &["data-dir", "out", "missing", "limit"], run);
}
