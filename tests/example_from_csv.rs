//! Runs the built `export_manifest` and `from_csv` examples on the committed fixture: a
//! manifest of PNG files with a partially labelled task, a feature table, bad rows.

mod common;

use std::fmt::Write as _;
use std::process::Command;

use common::{example_binary, fixture_dir, success_stdout, temp_dir};

#[test]
fn from_csv_trains_from_exported_pngs_and_from_a_feature_table() {
    let (Some(export), Some(from_csv)) = (
        example_binary("export_manifest"),
        example_binary("from_csv"),
    ) else {
        eprintln!("skipped: the example binaries were not found next to the test binary");
        return;
    };
    let dir = temp_dir("example-from-csv");
    let out = Command::new(&export)
        .arg("--data-dir")
        .arg(fixture_dir())
        .arg("--out")
        .arg(&dir)
        .args(["--missing", "0.25"])
        .output()
        .unwrap();
    let stdout = success_stdout(&out, "export_manifest");
    assert!(
        stdout.contains("wrote 800 training and 200 test images"),
        "{stdout}"
    );
    let summary = dir.join("summary.json");
    let out = Command::new(&from_csv)
        .arg("--manifest")
        .arg(dir.join("train.csv"))
        .arg("--test-manifest")
        .arg(dir.join("test.csv"))
        .args([
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--workers",
            "2",
            "--cpu",
        ])
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .unwrap();
    let stdout = success_stdout(&out, "from_csv on PNG files");
    // About 25% of the 800 training rows have no class; every row has its ink value.
    let labelled: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("  task class: classes (10), "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no label count line for class\n{stdout}"));
    assert!(
        (520..680).contains(&labelled),
        "{labelled} labelled\n{stdout}"
    );
    assert!(
        stdout.contains("task ink: values, 800 of 800 samples labelled"),
        "{stdout}"
    );
    for needle in [
        "samples/s",
        "peak memory",
        "test | class: accuracy",
        "test | ink: mae",
    ] {
        assert!(stdout.contains(needle), "no '{needle}' in\n{stdout}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let acc = json["tasks"]["class"]["accuracy"].as_f64().unwrap();
    assert!(
        acc > 0.3,
        "accuracy {acc} after two epochs on 600 labelled digits"
    );
    assert_eq!(json["tasks"]["class"]["samples"], 200);

    // A table of numeric features, no test manifest (a seeded 10% split), bad rows skipped.
    let mut table = String::from("id,x1,x2,parity,sum\n");
    for i in 0..300 {
        let (a, b) = ((i * 7 % 10) as f64, (i * 3 % 7) as f64);
        let _ = writeln!(table, "{i},{a},{b},{},{:.1}", (a + b) as u32 % 2, a + b);
    }
    table.push_str("300,1,oops,0,2.0\n301,1,2\n");
    let csv = dir.join("table.csv");
    std::fs::write(&csv, &table).unwrap();
    let run = |extra: &[&str]| {
        Command::new(&from_csv)
            .arg("--manifest")
            .arg(&csv)
            .args([
                "--features",
                "x1,x2",
                "--ignore",
                "id",
                "--epochs",
                "2",
                "--cpu",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("table.csv") && stderr.contains("line 302") && stderr.contains("'x2'"),
        "{stderr}"
    );
    let out = run(&["--skip-bad-rows", "--workers", "0"]);
    let stdout = success_stdout(&out, "from_csv on a feature table");
    assert!(stdout.contains("2 bad rows skipped"), "{stdout}");
    assert!(stdout.contains("line 303"), "{stdout}");
    assert!(stdout.contains("30 samples held out"), "{stdout}");
    assert!(
        stdout.contains("task parity: classes (2)") && stdout.contains("task sum: values"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
