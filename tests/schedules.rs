//! The design documents' optimisation schedules: encoder/decoder alternation and bottom-up
//! layer-wise training. Each test checks which parameters move in which phase, so it fails
//! when the schedule is switched off (a joint step moves everything).

mod common;

use candle_core::Device;
use candle_mtl::model::Component;
use candle_mtl::prelude::*;
use candle_mtl::train::{HeadsTraining, PhaseSchedule, StepBatch, TrainingMode, UnfreezeSchedule};
use candle_mtl::weighting::by_name;
use common::{cls_reg_dataset, fixture, small_cnn_model, temp_dir};

fn snapshot(model: &MultiTaskModel) -> Vec<(String, Vec<f32>)> {
    model
        .params()
        .named_vars()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect()
}

/// The parts (`encoder.conv0`, `encoder.conv1`, `encoder.fc`, `heads`) whose parameters moved.
fn moved_parts(before: &[(String, Vec<f32>)], after: &[(String, Vec<f32>)]) -> Vec<&'static str> {
    let parts = ["encoder.conv0.", "encoder.conv1.", "encoder.fc.", "heads."];
    parts
        .into_iter()
        .filter(|p| {
            before
                .iter()
                .zip(after)
                .any(|((n, a), (_, b))| n.starts_with(p) && a != b)
        })
        .map(|p| p.trim_end_matches('.'))
        .collect()
}

fn config(mode: TrainingMode, unfreeze: Option<UnfreezeSchedule>) -> TrainerConfig {
    TrainerConfig {
        batch_size: 40,
        seed: 9,
        mode,
        unfreeze,
        ..Default::default()
    }
}

fn batches(n: usize) -> Vec<StepBatch> {
    let data = cls_reg_dataset(&fixture().train.take(40 * n));
    (0..n as u32)
        .map(|i| {
            let idx: Vec<u32> = (i * 40..(i + 1) * 40).collect();
            StepBatch::Shared(data.batch(&idx, &Device::Cpu).unwrap())
        })
        .collect()
}

const ENCODER: [&str; 3] = ["encoder.conv0", "encoder.conv1", "encoder.fc"];

#[test]
fn encoder_decoder_phases_train_heads_then_encoder_in_turn() {
    let mode = TrainingMode::EncoderDecoder(PhaseSchedule::steps(2, 3));
    let mut t = Trainer::new(
        small_cnn_model(1),
        by_name("uncertainty").unwrap(),
        config(mode, None),
    )
    .unwrap();
    let steps = batches(7);
    let heads_phase = [true, true, false, false, false, true, true];
    for (s, batch) in steps.iter().enumerate() {
        let before = snapshot(t.model());
        t.train_step(batch).unwrap();
        let moved = moved_parts(&before, &snapshot(t.model()));
        if heads_phase[s] {
            assert_eq!(moved, ["heads"], "step {s} (heads phase)");
        } else {
            assert_eq!(moved, ENCODER, "step {s} (encoder phase)");
        }
    }
    // Switched off: a joint step moves both.
    let mut joint = Trainer::new(
        small_cnn_model(1),
        by_name("uncertainty").unwrap(),
        config(TrainingMode::Joint, None),
    )
    .unwrap();
    let before = snapshot(joint.model());
    joint.train_step(&steps[0]).unwrap();
    assert_eq!(
        moved_parts(&before, &snapshot(joint.model())),
        ["encoder.conv0", "encoder.conv1", "encoder.fc", "heads"]
    );
}

