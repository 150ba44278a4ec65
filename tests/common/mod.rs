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

/// An MLP encoder (784 -> 64) with a classification and a regression head.
pub fn mlp_model(seed: u64) -> MultiTaskModel {
    MultiTaskModel::builder(&Device::Cpu, seed)
        .encoder(|p| {
            Mlp::new(
                &MlpConfig {
                    hidden: vec![64],
                    ..Default::default()
                },
                p,
            )
        })
        .and_then(|b| {
            b.task(TaskSpec::classification("digit"), |p| {
                LinearHead::new(64, 10, p)
            })
        })
        .and_then(|b| b.task(TaskSpec::regression("value"), |p| LinearHead::new(64, 1, p)))
        .and_then(|b| b.build())
        .expect("model builds")
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
