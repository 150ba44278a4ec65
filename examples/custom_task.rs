//! Tasks defined outside the crate's built-in list: a user's own loss and metric next to the
//! newer built-in ones, on MNIST.
//!
//! Three tasks over one MLP encoder:
//! * `digit`: the class, trained with the focal loss, reporting accuracy and top-3 accuracy;
//! * `value`: the digit as a number, trained with a *pinball* (quantile) loss written here,
//!   reporting MAE and a *coverage* metric written here (the fraction of targets at or below
//!   the prediction, which a quantile-`q` regression drives towards `q`);
//! * `bits`: the digit's four binary bits as a multi-label task (binary cross-entropy, F1,
//!   mAP), the highest bit left unlabelled for every other training digit (per-label mask).
//!
//! ```text
//! cargo run --release --example custom_task -- --data-dir data/mnist --epochs 3 --quantile 0.9
//! ```
//! prints each epoch's losses and samples/s, then every task's metrics. Run with `--help` for
//! the flags.

mod common;

use candle_core::{Device, Tensor};
use candle_mtl::data::{load_mnist, ImageDataset};
use candle_mtl::metrics::MetricState;
use candle_mtl::prelude::*;
use candle_mtl::task::{regression_prediction, BinaryCrossEntropy, FocalLoss, TargetForm};
use common::runs::{fit_and_report, number};
use common::{build_trainer, cls_reg_dataset, locate_mnist, main_with, Args};

const USAGE: &str =
    "custom_task: a user's loss and metric, focal loss and a multi-label task on MNIST

USAGE: cargo run --release --example custom_task -- [FLAGS]

  --data-dir DIR        MNIST IDX files; without it as mnist_cls_reg looks (data/mnist,
                        $CANDLE_MTL_DATA/mnist, a download, else the 1,000-digit fixture)
  --epochs N            training epochs (default 3)
  --quantile Q          the value task's quantile, in (0, 1) (default 0.9)
  --weighting NAME      any name of candle_mtl::weighting::STRATEGIES (default upgrad)
  --train-limit N       use only the first N training digits
  --seed N              seed (default 0)
  --summary-json PATH   write every task's metrics and samples/s as JSON";

/// Pinball loss of quantile `q`: `q e` for an error `e = y - ŷ >= 0`, `(q - 1) e` below, so
/// that its minimiser is the `q`-quantile of the target.
#[derive(Debug)]
struct Pinball {
    q: f64,
}

impl Pinball {
    fn new(q: f64) -> Result<Self> {
        if q > 0.0 && q < 1.0 {
            Ok(Self { q })
        } else {
            Err(Error::config("--quantile", q, "must be in (0, 1)"))
        }
    }
}

impl TaskLoss for Pinball {
    fn name(&self) -> String {
        format!("pinball(q={})", self.q)
    }

    fn targets(&self) -> TargetForm {
        TargetForm::Values
    }

    fn per_sample(&self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let pred = regression_prediction(task, pred, target)?;
        let error = (target - &pred)?;
        // max(q e, (q - 1) e)
        Ok((&error * self.q)?.maximum(&(&error * (self.q - 1.0))?)?)
    }

    fn default_metrics(&self) -> Vec<Metric> {
        vec![Metric::Mae]
    }
}

/// The fraction of targets at or below the prediction.
#[derive(Debug)]
struct Coverage;

#[derive(Default)]
struct CoverageState {
    below: usize,
    seen: usize,
}

impl TaskMetric for Coverage {
    fn metric(&self) -> Metric {
        Metric::custom("coverage", true)
    }

    fn targets(&self) -> Option<TargetForm> {
        Some(TargetForm::Values)
    }

    fn start(&self) -> Result<Box<dyn MetricState>> {
        Ok(Box::new(CoverageState::default()))
    }
}

impl MetricState for CoverageState {
    fn add(
        &mut self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        _: Option<&Tensor>,
    ) -> Result<()> {
        let pred = regression_prediction(task, pred, target)?;
        let pred = pred.flatten_all()?.to_vec1::<f32>()?;
        let target = target.flatten_all()?.to_vec1::<f32>()?;
        self.below += pred.iter().zip(&target).filter(|(p, t)| t <= p).count();
        self.seen += target.len();
        Ok(())
    }

