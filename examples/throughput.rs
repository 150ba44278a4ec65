//! Training speed of the seed CNN (conv 1->32, pool, conv 32->64, pool, linear 3136->128,
//! a 10-way classification head and a regression head; Adam, batch 64) on MNIST digits.
//!
//! ```text
//! cargo run --release --example throughput
//! RAYON_NUM_THREADS=1 cargo run --release --example throughput -- --rounds 7
//! ```
//! Runs several variants of the same training step in alternating rounds, forwards and
//! backwards in turn (so that a noisy machine slows them alike) and prints samples/s per round and the ratios' min/median/max:
//! - `trainer`: `Trainer::train_step` with the fast CPU ops (`candle_mtl::ops`);
//! - `hand`: a minimal hand-written candle loop of the same model, the same ops and the same
//!   Adam (`candle_mtl::optim`), no trainer: the library's overhead is `hand / trainer`;
//! - `hand-adamw`: the same loop with candle-nn's `AdamW` (weight decay 0) instead;
//! - `reference`: the trainer with the fast ops switched off (candle's own conv and pool);
//! - `multi`: the trainer on a multi-input step (each task its own batch of the same size);
//! - `gradient`: the trainer with a gradient-based strategy (`--gradient-weighting`, default
//!   upgrad: one backward per task);
//! - `frozen-encoder`: the trainer with the encoder frozen (only the heads learn).
//!
//! It also measures the machine's f32 gemm peak (candle's matmul, 1024^3), counts the gemm FLOPs
//! of each variant's step and prints the achieved GFLOP/s; `--epoch` times one full epoch through `Trainer::fit`
//! and reports the process's peak memory. `--json PATH` writes every number.

mod common;

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_mtl::data::{load_mnist, Batch, TensorDataset};
use candle_mtl::ops::{self, ConvOptions};
use candle_mtl::prelude::*;
use candle_mtl::train::StepBatch;
use candle_mtl::weighting::by_name;
use candle_nn::Optimizer;
use common::runs::{number, write_json};
use common::{main_with, peak_memory_mib, Args};

const USAGE: &str = "throughput: training speed of the seed CNN, alternating variants

USAGE: cargo run --release --example throughput -- [FLAGS]

  --data-dir DIR        MNIST IDX files (default data/mnist when present, else the 1,000-digit
                        test fixture)
  --batch-size N        batch size (default 64)
  --steps N             timed steps per variant and round (default 20)
  --warmup N            untimed steps before the rounds (default 3)
  --rounds N            alternating rounds (default 5)
  --variants LIST       comma-separated: trainer, hand, hand-adamw, reference, multi, gradient,
                        frozen-encoder
                        (default trainer,hand,reference)
  --gradient-weighting NAME   strategy of the `gradient` variant (default upgrad)
  --epoch               also time one full epoch through Trainer::fit, with peak memory
  --cuda                run on the first CUDA GPU (needs --features cuda)
  --skip-peak           do not measure the gemm peak (for instruction counts of the steps alone)
  --json PATH           write the measurements as JSON
  -h, --help            this text";

/// FLOPs of the seed model at batch `b`, two per multiply-add, gemm work only: elementwise
/// work (bias, ReLU, pooling, losses, Adam) is left out.
struct StepFlops {
    forward: f64,
    /// Weight gradients of every encoder layer, input gradients of all but the first
    /// convolution (its input is data).
    encoder_backward: f64,
    /// The heads' weight gradients and the gradient into the representation.
    heads_backward: f64,
}

impl StepFlops {
    fn new(b: usize) -> Self {
        let conv0 = (b * 32 * 9 * 28 * 28) as f64;
        let conv1 = (b * 64 * (32 * 9) * 14 * 14) as f64;
        let fc = (b * 3136 * 128) as f64;
        let heads = (b * 128 * 11) as f64;
        Self {
            forward: 2.0 * (conv0 + conv1 + fc + heads),
            encoder_backward: 2.0 * ((conv0 + conv1 + fc) + (conv1 + fc)),
            heads_backward: 2.0 * (2.0 * heads),
        }
    }

