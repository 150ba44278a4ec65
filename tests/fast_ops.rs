//! Training with the fast CPU ops follows training with candle's own ops step by step: same
//! losses, same parameters, to float tolerance. `set_fast_cpu_ops` is process-wide, so this
//! file holds a single test and runs as its own process.

mod common;

use candle_core::{Device, Tensor};
use candle_mtl::ops::set_fast_cpu_ops;
use candle_mtl::prelude::*;
use candle_mtl::train::StepBatch;

/// Losses of each step and every parameter after `steps` SGD steps of the small CNN (two
/// conv + ReLU + pool blocks, a linear layer, two linear heads) on the fixture's digits.
/// Per-step task losses, and the parameters by name.
type Run = (Vec<Vec<f64>>, Vec<(String, Tensor)>);

fn train(fast: bool, steps: usize) -> Result<Run> {
    set_fast_cpu_ops(fast);
    let mnist = common::fixture();
    let data = common::cls_reg_dataset(&mnist.train);
    let model = common::small_cnn_model(3);
    // SGD: unlike Adam, its steps scale with the gradients, so a gradient off by a constant
    // factor (as candle's max-pool backward is) shows.
    let config = TrainerConfig {
        optimizer: OptimizerConfig::sgd(0.05, 0.9),
        ..TrainerConfig::default()
    };
    let mut trainer = Trainer::new(model, Box::new(Equal::sum()), config)?;
    let mut losses = Vec::new();
    for s in 0..steps {
        let idx: Vec<u32> = (s as u32 * 32..(s as u32 + 1) * 32).collect();
        let batch = StepBatch::Shared(data.batch(&idx, &Device::Cpu)?);
        losses.push(trainer.train_step(&batch)?.losses);
    }
    let params = trainer
        .model()
        .params()
        .named_vars()
        .into_iter()
        .map(|(name, var)| (name, var.as_tensor().detach()))
        .collect();
    set_fast_cpu_ops(true);
    Ok((losses, params))
}

#[test]
fn fast_ops_train_like_candles_own_ops() -> Result<()> {
    let (fast_losses, fast_params) = train(true, 6)?;
    let (ref_losses, ref_params) = train(false, 6)?;
    for (step, (f, r)) in fast_losses.iter().zip(&ref_losses).enumerate() {
        for (a, b) in f.iter().zip(r) {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "step {step}: loss {a} vs {b}"
            );
        }
    }
    // The losses moved: the runs are not trivially equal.
    assert!((fast_losses[0][0] - fast_losses[5][0]).abs() > 1e-3);
    assert_eq!(fast_params.len(), ref_params.len());
    for ((name, a), (other, b)) in fast_params.iter().zip(&ref_params) {
        assert_eq!(name, other);
        let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{name}: parameters differ by {diff}");
    }
    Ok(())
}
