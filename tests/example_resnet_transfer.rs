//! Runs the built `resnet_transfer` example in small form (a narrow ResNet, a CIFAR-10-format
//! folder written from the MNIST fixture), so the example cannot rot; then loads the encoder
//! it saved through `--weights`, strictly and partially.

mod common;

use std::process::Command;

use candle_mtl::data::{
    load_mnist, write_cifar, CifarKind, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES,
};
use common::{example_binary, fixture_dir, json_number, success_stdout, temp_dir};

/// The fixture's digits as 3x32x32 CIFAR-10 records: every training file holds the 800
/// training digits, the test file the 200 test digits.
fn cifar_folder() -> std::path::PathBuf {
    let dir = temp_dir("resnet-transfer-cifar");
    let mnist = load_mnist(fixture_dir()).unwrap();
    let rgb = |d: &candle_mtl::data::ImageDataset| d.pad_to(32, 32).unwrap().grey_to_rgb().unwrap();
    let (train, test) = (rgb(&mnist.train), rgb(&mnist.test));
    let labels = |d: &candle_mtl::data::ImageDataset| {
        d.labels().iter().map(|&l| l as u8).collect::<Vec<_>>()
    };
    for file in CIFAR10_TRAIN_FILES {
        write_cifar(
            dir.join(file),
            CifarKind::Cifar10,
            train.pixels(),
            &labels(&train),
            &[],
        )
        .unwrap();
    }
    write_cifar(
        dir.join(CIFAR10_TEST_FILE),
        CifarKind::Cifar10,
        test.pixels(),
        &labels(&test),
        &[],
    )
    .unwrap();
    dir
}

#[test]
fn example_pretrains_transfers_and_compares_with_scratch() {
    let Some(bin) = example_binary("resnet_transfer") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    let cifar = cifar_folder();
    let dir = temp_dir("resnet-transfer");
    let (summary, encoder) = (dir.join("summary.json"), dir.join("encoder.safetensors"));
    let common_args = |c: &mut Command| {
        c.arg("--cifar-dir").arg(&cifar).args([
            "--width",
            "2",
            "--train-limit",
            "64",
            "--test-limit",
            "64",
            "--head-epochs",
            "1",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--cpu",
        ]);
    };
    let mut c = Command::new(&bin);
    common_args(&mut c);
    let out = c
        .args(["--pretrain-limit", "128"])
        .arg("--save-encoder")
        .arg(&encoder)
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .unwrap();
    let stdout = success_stdout(&out, "resnet_transfer");
    for phase in [
        "pretrain epoch 1/1",
        "frozen encoder epoch 1/1",
        "fine-tune epoch 1/1",
        "from scratch epoch 2/2",
        "from scratch: test accuracy",
        "transfer vs scratch",
    ] {
        assert!(stdout.contains(phase), "no '{phase}' in\n{stdout}");
    }
    let json = std::fs::read_to_string(&summary).unwrap();
    assert!(
        json.contains("\"transfer\"")
            && json.contains("\"scratch\"")
            && json.contains("\"vehicle\""),
        "{json}"
    );
    assert_eq!(json_number(&json, "train_samples"), 64.0);
    // ResNet-18: 20 convolutions (3 in shortcuts), 20 batch norms of 4 tensors each.
    assert_eq!(json_number(&json, "loaded_tensors"), 100.0, "{json}");

    // The saved encoder loads back through --weights (no pretraining), strictly.
    let mut c = Command::new(&bin);
    common_args(&mut c);
    let out = c.arg("--weights").arg(&encoder).output().unwrap();
    let stdout = success_stdout(&out, "resnet_transfer --weights");
    assert!(
        !stdout.contains("pretrain epoch") && stdout.contains("0 missing"),
        "{stdout}"
    );

    // Into a wider model it does not fit: strict mode names a key and both shapes; partial
    // mode reports the layers it could not load and goes on.
    let mut c = Command::new(&bin);
    common_args(&mut c);
    let out = c
        .arg("--weights")
        .arg(&encoder)
        .args(["--width", "4"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a mismatched file was accepted");
    assert!(
        stderr.contains("conv1.weight")
            && stderr.contains("[2, 3, 3, 3]")
            && stderr.contains("[4, 3, 3, 3]"),
        "{stderr}"
    );
    let mut c = Command::new(&bin);
    common_args(&mut c);
    let out = c
        .arg("--weights")
        .arg(&encoder)
        .args(["--width", "4", "--partial"])
        .output()
        .unwrap();
    let stdout = success_stdout(&out, "resnet_transfer --partial");
    assert!(stdout.contains("layer not loaded"), "{stdout}");

    // The supervised source: MNIST digits padded to 32x32 RGB.
    let mut c = Command::new(&bin);
    common_args(&mut c);
    let out = c
        .args(["--source", "mnist", "--pretrain-limit", "64"])
        .arg("--source-dir")
        .arg(fixture_dir())
        .output()
        .unwrap();
    let stdout = success_stdout(&out, "resnet_transfer --source mnist");
    assert!(
        stdout.contains("source: MNIST digits") && stdout.contains("transfer vs scratch"),
        "{stdout}"
    );
}
