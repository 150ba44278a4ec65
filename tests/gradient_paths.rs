//! The trainer's update paths, driven by strategies written against the public trait only.
//!
//! With weights (1, 1) every path computes the gradient of `L_1 + L_2`, so one Adam step from
//! the same start must land on the same parameters whichever path computed it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use candle_core::{Device, Tensor, Var};
use candle_mtl::prelude::*;
use candle_mtl::train::StepBatch;
use candle_mtl::weighting::{AfterStep, Decision, Needs, StepInput};
use common::{cls_reg_dataset, fixture, mlp_model};

/// Weights (1, 1) computed from per-task gradients, or their sum returned as a direction.
struct SumOfGradients {
    source: GradientSource,
    as_direction: bool,
    seen: Option<(usize, usize)>,
}

impl TaskWeighting for SumOfGradients {
    fn name(&self) -> &str {
        "sum-of-gradients"
    }
    fn needs(&self) -> Needs {
        Needs::gradients(vec![self.source])
    }
    fn decide(&mut self, input: &StepInput) -> Result<Decision> {
        let g = input.gradients.expect("gradients were requested");
        assert_eq!(g.source(), self.source);
        self.seen = Some((g.num_tasks(), g.dim()));
        let gram = g.gramian()?;
        assert!(gram[0][0] > 0.0 && gram[1][1] > 0.0);
        if self.as_direction {
            Ok(Decision::Direction(g.matrix().sum(0)?))
        } else {
            Ok(Decision::Weights(vec![1.0; g.num_tasks()]))
        }
    }
}

fn params_after_one_step(weighting: Box<dyn TaskWeighting>, config: TrainerConfig) -> Vec<f32> {
    let mnist = fixture();
    let data = cls_reg_dataset(&mnist.test);
    let batch = StepBatch::Shared(
        data.batch(&(0..32).collect::<Vec<_>>(), &Device::Cpu)
            .unwrap(),
    );
    let mut trainer = Trainer::new(mlp_model(11), weighting, config).unwrap();
    let report = trainer.train_step(&batch).unwrap();
    assert_eq!(report.samples, 32);
    // Gradient statistics come with every step that computed per-task gradients.
    assert_eq!(
        report.gradient_stats.is_some(),
        trainer.gradient_source().is_some()
    );
    if let Some(stats) = &report.gradient_stats {
        assert_eq!(stats.norms.len(), 2);
        assert!((stats.cosine[0][0] - 1.0).abs() < 1e-4 && stats.cosine[0][1].abs() <= 1.0 + 1e-6);
    }
    let vars = trainer.model().params().named_vars();
    let flat: Vec<Tensor> = vars
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap())
        .collect();
    Tensor::cat(&flat, 0).unwrap().to_vec1().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn every_gradient_path_matches_the_plain_sum_of_losses() {
    let sgd = || TrainerConfig {
        optimizer: OptimizerConfig::sgd(0.1, 0.0),
        ..Default::default()
    };
    let reference = params_after_one_step(Box::new(Equal::sum()), sgd());
    let start = {
        let vars = mlp_model(11).params().named_vars();
        let flat: Vec<Tensor> = vars
            .iter()
            .map(|(_, v)| v.as_tensor().flatten_all().unwrap())
            .collect();
        Tensor::cat(&flat, 0).unwrap().to_vec1::<f32>().unwrap()
    };
    assert!(
        max_diff(&reference, &start) > 1e-4,
        "the step changed nothing"
    );
    for source in [
        GradientSource::SharedParameters,
        GradientSource::Representation,
    ] {
        for as_direction in [false, true] {
            let strategy = SumOfGradients {
                source,
                as_direction,
                seen: None,
            };
            let got = params_after_one_step(Box::new(strategy), sgd());
            let d = max_diff(&reference, &got);
            assert!(
                d < 1e-5,
                "{source} gradients, direction={as_direction}: differs by {d}"
            );
        }
    }
}

/// A learnable log-variance per task (uncertainty-style), updated through the auxiliary loss.
struct LearnedLogVariance {
    log_var: Var,
    after_step_calls: Arc<AtomicUsize>,
    improved: Arc<AtomicUsize>,
}

