//! The data pipeline: reading Fashion-MNIST's 60,000 training images from gzip (when
//! `fashion-mnist/` is present under `$CANDLE_MTL_DATA_DIR`, or under the crate's `data/` when
//! that variable is unset), and preparing one batch of 64 (gather + normalise, and gather +
//! crop + flip + normalise).
//! Compare the batch times with `benches/train_step.rs` for the loader's share of a step.
//!
//! `cargo bench --bench data_pipeline`

use std::path::PathBuf;

use candle_core::Device;
use candle_mtl::data::{load_mnist, read_idx, Augment, Normalize, TensorDataset};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::SeedableRng;

fn fashion_dir() -> Option<PathBuf> {
    let root = std::env::var("CANDLE_MTL_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data"));
    let dir = root.join("fashion-mnist");
    dir.is_dir().then_some(dir)
}

fn bench(c: &mut Criterion) {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-1k");
    let (dir, n) = match fashion_dir() {
        Some(d) => (d, 60_000),
        None => {
            eprintln!("fashion-mnist not found; reading the 800-digit fixture instead");
            (fixture, 800)
        }
    };
    let mut group = c.benchmark_group("data");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n));
    group.bench_function("read_train_split_gz", |b| {
        b.iter(|| {
            let images = read_idx(dir.join("train-images-idx3-ubyte.gz")).expect("images");
            let labels = read_idx(dir.join("train-labels-idx1-ubyte.gz")).expect("labels");
            assert_eq!(images.dims[0], labels.dims[0]);
        })
    });
    let data = load_mnist(&dir).expect("dataset loads");
    let ds = TensorDataset::from_images(&data.train, Normalize::fashion_mnist())
        .and_then(|d| d.with_target("class", data.train.labels_tensor()?))
        .expect("dataset builds");
    let augmented = ds.clone().with_augment(vec![
        Augment::RandomCrop { padding: 4 },
        Augment::HorizontalFlip { probability: 0.5 },
    ]);
    let idx: Vec<u32> = (0..64u32)
        .map(|i| (i * 97) % data.train.len() as u32)
        .collect();
    group.throughput(Throughput::Elements(64));
    group.sample_size(50);
    group.bench_function("batch64_gather_normalise", |b| {
        b.iter(|| ds.batch(&idx, &Device::Cpu).expect("batch"))
    });
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    group.bench_function("batch64_gather_crop_flip_normalise", |b| {
        b.iter(|| {
            augmented
                .training_batch(&idx, &Device::Cpu, &mut rng)
                .expect("batch")
        })
    });
    group.finish();
}

criterion_group!(data_pipeline, bench);
criterion_main!(data_pipeline);
