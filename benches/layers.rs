//! Each layer of the seed CNN at batch 64, forward and forward + backward, with the crate's
//! fast CPU ops and with candle's reference ops; and the f32 gemm the ops are built on.
//!
//! `cargo bench --bench layers`; the fast/reference ratio of a layer is the lever it gives.

use candle_core::{Device, Tensor, Var};
use candle_mtl::ops::{self, ConvOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

type Layer = fn(&[Tensor]) -> candle_core::Result<Tensor>;

/// A layer of the seed model: its inputs' shapes, whether the first input is data (no
/// gradient), and its forward pass.
struct Case {
    name: &'static str,
    shapes: Vec<Vec<usize>>,
    data_input: bool,
    flops: f64,
    forward: Layer,
}

fn block(xs: &[Tensor]) -> candle_core::Result<Tensor> {
    let options = ConvOptions {
        padding: 1,
        stride: 1,
        relu: true,
        pool: Some(2),
    };
    ops::conv2d(&xs[0], &xs[1], &xs[2], options).map_err(|e| candle_core::Error::Msg(e.to_string()))
}

fn linear_relu(xs: &[Tensor]) -> candle_core::Result<Tensor> {
    xs[0].matmul(&xs[1].t()?)?.broadcast_add(&xs[2])?.relu()
}

fn cases() -> Vec<Case> {
    let b = 64;
    vec![
        Case {
            name: "conv0_block",
            shapes: vec![vec![b, 1, 28, 28], vec![32, 1, 3, 3], vec![32]],
            data_input: true,
            flops: 2.0 * (b * 32 * 9 * 784) as f64,
            forward: block,
        },
        Case {
            name: "conv1_block",
            shapes: vec![vec![b, 32, 14, 14], vec![64, 32, 3, 3], vec![64]],
            data_input: false,
            flops: 2.0 * (b * 64 * 288 * 196) as f64,
            forward: block,
        },
        Case {
            name: "fc",
            shapes: vec![vec![b, 3136], vec![128, 3136], vec![128]],
            data_input: false,
            flops: 2.0 * (b * 3136 * 128) as f64,
            forward: linear_relu,
        },
    ]
}

fn bench(c: &mut Criterion) -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("layers");
    group.sample_size(20);
    for case in cases() {
        let vars = case
            .shapes
            .iter()
            .map(|s| Var::randn(0f32, 0.5, s.as_slice(), &dev))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let inputs: Vec<Tensor> = vars
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i == 0 && case.data_input {
                    v.as_tensor().detach()
                } else {
                    v.as_tensor().clone()
                }
            })
            .collect();
        for fast in [true, false] {
            let ops_name = if fast { "fast" } else { "reference" };
            group.throughput(Throughput::Elements(case.flops as u64));
            group.bench_function(
                BenchmarkId::new(format!("{}/forward", case.name), ops_name),
                |bch| {
                    ops::set_fast_cpu_ops(fast);
                    bch.iter(|| (case.forward)(&inputs).expect("forward"));
                    ops::set_fast_cpu_ops(true);
                },
            );
            // The backward of a layer costs the forward's FLOPs once per gradient taken.
            let grads = if case.data_input { 2.0 } else { 3.0 };
            group.throughput(Throughput::Elements((case.flops * grads) as u64));
            group.bench_function(
                BenchmarkId::new(format!("{}/forward+backward", case.name), ops_name),
                |bch| {
                    ops::set_fast_cpu_ops(fast);
                    bch.iter(|| {
                        let y = (case.forward)(&inputs).expect("forward");
                        y.sum_all().and_then(|s| s.backward()).expect("backward")
                    });
                    ops::set_fast_cpu_ops(true);
                },
            );
        }
    }
    // The machine's f32 gemm through candle: the ceiling of every op above.
    for n in [256usize, 1024] {
        let a = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
        group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        group.bench_function(BenchmarkId::new("gemm", n), |bch| {
            bch.iter(|| a.matmul(&b).expect("matmul"))
        });
    }
    group.finish();
    Ok(())
}

fn benches(c: &mut Criterion) {
    if let Err(e) = bench(c) {
        eprintln!("layers bench failed: {e}");
        std::process::exit(1);
    }
}

criterion_group!(layers, benches);
criterion_main!(layers);
