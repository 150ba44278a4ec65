//! # candle-mtl
//!
//! Multi-task learning on [candle](https://github.com/huggingface/candle): one shared encoder,
//! one head per task, a strategy that weighs the tasks, and a trainer that puts them together.
//!
//! The crate follows the data's path: [`data`] -> [`encoder`] -> [`head`] -> [`task`] losses
//! -> [`weighting`] -> [`train`] -> reports and [`metrics`].
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use candle_mtl::prelude::*;
//!
//! let device = Device::Cpu;
//! // Two tasks on 4 features: a class (sign of the first feature) and a value (their sum).
//! let x = Tensor::new(&[[1f32, 0., 0., 1.], [-1., 1., 0., 0.], [2., 1., 1., 0.], [-2., 0., 1., 1.]], &device)?;
//! let data = TensorDataset::new(x)
//!     .with_target("sign", Tensor::new(&[1u32, 0, 1, 0], &device)?)?
//!     .with_target("sum", Tensor::new(&[2f32, 0., 4., 0.], &device)?)?;
//!
//! let model = MultiTaskModel::builder(&device, 42)
//!     .encoder(|p| Mlp::new(&MlpConfig { input_dim: 4, hidden: vec![16], ..Default::default() }, p))?
//!     .task(TaskSpec::classification("sign"), |p| LinearHead::new(16, 2, p))?
//!     .task(TaskSpec::regression("sum"), |p| LinearHead::new(16, 1, p))?
//!     .build()?;
//! let config = TrainerConfig { batch_size: 2, optimizer: OptimizerConfig::adam(1e-2), ..Default::default() };
//! let mut trainer = Trainer::new(model, Box::new(InverseLoss::new()), config)?;
//! let fit = trainer.fit(TaskData::Shared(&data), Some(TaskData::Shared(&data)), 30, &mut |_| Ok(()))?;
//! let eval = fit.last().and_then(|e| e.eval.as_ref()).unwrap();
//! assert_eq!(eval.task("sign").unwrap().metric(Metric::Accuracy), Some(1.0));
//! # Ok::<(), candle_mtl::Error>(())
//! ```
#![warn(missing_docs)]

pub mod architecture;
pub mod data;
pub mod device;
pub mod encoder;
mod error;
pub mod grad;
pub mod head;
pub mod layers;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod optim;
pub mod params;
pub mod solvers;
pub mod task;
pub mod train;
pub mod weighting;

pub use error::{Error, Result};

/// The names most programs need, in one `use`.
pub mod prelude {
    pub use crate::data::{load_mnist, Normalize, TensorDataset};
    pub use crate::device::best_device;
    pub use crate::encoder::{ConvNet, ConvNetConfig, Mlp, MlpConfig, SharedEncoder};
    pub use crate::head::{LinearHead, MlpHead, TaskHead};
    pub use crate::layers::Activation;
    pub use crate::metrics::{Metric, TaskMetric};
    pub use crate::model::MultiTaskModel;
    pub use crate::optim::OptimizerConfig;
    pub use crate::task::{Loss, TaskLoss, TaskSpec};
    pub use crate::train::{MultiTaskTrainer, TaskData, Trainer, TrainerConfig};
    pub use crate::weighting::{
        Equal, Fixed, GradientSource, InputMode, InverseLoss, TaskWeighting,
    };
    pub use crate::{Error, Result};
}

/// The README's code sample, compiled and run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
