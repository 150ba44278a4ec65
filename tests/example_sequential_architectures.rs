//! Runs the built `sequential_tasks` and `compare_architectures` examples in small form on
//! the committed MNIST fixture, so that they cannot rot.

mod common;

use std::process::Command;

use common::{example_binary, fixture_dir, success_stdout};

#[test]
fn sequential_tasks_trains_gru_lstm_and_transformer() {
    let Some(bin) = example_binary("sequential_tasks") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    for encoder in ["gru", "lstm", "transformer"] {
        let out = Command::new(&bin)
            .arg("--data-dir")
            .arg(fixture_dir())
            .args([
                "--encoder",
                encoder,
                "--epochs",
                "2",
                "--hidden",
                "32",
                "--cpu",
            ])
            .output()
            .expect("runs");
        let stdout = success_stdout(&out, &format!("sequential_tasks --encoder {encoder}"));
        assert!(
            stdout.contains("final |") && stdout.contains("parity accuracy"),
            "{stdout}"
        );
    }
    let out = Command::new(&bin)
        .args(["--encoder", "transformerish"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("transformerish"));
}

#[test]
fn compare_architectures_prints_delta_m_against_hard_sharing() {
    let Some(bin) = example_binary("compare_architectures") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    let out = Command::new(&bin)
        .arg("--mnist-dir")
        .arg(fixture_dir())
        .args([
            "--dataset",
            "multi-mnist",
            "--train",
            "128",
            "--test",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "32",
        ])
        .output()
        .expect("runs");
    let stdout = success_stdout(&out, "compare_architectures");
    for arch in ["hps", "mmoe", "cgc", "ple", "cross-stitch", "mtan"] {
        assert!(stdout.contains(&format!("| {arch} |")), "{arch}: {stdout}");
    }
    assert!(
        stdout.contains("| hps |") && stdout.contains("+0.00"),
        "{stdout}"
    );
}
