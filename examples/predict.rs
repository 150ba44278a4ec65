//! Predicts with a model saved by another process, without a trainer.
//!
//! ```text
//! cargo run --release --example mnist_cls_reg -- --epochs 1 --save-model model.safetensors
//! cargo run --release --example predict -- --model model.safetensors
//! ```
//! rebuilds the `mnist_cls_reg` architecture, loads the saved weights (refusing a file saved
//! from another model, with every difference), prints the first test digits' predictions and
//! the test metrics, which equal those the training run printed.

mod common;

use candle_core::Device;
use candle_mtl::data::load_mnist;
use candle_mtl::prelude::*;
use common::runs::write_json;
use common::{cls_reg_dataset, cls_reg_metrics, cls_reg_model, locate_mnist, main_with, Args};

const USAGE: &str = "predict: MNIST digit class and value from a model saved by mnist_cls_reg

USAGE: cargo run --release --example predict -- --model PATH [FLAGS]

  --model PATH          a model saved with mnist_cls_reg --save-model PATH
  --data-dir DIR        MNIST IDX files (as for mnist_cls_reg)
  --tasks LIST          tasks to predict, comma-separated (default: all; digit,value)
  --show N              print the predictions of the first N test digits (default 8)
  --batch-size N        evaluation batch size (default 256)
  --summary-json PATH   write the test metrics as JSON (the keys of mnist_cls_reg's summary)";

fn run(args: &Args) -> Result<()> {
    let model_path = args.get("model").ok_or_else(|| {
        Error::config(
            "--model",
            "missing",
            "give the file saved by mnist_cls_reg --save-model",
        )
    })?;
    let show: usize = args.parse_or("show", 8, "expected a whole number")?;
    let batch_size: usize = args.parse_or("batch-size", 256, "expected a whole number >= 1")?;
    let (dir, how) = locate_mnist(args.get("data-dir"))?;
    let mnist = load_mnist(&dir)?;
    let test = cls_reg_dataset(&mnist.test)?;
    // Predictions run on the CPU; the seed does not matter, every weight is loaded.
    let model = cls_reg_model(&Device::Cpu, 0, mnist.test.image_shape())?;
    let loaded = model.load_weights(model_path)?;
    println!(
        "model {model_path}: {loaded} tensors loaded | data: {} ({how}), {} test digits",
        dir.display(),
        test.len()
    );

    let tasks: Vec<&str> = args
        .get("tasks")
        .map(|t| t.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let n = show.min(test.len());
    if n > 0 {
        let idx: Vec<u32> = (0..n as u32).collect();
        let batch = test.batch(&idx, &Device::Cpu)?;
        let predictions = model.predict_tasks(&batch.inputs, &tasks)?;
        let labels = mnist.test.labels();
        for (task, pred) in &predictions {
            let shown: Vec<String> = if task == "digit" {
                pred.argmax(1)?
                    .to_vec1::<u32>()?
                    .iter()
                    .map(u32::to_string)
                    .collect()
            } else {
                pred.flatten_all()?
                    .to_vec1::<f32>()?
                    .iter()
                    .map(|v| format!("{v:.2}"))
                    .collect()
            };
            println!("{task:>6}: {}", shown.join(" "));
        }
        let truth: Vec<String> = labels[..n].iter().map(u32::to_string).collect();
        println!(" truth: {}", truth.join(" "));
    }

    let eval = model.evaluate(TaskData::Shared(&test), batch_size)?;
    let get = |task: &str, m: Metric| {
        eval.task(task)
            .and_then(|t| t.metric(m))
            .unwrap_or(f64::NAN)
    };
    println!(
        "test | digit accuracy {:.2}% | value MAE {:.3} RMSE {:.3} MSE {:.3}",
        100.0 * get("digit", Metric::Accuracy),
        get("value", Metric::Mae),
        get("value", Metric::Rmse),
        get("value", Metric::Mse),
    );
    if let Some(path) = args.get("summary-json") {
        let json = serde_json::json!({
            "example": "predict",
            "model": model_path,
            "test_samples": test.len(),
            "tasks": cls_reg_metrics(&get),
        });
        write_json(path, &json)?;
        println!("summary written to {path}");
    }
    Ok(())
}

fn main() {
    main_with(
        USAGE,
        &[],
        &[
            "model",
            "data-dir",
            "tasks",
            "show",
            "batch-size",
            "summary-json",
        ],
        run,
    );
}
