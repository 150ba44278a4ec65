//! One training step of the `mnist_cls_reg` model (ConvNet conv 32 / conv 64 / linear 128,
//! a 10-way classification head and a regression head, Adam) on real MNIST digits from the
//! committed fixture:
//! - batch 64 and 256, one batch read by both tasks (single-input) and one batch per task
//!   (multi-input: 2 x the batch per step);
//! - loss-based weighting (equal, inverse-loss: one backward) against gradient-based
//!   strategies (MGDA-UB: representation gradients; MGDA, PCGrad, UPGrad: one backward per
//!   task through the shared parameters);
//! - the fast CPU ops against candle's reference ops (`ops::set_fast_cpu_ops(false)`).
//!
//! `cargo bench --bench train_step`; throughput is in samples/s ("elem/s"). Side-by-side
//! ratios from alternating runs: `cargo run --release --example throughput`.

use candle_core::Device;
use candle_mtl::data::{load_mnist, Batch};
use candle_mtl::ops;
use candle_mtl::prelude::*;
use candle_mtl::train::StepBatch;
use candle_mtl::weighting::by_name;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn trainer(weighting: Box<dyn TaskWeighting>) -> Result<Trainer> {
    trainer_with(weighting, TrainerConfig::default())
}

fn trainer_with(weighting: Box<dyn TaskWeighting>, config: TrainerConfig) -> Result<Trainer> {
    let model = MultiTaskModel::builder(&Device::Cpu, 0)
        .encoder(|p| ConvNet::new(&ConvNetConfig::default(), p))?
        .task(TaskSpec::classification("digit"), |p| {
            LinearHead::new(128, 10, p)
        })?
        .task(TaskSpec::regression("value"), |p| {
            LinearHead::new(128, 1, p)
        })?
        .build()?;
    Trainer::new(model, weighting, config)
}

fn bench(c: &mut Criterion) -> Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-1k");
    let mnist = load_mnist(dir)?;
    let data = TensorDataset::from_images(&mnist.train, Normalize::mnist())?
        .with_target("digit", mnist.train.labels_tensor()?)?
        .with_target("value", mnist.train.label_values_tensor()?)?;
    let batch = |start: usize, size: usize| -> Result<Batch> {
        let idx: Vec<u32> = (start..start + size).map(|i| i as u32).collect();
        data.batch(&idx, &Device::Cpu)
    };
    let mut group = c.benchmark_group("train_step");
    group.sample_size(20);

    for size in [64, 256] {
        let shared = StepBatch::Shared(batch(0, size)?);
        let per_task = StepBatch::PerTask(vec![batch(0, size)?, batch(size, size)?]);
        group.throughput(Throughput::Elements(size as u64));
        let mut t = trainer(by_name("equal")?)?;
        group.bench_function(format!("equal/single-input/batch{size}"), |b| {
            b.iter(|| t.train_step(&shared).expect("training step"));
        });
        group.throughput(Throughput::Elements(2 * size as u64));
        let multi = TrainerConfig {
            input_mode: InputMode::MultiInput,
            ..TrainerConfig::default()
        };
        let mut t = trainer_with(by_name("equal")?, multi)?;
        group.bench_function(format!("equal/multi-input/batch{size}x2"), |b| {
            b.iter(|| t.train_step(&per_task).expect("training step"));
        });
    }

    let shared = StepBatch::Shared(batch(0, 64)?);
    group.throughput(Throughput::Elements(64));
    for name in ["inverse-loss", "mgda-ub", "mgda", "pcgrad", "upgrad"] {
        let mut t = trainer(by_name(name)?)?;
        group.bench_function(format!("{name}/single-input/batch64"), |b| {
            b.iter(|| t.train_step(&shared).expect("training step"));
        });
    }
    let mut t = trainer(by_name("equal")?)?;
    group.bench_function("equal/single-input/batch64/reference-ops", |b| {
        ops::set_fast_cpu_ops(false);
        b.iter(|| t.train_step(&shared).expect("training step"));
        ops::set_fast_cpu_ops(true);
    });
    group.finish();
    Ok(())
}

fn benches(c: &mut Criterion) {
    if let Err(e) = bench(c) {
        eprintln!("train_step bench failed: {e}");
        std::process::exit(1);
    }
}

criterion_group!(train_step, benches);
criterion_main!(train_step);
