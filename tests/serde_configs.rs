//! Configurations and strategy hyper-parameters are serialisable (feature `serde`): a run can be
//! re-created from its saved configuration.

use candle_mtl::metrics::Metric;
use candle_mtl::optim::OptimizerConfig;
use candle_mtl::train::{
    CheckpointPolicy, EarlyStopping, LrSchedule, NonFinitePolicy, TrainerConfig,
};
use candle_mtl::weighting::gradient_based::{
    AlignedMtl, CaGrad, Mgda, NashMtl, PcGrad, ScaleMode, UPGrad,
};
use candle_mtl::weighting::{Fixed, InverseLoss, Stch, Uncertainty};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, value, "{json}");
}

#[test]
fn trainer_configs_round_trip_through_json() {
    let config = TrainerConfig {
        optimizer: OptimizerConfig::adamw(3e-4),
        batch_size: 128,
        seed: 42,
        max_grad_norm: Some(5.0),
        non_finite: NonFinitePolicy::Skip,
        lr_schedule: LrSchedule::Warmup {
            steps: 100,
            then: Box::new(LrSchedule::Cosine {
                total_epochs: 10,
                min_lr: 1e-5,
            }),
        },
        early_stopping: Some(EarlyStopping {
            task: "digit".into(),
            metric: Metric::Accuracy,
            patience: 3,
            min_delta: 1e-3,
        }),
        checkpoint: Some(CheckpointPolicy::every_epoch("runs/a")),
        ..Default::default()
    };
    round_trip(&config);
    let json = serde_json::to_string_pretty(&config).unwrap();
    assert!(
        json.contains("\"batch_size\": 128") && json.contains("Cosine"),
        "{json}"
    );
}

#[test]
fn strategy_hyper_parameters_round_trip_through_json() {
    round_trip(&InverseLoss::new().with_eps(1e-6).unwrap());
    round_trip(&Fixed::new(vec![1.0, 0.5]).unwrap());
    round_trip(&Uncertainty::new(3));
    round_trip(&Stch::default().with_warmup(50));
    round_trip(&UPGrad::default());
    round_trip(&Mgda::upper_bound());
    round_trip(&PcGrad::default());
    round_trip(&NashMtl::default());
    round_trip(&CaGrad::default());
    round_trip(&AlignedMtl::new(ScaleMode::Median));
}
