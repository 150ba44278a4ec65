//! The gradient paths, one per file.

mod cross_batch;
mod loss_weighted;
mod meta_validated;
mod representation;
mod shared_jacobian;
mod unweighted;

pub(crate) use cross_batch::CrossBatch;
pub(crate) use loss_weighted::LossWeighted;
pub(crate) use meta_validated::MetaValidated;
pub(crate) use representation::RepresentationJacobian;
pub(crate) use shared_jacobian::{per_task_rows, SharedJacobian};
pub(crate) use unweighted::Unweighted;
