//! Cost of each weighting strategy's decision for K in {2, 5, 10} tasks and d = 100,000 shared
//! parameters (per-task gradients given, as the trainer hands them over; the Gramian is
//! recomputed each time, as in a training step), and of the solvers alone on a K = 10 Gramian.
//!
//! `cargo bench --bench weighting`

use candle_core::{Device, Tensor};
use candle_mtl::weighting::gradient_based::{
    AlignedMtl, CaGrad, DualProj, FairGrad, GramianWeighting, Imtlg, Mgda, MgdaSolver, UPGrad,
};
use candle_mtl::weighting::{
    by_name, GradientSource, InputMode, StepInput, TaskGradients, WeightingSetup, STRATEGIES,
};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn random_matrix(k: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..k * d)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 20_000) as f32 / 10_000.0 - 1.0
        })
        .collect()
}

fn decide(c: &mut Criterion) {
    let d = 100_000;
    let mut group = c.benchmark_group("decide_d1e5");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(1));
    for k in [2usize, 5, 10] {
        let matrix =
            Tensor::from_vec(random_matrix(k, d, k as u64), (k, d), &Device::Cpu).expect("matrix");
        let losses: Vec<f64> = (0..k).map(|i| 1.0 + i as f64 * 0.1).collect();
        let setup = WeightingSetup {
            task_names: (0..k).map(|i| format!("t{i}")).collect(),
            gradient_source: Some(GradientSource::SharedParameters),
            input_mode: InputMode::SingleInput,
            batches_per_step: 1,
        };
        for (name, _) in STRATEGIES {
            let Ok(mut s) = by_name(name) else { continue };
            let needs = s.needs();
            if needs.min_tasks > k || needs.batches_per_step > 1 || s.prepare(&setup).is_err() {
                continue;
            }
            group.bench_with_input(BenchmarkId::new(*name, k), &k, |b, _| {
                b.iter(|| {
                    let g = TaskGradients::new(GradientSource::SharedParameters, matrix.clone())
                        .expect("gradients");
                    let input = StepInput {
                        step: 0,
                        epoch: 0,
                        losses: &losses,
                        gradients: Some(&g),
                        second_gradients: None,
                    };
                    s.decide(&input).expect("decision")
                })
            });
        }
    }
    group.finish();
}

fn solvers(c: &mut Criterion) {
    let k = 10;
    let rows: Vec<Vec<f64>> = random_matrix(k, 50, 7)
        .chunks(50)
        .map(|r| r.iter().map(|x| f64::from(*x)).collect())
        .collect();
    let gram = candle_mtl::solvers::matrix::gramian(&rows).expect("gramian");
    let mut group = c.benchmark_group("solver_k10");
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(1));
    let methods: Vec<(&str, Box<dyn GramianWeighting>)> = vec![
        ("mgda_frank_wolfe", Box::new(Mgda::default())),
        (
            "mgda_exact",
            Box::new(Mgda {
                solver: MgdaSolver::Exact,
                ..Mgda::default()
            }),
        ),
        ("upgrad", Box::new(UPGrad::default())),
        ("dualproj", Box::new(DualProj::default())),
        ("cagrad", Box::new(CaGrad::default())),
        ("imtl_g", Box::new(Imtlg)),
        ("aligned_mtl", Box::new(AlignedMtl::default())),
        ("fairgrad", Box::new(FairGrad::default())),
    ];
    for (name, m) in &methods {
        group.bench_function(*name, |b| b.iter(|| m.weights(&gram).expect("weights")));
    }
    group.finish();
}

criterion_group!(weighting, solvers, decide);
criterion_main!(weighting);
