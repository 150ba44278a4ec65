//! A dependent crate's own loss and metric, and the multi-label losses and metrics, trained
//! end to end on the committed 1,000-digit MNIST fixture.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_mtl::data::DatasetExt;
use candle_mtl::metrics::MetricState;
use candle_mtl::prelude::*;
use candle_mtl::task::{regression_prediction, BinaryCrossEntropy, Huber, TargetForm};
use candle_mtl::train::{EarlyStopping, JsonlLog};
use candle_mtl::weighting::UPGrad;
use common::{cls_reg_dataset, fixture, mlp_tasks, temp_dir};

/// Huber loss whose samples are weighted by `1 + value / scale` (larger digits count more),
/// composed from the crate's own `Huber`.
#[derive(Debug)]
struct WeightedHuber {
    huber: Huber,
    scale: f64,
}

impl TaskLoss for WeightedHuber {
    fn name(&self) -> String {
        format!("weighted-{}(scale={})", self.huber.name(), self.scale)
    }

    fn targets(&self) -> TargetForm {
        TargetForm::Values
    }

    fn per_sample(&self, task: &str, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let weight = target.affine(1.0 / self.scale, 1.0)?;
        Ok((self.huber.per_sample(task, pred, target)? * weight)?)
    }

    fn default_metrics(&self) -> Vec<Metric> {
        vec![Metric::Mae]
    }
}

/// The median absolute error over the whole evaluation.
#[derive(Debug)]
struct MedianAbsoluteError;

#[derive(Default)]
struct MedianState(Vec<f32>);

impl TaskMetric for MedianAbsoluteError {
    fn metric(&self) -> Metric {
        Metric::custom("median_ae", false)
    }

    fn targets(&self) -> Option<TargetForm> {
        Some(TargetForm::Values)
    }

    fn start(&self) -> Result<Box<dyn MetricState>> {
        Ok(Box::new(MedianState::default()))
    }
}

impl MetricState for MedianState {
    fn add(
        &mut self,
        task: &str,
        pred: &Tensor,
        target: &Tensor,
        _mask: Option<&Tensor>,
    ) -> Result<()> {
        let pred = regression_prediction(task, pred, target)?;
        self.0
            .extend((pred - target)?.abs()?.flatten_all()?.to_vec1::<f32>()?);
        Ok(())
    }

    fn value(&self) -> f64 {
        let mut v = self.0.clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f32::total_cmp);
        let m = v.len() / 2;
        f64::from(if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        })
    }
}

fn value_spec() -> TaskSpec {
    TaskSpec::new(
        "value",
        WeightedHuber {
            huber: Huber::default(),
            scale: 9.0,
        },
    )
    .with_metric(MedianAbsoluteError)
}

#[test]
fn a_users_loss_and_metric_train_with_a_gradient_strategy_log_and_stop_early() {
    let mnist = fixture();
    let (train, test) = (cls_reg_dataset(&mnist.train), cls_reg_dataset(&mnist.test));
    let model = mlp_tasks(
        3,
        64,
        &[
            (
                TaskSpec::classification("digit")
                    .with_metrics(vec![Metric::Accuracy, Metric::TopKAccuracy(3)]),
                10,
            ),
            (value_spec(), 1),
        ],
    );
    let watched = Metric::custom("median_ae", false);
    let config = TrainerConfig {
        batch_size: 32,
        seed: 3,
        // An improvement no epoch can make after the first: stops after 1 + patience epochs.
        early_stopping: Some(EarlyStopping {
            task: "value".into(),
            metric: watched.clone(),
            patience: 2,
            min_delta: 100.0,
        }),
        ..Default::default()
    };
    let mut trainer = Trainer::new(model, Box::new(UPGrad::default()), config).unwrap();
    let log = temp_dir("custom_tasks").join("run.jsonl");
    trainer.add_observer(Box::new(JsonlLog::create(&log).unwrap()));
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

    let eval = fit.last().and_then(|e| e.eval.clone()).unwrap();
    let value = eval.task("value").unwrap();
    let median = value.metric(&watched).unwrap();
    let mae = value.metric(Metric::Mae).unwrap();
    let digit = eval.task("digit").unwrap();
    let (top1, top3) = (
        digit.metric(Metric::Accuracy).unwrap(),
        digit.metric(Metric::TopKAccuracy(3)).unwrap(),
    );
    eprintln!(
        "UPGrad, 3 epochs: median AE {median:.3}, MAE {mae:.3}, top-1 {top1:.3}, top-3 {top3:.3}"
    );
    assert!(median < mae && median < 1.5, "median {median}, MAE {mae}");
    assert!(top3 >= top1 && top1 > 0.7, "top-1 {top1}, top-3 {top3}");

    // The reported loss is the user's loss over the test set.
    let all: Vec<u32> = (0..test.len() as u32).collect();
    let batch = test.batch(&all, &Device::Cpu).unwrap();
    let preds = trainer.model().forward_all(&batch.inputs, false).unwrap();
    let spec_loss = WeightedHuber {
        huber: Huber::default(),
        scale: 9.0,
    }
    .compute(
        "value",
        &preds[1],
        &mnist.test.label_values_tensor().unwrap(),
    )
    .unwrap()
    .to_scalar::<f32>()
    .unwrap();
    assert!(
        (f64::from(spec_loss) - value.loss).abs() < 1e-4 * value.loss.max(1.0),
        "{spec_loss} vs {}",
        value.loss
    );

    let text = std::fs::read_to_string(&log).unwrap();
    let epochs: Vec<&str> = text.lines().filter(|l| l.contains("\"epoch\"")).collect();
    assert_eq!(epochs.len(), 3, "{text}");
    assert!(epochs
        .iter()
        .all(|l| l.contains("median_ae") && l.contains("top3_accuracy")));
}

