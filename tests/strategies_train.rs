//! Every built-in strategy trains the shared-MLP model on the real-digit fixture through the
//! trainer: hooks, learned parameters, gradient paths and cross-batch steps all run, and both
//! tasks learn.

mod common;

use candle_mtl::prelude::*;
use candle_mtl::weighting::{by_name, STRATEGIES};
use common::{cls_reg_dataset, fixture, mlp_model};

/// Strategies that, by design, need not improve every task on this two-task problem whose
/// losses differ in scale (cross-entropy ~2, MSE on digit values ~10-20):
/// - `pbi` penalises the distance of the loss vector from the preference ray, so it raises the
///   smaller loss (it traces Pareto fronts, it does not balance tasks);
/// - `excess-mtl` moves the weight to the task with the largest estimated excess risk (a
///   worst-case method), here the regression;
/// - `modo` takes projected steps of size `gamma = 0.1` (the reference default) on the
///   unnormalised `G_1 G_2^T`; with gradient norms far above 1 the first step lands on a vertex
///   of the simplex (all weight on the task with the smaller gradient) and stays there. A
///   smaller `gamma` avoids it.
const MAY_SACRIFICE_A_TASK: &[&str] = &["pbi", "excess-mtl", "modo"];

#[test]
fn every_registered_strategy_trains_both_tasks() {
    let mnist = fixture();
    let (train, test) = (cls_reg_dataset(&mnist.train), cls_reg_dataset(&mnist.test));
    let mut lines = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (name, _) in STRATEGIES {
        let weighting = by_name(name).unwrap();
        let needs = weighting.needs();
        let config = TrainerConfig {
            batch_size: 50,
            seed: 1,
            ..Default::default()
        };
        let built = if needs.meta_validation {
            // Auto-Lambda learns its weights on held-out data: the test split here.
            Trainer::with_meta_validation(mlp_model(1), weighting, config, test.clone())
        } else {
            Trainer::new(mlp_model(1), weighting, config)
        };
        if needs.min_tasks > 2 {
            // Robust aggregators needing more tasks than this two-task model has are refused
            // when the trainer is built, naming both.
            let msg = built.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(name) && msg.contains("tasks"), "{name}: {msg}");
            lines.push(format!("{name:>18}: refused at build time: {msg}"));
            continue;
        }
        let mut trainer = built.unwrap_or_else(|e| panic!("{name}: {e}"));
        let fit = trainer
            .fit(
                TaskData::Shared(&train),
                Some(TaskData::Shared(&test)),
                3,
                &mut |_| Ok(()),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let last = fit.last().unwrap();
        let eval = last.eval.as_ref().unwrap();
        let acc = eval
            .task("digit")
            .unwrap()
            .metric(Metric::Accuracy)
            .unwrap();
        let mae = eval.task("value").unwrap().metric(Metric::Mae).unwrap();
        let first = &fit.epochs[0].train_losses;
        lines.push(format!(
            "{name:>18}: accuracy {acc:.3}, MAE {mae:.3}, loss digit {:.3} -> {:.3}, value {:.3} -> {:.3}, weights {:?}",
            first[0], last.train_losses[0], first[1], last.train_losses[1], last.mean_weights
        ));
        let both_learn =
            acc > 0.6 && last.train_losses[0] < first[0] && last.train_losses[1] < first[1];
        let some_learns = last.train_losses[0] < first[0] || last.train_losses[1] < first[1];
        let ok = if MAY_SACRIFICE_A_TASK.contains(name) {
            some_learns
        } else {
            both_learn
        };
        if !ok {
            failures.push(format!(
                "{name}: accuracy {acc}, losses {first:?} -> {:?}",
                last.train_losses
            ));
        }
    }
    for l in lines {
        eprintln!("{l}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
