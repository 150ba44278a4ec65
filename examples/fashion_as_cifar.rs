//! Writes Fashion-MNIST in the CIFAR-10 binary layout: a full-size stand-in for CIFAR-10 on
//! machines that cannot download it, so that `mnist_cifar` can be run (and timed) at scale
//! through the real CIFAR-10 reader.
//!
//! Each 28x28 grey image is padded to 32x32 and its channel repeated into R, G and B; the
//! first 50,000 training images fill `data_batch_1.bin` ... `data_batch_5.bin` (10,000 each),
//! the 10,000 test images `test_batch.bin`. The labels are Fashion-MNIST's ten classes.
//!
//! ```text
//! cargo run --release --example fashion_as_cifar -- data/fashion-mnist /tmp/cifar-standin
//! cargo run --release --example mnist_cifar -- --cifar-dir /tmp/cifar-standin
//! ```

use std::path::Path;

use candle_mtl::data::{
    load_mnist, write_cifar, CifarKind, ImageDataset, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES,
};
use candle_mtl::{Error, Result};

const PER_FILE: usize = 10_000;

fn to_rgb32(images: &ImageDataset) -> Result<ImageDataset> {
    images.pad_to(32, 32)?.grey_to_rgb()
}

fn write(images: &ImageDataset, range: std::ops::Range<usize>, path: &Path) -> Result<()> {
    let part = images.select(&range.collect::<Vec<_>>())?;
    let labels: Vec<u8> = part.labels().iter().map(|&l| l as u8).collect();
    write_cifar(path, CifarKind::Cifar10, part.pixels(), &labels, &[])
}

fn run(source: &str, target: &str) -> Result<()> {
    let fashion = load_mnist(source)?;
    let train = to_rgb32(&fashion.train)?;
    let test = to_rgb32(&fashion.test)?;
    if train.len() < PER_FILE * CIFAR10_TRAIN_FILES.len() || test.len() < PER_FILE {
        return Err(Error::config(
            "source",
            source,
            format!(
                "has {} training and {} test images; the CIFAR-10 layout needs 50,000 and 10,000",
                train.len(),
                test.len()
            ),
        ));
    }
    let dir = Path::new(target);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for (i, name) in CIFAR10_TRAIN_FILES.iter().enumerate() {
        write(&train, i * PER_FILE..(i + 1) * PER_FILE, &dir.join(name))?;
    }
    write(&test, 0..PER_FILE, &dir.join(CIFAR10_TEST_FILE))?;
    println!(
        "wrote {} CIFAR-10-format files ({} + {} images of 3x32x32) to {}",
        CIFAR10_TRAIN_FILES.len() + 1,
        PER_FILE * CIFAR10_TRAIN_FILES.len(),
        PER_FILE,
        dir.display()
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, target] = args.as_slice() else {
        eprintln!(
            "usage: cargo run --release --example fashion_as_cifar -- FASHION_MNIST_DIR OUT_DIR"
        );
        std::process::exit(2);
    };
    if let Err(e) = run(source, target) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
