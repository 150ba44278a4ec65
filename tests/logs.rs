//! Metric logs: JSON lines and CSV written through the observer trait, and a custom observer.

mod common;

use std::sync::{Arc, Mutex};

use candle_mtl::prelude::*;
use candle_mtl::train::{CsvLog, EpochReport, JsonlLog, Observer, StepReport};
use common::{cls_reg_dataset, fixture, mlp_model, temp_dir};

struct Counter(Arc<Mutex<(usize, usize)>>);

impl Observer for Counter {
    fn on_step(&mut self, names: &[String], report: &StepReport) -> candle_mtl::Result<()> {
        assert_eq!(names, ["digit", "value"]);
        assert_eq!(report.losses.len(), 2);
        self.0.lock().unwrap().0 += 1;
        Ok(())
    }
    fn on_epoch(&mut self, report: &EpochReport) -> candle_mtl::Result<()> {
        assert!(report.eval.is_some());
        self.0.lock().unwrap().1 += 1;
        Ok(())
    }
}

#[test]
fn jsonl_and_csv_logs_record_every_step_and_epoch() {
    let mnist = fixture();
    let (train, test) = (cls_reg_dataset(&mnist.train), cls_reg_dataset(&mnist.test));
    let dir = temp_dir("logs");
    let config = TrainerConfig {
        batch_size: 50,
        ..Default::default()
    };
    let mut trainer = Trainer::new(
        mlp_model(0),
        candle_mtl::weighting::by_name("pcgrad").unwrap(),
        config,
    )
    .unwrap();
    let baselines = vec![
        ("digit".to_string(), Metric::Accuracy, 0.5),
        ("value".to_string(), Metric::Mae, 2.0),
    ];
    trainer.add_observer(Box::new(
        JsonlLog::create(dir.join("run.jsonl"))
            .unwrap()
            .with_baselines(baselines),
    ));
    trainer.add_observer(Box::new(CsvLog::create(dir.join("csv")).unwrap()));
    let counts = Arc::new(Mutex::new((0, 0)));
    trainer.add_observer(Box::new(Counter(counts.clone())));
    trainer
        .fit(
            TaskData::Shared(&train),
            Some(TaskData::Shared(&test)),
            2,
            &mut |_| Ok(()),
        )
        .unwrap();
    assert_eq!(*counts.lock().unwrap(), (32, 2));

    let text = std::fs::read_to_string(dir.join("run.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<_> = lines.iter().filter(|v| v["type"] == "step").collect();
    let epochs: Vec<_> = lines.iter().filter(|v| v["type"] == "epoch").collect();
    assert_eq!((steps.len(), epochs.len()), (32, 2));
    assert!(steps[5]["losses"]["digit"].as_f64().unwrap() > 0.0);
    assert!(steps[5]["weights"]["value"].as_f64().is_some());
    assert!(
        steps[5]["conflicting_pairs"].as_u64().is_some(),
        "PCGrad computes gradients: {}",
        steps[5]
    );
    let acc = epochs[1]["eval"]["digit"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.1 && acc <= 1.0);
    assert_eq!(epochs[1]["learning_rate"].as_f64(), Some(1e-3));
    let mae = epochs[1]["eval"]["value"]["mae"].as_f64().unwrap();
    let expected = ((acc - 0.5) / 0.5 - (mae - 2.0) / 2.0) / 2.0;
    assert!((epochs[1]["delta_m"].as_f64().unwrap() - expected).abs() < 1e-9);

    let steps_csv = std::fs::read_to_string(dir.join("csv/steps.csv")).unwrap();
    let mut rows = steps_csv.lines();
    assert_eq!(
        rows.next(),
        Some(
            "step,skipped,grad_norm,loss_digit,loss_value,weight_digit,weight_value,regularization"
        )
    );
    assert_eq!(rows.count(), 32);
    let epochs_csv = std::fs::read_to_string(dir.join("csv/epochs.csv")).unwrap();
    let header = epochs_csv.lines().next().unwrap();
    assert!(
        header.contains("train_loss_digit")
            && header.contains("digit_accuracy")
            && header.contains("value_mae"),
        "{header}"
    );
    assert_eq!(epochs_csv.lines().count(), 3);
}

#[test]
fn progress_observer_runs_without_a_terminal() {
    let mnist = fixture();
    let train = cls_reg_dataset(&mnist.train);
    let mut trainer = Trainer::new(
        mlp_model(0),
        Box::new(Equal::sum()),
        TrainerConfig::default(),
    )
    .unwrap();
    trainer.add_observer(Box::new(candle_mtl::train::Progress::new()));
    let fit = trainer
        .fit(TaskData::Shared(&train), None, 1, &mut |_| Ok(()))
        .unwrap();
    assert_eq!(fit.epochs.len(), 1);
}

#[test]
fn evaluation_every_n_steps_is_reported_and_logged() {
    let mnist = fixture();
    let (train, test) = (cls_reg_dataset(&mnist.train), cls_reg_dataset(&mnist.test));
    let dir = temp_dir("eval-every");
    let config = TrainerConfig {
        batch_size: 50,
        eval_every_steps: Some(5),
        ..Default::default()
    };
    let mut trainer = Trainer::new(mlp_model(0), Box::new(Equal::sum()), config).unwrap();
    trainer.add_observer(Box::new(JsonlLog::create(dir.join("run.jsonl")).unwrap()));
    let fit = trainer
        .fit(
            TaskData::Shared(&train),
            Some(TaskData::Shared(&test)),
            2,
            &mut |_| Ok(()),
        )
        .unwrap();
    let steps: Vec<u64> = fit
        .epochs
        .iter()
        .flat_map(|e| e.step_evals.iter().map(|(s, _)| *s))
        .collect();
    assert_eq!(steps, vec![5, 10, 15, 20, 25, 30]);
    let text = std::fs::read_to_string(dir.join("run.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "eval")
        .collect();
    assert_eq!(evals.len(), 6);
    assert!(evals[0]["eval"]["digit"]["accuracy"].as_f64().is_some());
    let bad = TrainerConfig {
        eval_every_steps: Some(0),
        ..Default::default()
    };
    assert!(Trainer::new(mlp_model(0), Box::new(Equal::sum()), bad).is_err());
}
