//! A training child process is killed (SIGKILL) at arbitrary moments, checkpoint writes
//! included, and resumed from the newest checkpoint each time; its final parameters equal an
//! uninterrupted run's, and the newest checkpoint on disk always loads.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use candle_mtl::prelude::*;
use candle_mtl::train::{latest_checkpoint, CheckpointPolicy};

const CHILD: &str = "CANDLE_MTL_KILL_RESUME_DIR";
const EPOCHS: usize = 4;

fn trainer(dir: &Path) -> Trainer {
    let config = TrainerConfig {
        batch_size: 32,
        seed: 3,
        checkpoint: Some(CheckpointPolicy {
            keep_last: 2,
            ..CheckpointPolicy::every_steps(dir, 1)
        }),
        ..Default::default()
    };
    let mut t = Trainer::new(
        common::small_cnn_model(4),
        candle_mtl::weighting::by_name("inverse-loss").expect("strategy"),
        config,
    )
    .expect("trainer");
    t.describe_run("data", "fixture, 640 digits");
    t
}

fn data() -> TensorDataset {
    common::cls_reg_dataset(&common::fixture().train.take(640))
}

/// The child: resume from the newest checkpoint (if any), train to the end, write the
/// parameters' digest to `final.txt`.
fn child(dir: &Path) {
    let data = data();
    let mut t = trainer(dir);
    t.resume_from_latest(dir).expect("resume");
    let remaining = EPOCHS.saturating_sub(t.epochs_done());
    t.fit(TaskData::Shared(&data), None, remaining, &mut |_| Ok(()))
        .expect("fit");
    let mut digest = String::new();
    for (name, var) in t.model().params().named_vars() {
        let bits: Vec<u32> = var
            .as_tensor()
            .flatten_all()
            .and_then(|v| v.to_vec1::<f32>())
            .expect("values")
            .iter()
            .map(|v| v.to_bits())
            .collect();
        digest.push_str(&format!("{name} {bits:?}\n"));
    }
    let tmp = dir.join("final.tmp");
    std::fs::write(&tmp, digest).expect("write");
    std::fs::rename(&tmp, dir.join("final.txt")).expect("rename");
}

fn spawn(dir: &Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_killed_run_resumes_to_the_same_parameters",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("child starts")
}

#[test]
fn a_killed_run_resumes_to_the_same_parameters() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child(Path::new(&dir));
        return;
    }
    // The reference: one uninterrupted child.
    let straight = common::temp_dir("kill-straight");
    assert!(spawn(&straight).wait().expect("waits").success());
    let expected = std::fs::read_to_string(straight.join("final.txt")).expect("final");

    // The same run, killed again and again: each time after the child has taken a few more
    // steps (a different number each round) and then a few more milliseconds, so the kills
    // land inside steps and inside checkpoint writes, until it finishes.
    let killed = common::temp_dir("kill-resumed");
    let mut kills = 0;
    let mut finished = false;
    let mut last_step = 0u64;
    for round in 0..12u64 {
        let mut c = spawn(&killed);
        let target = newest_step_file(&killed) + 2 + (round * 5) % 7;
        let start = Instant::now();
        while newest_step_file(&killed) < target && start.elapsed() < Duration::from_secs(60) {
            if c.try_wait().expect("polls").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis((round * 13) % 29));
        if c.try_wait().expect("polls").is_some() {
            finished = true;
            break;
        }
        c.kill().expect("SIGKILL");
        c.wait().expect("reaped");
        kills += 1;
        // Whatever the moment, the newest checkpoint on disk loads, and progress is kept.
        if let Some(path) = latest_checkpoint(&killed).expect("lists") {
            let mut t = trainer(&killed);
            t.load_checkpoint(&path).unwrap_or_else(|e| {
                panic!("newest checkpoint {} does not load: {e}", path.display())
            });
            assert!(t.steps_done() >= last_step, "progress went back");
            last_step = t.steps_done();
        }
    }
    if !finished {
        assert!(spawn(&killed).wait().expect("waits").success());
    }
    assert!(
        kills >= 3 && last_step > 0,
        "only {kills} kills (last checkpoint at step {last_step}): lengthen the run"
    );
    let resumed = std::fs::read_to_string(killed.join("final.txt")).expect("final");
    assert!(
        resumed == expected,
        "parameters after {kills} kills differ from the uninterrupted run"
    );
    eprintln!("{kills} kills, last checkpoint at step {last_step}: identical parameters");
}

/// The highest step number among the `step-N.safetensors` files in `dir` (0 when none).
fn newest_step_file(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("step-")?
                        .strip_suffix(".safetensors")?
                        .parse::<u64>()
                        .ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}
