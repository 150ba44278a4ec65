//! Runs the built `mnist_cls_reg` example binary in small form, so the example cannot rot.

mod common;

use std::process::Command;

use common::{example_binary, fixture_dir, json_number, success_stdout, temp_dir};

#[test]
fn example_trains_on_the_fixture_and_writes_its_summary() {
    let Some(bin) = example_binary("mnist_cls_reg") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    let summary = temp_dir("example").join("summary.json");
    let timing = temp_dir("example").join("timing.json");
    let saved = temp_dir("example").join("model.safetensors");
    let out = Command::new(&bin)
        .arg("--data-dir")
        .arg(fixture_dir())
        .args([
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--weighting",
            "inverse-loss",
            "--cpu",
            "--summary-json",
        ])
        .arg(&summary)
        .arg("--timing-json")
        .arg(&timing)
        .arg("--save-model")
        .arg(&saved)
        .output()
        .unwrap();
    let stdout = success_stdout(&out, "mnist_cls_reg");
    assert!(
        stdout.contains("epoch 1/2")
            && stdout.contains("epoch 2/2")
            && stdout.contains("samples/s"),
        "{stdout}"
    );
    let json = std::fs::read_to_string(&summary).unwrap();
    let acc = json_number(&json, "accuracy");
    let mae = json_number(&json, "mae");
    assert!(
        acc > 0.5,
        "accuracy {acc} after 2 epochs on 800 digits\n{stdout}"
    );
    assert!(mae < 2.0, "MAE {mae}\n{stdout}");
    assert_eq!(json_number(&json, "train_samples"), 800.0);
    let timing = std::fs::read_to_string(&timing).unwrap();
    assert!(json_number(&timing, "samples_per_second") > 0.0);
    assert!(
        !json.contains("samples_per_second"),
        "timings stay out of the summary"
    );

    // The saved model, loaded by the predict example in another process, reproduces the
    // trained model's test metrics exactly.
    let Some(predict) = example_binary("predict") else {
        eprintln!("skipped: the predict binary was not found next to the test binary");
        return;
    };
    let predicted = temp_dir("example").join("predicted.json");
    let out = Command::new(&predict)
        .arg("--model")
        .arg(&saved)
        .arg("--data-dir")
        .arg(fixture_dir())
        .arg("--summary-json")
        .arg(&predicted)
        .output()
        .unwrap();
    let stdout = success_stdout(&out, "predict");
    assert!(
        stdout.contains("digit:") && stdout.contains("truth:"),
        "{stdout}"
    );
    let predicted = std::fs::read_to_string(&predicted).unwrap();
    for key in ["accuracy", "mae", "mse", "rmse"] {
        assert_eq!(
            json_number(&predicted, key),
            json_number(&json, key),
            "{key} from the saved model differs from the trained model's\n{stdout}"
        );
    }
    // Only the asked task, and a clear error for one the model does not have.
    let out = Command::new(&predict)
        .arg("--model")
        .arg(&saved)
        .arg("--data-dir")
        .arg(fixture_dir())
        .args(["--tasks", "value", "--show", "3"])
        .output()
        .unwrap();
    let stdout = success_stdout(&out, "predict --tasks value");
    assert!(
        stdout.contains("value:") && !stdout.contains("digit:"),
        "{stdout}"
    );
    let out = Command::new(&predict)
        .arg("--model")
        .arg(&saved)
        .arg("--data-dir")
        .arg(fixture_dir())
        .args(["--tasks", "colour"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("'colour'") && stderr.contains("digit, value"),
        "{stderr}"
    );
    // A file that is not a saved model is refused, naming it.
    let out = Command::new(&predict)
        .arg("--model")
        .arg(&summary)
        .arg("--data-dir")
        .arg(fixture_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("summary.json"),
        "{stderr}"
    );
}

#[test]
fn example_reports_bad_input_without_panicking() {
    let Some(bin) = example_binary("mnist_cls_reg") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    let missing = temp_dir("example-missing").join("nowhere");
    let out = Command::new(&bin)
        .arg("--data-dir")
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nowhere") && stderr.contains("train-images-idx3-ubyte"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let out = Command::new(&bin)
        .args(["--weighting", "bogus"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bogus") && stderr.contains("inverse-loss"),
        "{stderr}"
    );

    let out = Command::new(&bin)
        .args(["--epochs", "two"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--epochs"));
}
