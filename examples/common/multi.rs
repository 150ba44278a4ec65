//! Pareto-MTL composites (Multi-MNIST, Multi-Fashion, Multi-(Fashion+MNIST)) for the
//! comparison examples.

use candle_mtl::data::{compose_pairs, load_mnist, ComposeConfig, ImageDataset, StandardDataset};
use candle_mtl::prelude::*;

use super::{locate_dataset, Args};

/// An MNIST-family dataset: from its flag (`--fashion-dir` / `--mnist-dir`), next to the crate,
/// or downloaded.
pub fn source(args: &Args, which: StandardDataset) -> Result<candle_mtl::data::Mnist> {
    let (flag, local) = match which {
        StandardDataset::FashionMnist => ("fashion-dir", "data/fashion-mnist"),
        _ => ("mnist-dir", "data/mnist"),
    };
    let (dir, how) = locate_dataset(which, args.get(flag), &[local], None)?;
    println!("{}: {} ({how})", which.name(), dir.display());
    load_mnist(dir)
}

/// `count` composites of a `left` and a `right` image on a 36x36 canvas, targets `left` and
/// `right` (the two classes).
pub fn composites(
    left: &ImageDataset,
    right: &ImageDataset,
    count: usize,
    same_source: bool,
    seed: u64,
) -> Result<TensorDataset> {
    let config = ComposeConfig {
        count,
        different_classes: same_source,
        seed,
        ..Default::default()
    };
    let c = compose_pairs(left, right, &config)?;
    let right_labels = candle_core::Tensor::from_slice(
        &c.right_labels,
        c.right_labels.len(),
        &candle_core::Device::Cpu,
    )?;
    TensorDataset::from_images(&c.images, Normalize::new(vec![0.1], vec![0.25])?)?
        .with_target("left", c.images.labels_tensor()?)?
        .with_target("right", right_labels)
}

/// The training and test composites of `dataset` (`multi-fashion`, `multi-mnist` or
/// `multi-fashion-mnist`), targets `left` and `right`.
pub fn multi_digits(
    args: &Args,
    dataset: &str,
    n_train: usize,
    n_test: usize,
    seed: u64,
) -> Result<(TensorDataset, TensorDataset)> {
    let (left, right, same) = match dataset {
        "multi-fashion" => {
            let f = source(args, StandardDataset::FashionMnist)?;
            ((f.train.clone(), f.test.clone()), (f.train, f.test), true)
        }
        "multi-mnist" => {
            let m = source(args, StandardDataset::Mnist)?;
            ((m.train.clone(), m.test.clone()), (m.train, m.test), true)
        }
        "multi-fashion-mnist" => {
            let f = source(args, StandardDataset::FashionMnist)?;
            let m = source(args, StandardDataset::Mnist)?;
            ((f.train, f.test), (m.train, m.test), false)
        }
        other => {
            return Err(Error::config(
                "--dataset",
                other,
                "expected multi-fashion, multi-mnist or multi-fashion-mnist",
            ))
        }
    };
    Ok((
        composites(&left.0, &right.0, n_train, same, seed)?,
        composites(&left.1, &right.1, n_test, same, seed + 1)?,
    ))
}