/// The digit's four binary bits as a multi-label target `(N, 4)`; for every other sample the
/// highest bit is unknown (NaN placeholder, masked per label).
fn bits(labels: &[u32]) -> (Tensor, Tensor) {
    let mut values = Vec::with_capacity(labels.len() * 4);
    let mut mask = Vec::with_capacity(labels.len() * 4);
    for (i, &d) in labels.iter().enumerate() {
        for b in 0..4 {
            let known = b < 3 || i % 2 == 0;
            values.push(if known {
                ((d >> b) & 1) as f32
            } else {
                f32::NAN
            });
            mask.push(u8::from(known));
        }
    }
    let n = labels.len();
    (
        Tensor::from_vec(values, (n, 4), &Device::Cpu).unwrap(),
        Tensor::from_vec(mask, (n, 4), &Device::Cpu).unwrap(),
    )
}

#[test]
fn multi_label_bits_learn_with_per_label_masks() {
    let mnist = fixture();
    let dataset = |images: &candle_mtl::data::ImageDataset| {
        let (tags, mask) = bits(images.labels());
        cls_reg_dataset(images)
            .with_target("bits", tags)
            .and_then(|d| d.with_label_mask("bits", mask))
            .unwrap()
    };
    let (train, test) = (dataset(&mnist.train), dataset(&mnist.test));
    let model = mlp_tasks(
        5,
        64,
        &[
            (TaskSpec::classification("digit"), 10),
            (TaskSpec::new("bits", BinaryCrossEntropy::new()), 4),
        ],
    );
    let config = TrainerConfig {
        batch_size: 32,
        seed: 5,
        ..Default::default()
    };
    let mut trainer = Trainer::new(model, Box::new(Equal::sum()), config).unwrap();
    let fit = trainer
        .fit(
            TaskData::Shared(&train),
            Some(TaskData::Shared(&test)),
            4,
            &mut |_| Ok(()),
        )
        .unwrap();
    let first = fit.epochs[0].eval.clone().unwrap();
    let eval = fit.last().and_then(|e| e.eval.clone()).unwrap();
    let bits_eval = eval.task("bits").unwrap();
    let f1 = bits_eval.metric(Metric::MultiLabelF1).unwrap();
    let map = bits_eval.metric(Metric::MeanAveragePrecision).unwrap();
    eprintln!(
        "bits after 4 epochs: F1 {f1:.3}, mAP {map:.3}, loss {:.4}",
        bits_eval.loss
    );
    assert!(bits_eval.loss.is_finite() && bits_eval.loss < first.task("bits").unwrap().loss);
    // Chance F1 on balanced bits is about 0.5.
    assert!(f1 > 0.7 && map > 0.8, "F1 {f1}, mAP {map}");
    for e in &fit.epochs {
        assert!(
            e.train_losses.iter().all(|l| l.is_finite()),
            "{:?}",
            e.train_losses
        );
    }

    // Read one sample at a time (a concatenation), a per-label mask cannot be kept: refused,
    // never trained on the placeholders.
    let joined = train.clone().concat(test.clone()).unwrap();
    let err = trainer
        .fit(TaskData::Shared(&joined), None, 1, &mut |_| Ok(()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("'bits'") && err.contains("per-label"), "{err}");
}

#[test]
fn mismatched_losses_metrics_and_targets_are_refused_with_the_task_named() {
    let width = 8;
    let build = |spec: TaskSpec, outputs: usize| {
        MultiTaskModel::builder(&Device::Cpu, 0)
            .encoder(|p| {
                Mlp::new(
                    &MlpConfig {
                        hidden: vec![width],
                        ..Default::default()
                    },
                    p,
                )
            })
            .and_then(|b| b.task(spec, |p| LinearHead::new(width, outputs, p)))
            .and_then(|b| b.build())
    };
    // A class metric on a multi-label loss.
    let err = build(
        TaskSpec::new("tags", BinaryCrossEntropy::new()).with_metric(Metric::Accuracy),
        3,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("'tags'") && err.contains("accuracy"), "{err}");
    // A custom metric's key without its implementation.
    let err = build(
        TaskSpec::regression("age").with_metric(Metric::custom("median_ae", false)),
        1,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("'age'") && err.contains("median_ae"), "{err}");
    // Class indices given to a multi-label loss: the task and both shapes are named.
    let mnist = fixture();
    let train = cls_reg_dataset(&mnist.test);
    let model = mlp_tasks(
        0,
        width,
        &[(TaskSpec::new("digit", BinaryCrossEntropy::new()), 10)],
    );
    let mut trainer =
        Trainer::new(model, Box::new(Equal::sum()), TrainerConfig::default()).unwrap();
    let err = trainer
        .fit(TaskData::Shared(&train), None, 1, &mut |_| Ok(()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("'digit'") && err.contains("10]"), "{err}");
    // A multi-label target of the wrong width: the task and both shapes are named.
    let pred = Tensor::zeros((5, 3), DType::F32, &Device::Cpu).unwrap();
    let target = Tensor::zeros((5, 4), DType::F32, &Device::Cpu).unwrap();
    let err = BinaryCrossEntropy::new()
        .compute("tags", &pred, &target)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'tags'") && err.contains("[5, 3]") && err.contains("[5, 4]"),
        "{err}"
    );
}
