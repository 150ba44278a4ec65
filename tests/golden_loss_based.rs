//! The loss-based strategies against torchjd 0.18.0's scalarisers
//! (`$CANDLE_MTL_GOLDEN_DIR/torchjd_scalarization_*.json`). Every `expected_*` entry of every case is
//! checked with the file's pass rule; an entry without a counterpart here fails the test.

mod common;

use candle_mtl::weighting::{
    Cosmos, Decision, Dwa, Equal, Famo, Fixed, GeometricMean, ImtlL, Pbi, Rlw, Scalarized, Stch,
    StepInput, TaskWeighting, Uncertainty,
};
use common::golden::{expected_entries, golden_dir, load, matf, vecf, Tally};
use serde_json::Value;

/// A linear strategy's weights as a scalarisation: `value = sum_k w_k L_k`.
fn linear(strategy: &mut dyn TaskWeighting, losses: &[f64]) -> Result<Scalarized, String> {
    let input = StepInput {
        step: 0,
        epoch: 0,
        losses,
        gradients: None,
        second_gradients: None,
    };
    match strategy.decide(&input).map_err(|e| e.to_string())? {
        Decision::Weights(w) => Ok(Scalarized {
            value: w.iter().zip(losses).map(|(w, l)| w * l).sum(),
            loss_weights: w,
        }),
        Decision::Direction(_) => Err("direction".into()),
    }
}

struct Outputs {
    s: Scalarized,
    extra: Vec<(&'static str, Vec<f64>)>,
}

fn run_case(method: &str, c: &Value) -> Result<Outputs, String> {
    let losses = vecf(&c["losses"]);
    let k = losses.len();
    let mut extra = vec![];
    let s = match method {
        "Mean" => linear(&mut Equal::mean(), &losses)?,
        "Sum" => linear(&mut Equal::sum(), &losses)?,
        "Constant" => linear(
            &mut Fixed::new(vecf(&c["pref_weights"])).map_err(|e| e.to_string())?,
            &losses,
        )?,
        "GeometricMean" => GeometricMean.scalarize(&losses)?,
        "DWA" => {
            // As the file's notes say: each previous epoch average is fed as one batch, then step().
            let mut d = Dwa::default();
            for avg in matf(&c["epoch_average_losses"]) {
                d.record(&avg)?;
                d.step();
            }
            d.scalarize(&losses)?
        }
        "UW" => {
            let mut u = Uncertainty::new(k);
            u.log_var = vecf(&c["state_before"]["param"]);
            extra.push(("expected_grad_log_var", u.parameter_gradient(&losses)?));
            u.scalarize(&losses)?
        }
        "IMTLL" => {
            let mut u = ImtlL::new(k);
            u.log_scale = vecf(&c["state_before"]["param"]);
            extra.push(("expected_grad_log_scale", u.parameter_gradient(&losses)?));
            u.scalarize(&losses)?
        }
        "FAMO" => {
            let mut f = Famo::new(k);
            f.set_logits(vecf(&c["state_before"]["logits"]));
            f.set_min_losses(vecf(&c["min_losses"]));
            let s = f.scalarize(&losses)?;
            f.update(&losses, &vecf(&c["losses_after_step"]))?;
            extra.push(("expected_state_after.logits", f.logits.clone()));
            s
        }
        "COSMOS" => Cosmos::new(2.0, vecf(&c["pref_weights"])).scalarize(&losses)?,
        "PBI" => Pbi::new(5.0, vecf(&c["pref_weights"]), Some(vecf(&c["reference"])))
            .scalarize(&losses)?,
        "STCH" => Stch::new(
            0.5,
            Some(vecf(&c["pref_weights"])),
            Some(vecf(&c["reference"])),
        )
        .scalarize(&losses)?,
        "Random" => Rlw::with_draw(vecf(&c["recorded"]["normal_draw"])).scalarize(&losses)?,
        other => return Err(format!("unknown method {other}")),
    };
    Ok(Outputs { s, extra })
}

const METHODS: [&str; 12] = [
    "Mean",
    "Sum",
    "Constant",
    "GeometricMean",
    "DWA",
    "UW",
    "IMTLL",
    "FAMO",
    "COSMOS",
    "PBI",
    "STCH",
    "Random",
];

#[test]
fn loss_based_strategies_match_torchjd_scalarizers() {
    let Some(dir) = golden_dir() else { return };
    let mut all_failures = vec![];
    for m in METHODS {
        let file = load(&dir, &format!("torchjd_scalarization_{m}"));
        let mut t = Tally::new();
        let cases = file["cases"].as_array().unwrap();
        for (ci, c) in cases.iter().enumerate() {
            let tol = c["tolerance"].as_f64().unwrap();
            let label = format!("{m} case {ci} (seed {})", c["seed"]);
            let out = match run_case(m, c) {
                Ok(o) => o,
                Err(e) => {
                    t.failures.push(format!("{label}: error {e}"));
                    continue;
                }
            };
            let g = matf(&c["G"]);
            for (key, expected) in expected_entries(c) {
                let actual = match key.as_str() {
                    "expected_weights" => out.s.loss_weights.clone(),
                    "expected_scalar" => vec![out.s.value],
                    "expected_direction" => out.s.direction(&g).unwrap(),
                    other => match out.extra.iter().find(|(n, _)| *n == other) {
                        Some((_, v)) => v.clone(),
                        None => {
                            t.failures.push(format!("{label}: no output for {other}"));
                            continue;
                        }
                    },
                };
                t.check(&format!("{label} {key}"), &actual, &expected, tol);
            }
        }
        all_failures.extend(t.report(m, cases.len()));
    }
    assert!(
        all_failures.is_empty(),
        "{} golden failures",
        all_failures.len()
    );
}