    fn value(&self) -> f64 {
        self.below as f64 / self.seen.max(1) as f64
    }
}

/// The digits' classes, values and bits; with `mask_high_bit`, the highest bit unlabelled for
/// every other digit.
fn dataset(images: &ImageDataset, mask_high_bit: bool) -> Result<TensorDataset> {
    let n = images.len();
    let mut bits = Vec::with_capacity(n * 4);
    let mut present = Vec::with_capacity(n * 4);
    for (i, &d) in images.labels().iter().enumerate() {
        for b in 0..4 {
            let known = !(mask_high_bit && b == 3 && i % 2 == 1);
            bits.push(if known { ((d >> b) & 1) as f32 } else { -1.0 });
            present.push(u8::from(known));
        }
    }
    cls_reg_dataset(images)?
        .with_target("bits", Tensor::from_vec(bits, (n, 4), &Device::Cpu)?)?
        .with_label_mask("bits", Tensor::from_vec(present, (n, 4), &Device::Cpu)?)
}

fn run(args: &Args) -> Result<()> {
    let epochs: usize = args.parse_or("epochs", 3, "expected a whole number of epochs")?;
    let q: f64 = args.parse_or("quantile", 0.9, "expected a number in (0, 1)")?;
    let seed: u64 = args.parse_or("seed", 0, "expected a non-negative integer")?;
    let train_limit: usize = args.parse_or("train-limit", usize::MAX, "expected a whole number")?;
    let weighting_name = args.get("weighting").unwrap_or("upgrad");
    let weighting = candle_mtl::weighting::by_name(weighting_name)?;
    let pinball = Pinball::new(q)?;

    let (dir, how) = locate_mnist(args.get("data-dir"))?;
    let mnist = load_mnist(&dir)?;
    let train = dataset(&mnist.train.take(train_limit), true)?;
    let test = dataset(&mnist.test, false)?;
    println!(
        "data: {} ({how}): {} train / {} test digits | weighting: {} | value: {} | seed {seed}",
        dir.display(),
        train.len(),
        test.len(),
        weighting.name(),
        pinball.name()
    );
    let hidden = 128;
    let model = MultiTaskModel::builder(&Device::Cpu, seed)
        .encoder(|p| {
            Mlp::new(
                &MlpConfig {
                    hidden: vec![256, hidden],
                    ..Default::default()
                },
                p,
            )
        })?
        .task(
            TaskSpec::new("digit", FocalLoss::default()).with_metric(Metric::TopKAccuracy(3)),
            |p| LinearHead::new(hidden, 10, p),
        )?
        .task(TaskSpec::new("value", pinball).with_metric(Coverage), |p| {
            LinearHead::new(hidden, 1, p)
        })?
        .task(TaskSpec::new("bits", BinaryCrossEntropy::new()), |p| {
            LinearHead::new(hidden, 4, p)
        })?
        .build()?;
    let config = TrainerConfig {
        batch_size: 64,
        seed,
        ..Default::default()
    };
    let (mut trainer, train) = build_trainer(model, weighting, config, &train)?;
    let outcome = fit_and_report(&mut trainer, &train, &test, epochs)?;
    println!(
        "{:.0} samples/s | value coverage {:.3} (target {q})",
        outcome.samples_per_second,
        outcome.tasks["value"]["coverage"]
            .as_f64()
            .unwrap_or(f64::NAN)
    );
    if let Some(path) = args.get("summary-json") {
        outcome.write_summary(
            path,
            serde_json::json!({"weighting": weighting_name, "quantile": number(q)}),
            &trainer,
        )?;
    }
    Ok(())
}

fn main() {
    main_with(
        USAGE,
        &[],
        &[
            "data-dir",
            "epochs",
            "quantile",
            "weighting",
            "train-limit",
            "seed",
            "summary-json",
        ],
        run,
    );
}
