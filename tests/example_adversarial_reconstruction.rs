//! Runs the built `adversarial_reconstruction` example on the committed fixture: the
//! adversarial head reconstructs the digits better than a blank image, and the PNG grid is
//! written.

mod common;

use std::process::Command;

use common::{example_binary, fixture, fixture_dir, json_number, success_stdout, temp_dir};

#[test]
fn the_adversarial_head_reconstructs_digits_and_writes_the_grid() {
    let Some(bin) = example_binary("adversarial_reconstruction") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    let dir = temp_dir("example-adversarial");
    let (png, summary) = (dir.join("grid.png"), dir.join("summary.json"));
    let out = Command::new(&bin)
        .arg("--data-dir")
        .arg(fixture_dir())
        .args(["--epochs", "3", "--png"])
        .arg(&png)
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .unwrap();
    let stdout = success_stdout(&out, "adversarial_reconstruction");
    assert!(stdout.contains("samples/s"), "{stdout}");
    let json = std::fs::read_to_string(&summary).unwrap();
    // The error of an all-black image: the mean squared pixel of the test digits.
    let test = fixture().test;
    let blank = test
        .pixels()
        .iter()
        .map(|&p| (f64::from(p) / 255.0).powi(2))
        .sum::<f64>()
        / test.pixels().len() as f64;
    let start = json.find("\"image\"").expect("image task in the summary");
    let mse = json_number(&json[start..], "mse");
    eprintln!("reconstruction MSE {mse:.4}, blank image {blank:.4}");
    assert!(mse < 0.8 * blank, "MSE {mse} vs blank {blank}");
    assert!(json_number(&json, "accuracy") > 0.5, "{json}");
    let grid = image::open(&png).unwrap();
    assert_eq!((grid.width(), grid.height()), (16 * 28, 2 * 28));
}