    /// One forward and one backward pass.
    fn step(&self) -> f64 {
        self.forward + self.encoder_backward + self.heads_backward
    }
}

/// Best GFLOP/s of candle's f32 matmul on `n x n` matrices over ten repetitions.
fn gemm_peak(n: usize, device: &Device) -> candle_mtl::Result<f64> {
    let a = Tensor::randn(0f32, 1.0, (n, n), device)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)?;
    let mut best = f64::INFINITY;
    for _ in 0..10 {
        let t = Instant::now();
        let c = a.matmul(&b)?;
        c.sum_all()?.to_scalar::<f32>()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n * n * n) as f64 / best / 1e9)
}

fn model(device: &Device) -> candle_mtl::Result<MultiTaskModel> {
    MultiTaskModel::builder(device, 0)
        .encoder(|p| ConvNet::new(&ConvNetConfig::default(), p))?
        .task(TaskSpec::classification("digit"), |p| {
            LinearHead::new(128, 10, p)
        })?
        .task(TaskSpec::regression("value"), |p| {
            LinearHead::new(128, 1, p)
        })?
        .build()
}

fn trainer(device: &Device, weighting: &str) -> candle_mtl::Result<Trainer> {
    Trainer::new(
        model(device)?,
        by_name(weighting)?,
        TrainerConfig::default(),
    )
}

/// The trainer on one batch per task (multi-input mode).
fn multi_input_trainer(device: &Device) -> candle_mtl::Result<Trainer> {
    let config = TrainerConfig {
        input_mode: InputMode::MultiInput,
        ..TrainerConfig::default()
    };
    Trainer::new(model(device)?, by_name("equal")?, config)
}

/// The trainer with the encoder frozen: only the heads learn, and backward stops at them.
fn frozen_encoder_trainer(device: &Device) -> candle_mtl::Result<Trainer> {
    let model = model(device)?;
    model.freeze(&candle_mtl::model::Component::Encoder)?;
    Trainer::new(model, by_name("equal")?, TrainerConfig::default())
}

/// The same model written directly against candle: parameters as `Var`s, the crate's ops
/// (conv + pool, linear), candle-nn's losses, the crate's Adam or candle-nn's AdamW.
struct HandLoop {
    vars: Vec<Var>,
    opt: HandOptimizer,
}

/// The hand-written loop's optimiser: the crate's Adam (the same update as the trainer's), or
/// candle-nn's AdamW with weight decay 0 (what a plain candle program would use).
enum HandOptimizer {
    Crate(candle_mtl::optim::Optimizer),
    CandleNn(candle_nn::AdamW),
}

impl HandLoop {
    fn new(device: &Device, candle_nn_adamw: bool) -> candle_mtl::Result<Self> {
        let shapes: [&[usize]; 10] = [
            &[32, 1, 3, 3],
            &[32],
            &[64, 32, 3, 3],
            &[64],
            &[128, 3136],
            &[128],
            &[10, 128],
            &[10],
            &[1, 128],
            &[1],
        ];
        let fan_in = [9, 9, 288, 288, 3136, 3136, 128, 128, 128, 128];
        let vars = shapes
            .iter()
            .zip(fan_in)
            .map(|(s, f)| {
                let bound = 1.0 / (f as f64).sqrt();
                Var::rand(-bound as f32, bound as f32, *s, device)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let opt = if candle_nn_adamw {
            let params = candle_nn::ParamsAdamW {
                lr: 1e-3,
                weight_decay: 0.0,
                ..Default::default()
            };
            HandOptimizer::CandleNn(candle_nn::AdamW::new(vars.clone(), params)?)
        } else {
            let named = vars
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("p{i}"), v.clone()))
                .collect();
            HandOptimizer::Crate(candle_mtl::optim::Optimizer::new(
                OptimizerConfig::adam(1e-3),
                named,
            )?)
        };
        Ok(Self { vars, opt })
    }

