//! Runs the built `throughput` example in small form on the committed MNIST fixture, so that
//! the measurement tool behind docs/performance.md cannot rot.

mod common;

use std::process::Command;

use common::{example_binary, fixture_dir, json_number, success_stdout, temp_dir};

#[test]
fn throughput_runs_every_variant_and_writes_its_measurements() {
    let Some(bin) = example_binary("throughput") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    let json = temp_dir("throughput").join("m.json");
    let out = Command::new(&bin)
        .arg("--data-dir")
        .arg(fixture_dir())
        .args([
            "--batch-size",
            "16",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--rounds",
            "2",
        ])
        .args([
            "--variants",
            "trainer,hand,hand-adamw,reference,multi,gradient,frozen-encoder",
        ])
        .args(["--skip-peak", "--epoch", "--json"])
        .arg(&json)
        .output()
        .expect("runs");
    let stdout = success_stdout(&out, "throughput");
    for name in [
        "trainer",
        "hand",
        "reference",
        "multi",
        "gradient(upgrad)",
        "frozen-encoder",
    ] {
        assert!(
            stdout.contains(&format!("| {name} |")),
            "{name} missing:\n{stdout}"
        );
    }
    assert!(stdout.contains("library overhead"), "{stdout}");
    let text = std::fs::read_to_string(&json).expect("json written");
    assert!(
        (json_number(&text, "step_gflop") - 0.4).abs() < 0.01,
        "{text}"
    );
    assert!(json_number(&text, "epoch_samples_per_s") > 0.0, "{text}");

    let bad = Command::new(&bin)
        .args(["--variants", "trainer,warp-drive", "--data-dir"])
        .arg(fixture_dir())
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("warp-drive"), "{err}");
}
