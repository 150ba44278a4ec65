//! Helpers shared by the examples: a small flag parser, data-directory lookup, peak memory,
//! and JSON output (through serde_json, in `runs`). Kept out of the library so that dependents do not build them.
#![allow(dead_code)]

pub mod multi;
pub mod runs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_mtl::data::{data_root, fetch, ImageDataset, Normalize, StandardDataset, TensorDataset};
use candle_mtl::model::MultiTaskModel;
use candle_mtl::train::{Trainer, TrainerConfig};
use candle_mtl::weighting::TaskWeighting;

/// `--name value` and `--flag` arguments.
pub struct Args {
    values: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    /// Parses `std::env::args`; `boolean` lists the flags that take no value.
    pub fn parse(boolean: &[&str], usage: &str) -> Result<Self, String> {
        let mut values = HashMap::new();
        let mut flags = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            if arg == "--help" || arg == "-h" {
                println!("{usage}");
                if usage.contains("--weighting") || usage.contains("--strategies") {
                    // The list comes from the registry, so it cannot drift from `by_name`.
                    println!("\nSTRATEGIES:\n{}", candle_mtl::weighting::strategy_list());
                }
                std::process::exit(0);
            }
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument '{arg}'\n\n{usage}"));
            };
            if boolean.contains(&name) {
                flags.push(name.to_string());
            } else {
                let value = it
                    .next()
                    .ok_or_else(|| format!("flag --{name} needs a value\n\n{usage}"))?;
                values.insert(name.to_string(), value);
            }
        }
        Ok(Self { values, flags })
    }

    /// The value of `--name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    /// `--name` parsed as `T`, or `default`; `expected` says what a valid value is.
    pub fn parse_or<T: std::str::FromStr>(
        &self,
        name: &str,
        default: T,
        expected: &str,
    ) -> candle_mtl::Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| candle_mtl::Error::config(format!("--{name}"), v, expected)),
        }
    }

    /// Fails on any `--name value` not in `known`.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), String> {
        match self.values.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(format!("unknown flag --{k}")),
            None => Ok(()),
        }
    }
}