    fn step(&mut self, batch: &Batch) -> candle_mtl::Result<()> {
        let v: Vec<&Tensor> = self.vars.iter().map(|v| v.as_tensor()).collect();
        let block = ConvOptions {
            padding: 1,
            stride: 1,
            relu: true,
            pool: Some(2),
        };
        let h = ops::conv2d(&batch.inputs, v[0], v[1], block)?;
        let h = ops::conv2d(&h, v[2], v[3], block)?;
        let h = ops::linear(&h.flatten_from(1)?, v[4], v[5], true)?;
        let logits = ops::linear(&h, v[6], v[7], false)?;
        let value = ops::linear(&h, v[8], v[9], false)?.squeeze(1)?;
        let (Some(digit), Some(target)) = (batch.target("digit"), batch.target("value")) else {
            return Err(candle_mtl::Error::DataMismatch(
                "batch lacks digit/value".into(),
            ));
        };
        let loss = (candle_nn::loss::cross_entropy(&logits, digit)?
            + candle_nn::loss::mse(&value, target)?)?;
        match &mut self.opt {
            HandOptimizer::Crate(opt) => opt.step(&loss.backward()?)?,
            HandOptimizer::CandleNn(opt) => opt.backward_step(&loss)?,
        }
        Ok(())
    }
}

enum Runner {
    Trainer(Box<Trainer>, StepBatchKind),
    Hand(Box<HandLoop>),
}

#[derive(Clone, Copy, PartialEq)]
enum StepBatchKind {
    Shared,
    PerTask,
}

struct Variant {
    name: String,
    runner: Runner,
    fast_ops: bool,
    samples_per_step: usize,
    /// Gemm FLOPs of one step (see [`StepFlops`]).
    flops: f64,
    rates: Vec<f64>,
}

impl Variant {
    fn run(&mut self, batches: &[Batch], steps: usize) -> candle_mtl::Result<f64> {
        ops::set_fast_cpu_ops(self.fast_ops);
        let start = Instant::now();
        for i in 0..steps {
            let batch = &batches[i % batches.len()];
            match &mut self.runner {
                Runner::Trainer(t, StepBatchKind::Shared) => {
                    t.train_step(&StepBatch::Shared(batch.clone()))?;
                }
                Runner::Trainer(t, StepBatchKind::PerTask) => {
                    let other = &batches[(i + 1) % batches.len()];
                    t.train_step(&StepBatch::PerTask(vec![batch.clone(), other.clone()]))?;
                }
                Runner::Hand(h) => h.step(batch)?,
            }
        }
        // Wait for queued GPU work before reading the clock.
        if let Runner::Trainer(t, _) = &self.runner {
            t.model().device().synchronize()?;
        }
        let rate = (steps * self.samples_per_step) as f64 / start.elapsed().as_secs_f64();
        ops::set_fast_cpu_ops(true);
        Ok(rate)
    }
}

fn stats(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    let median = if xs.len() % 2 == 1 {
        xs[xs.len() / 2]
    } else {
        (xs[xs.len() / 2 - 1] + xs[xs.len() / 2]) / 2.0
    };
    (xs[0], median, xs[xs.len() - 1])
}

fn load(args: &Args) -> candle_mtl::Result<(TensorDataset, String)> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = match args.get("data-dir") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            let local = manifest.join("data/mnist");
            if local.is_dir() {
                local
            } else {
                manifest.join("tests/fixtures/mnist-1k")
            }
        }
    };
    let mnist = load_mnist(&dir)?;
    let data = TensorDataset::from_images(&mnist.train, Normalize::mnist())?
        .with_target("digit", mnist.train.labels_tensor()?)?
        .with_target("value", mnist.train.label_values_tensor()?)?;
    Ok((data, dir.display().to_string()))
}

