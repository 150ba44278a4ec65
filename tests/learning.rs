//! Trains for real on the committed 1,000-digit MNIST fixture.

mod common;

use candle_mtl::prelude::*;
use candle_mtl::train::EvalReport;
use common::{cls_reg_dataset, fixture, mlp_model, small_cnn_model};

fn train(
    model: MultiTaskModel,
    weighting: Box<dyn TaskWeighting>,
    epochs: usize,
    seed: u64,
) -> EvalReport {
    let mnist = fixture();
    let (train, test) = (cls_reg_dataset(&mnist.train), cls_reg_dataset(&mnist.test));
    let config = TrainerConfig {
        seed,
        batch_size: 32,
        ..Default::default()
    };
    let mut trainer = Trainer::new(model, weighting, config).expect("trainer builds");
    let fit = trainer
        .fit(
            TaskData::Shared(&train),
            Some(TaskData::Shared(&test)),
            epochs,
            &mut |_| Ok(()),
        )
        .expect("training runs");
    assert_eq!(fit.epochs.len(), epochs);
    assert!(fit.epochs.iter().all(|e| e.samples == 800 && e.steps == 25));
    fit.last().and_then(|e| e.eval.clone()).expect("evaluated")
}

#[test]
fn mlp_learns_both_tasks_far_above_chance() {
    let eval = train(mlp_model(0), Box::new(InverseLoss::new()), 5, 0);
    let acc = eval
        .task("digit")
        .and_then(|t| t.metric(Metric::Accuracy))
        .unwrap();
    let mae = eval
        .task("value")
        .and_then(|t| t.metric(Metric::Mae))
        .unwrap();
    // Chance is 10% accuracy; predicting the mean digit gives an MAE of about 2.5.
    eprintln!("MLP, 5 epochs on 800 digits: accuracy {acc:.3}, MAE {mae:.3}");
    assert!(acc > 0.80, "accuracy {acc}");
    assert!(mae < 1.6, "MAE {mae}");
    assert_eq!(eval.task("digit").unwrap().samples, 200);
}

#[test]
fn conv_net_learns_with_inverse_loss_weighting() {
    let eval = train(small_cnn_model(1), Box::new(InverseLoss::new()), 4, 1);
    let acc = eval
        .task("digit")
        .and_then(|t| t.metric(Metric::Accuracy))
        .unwrap();
    eprintln!("small ConvNet, 4 epochs on 800 digits: accuracy {acc:.3}");
    assert!(acc > 0.70, "accuracy {acc}");
}

#[test]
fn same_seed_gives_identical_results_and_another_seed_does_not() {
    let a = train(mlp_model(3), Box::new(Equal::sum()), 1, 3);
    let b = train(mlp_model(3), Box::new(Equal::sum()), 1, 3);
    assert_eq!(a, b, "two runs with seed 3 differ");
    let c = train(mlp_model(4), Box::new(Equal::sum()), 1, 4);
    assert_ne!(a, c, "seeds 3 and 4 gave the same run");
}

#[test]
fn background_batch_preparation_changes_nothing_but_the_timing() {
    let mnist = fixture();
    let train = cls_reg_dataset(&mnist.train)
        .with_augment(vec![candle_mtl::data::Augment::RandomCrop { padding: 2 }]);
    let test = cls_reg_dataset(&mnist.test);
    let run = |depth: usize| {
        let config = TrainerConfig {
            prefetch_depth: depth,
            batch_size: 50,
            ..Default::default()
        };
        let mut trainer = Trainer::new(mlp_model(5), Box::new(Equal::sum()), config).unwrap();
        let fit = trainer
            .fit(
                TaskData::Shared(&train),
                Some(TaskData::Shared(&test)),
                2,
                &mut |_| Ok(()),
            )
            .unwrap();
        let last = fit.last().unwrap();
        assert!(last.data_seconds >= 0.0 && last.data_seconds <= last.seconds);
        (last.train_losses.clone(), last.eval.clone())
    };
    let inline = run(0);
    assert_eq!(inline, run(2));
    assert_eq!(inline, run(1));
}

#[test]
fn learning_rate_schedules_and_early_stopping_act_on_fit() {
    use candle_mtl::train::{EarlyStopping, LrSchedule};
    let mnist = fixture();
    let (train, test) = (cls_reg_dataset(&mnist.train), cls_reg_dataset(&mnist.test));
    let config = TrainerConfig {
        batch_size: 50,
        lr_schedule: LrSchedule::Step {
            every_epochs: 1,
            gamma: 0.5,
        },
        ..Default::default()
    };
    let mut trainer = Trainer::new(mlp_model(0), Box::new(Equal::sum()), config).unwrap();
    let fit = trainer
        .fit(TaskData::Shared(&train), None, 3, &mut |_| Ok(()))
        .unwrap();
    let rates: Vec<f64> = fit.epochs.iter().map(|e| e.learning_rate).collect();
    assert_eq!(rates, vec![1e-3, 5e-4, 2.5e-4]);

    // An improvement threshold no epoch can meet: stop after `patience` epochs without one.
    let config = TrainerConfig {
        batch_size: 50,
        early_stopping: Some(EarlyStopping {
            task: "digit".into(),
            metric: Metric::Accuracy,
            patience: 2,
            min_delta: 1.0,
        }),
        ..Default::default()
    };
    let mut trainer = Trainer::new(mlp_model(0), Box::new(Equal::sum()), config).unwrap();
    let fit = trainer
        .fit(
            TaskData::Shared(&train),
            Some(TaskData::Shared(&test)),
            10,
            &mut |_| Ok(()),
        )
        .unwrap();
    assert!(fit.stopped_early);
    assert_eq!(fit.epochs.len(), 3);
    // Watching a metric without evaluation data is an error, not a silent no-op.
    let config = TrainerConfig {
        early_stopping: Some(EarlyStopping {
            task: "digit".into(),
            metric: Metric::Accuracy,
            patience: 1,
            min_delta: 0.0,
        }),
        ..Default::default()
    };
    let mut trainer = Trainer::new(mlp_model(0), Box::new(Equal::sum()), config).unwrap();
    let msg = trainer
        .fit(TaskData::Shared(&train), None, 1, &mut |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("digit/accuracy"), "{msg}");
}