/// Where to read `dataset` from, and how it was chosen:
/// 1. `explicit` (a `--data-dir` flag), used as it is;
/// 2. the first of `local` (paths relative to the crate) that exists, unless
///    `$CANDLE_MTL_DATA` is set;
/// 3. `data_root()/<dataset>` (`$CANDLE_MTL_DATA`, else the platform cache), downloaded there
///    if missing;
/// 4. when the download fails, `fallback` (a small committed fixture), with a warning.
pub fn locate_dataset(
    dataset: StandardDataset,
    explicit: Option<&str>,
    local: &[&str],
    fallback: Option<&str>,
) -> candle_mtl::Result<(PathBuf, String)> {
    if let Some(dir) = explicit {
        return Ok((PathBuf::from(dir), "given on the command line".into()));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("CANDLE_MTL_DATA").is_none() {
        if let Some(dir) = local
            .iter()
            .map(|c| manifest.join(c))
            .find(|p| dataset.is_present(p))
        {
            return Ok((dir, "found next to the crate".into()));
        }
    }
    let root = data_root(None);
    match fetch(dataset, &root) {
        Ok(dir) => Ok((dir, format!("in the data directory {}", root.display()))),
        Err(e) => match fallback {
            Some(f) => {
                eprintln!("warning: {e}");
                eprintln!("warning: falling back to the small fixture {f}; results are not comparable to the full dataset");
                Ok((manifest.join(f), "fallback fixture".into()))
            }
            None => Err(e),
        },
    }
}

/// Digit class ("digit") and digit value ("value") targets over MNIST-normalised images.
pub fn cls_reg_dataset(images: &ImageDataset) -> candle_mtl::Result<TensorDataset> {
    TensorDataset::from_images(images, Normalize::mnist())?
        .with_target("digit", images.labels_tensor()?)?
        .with_target("value", images.label_values_tensor()?)
}

/// The `mnist_cls_reg` model: the seed CNN with a 10-class head ("digit") and a regression
/// head ("value"), for images of shape `[c, h, w]`. The `predict` example rebuilds it to load
/// saved weights into.
pub fn cls_reg_model(
    device: &candle_core::Device,
    seed: u64,
    [c, h, w]: [usize; 3],
) -> candle_mtl::Result<MultiTaskModel> {
    use candle_mtl::prelude::*;
    let encoder_config = ConvNetConfig {
        in_channels: c,
        height: h,
        width: w,
        ..Default::default()
    };
    MultiTaskModel::builder(device, seed)
        .encoder(|p| ConvNet::new(&encoder_config, p))?
        .task(TaskSpec::classification("digit"), |p| {
            LinearHead::new(128, 10, p)
        })?
        .task(TaskSpec::regression("value"), |p| {
            LinearHead::new(128, 1, p)
        })?
        .build()
}

/// MNIST for the examples that fall back to the committed 1,000-digit fixture when it can be
/// neither found nor downloaded: `explicit` (a flag), else as [`locate_dataset`] looks.
pub fn locate_mnist(explicit: Option<&str>) -> candle_mtl::Result<(PathBuf, String)> {
    locate_dataset(
        StandardDataset::Mnist,
        explicit,
        &["data/mnist"],
        Some("tests/fixtures/mnist-1k"),
    )
}

/// The summaries' `tasks` object of the `mnist_cls_reg` model: digit accuracy, value MAE,
/// MSE and RMSE, from `get(task, metric)`.
pub fn cls_reg_metrics(
    get: &dyn Fn(&str, candle_mtl::metrics::Metric) -> f64,
) -> serde_json::Value {
    use candle_mtl::metrics::Metric;
    use runs::number;
    serde_json::json!({
        "digit": {"accuracy": number(get("digit", Metric::Accuracy))},
        "value": {
            "mae": number(get("value", Metric::Mae)),
            "mse": number(get("value", Metric::Mse)),
            "rmse": number(get("value", Metric::Rmse)),
        },
    })
}

/// Peak resident memory of this process in MiB (Linux), if known.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A trainer for `weighting`. Strategies that learn from held-out data (auto-lambda) get the
/// last 10% of `train` as their validation set; the returned dataset is what is left to train
/// on (all of `train` otherwise).
pub fn build_trainer(
    model: MultiTaskModel,
    weighting: Box<dyn TaskWeighting>,
    config: TrainerConfig,
    train: &TensorDataset,
) -> candle_mtl::Result<(Trainer, TensorDataset)> {
    if !weighting.needs().meta_validation {
        return Ok((Trainer::new(model, weighting, config)?, train.clone()));
    }
    let n = train.len() as u32;
    let cut = n - n / 10;
    let held_out = train.subset(&(cut..n).collect::<Vec<_>>())?;
    let fit_part = train.subset(&(0..cut).collect::<Vec<_>>())?;
    println!(
        "meta-validation: {} of the {n} training samples held out",
        n - cut
    );
    Ok((
        Trainer::with_meta_validation(model, weighting, config, held_out)?,
        fit_part,
    ))
}

/// Parses the flags (`boolean` take no value, the others must be in `known`) and runs `run`,
/// exiting with 2 on bad flags and 1 on an error, the message on stderr.
pub fn main_with(
    usage: &str,
    boolean: &[&str],
    known: &[&str],
    run: impl FnOnce(&Args) -> candle_mtl::Result<()>,
) {
    let args = match Args::parse(boolean, usage).and_then(|a| {
        a.reject_unknown(known)?;
        Ok(a)
    }) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// MNIST digits with three targets: the class (`digit`), the class as a number (`value`) and
/// odd or even (`parity`, 1 for odd).
pub fn digit_value_parity(images: &ImageDataset) -> candle_mtl::Result<TensorDataset> {
    let parity: Vec<u32> = images.labels().iter().map(|l| l % 2).collect();
    TensorDataset::from_images(images, Normalize::mnist())?
        .with_target("digit", images.labels_tensor()?)?
        .with_target("value", images.label_values_tensor()?)?
        .with_target(
            "parity",
            candle_core::Tensor::from_vec(parity, images.len(), &candle_core::Device::Cpu)?,
        )
}