fn run(args: &Args) -> candle_mtl::Result<()> {
    let batch_size: usize = args.parse_or("batch-size", 64, "a whole number")?;
    let steps: usize = args.parse_or("steps", 20, "a whole number")?;
    let warmup: usize = args.parse_or("warmup", 3, "a whole number")?;
    let rounds: usize = args.parse_or("rounds", 5, "a whole number")?;
    let gradient = args.get("gradient-weighting").unwrap_or("upgrad");
    if batch_size == 0 || steps == 0 || rounds == 0 {
        return Err(candle_mtl::Error::config(
            "--batch-size/--steps/--rounds",
            format!("{batch_size}/{steps}/{rounds}"),
            "must be positive",
        ));
    }
    let device = if args.flag("cuda") {
        Device::new_cuda(0)?
    } else {
        Device::Cpu
    };
    let (data, dir) = load(args)?;
    let n = data.len();
    if n < 2 * batch_size {
        return Err(candle_mtl::Error::config(
            "--batch-size",
            batch_size.to_string(),
            format!("needs at least two batches of data; {dir} has {n} training samples"),
        ));
    }
    let batches = (0..n / batch_size)
        .take(16)
        .map(|i| {
            let idx: Vec<u32> = (i * batch_size..(i + 1) * batch_size)
                .map(|j| j as u32)
                .collect();
            data.batch(&idx, &device)
        })
        .collect::<candle_mtl::Result<Vec<_>>>()?;
    // The thread pool candle's gemm and the crate's ops run in (RAYON_NUM_THREADS).
    let threads = candle_core::utils::get_num_threads();
    println!(
        "seed CNN, batch {batch_size}, {threads} thread(s), {} ({dir})",
        candle_mtl::device::describe(&device)
    );

    let mut variants = Vec::new();
    for name in args
        .get("variants")
        .unwrap_or("trainer,hand,reference")
        .split(',')
    {
        let (runner, fast_ops, per_step) = match name.trim() {
            "trainer" => (
                Runner::Trainer(Box::new(trainer(&device, "equal")?), StepBatchKind::Shared),
                true,
                batch_size,
            ),
            "reference" => (
                Runner::Trainer(Box::new(trainer(&device, "equal")?), StepBatchKind::Shared),
                false,
                batch_size,
            ),
            "multi" => (
                Runner::Trainer(Box::new(multi_input_trainer(&device)?), StepBatchKind::PerTask),
                true,
                2 * batch_size,
            ),
            "gradient" => (
                Runner::Trainer(Box::new(trainer(&device, gradient)?), StepBatchKind::Shared),
                true,
                batch_size,
            ),
            "hand" => (
                Runner::Hand(Box::new(HandLoop::new(&device, false)?)),
                true,
                batch_size,
            ),
            "frozen-encoder" => (
                Runner::Trainer(
                    Box::new(frozen_encoder_trainer(&device)?),
                    StepBatchKind::Shared,
                ),
                true,
                batch_size,
            ),
            "hand-adamw" => (
                Runner::Hand(Box::new(HandLoop::new(&device, true)?)),
                true,
                batch_size,
            ),
            other => {
                return Err(candle_mtl::Error::config(
                    "--variants",
                    other,
                    "known variants: trainer, hand, hand-adamw, reference, multi, gradient, frozen-encoder",
                ))
            }
        };
        let name = if name.trim() == "gradient" {
            format!("gradient({gradient})")
        } else {
            name.trim().to_string()
        };
        let f = StepFlops::new(batch_size);
        let flops = match name.as_str() {
            "multi" => 2.0 * f.step(),
            // One backward per task (two tasks) through the encoder.
            n if n.starts_with("gradient") => {
                f.forward + 2.0 * f.encoder_backward + f.heads_backward
            }
            "frozen-encoder" => f.forward + f.heads_backward,
            _ => f.step(),
        };
        variants.push(Variant {
            name,
            runner,
            fast_ops,
            samples_per_step: per_step,
            flops,
            rates: Vec::new(),
        });
    }
    for v in &mut variants {
        v.run(&batches, warmup.max(1))?;
    }
    // Odd rounds run the variants in reverse order, so that none always follows the same one
    // (a variant that allocates much leaves the heap in a state the next one pays for).
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..variants.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for &i in &order {
            let rate = variants[i].run(&batches, steps)?;
            variants[i].rates.push(rate);
        }
        let mut line = format!("round {}:", round + 1);
        for v in &variants {
            line.push_str(&format!("  {} {:.0}", v.name, v.rates[round]));
        }
        println!("{line}  samples/s");
    }

    let peak = if device.is_cpu() && !args.flag("skip-peak") {
        gemm_peak(1024, &device)?
    } else {
        f64::NAN
    };
    let flops = StepFlops::new(batch_size).step();
    println!(
        "\nFLOPs per step (batch {batch_size}, gemm work only): {:.3} GFLOP",
        flops / 1e9
    );
    if peak.is_finite() {
        println!("f32 gemm peak (candle matmul 1024^3, best of 10): {peak:.1} GFLOP/s");
    }
    let mut json = serde_json::Map::new();
    json.insert(
        "device".into(),
        candle_mtl::device::describe(&device).into(),
    );
    json.insert("threads".into(), threads.into());
    json.insert("batch_size".into(), batch_size.into());
    json.insert("step_gflop".into(), number(flops / 1e9));
    json.insert("gemm_peak_gflops".into(), number(peak));
    println!("\n| variant | samples/s min / median / max | GFLOP/s (median) | of gemm peak |");
    println!("|---|---|---|---|");
    for v in &variants {
        let (lo, med, hi) = stats(v.rates.clone());
        let steps_per_s = med / v.samples_per_step as f64;
        let gflops = steps_per_s * v.flops / 1e9;
        println!(
            "| {} | {lo:.0} / {med:.0} / {hi:.0} | {gflops:.1} | {:.0} % |",
            v.name,
            100.0 * gflops / peak
        );
        json.insert(
            v.name.to_string(),
            serde_json::json!({
                "samples_per_s": v.rates.iter().map(|r| number(*r)).collect::<Vec<_>>(),
                "median": number(med),
            }),
        );
    }
    let ratio = |a: &str, b: &str| -> Option<(f64, f64, f64)> {
        let va = variants.iter().find(|v| v.name == a)?;
        let vb = variants.iter().find(|v| v.name == b)?;
        Some(stats(
            va.rates.iter().zip(&vb.rates).map(|(x, y)| x / y).collect(),
        ))
    };
    for (a, b, what) in [
        (
            "hand",
            "trainer",
            "library overhead (hand-written loop / trainer, per round)",
        ),
        (
            "trainer",
            "reference",
            "fast ops speed-up (trainer / reference ops, per round)",
        ),
    ] {
        if let Some((lo, med, hi)) = ratio(a, b) {
            println!("{what}: min {lo:.3} / median {med:.3} / max {hi:.3}");
            json.insert(
                format!("{a}_over_{b}"),
                serde_json::json!([number(lo), number(med), number(hi)]),
            );
        }
    }

    if args.flag("epoch") {
        let mut t = trainer(&device, "equal")?;
        let config_batch = t.config().batch_size;
        let start = Instant::now();
        t.fit(TaskData::Shared(&data), None, 1, &mut |_| Ok(()))?;
        let secs = start.elapsed().as_secs_f64();
        let mem = peak_memory_mib().unwrap_or(f64::NAN);
        println!(
            "one epoch through Trainer::fit ({n} samples, batch {config_batch}, data pipeline included): {secs:.1} s, {:.0} samples/s; peak memory {mem:.0} MiB",
            n as f64 / secs
        );
        json.insert("epoch_samples_per_s".into(), number(n as f64 / secs));
        json.insert("peak_memory_mib".into(), number(mem));
    }
    if let Some(path) = args.get("json") {
        write_json(path, &serde_json::Value::Object(json))?;
        println!("wrote {path}");
    }
    Ok(())
}

fn main() {
    main_with(
        USAGE,
        &["epoch", "cuda", "skip-peak"],
        &[
            "data-dir",
            "batch-size",
            "steps",
            "warmup",
            "rounds",
            "variants",
            "gradient-weighting",
            "epoch",
            "cuda",
            "skip-peak",
            "json",
        ],
        run,
    );
}
