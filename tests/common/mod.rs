//! Helpers shared by the integration tests (public API only).
#![allow(dead_code)]

pub mod golden;
pub mod http;

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_mtl::data::{load_mnist, ImageDataset, Mnist};
use candle_mtl::prelude::*;

/// The committed fixture: 800 training and 200 test digits from real MNIST.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-1k")
}

pub fn fixture() -> Mnist {
    load_mnist(fixture_dir()).expect("the committed fixture loads")
}

/// Digit class ("digit") and digit value ("value") targets over normalised images.
pub fn cls_reg_dataset(images: &ImageDataset) -> TensorDataset {
    TensorDataset::from_images(images, Normalize::mnist())
        .and_then(|d| d.with_target("digit", images.labels_tensor()?))
        .and_then(|d| d.with_target("value", images.label_values_tensor()?))
        .expect("dataset builds")
}

/// An MLP encoder (784 -> `width`) with one linear head per `(spec, outputs)`.
pub fn mlp_tasks(seed: u64, width: usize, tasks: &[(TaskSpec, usize)]) -> MultiTaskModel {
    let mut builder = MultiTaskModel::builder(&Device::Cpu, seed)
        .encoder(|p| {
            Mlp::new(
                &MlpConfig {
                    hidden: vec![width],
                    ..Default::default()
                },
                p,
            )
        })
        .expect("encoder builds");
    for (spec, outputs) in tasks {
        builder = builder
            .task(spec.clone(), |p| LinearHead::new(width, *outputs, p))
            .expect("task builds");
    }
    builder.build().expect("model builds")
}

/// An MLP encoder (784 -> 64) with a classification and a regression head.
pub fn mlp_model(seed: u64) -> MultiTaskModel {
    mlp_tasks(
        seed,
        64,
        &[
            (TaskSpec::classification("digit"), 10),
            (TaskSpec::regression("value"), 1),
        ],
    )
}

/// A small ConvNet (8 and 16 channels, 32 hidden) with the same two heads.
pub fn small_cnn_model(seed: u64) -> MultiTaskModel {
    let cfg = ConvNetConfig {
        channels: vec![8, 16],
        hidden: 32,
        ..Default::default()
    };
    MultiTaskModel::builder(&Device::Cpu, seed)
        .encoder(|p| ConvNet::new(&cfg, p))
        .and_then(|b| {
            b.task(TaskSpec::classification("digit"), |p| {
                LinearHead::new(32, 10, p)
            })
        })
        .and_then(|b| b.task(TaskSpec::regression("value"), |p| LinearHead::new(32, 1, p)))
        .and_then(|b| b.build())
        .expect("model builds")
}

/// A directory under the system temp dir, unique to this test process and `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("candle-mtl-it-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// `target/<profile>/examples/<name>`, built by `cargo test` before the tests run.
pub fn example_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    bin.is_file().then_some(bin)
}

/// The number after the first `"key": ` in a JSON text.
pub fn json_number(json: &str, key: &str) -> f64 {
    let start = json
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + key.len()
        + 4;
    let rest = &json[start..];
    let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
    rest[..end]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

/// The standard output of an example run that must have succeeded; on failure, panics with
/// `what`, its standard output and its standard error.
pub fn success_stdout(out: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
