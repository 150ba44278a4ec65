//! Auto-Lambda through the trainer: with a primary task (digit class) and an auxiliary task
//! whose labels are noise, the meta-gradient must lower the noise task's weight relative to
//! the primary one.

mod common;

use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use candle_mtl::prelude::*;
use candle_mtl::weighting::{AutoLambda, Decision, Needs, StepInput};
use common::fixture;

fn digit_and_noise(images: &candle_mtl::data::ImageDataset, seed: u32) -> TensorDataset {
    let noise: Vec<u32> = (0..images.len() as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 7) % 10)
        .collect();
    TensorDataset::from_images(images, Normalize::mnist())
        .and_then(|d| d.with_target("digit", images.labels_tensor()?))
        .and_then(|d| d.with_target("noise", Tensor::new(noise.as_slice(), &Device::Cpu)?))
        .unwrap()
}

fn model() -> MultiTaskModel {
    common::mlp_tasks(
        3,
        64,
        &[
            (TaskSpec::classification("digit"), 10),
            (TaskSpec::classification("noise"), 10),
        ],
    )
}

/// Records the meta-gradients the trainer hands over, with fixed weights.
struct Recorder(Arc<Mutex<Vec<Vec<f64>>>>);

impl TaskWeighting for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn needs(&self) -> Needs {
        Needs {
            meta_validation: true,
            ..Needs::losses_only()
        }
    }
    fn decide(&mut self, input: &StepInput) -> candle_mtl::Result<Decision> {
        Ok(Decision::Weights(vec![1.0; input.losses.len()]))
    }
    fn meta_objective_tasks(&self) -> Option<Vec<usize>> {
        Some(vec![0])
    }
    fn meta_gradient(&mut self, gradient: &[f64]) -> candle_mtl::Result<()> {
        self.0.lock().unwrap().push(gradient.to_vec());
        Ok(())
    }
}

#[test]
fn meta_gradients_favour_the_helpful_task() {
    let mnist = fixture();
    let train = digit_and_noise(&mnist.train, 1);
    let validation = digit_and_noise(&mnist.test, 2);
    let config = TrainerConfig {
        batch_size: 50,
        optimizer: OptimizerConfig::adam(1e-3),
        ..Default::default()
    };

    // Without a validation set the strategy is refused, naming the constructor to use.
    let msg = Trainer::new(model(), Box::new(AutoLambda::default()), config.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("auto-lambda") && msg.contains("with_meta_validation"),
        "{msg}"
    );

    // The raw meta-gradients: raising the digit task's weight lowers the validation loss of the
    // digit task (negative), raising the noise task's weight does not help as much.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut trainer = Trainer::with_meta_validation(
        model(),
        Box::new(Recorder(seen.clone())),
        config.clone(),
        validation.clone(),
    )
    .unwrap();
    trainer
        .fit(TaskData::Shared(&train), None, 2, &mut |_| Ok(()))
        .unwrap();
    let grads = seen.lock().unwrap().clone();
    assert_eq!(grads.len(), 32);
    let mean = |k: usize| grads.iter().map(|g| g[k]).sum::<f64>() / grads.len() as f64;
    eprintln!(
        "mean meta-gradient: digit {:.3e}, noise {:.3e}",
        mean(0),
        mean(1)
    );
    assert!(mean(0) < 0.0, "digit {}", mean(0));
    assert!(mean(0) < mean(1), "digit {} noise {}", mean(0), mean(1));

    // Auto-Lambda itself: the primary task's weight ends above the noise task's.
    let strategy = AutoLambda::new(0.1, 0.01, Some(vec![0])).unwrap();
    let mut trainer =
        Trainer::with_meta_validation(model(), Box::new(strategy), config, validation).unwrap();
    let fit = trainer
        .fit(TaskData::Shared(&train), None, 2, &mut |_| Ok(()))
        .unwrap();
    let w = fit.last().unwrap().mean_weights.clone().unwrap();
    eprintln!("Auto-Lambda mean weights in epoch 2: {w:?}");
    assert!(w[0] > w[1], "{w:?}");
}
