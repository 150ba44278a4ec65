//! Runs the built `compare_schedules` example in small form on the fixture, so it cannot rot.

mod common;

use std::process::Command;

use common::{example_binary, fixture_dir, success_stdout, temp_dir};

#[test]
fn every_schedule_runs_with_the_same_number_of_steps() {
    let Some(bin) = example_binary("compare_schedules") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    let summary = temp_dir("compare-schedules").join("summary.json");
    let out = Command::new(&bin)
        .arg("--data-dir")
        .arg(fixture_dir())
        .args([
            "--seeds",
            "0",
            "--epochs",
            "2",
            "--train-limit",
            "320",
            "--phase-steps",
            "2",
            "--batch-size",
            "32",
        ])
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .unwrap();
    let stdout = success_stdout(&out, "compare_schedules");
    for schedule in [
        "joint",
        "task-alternating",
        "encoder-decoder",
        "bottom-up",
        "top-down",
        "progressive",
        "auto-lambda",
    ] {
        assert!(
            stdout.contains(&format!("| {schedule} |")),
            "no row for {schedule}\n{stdout}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 7);
    // 90% of 320 samples in batches of 32: 9 steps an epoch, 18 in all, for every schedule.
    for r in runs {
        assert_eq!(r["steps"], 18, "{r}");
    }
    let out = Command::new(&bin)
        .arg("--data-dir")
        .arg(fixture_dir())
        .args(["--schedules", "joint,sideways"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("sideways"),
        "{stderr}"
    );
}
