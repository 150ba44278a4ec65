//! Bit-identical training on any number of threads: the same seed gives the same parameters
//! and losses with RAYON_NUM_THREADS = 1, 2 and 4, for a ConvNet (the fused convolution's
//! weight-gradient sums, at a batch larger and one smaller than the thread count), GRU and
//! bidirectional LSTM encoders, a Transformer with dropout, a ResNet (batch norm statistics
//! included), MMoE, cross-stitch and an MLP. Each run is a child process of this test binary
//! with its own thread count.

mod common;

use std::process::Command;

use candle_core::Device;
use candle_mtl::architecture::{CrossStitch, Mmoe, MmoeConfig};
use candle_mtl::encoder::{
    CellKind, Recurrent, RecurrentConfig, ResNet, ResNetConfig, TransformerConfig,
    TransformerEncoder,
};
use candle_mtl::params::ParamPath;
use candle_mtl::prelude::*;

const CHILD: &str = "CANDLE_MTL_DETERMINISM_CASE";
const CASES: [&str; 9] = [
    "convnet",
    "resnet",
    "convnet-batch-3",
    "gru",
    "lstm-bidirectional",
    "transformer",
    "mmoe",
    "cross-stitch",
    "mlp",
];

fn mlp(p: &ParamPath) -> Result<Mlp> {
    Mlp::new(
        &MlpConfig {
            input_dim: 784,
            hidden: vec![32],
            ..Default::default()
        },
        p,
    )
}

fn small_cnn(p: &ParamPath) -> Result<ConvNet> {
    ConvNet::new(
        &ConvNetConfig {
            channels: vec![4, 8],
            hidden: 32,
            ..Default::default()
        },
        p,
    )
}

fn model(case: &str) -> Result<MultiTaskModel> {
    let b = MultiTaskModel::builder(&Device::Cpu, 11);
    let (b, width) = match case {
        "convnet" | "convnet-batch-3" => (
            b.encoder(|p| {
                ConvNet::new(
                    &ConvNetConfig {
                        channels: vec![8, 16],
                        hidden: 32,
                        ..Default::default()
                    },
                    p,
                )
            })?,
            32,
        ),
        "gru" => (
            b.encoder(|p| {
                Recurrent::new(
                    &RecurrentConfig {
                        input_dim: 28,
                        hidden: 24,
                        ..Default::default()
                    },
                    p,
                )
            })?,
            24,
        ),
        "lstm-bidirectional" => (
            b.encoder(|p| {
                Recurrent::new(
                    &RecurrentConfig {
                        cell: CellKind::Lstm,
                        input_dim: 28,
                        hidden: 12,
                        bidirectional: true,
                        ..Default::default()
                    },
                    p,
                )
            })?,
            24,
        ),
        // With its default dropout (0.1), drawn from the encoder's seeded generator.
        "transformer" => (
            b.encoder(|p| {
                TransformerEncoder::new(
                    &TransformerConfig {
                        model_dim: 32,
                        heads: 4,
                        layers: 1,
                        ff_dim: 64,
                        ..Default::default()
                    },
                    p,
                )
            })?,
            32,
        ),
        "cross-stitch" => (b.encoder(|p| CrossStitch::new(2, p, small_cnn))?, 32),
        // Batch norm (fused op, per-channel sums) and residual blocks.
        "resnet" => (
            b.encoder(|p| ResNet::new(&ResNetConfig::small(1, 4), p))?,
            32,
        ),
        "mmoe" => (
            b.encoder(|p| {
                Mmoe::new(
                    &MmoeConfig {
                        experts: 3,
                        tasks: 2,
                        gate_input_dim: 784,
                    },
                    p,
                    mlp,
                )
            })?,
            32,
        ),
        _ => (b.encoder(mlp)?, 32),
    };
    b.task(TaskSpec::classification("digit"), |p| {
        LinearHead::new(width, 10, p)
    })?
    .task(TaskSpec::regression("value"), |p| {
        LinearHead::new(width, 1, p)
    })?
    .build()
}

/// Trains `case` for a few steps; a digest of every loss and every parameter bit.
fn digest(case: &str) -> Result<String> {
    let mnist = common::fixture();
    let data = common::cls_reg_dataset(&mnist.train.take(192));
    let batch_size = if case == "convnet-batch-3" { 3 } else { 32 };
    let mut trainer = Trainer::new(
        model(case)?,
        candle_mtl::weighting::by_name("equal")?,
        TrainerConfig {
            batch_size,
            seed: 5,
            ..Default::default()
        },
    )?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bits: u64| {
        for b in bits.to_le_bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let steps = if case == "convnet-batch-3" {
        12
    } else {
        usize::MAX
    };
    let mut done = 0;
    'epochs: for _ in 0..2 {
        let report = trainer.train_epoch(TaskData::Shared(&data))?;
        for l in &report.train_losses {
            eat(l.to_bits());
        }
        done += report.steps;
        if done >= steps {
            break 'epochs;
        }
    }
    // Parameters and buffers (batch norm statistics).
    for (_, var) in trainer.model().params().named_state() {
        for v in var.as_tensor().flatten_all()?.to_vec1::<f32>()? {
            eat(u64::from(v.to_bits()));
        }
    }
    Ok(format!("{hash:016x}"))
}

#[test]
fn the_same_seed_gives_the_same_bits_on_any_thread_count() {
    if let Ok(case) = std::env::var(CHILD) {
        let d = digest(&case).expect("child run");
        println!("DIGEST {case} {d}");
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    for case in CASES {
        let mut seen: Vec<(usize, String)> = Vec::new();
        for threads in [1, 2, 4] {
            let out = Command::new(&exe)
                .args([
                    "--exact",
                    "the_same_seed_gives_the_same_bits_on_any_thread_count",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CHILD, case)
                .env("RAYON_NUM_THREADS", threads.to_string())
                .output()
                .expect("child runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{case} at {threads} threads failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let d = stdout
                .lines()
                .find_map(|l| l.split_once(&format!("DIGEST {case} ")))
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no digest from {case}:\n{stdout}"))
                .to_string();
            seen.push((threads, d));
        }
        assert!(
            seen.iter().all(|(_, d)| *d == seen[0].1),
            "{case}: digests differ by thread count: {seen:?}"
        );
    }
}
