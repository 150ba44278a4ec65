//! Runs the built `mnist_cifar` example on the MNIST fixture plus small CIFAR-10-format files
//! that the test writes (real CIFAR-10 is not available offline): both input adaptations, the
//! single-task baselines and Delta-m, and its errors on bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_mtl::data::{write_cifar, CifarKind, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES};
use common::{example_binary, fixture, fixture_dir, json_number, success_stdout, temp_dir};

/// CIFAR-10-format files whose images are the fixture's digits in 3x32x32 colour (so the
/// task is learnable) and whose labels are the digits' classes.
fn write_cifar_files(dir: &Path) -> PathBuf {
    let mnist = fixture();
    let train = mnist
        .train
        .pad_to(32, 32)
        .and_then(|d| d.grey_to_rgb())
        .expect("rgb");
    let test = mnist
        .test
        .pad_to(32, 32)
        .and_then(|d| d.grey_to_rgb())
        .expect("rgb");
    let per_file = 80;
    let write = |images: &candle_mtl::data::ImageDataset, from: usize, n: usize, name: &str| {
        let part = images
            .select(&(from..from + n).collect::<Vec<_>>())
            .expect("select");
        let labels: Vec<u8> = part.labels().iter().map(|&l| l as u8).collect();
        write_cifar(
            dir.join(name),
            CifarKind::Cifar10,
            part.pixels(),
            &labels,
            &[],
        )
        .expect("write");
    };
    for (i, name) in CIFAR10_TRAIN_FILES.iter().enumerate() {
        // Images 400.. of the fixture, so that the "CIFAR" task does not see MNIST's images.
        write(&train, 400 + i * per_file, per_file, name);
    }
    write(&test, 0, 200, CIFAR10_TEST_FILE);
    dir.to_path_buf()
}

#[test]
fn example_trains_both_adaptations_and_reports_baselines() {
    let Some(bin) = example_binary("mnist_cifar") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    let base = temp_dir("mnist-cifar");
    let cifar = write_cifar_files(&base);
    for adapt in ["pad", "stem"] {
        let summary = base.join(format!("summary-{adapt}.json"));
        let timing = base.join(format!("timing-{adapt}.json"));
        let out = Command::new(&bin)
            .arg("--mnist-dir")
            .arg(fixture_dir())
            .arg("--cifar-dir")
            .arg(&cifar)
            .args([
                "--adapt",
                adapt,
                "--train-limit",
                "400",
                "--epochs",
                "2",
                "--batch-size",
                "32",
                "--weighting",
                "inverse-loss",
                "--baseline",
                "--cpu",
                "--summary-json",
            ])
            .arg(&summary)
            .arg("--timing-json")
            .arg(&timing)
            .output()
            .expect("runs");
        let stdout = success_stdout(&out, &format!("mnist_cifar --adapt {adapt}"));
        assert!(
            stdout.contains("epoch 2/2")
                && stdout.contains("| mnist |")
                && stdout.contains("| cifar |")
                && stdout.contains("Delta-m")
                && stdout.contains("samples/s"),
            "{stdout}"
        );
        let text = std::fs::read_to_string(&summary).expect("summary");
        let json: serde_json::Value = serde_json::from_str(&text).expect("summary is JSON");
        let mnist = &json["tasks"]["mnist"];
        let mnist_acc = mnist["accuracy"].as_f64().unwrap_or(f64::NAN);
        assert!(
            mnist_acc > 0.4,
            "{adapt}: MNIST accuracy {mnist_acc}\n{stdout}"
        );
        let single = mnist["single_task_accuracy"].as_f64().unwrap_or(f64::NAN);
        assert!(
            single > 0.4,
            "{adapt}: single-task accuracy {single}\n{stdout}"
        );
        assert!(
            json["delta_m"].as_f64().is_some_and(f64::is_finite),
            "{text}"
        );
        assert_eq!(
            json["steps"].as_f64().unwrap_or(f64::NAN),
            26.0,
            "2 epochs of 13 batches of 32"
        );
        let timing = std::fs::read_to_string(&timing).expect("timing");
        assert!(json_number(&timing, "samples_per_second") > 0.0);
    }
}

#[test]
fn example_names_missing_cifar_files_and_bad_flags() {
    let Some(bin) = example_binary("mnist_cifar") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    let missing = temp_dir("mnist-cifar-missing").join("no-cifar-here");
    let out = Command::new(&bin)
        .arg("--mnist-dir")
        .arg(fixture_dir())
        .arg("--cifar-dir")
        .arg(&missing)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no-cifar-here") && stderr.contains("data_batch_1.bin"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = Command::new(&bin)
        .args(["--adapt", "stretch"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stretch") && stderr.contains("pad or stem"),
        "{stderr}"
    );
}
