//! Evaluation over any data (label masks honoured) and the checks that data fits the tasks.

use candle_core::{DType, Tensor};

use super::{EvalReport, TaskData, TaskEvaluation};
use crate::data::{sequential_batches, Dataset, TargetKind};
use crate::error::{Error, Result};
use crate::metrics::MetricState;
use crate::model::{representation_for, MultiTaskModel};
use crate::weighting::InputMode;

/// Per-task losses and metrics of `model` on `data`, in batches of `batch_size`.
pub(crate) fn evaluate(
    model: &MultiTaskModel,
    data: TaskData<'_>,
    batch_size: usize,
) -> Result<EvalReport> {
    let device = model.device().clone();
    let tasks = model.tasks();
    let mut states = tasks
        .iter()
        .map(|t| t.spec().metrics.iter().map(|m| m.start()).collect())
        .collect::<Result<Vec<Vec<Box<dyn MetricState>>>>>()?;
    let mut loss_sums = vec![0.0; tasks.len()];
    let mut counts = vec![0usize; tasks.len()];
    let mut loss_weights = vec![0usize; tasks.len()];
    let mut add = |k: usize, pred: &Tensor, target: &Tensor, mask: Option<&Tensor>| -> Result<()> {
        let task = &tasks[k];
        // A per-sample mask keeps the labelled rows; a per-label mask (the targets' shape)
        // goes to the loss and the metrics.
        let per_label = mask.filter(|m| m.rank() > 1);
        let (pred, target, per_label) = match mask {
            Some(m) if per_label.is_none() => {
                let Some(idx) = crate::data::labelled_rows(m)? else {
                    return Ok(());
                };
                (
                    pred.index_select(&idx, 0)?,
                    target.index_select(&idx, 0)?,
                    None,
                )
            }
            _ => (pred.clone(), target.clone(), per_label.cloned()),
        };
        let (pred, target) = (&pred, &target);
        // The loss is a mean over samples, or over present labels with a per-label mask:
        // weighted by as many, so that the evaluation's loss does not depend on batching.
        let (loss, weight, n) = match &per_label {
            Some(m) => {
                let present = m.to_dtype(DType::F32)?.ne(0f32)?.to_dtype(DType::F32)?;
                let labels = present.sum_all()?.to_scalar::<f32>()? as usize;
                let rows = present
                    .flatten_from(1)?
                    .max(1)?
                    .sum_all()?
                    .to_scalar::<f32>()?;
                let loss = task
                    .spec()
                    .loss
                    .compute_masked(task.name(), pred, target, m)?;
                (loss, labels, rows as usize)
            }
            None => {
                let n = target.dims().first().copied().unwrap_or(0);
                (task.spec().loss.compute(task.name(), pred, target)?, n, n)
            }
        };
        loss_sums[k] += f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?) * weight as f64;
        loss_weights[k] += weight;
        counts[k] += n;
        for state in &mut states[k] {
            state.add(task.name(), pred, target, per_label.as_ref())?;
        }
        Ok(())
    };
    let no_target =
        |k: usize| Error::DataMismatch(format!("no target for task '{}'", tasks[k].name()));
    match data {
        TaskData::Shared(ds) => {
            for idx in sequential_batches(ds.len(), batch_size) {
                let b = ds.read_batch(&idx)?.to_device(&device)?;
                let shared = match model.has_stems() {
                    false => Some(model.encode(&b.inputs, false)?),
                    true => None,
                };
                for (k, task) in tasks.iter().enumerate() {
                    let target = b.target(task.name()).ok_or_else(|| no_target(k))?;
                    let own;
                    let rep = match &shared {
                        Some(r) => r,
                        None => {
                            own = model.encode_for_task(&b.inputs, k, false)?;
                            &own
                        }
                    };
                    let pred = model.predict_for_target(k, representation_for(rep, k)?, target)?;
                    add(k, &pred, target, b.label_mask(task.name()))?;
                }
            }
        }
        TaskData::PerTask(dss) => {
            for (k, ds) in dss.all().into_iter().enumerate() {
                for idx in sequential_batches(ds.len(), batch_size) {
                    let b = ds.read_batch(&idx)?.to_device(&device)?;
                    let rep = model.encode_for_task(&b.inputs, k, false)?;
                    let target = b.target(tasks[k].name()).ok_or_else(|| no_target(k))?;
                    let pred = model.predict_for_target(k, representation_for(&rep, k)?, target)?;
                    add(k, &pred, target, b.label_mask(tasks[k].name()))?;
                }
            }
        }
    }
    let tasks = tasks
        .iter()
        .enumerate()
        .map(|(k, t)| TaskEvaluation {
            task: t.name().to_string(),
            loss: loss_sums[k] / loss_weights[k].max(1) as f64,
            metrics: t
                .spec()
                .metric_keys()
                .into_iter()
                .zip(&states[k])
                .map(|(m, state)| (m, state.value()))
                .collect(),
            samples: counts[k],
        })
        .collect();
    Ok(EvalReport { tasks })
}

/// Refuses data that does not fit the tasks: the wrong kind for the input mode, a missing
/// or empty dataset, a missing target, class indices outside a head's outputs.
pub(crate) fn check_data(
    model: &MultiTaskModel,
    data: TaskData<'_>,
    input_mode: InputMode,
) -> Result<()> {
    let tasks = model.tasks();
    let datasets: Vec<&dyn Dataset> = match (data, input_mode) {
        (TaskData::Shared(ds), InputMode::SingleInput) => vec![ds; tasks.len()],
        (TaskData::PerTask(dss), InputMode::MultiInput) if dss.count() == tasks.len() => dss.all(),
        (TaskData::PerTask(dss), InputMode::MultiInput) => {
            return Err(Error::DataMismatch(format!(
                "{} datasets for {} tasks ({}); multi-input mode needs one per task, in task order",
                dss.count(),
                tasks.len(),
                model.task_names().join(", ")
            )))
        }
        (_, mode) => {
            return Err(Error::DataMismatch(format!(
                "the trainer is configured for {mode:?}; give TaskData::{}",
                if mode == InputMode::SingleInput {
                    "Shared"
                } else {
                    "PerTask"
                }
            )))
        }
    };
    for (task, ds) in tasks.iter().zip(datasets) {
        if ds.is_empty() {
            return Err(Error::DataMismatch(format!(
                "the dataset of task '{}' is empty",
                task.name()
            )));
        }
        let infos = ds.targets();
        let info = infos
            .iter()
            .find(|t| t.name == task.name())
            .ok_or_else(|| {
                Error::DataMismatch(format!(
                    "dataset has no target for task '{}' (targets: {})",
                    task.name(),
                    infos
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let loss = &task.spec().loss;
        if loss.is_classification() {
            if info.kind != TargetKind::Classes {
                return Err(Error::DataMismatch(format!(
                    "targets of task '{}' (loss {}) must be class indices (u32), got {:?}",
                    task.name(),
                    loss.name(),
                    info.kind
                )));
            }
            let classes = task.head().output_dim();
            if let Some(range) = ds.class_range(task.name())? {
                if range.max as usize >= classes {
                    return Err(Error::DataMismatch(format!(
                        "task '{}' has a target class {} ({}) but its head has {classes} outputs",
                        task.name(),
                        range.max,
                        ds.origin(range.index)
                    )));
                }
            }
        }
    }
    Ok(())
}
