//! Runs the built `three_tasks` and `transfer` examples in small form on the committed MNIST
//! fixture, so that they cannot rot.

mod common;

use std::process::Command;

use common::{example_binary, fixture_dir, success_stdout, temp_dir};

/// The number after `label` in `text` (up to the next space or `%`).
fn number_after(text: &str, label: &str) -> f64 {
    let start = text
        .find(label)
        .unwrap_or_else(|| panic!("no '{label}' in:\n{text}"))
        + label.len();
    let rest = text[start..].trim_start();
    let end = rest.find([' ', '%', '|', '\n']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("'{label}' is not followed by a number in:\n{text}"))
}

#[test]
fn three_tasks_trains_three_losses() {
    let Some(bin) = example_binary("three_tasks") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    let out = Command::new(&bin)
        .arg("--data-dir")
        .arg(fixture_dir())
        .args(["--epochs", "3", "--hidden", "64", "--cpu"])
        .output()
        .expect("runs");
    let stdout = success_stdout(&out, "three_tasks");
    assert!(stdout.contains("epoch 3/3"), "{stdout}");
    let last = stdout
        .lines()
        .find(|l| l.starts_with("epoch 3/3"))
        .unwrap_or_default();
    assert!(number_after(last, "test digit") > 60.0, "{stdout}");
    assert!(number_after(last, "parity") > 60.0, "{stdout}");
    assert!(number_after(last, "value MAE") < 2.5, "{stdout}");
    assert!(number_after(last, "NLL") > 0.0, "{stdout}");
    let out = Command::new(&bin)
        .args(["--hidden", "64,x"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--hidden"));
}

#[test]
fn transfer_saves_loads_freezes_and_fine_tunes() {
    let Some(bin) = example_binary("transfer") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    // The fixture stands in for both datasets: this checks the mechanics, not the benefit.
    let out_dir = temp_dir("transfer-example");
    let out = Command::new(&bin)
        .arg("--fashion-dir")
        .arg(fixture_dir())
        .arg("--mnist-dir")
        .arg(fixture_dir())
        .arg("--out")
        .arg(&out_dir)
        .args([
            "--pretrain-epochs",
            "1",
            "--labelled",
            "100",
            "--head-epochs",
            "1",
            "--finetune-epochs",
            "1",
            "--cpu",
        ])
        .output()
        .expect("runs");
    let stdout = success_stdout(&out, "transfer");
    assert!(
        stdout.contains("loaded and froze encoder layers conv0, conv1")
            && stdout.contains("vs scratch"),
        "{stdout}"
    );
    for layer in ["conv0", "conv1", "fc"] {
        assert!(out_dir.join(format!("{layer}.safetensors")).is_file());
    }
    // A damaged encoder file is refused with its name.
    std::fs::write(out_dir.join("conv1.safetensors"), b"not a tensor file").expect("write");
    let out = Command::new(&bin)
        .arg("--fashion-dir")
        .arg(fixture_dir())
        .arg("--mnist-dir")
        .arg(fixture_dir())
        .arg("--encoder-dir")
        .arg(&out_dir)
        .args(["--labelled", "50", "--cpu"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("conv1.safetensors"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
