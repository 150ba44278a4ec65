//! Runs the built `custom_task` example on the committed fixture: a pinball loss and a
//! coverage metric defined in the example, focal loss with top-3, a masked multi-label task.

mod common;

use std::process::Command;

use common::{example_binary, fixture_dir, json_number, success_stdout, temp_dir};

#[test]
fn the_pinball_quantile_moves_the_coverage_and_every_metric_is_reported() {
    let Some(bin) = example_binary("custom_task") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    let dir = temp_dir("example-custom-task");
    let coverage = |q: &str| {
        let summary = dir.join(format!("q{q}.json"));
        let out = Command::new(&bin)
            .arg("--data-dir")
            .arg(fixture_dir())
            .args(["--epochs", "3", "--quantile", q, "--summary-json"])
            .arg(&summary)
            .output()
            .unwrap();
        let stdout = success_stdout(&out, "custom_task");
        assert!(stdout.contains("samples/s"), "{stdout}");
        let json = std::fs::read_to_string(&summary).unwrap();
        for key in ["top3_accuracy", "accuracy", "coverage", "mae", "f1", "map"] {
            assert!(json_number(&json, key).is_finite(), "{key} in {json}");
        }
        json_number(&json, "coverage")
    };
    let (low, high) = (coverage("0.1"), coverage("0.9"));
    eprintln!("coverage at q = 0.1: {low:.3}, at q = 0.9: {high:.3}");
    assert!(high > low + 0.4, "coverage {low} at q 0.1, {high} at q 0.9");
    // A quantile outside (0, 1) is refused, naming the flag.
    let out = Command::new(&bin)
        .arg("--data-dir")
        .arg(fixture_dir())
        .args(["--quantile", "1.5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--quantile"),
        "{stderr}"
    );
}
