//! Runs the built `spell_digits` example on the committed fixture: the seq2seq head learns
//! to spell the digits' names next to the class and value, the same on 1 and 2 threads.

mod common;

use std::process::Command;

use common::{example_binary, fixture_dir, json_number, success_stdout, temp_dir};

#[test]
fn the_gru_decoder_learns_to_spell_and_runs_bit_identically_on_any_thread_count() {
    let Some(bin) = example_binary("spell_digits") else {
        eprintln!("skipped: the example binary was not found next to the test binary");
        return;
    };
    let dir = temp_dir("example-spell-digits");
    let run = |epochs: &str, threads: &str, name: &str| {
        let summary = dir.join(name);
        let out = Command::new(&bin)
            .env("RAYON_NUM_THREADS", threads)
            .arg("--data-dir")
            .arg(fixture_dir())
            .args(["--epochs", epochs, "--summary-json"])
            .arg(&summary)
            .output()
            .unwrap();
        let stdout = success_stdout(&out, "spell_digits");
        (stdout, std::fs::read_to_string(&summary).unwrap())
    };
    let (stdout, json) = run("8", "2", "long.json");
    let words = json_number(&json, "sequence_accuracy");
    let letters = json_number(&json, "token_accuracy");
    eprintln!("spelling after 8 epochs on 800 digits: words {words:.3}, letters {letters:.3}");
    assert!(words > 0.5 && letters > 0.8, "{json}");
    assert!(json_number(&json, "accuracy") > 0.7, "{json}");
    assert_eq!(stdout.matches(" -> \"").count(), 8, "{stdout}");
    // Correctly decoded words appear among the shown digits.
    assert!(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
            .iter()
            .any(|w| stdout.contains(&format!("\"{w}\""))),
        "{stdout}"
    );
    let digest = |json: &str| {
        let start = json.find("\"parameters_digest\"").expect("digest");
        json[start..]
            .split('"')
            .nth(3)
            .unwrap_or_default()
            .to_string()
    };
    let (_, one) = run("1", "1", "one_thread.json");
    let (_, two) = run("1", "2", "two_threads.json");
    assert_eq!(digest(&one), digest(&two), "{one}\n{two}");
}
