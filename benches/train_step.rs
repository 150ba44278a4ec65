//! One training step of the `mnist_cls_reg` model (ConvNet conv 32 / conv 64 / linear 128,
//! a 10-way classification head and a regression head) on real MNIST digits from the committed
//! fixture, at batch 64, with loss-based and gradient-based weighting.
//!
//! `cargo bench --bench train_step`; throughput is reported in samples/s.

use candle_core::Device;
use candle_mtl::data::load_mnist;
use candle_mtl::prelude::*;
use candle_mtl::train::StepBatch;
use candle_mtl::weighting::by_name;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn trainer(weighting: Box<dyn TaskWeighting>) -> Result<Trainer> {
    let model = MultiTaskModel::builder(&Device::Cpu, 0)
        .encoder(|p| ConvNet::new(&ConvNetConfig::default(), p))?
        .task(TaskSpec::classification("digit"), |p| {
            LinearHead::new(128, 10, p)
        })?
        .task(TaskSpec::regression("value"), |p| {
            LinearHead::new(128, 1, p)
        })?
        .build()?;
    Trainer::new(model, weighting, TrainerConfig::default())
}

fn bench(c: &mut Criterion) -> Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-1k");
    let mnist = load_mnist(dir)?;
    let data = TensorDataset::from_images(&mnist.train, Normalize::mnist())?
        .with_target("digit", mnist.train.labels_tensor()?)?
        .with_target("value", mnist.train.label_values_tensor()?)?;
    let batch_size = 64;
    let batch =
        StepBatch::Shared(data.batch(&(0..batch_size as u32).collect::<Vec<_>>(), &Device::Cpu)?);
    let mut group = c.benchmark_group("train_step");
    group.throughput(Throughput::Elements(batch_size as u64));
    group.sample_size(20);
    // Loss-based (one backward), representation gradients (a backward per task through the
    // heads only, then one encoder backward) and shared-parameter gradients (one full backward
    // per task).
    for name in [
        "equal",
        "inverse-loss",
        "mgda-ub",
        "mgda",
        "pcgrad",
        "upgrad",
    ] {
        let mut t = trainer(by_name(name)?)?;
        group.bench_function(format!("{name}/batch64"), |b| {
            b.iter(|| t.train_step(&batch).expect("training step"));
        });
    }
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