impl TaskWeighting for LearnedLogVariance {
    fn name(&self) -> &str {
        "learned-log-variance"
    }
    fn needs(&self) -> Needs {
        Needs {
            losses_after_step: true,
            ..Needs::losses_only()
        }
    }
    fn parameters(&self) -> Vec<(String, Var)> {
        vec![("log_var".into(), self.log_var.clone())]
    }
    fn decide(&mut self, _input: &StepInput) -> Result<Decision> {
        let s = self.log_var.as_tensor().to_vec1::<f32>()?;
        Ok(Decision::Weights(
            s.iter().map(|s| f64::from((-s).exp())).collect(),
        ))
    }
    fn auxiliary_loss(&self, losses: &[Tensor]) -> Result<Option<Tensor>> {
        let l = Tensor::stack(losses, 0)?;
        let s = self.log_var.as_tensor();
        Ok(Some(((s.neg()?.exp()? * l)? + s)?.sum_all()?))
    }
    fn after_step(&mut self, info: &AfterStep) -> Result<()> {
        self.after_step_calls.fetch_add(1, Ordering::SeqCst);
        let after = info.losses_after.expect("asked for losses after the step");
        if after.iter().sum::<f64>() < info.losses_before.iter().sum::<f64>() {
            self.improved.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[test]
fn strategy_parameters_learn_and_hooks_are_called() {
    let mnist = fixture();
    let data = cls_reg_dataset(&mnist.train);
    let log_var = Var::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let improved = Arc::new(AtomicUsize::new(0));
    let strategy = LearnedLogVariance {
        log_var: log_var.clone(),
        after_step_calls: calls.clone(),
        improved: improved.clone(),
    };
    let lr = 0.05;
    let config = TrainerConfig {
        optimizer: OptimizerConfig::sgd(lr, 0.0),
        batch_size: 50,
        ..Default::default()
    };
    let mut trainer = Trainer::new(mlp_model(0), Box::new(strategy), config).unwrap();
    let batch = StepBatch::Shared(
        data.batch(&(0..50).collect::<Vec<_>>(), &Device::Cpu)
            .unwrap(),
    );
    let step = trainer.train_step(&batch).unwrap();
    // d/ds_k [exp(-s_k) L_k + s_k] at s = 0 is 1 - L_k, so SGD moves s_k to -lr (1 - L_k).
    let s = log_var.as_tensor().to_vec1::<f32>().unwrap();
    for (k, (got, loss)) in s.iter().zip(&step.losses).enumerate() {
        let expected = -lr * (1.0 - loss);
        assert!(
            (f64::from(*got) - expected).abs() < 1e-5,
            "s[{k}] = {got} expected {expected}"
        );
    }
    let report = trainer.train_epoch(TaskData::Shared(&data)).unwrap();
    assert_eq!(report.steps, 16);
    assert_eq!(calls.load(Ordering::SeqCst), 17);
    assert!(
        improved.load(Ordering::SeqCst) >= 12,
        "the step lowered the batch loss only {improved:?} times"
    );
}

#[test]
fn multi_input_mode_trains_one_batch_per_task() {
    let mnist = fixture();
    let digits = mnist.train.take(400);
    // Task 1 reads the first 400 digits, task 2 all 800: different datasets and sizes.
    let a = TensorDataset::from_images(&digits, Normalize::mnist())
        .and_then(|d| d.with_target("digit", digits.labels_tensor()?))
        .unwrap();
    let b = TensorDataset::from_images(&mnist.train, Normalize::mnist())
        .and_then(|d| d.with_target("value", mnist.train.label_values_tensor()?))
        .unwrap();
    let test_a = TensorDataset::from_images(&mnist.test, Normalize::mnist())
        .and_then(|d| d.with_target("digit", mnist.test.labels_tensor()?))
        .unwrap();
    let test_b = TensorDataset::from_images(&mnist.test, Normalize::mnist())
        .and_then(|d| d.with_target("value", mnist.test.label_values_tensor()?))
        .unwrap();
    let config = TrainerConfig {
        input_mode: InputMode::MultiInput,
        batch_size: 40,
        ..Default::default()
    };
    let mut trainer = Trainer::new(mlp_model(0), Box::new(Equal::sum()), config).unwrap();
    let train = [a, b];
    let test = [test_a, test_b];
    let fit = trainer
        .fit(
            TaskData::PerTask(&train),
            Some(TaskData::PerTask(&test)),
            3,
            &mut |_| Ok(()),
        )
        .unwrap();
    let last = fit.last().unwrap();
    // Cycle-shorter: 20 steps (800/40), each with one batch of 40 per task.
    assert_eq!((last.steps, last.samples), (20, 1600));
    let acc = last
        .eval
        .as_ref()
        .unwrap()
        .task("digit")
        .unwrap()
        .metric(Metric::Accuracy)
        .unwrap();
    assert!(acc > 0.6, "accuracy {acc}");

    let shortest = TrainerConfig {
        input_mode: InputMode::MultiInput,
        batch_size: 40,
        epoch_length: candle_mtl::train::EpochLength::StopAtShortest,
        ..Default::default()
    };
    let mut trainer = Trainer::new(mlp_model(0), Box::new(Equal::sum()), shortest).unwrap();
    assert_eq!(
        trainer
            .train_epoch(TaskData::PerTask(&train))
            .unwrap()
            .steps,
        10
    );

    let rep = TrainerConfig {
        input_mode: InputMode::MultiInput,
        gradient_source: Some(GradientSource::Representation),
        ..Default::default()
    };
    let strategy = SumOfGradients {
        source: GradientSource::Representation,
        as_direction: false,
        seen: None,
    };
    let msg = Trainer::new(mlp_model(0), Box::new(strategy), rep)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("sum-of-gradients") && msg.contains("single-input"),
        "{msg}"
    );
}

#[test]
fn public_types_can_cross_threads() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<Trainer>();
    send::<Box<dyn TaskWeighting>>();
    send_sync::<MultiTaskModel>();
    send_sync::<TensorDataset>();
    send_sync::<Error>();
    send_sync::<Box<dyn SharedEncoder>>();
    send_sync::<Box<dyn TaskHead>>();
}