#[test]
fn encoder_decoder_alternation_resumes_mid_phase_and_refuses_shared_gradients() {
    let mode = TrainingMode::EncoderDecoder(PhaseSchedule::steps(2, 3));
    let make = || {
        Trainer::new(
            small_cnn_model(2),
            by_name("dwa").unwrap(),
            config(mode.clone(), None),
        )
        .unwrap()
    };
    let steps = batches(8);
    let mut straight = make();
    for b in &steps {
        straight.train_step(b).unwrap();
    }
    let path = temp_dir("encoder-decoder").join("ckpt.safetensors");
    let mut first = make();
    for b in &steps[..3] {
        first.train_step(b).unwrap();
    }
    first.save_checkpoint(&path).unwrap();
    drop(first);
    let mut resumed = make();
    resumed.load_checkpoint(&path).unwrap();
    for b in &steps[3..] {
        resumed.train_step(b).unwrap();
    }
    assert_eq!(snapshot(straight.model()), snapshot(resumed.model()));
    // Representation gradients work in both phases; shared-parameter ones are refused.
    let mut rep = Trainer::new(
        small_cnn_model(2),
        by_name("mgda-ub").unwrap(),
        config(mode.clone(), None),
    )
    .unwrap();
    for b in &steps[..3] {
        rep.train_step(b).unwrap();
    }
    let err = Trainer::new(
        small_cnn_model(2),
        by_name("pcgrad").unwrap(),
        config(mode, None),
    )
    .err()
    .expect("pcgrad refused")
    .to_string();
    assert!(err.contains("encoder/decoder alternation"), "{err}");
}

#[test]
fn bottom_up_releases_layers_from_the_input() {
    let train = cls_reg_dataset(&fixture().train.take(200));
    let mut t = Trainer::new(
        small_cnn_model(3),
        by_name("equal").unwrap(),
        config(TrainingMode::Joint, Some(UnfreezeSchedule::bottom_up(1))),
    )
    .unwrap();
    let expect: [&[&str]; 3] = [
        &["encoder.conv0", "heads"],
        &["encoder.conv0", "encoder.conv1", "heads"],
        &["encoder.conv0", "encoder.conv1", "encoder.fc", "heads"],
    ];
    for (epoch, want) in expect.iter().enumerate() {
        let before = snapshot(t.model());
        t.train_epoch(TaskData::Shared(&train)).unwrap();
        assert_eq!(
            moved_parts(&before, &snapshot(t.model())),
            *want,
            "epoch {epoch}"
        );
    }
    // Top-down, the same periods: the layer next to the heads first.
    let mut top = Trainer::new(
        small_cnn_model(3),
        by_name("equal").unwrap(),
        config(TrainingMode::Joint, Some(UnfreezeSchedule::top_down(0, 1))),
    )
    .unwrap();
    let before = snapshot(top.model());
    top.train_epoch(TaskData::Shared(&train)).unwrap();
    assert_eq!(
        moved_parts(&before, &snapshot(top.model())),
        ["encoder.fc", "heads"]
    );
}

#[test]
fn greedy_bottom_up_trains_one_layer_at_a_time_heads_last_then_everything() {
    let train = cls_reg_dataset(&fixture().train.take(200));
    let schedule = UnfreezeSchedule {
        keep_trained: false,
        heads: HeadsTraining::Last,
        ..UnfreezeSchedule::bottom_up(1)
    };
    let model = small_cnn_model(4);
    // A layer the user froze stays frozen whatever the schedule says.
    model
        .freeze(&Component::EncoderLayer("conv1".into()))
        .unwrap();
    let mut t = Trainer::new(
        model,
        by_name("equal").unwrap(),
        config(TrainingMode::Joint, Some(schedule)),
    )
    .unwrap();
    let expect: [&[&str]; 5] = [
        &["encoder.conv0"],
        &[],
        &["encoder.fc"],
        &["heads"],
        &["encoder.conv0", "encoder.fc", "heads"],
    ];
    for (epoch, want) in expect.iter().enumerate() {
        let before = snapshot(t.model());
        t.train_epoch(TaskData::Shared(&train)).unwrap();
        assert_eq!(
            moved_parts(&before, &snapshot(t.model())),
            *want,
            "epoch {epoch}"
        );
    }
}
