//! Golden tests: every case of every golden file this crate covers, every `expected_*` entry,
//! with the files' pass rule `max_i |a_i - e_i| <= tol * max(1, max_i |e_i|)`.
//!
//! Run with `cargo test --release --test golden -- --nocapture` to see the per-file summary.

mod common;

use candle_mtl::weighting::gradient_based::*;
use candle_mtl::weighting::{Dwa, Equal, GeometricMean, Rlw, Uncertainty};
use common::golden::golden_dir;
use serde_json::Value;
use std::collections::BTreeSet;

/// `sum_k w_k rows_k`.
fn combine(rows: &[Vec<f64>], w: &[f64]) -> Result<Vec<f64>, String> {
    candle_mtl::solvers::matrix::combine(w, rows)
}

/// The Gramian `G G^T`.
fn gram(rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    candle_mtl::solvers::matrix::gramian(rows).unwrap()
}

/// Weights of one of the crate's linear strategies for `k` tasks.
fn linear_weights(mut s: impl candle_mtl::weighting::TaskWeighting, losses: &[f64]) -> Vec<f64> {
    let input = candle_mtl::weighting::StepInput {
        step: 0,
        epoch: 0,
        losses,
        gradients: None,
        second_gradients: None,
    };
    match s.decide(&input).unwrap() {
        candle_mtl::weighting::Decision::Weights(w) => w,
        candle_mtl::weighting::Decision::Direction(_) => panic!("weights expected"),
    }
}

fn vecf(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}
fn mat(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(vecf).collect()
}
fn orders(v: &Value) -> Vec<Vec<usize>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            o.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect()
        })
        .collect()
}

/// Result of comparing one expected entry.
struct Cmp {
    key: String,
    err: f64,
    allowed: f64,
}

struct CaseCtx<'a> {
    case: &'a Value,
    tol: f64,
    results: Vec<Cmp>,
    checked: BTreeSet<String>,
    notes: Vec<String>,
}

impl<'a> CaseCtx<'a> {
    fn new(case: &'a Value) -> Self {
        Self {
            case,
            tol: case["tolerance"].as_f64().unwrap(),
            results: Vec::new(),
            checked: BTreeSet::new(),
            notes: Vec::new(),
        }
    }
    fn g(&self) -> Vec<Vec<f64>> {
        mat(&self.case["G"])
    }
    fn v(&self, key: &str) -> Vec<f64> {
        vecf(&self.case[key])
    }
    fn check(&mut self, key: &str, actual: &[f64]) {
        self.check_value(key, actual, &self.case[key].clone());
    }
    fn check_value(&mut self, key: &str, actual: &[f64], expected: &Value) {
        let expected = if expected.is_array() && expected[0].is_array() {
            mat(expected).concat()
        } else if expected.is_number() {
            vec![expected.as_f64().unwrap()]
        } else {
            vecf(expected)
        };
        self.checked
            .insert(key.split('.').next().unwrap().to_string());
        let scale = expected.iter().fold(1.0_f64, |m, v| m.max(v.abs()));
        let err = if actual.len() != expected.len() {
            f64::INFINITY
        } else {
            actual
                .iter()
                .zip(&expected)
                .map(|(a, e)| (a - e).abs())
                .fold(0.0, f64::max)
        };
        self.results.push(Cmp {
            key: key.to_string(),
            err,
            allowed: self.tol * scale,
        });
    }
    fn skip(&mut self, key: &str, why: &str) {
        self.checked.insert(key.to_string());
        self.notes.push(format!("{key} not compared: {why}"));
    }
    fn unchecked(&self) -> Vec<String> {
        self.case
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("expected_") && !self.checked.contains(*k))
            .cloned()
            .collect()
    }
}

fn weights_unique(case: &Value) -> bool {
    case["info"]
        .get("weights_unique")
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

/// Runs one case; returns Err(message) on a method error.
fn run_case(method: &str, c: &mut CaseCtx) -> Result<(), String> {
    let g = c.g();
    let k = g.len();
    match method {
        "libmtl_EW" => {
            // LibMTL's EW sums: the crate's Equal::sum.
            let w = linear_weights(Equal::sum(), &vec![1.0; k]);
            c.check("expected_weights", &w);
            c.check("expected_effective_weights", &w);
            c.check("expected_direction", &combine(&g, &w)?);
        }
        m if m.starts_with("libmtl_MGDA_") => {
            let norm = match m {
                "libmtl_MGDA_none" => MgdaNormalization::None,
                "libmtl_MGDA_l2" => MgdaNormalization::L2,
                "libmtl_MGDA_loss" => MgdaNormalization::Loss,
                _ => MgdaNormalization::LossPlus,
            };
            let losses = if c.case.get("losses").is_some() {
                c.v("losses")
            } else {
                vec![]
            };
            let out = MgdaNormalized::new(norm).step(&g, &losses)?;
            if out.iterations > 250 {
                c.notes.push(format!(
                    "Frank-Wolfe ran {} iterations (> 250: LibMTL 1.1.5 has no cap in effect)",
                    out.iterations
                ));
            }
            if weights_unique(c.case) {
                c.check("expected_weights", &out.sol);
            } else {
                c.skip(
                    "expected_weights",
                    "info.weights_unique = false (README: compare the direction only)",
                );
            }
            c.check("expected_direction", &combine(&g, &out.coefficients)?);
        }
        "libmtl_CAGrad" => {
            let m = CaGradLibMtl::default();
            let out = m.step(&g)?;
            let ew = c.v("expected_weights");
            let err = out
                .inner_weights
                .iter()
                .zip(&ew)
                .map(|(a, e)| (a - e).abs())
                .fold(0.0, f64::max);
            let allowed = c.tol * ew.iter().fold(1.0_f64, |m, v| m.max(v.abs()));
            let gram = gram(&g);
            let f_ours = m.inner_objective(&gram, &out.inner_weights)?;
            let f_ref = m.inner_objective(&gram, &ew)?;
            if err > allowed && f_ours < f_ref {
                // The reference's SLSQP stopped at a worse point of a nearly flat valley
                // (near-duplicate rows): compare the inner objective instead of the weights.
                c.skip(
                    "expected_weights",
                    &format!(
                        "weights differ by {err:.2e} but the reference SLSQP point is not the minimiser: \
                         f(ref) - f(ours) = {:.2e} > 0 (near-duplicate rows make the inner problem flat); \
                         checked f(ours) <= f(ref) and the direction instead",
                        f_ref - f_ours
                    ),
                );
                c.results.push(Cmp {
                    key: "inner_objective f(ours) - f(ref)".to_string(),
                    err: (f_ours - f_ref).max(0.0),
                    allowed: c.tol * f_ref.abs().max(1.0),
                });
            } else {
                c.check("expected_weights", &out.inner_weights);
            }
            c.check("expected_direction", &combine(&g, &out.coefficients)?);
        }
        "libmtl_IMTL" => {
            let mut m = Imtl::default();
            m.set_loss_scale(vecf(&c.case["state_before"]["loss_scale"]))?;
            let out = m.step(&g, &c.v("losses"))?;
            c.check("expected_weights", &out.alpha);
            c.check("expected_grad_loss_scale", &out.grad_loss_scale);
            c.check("expected_direction", &combine(&g, &out.coefficients)?);
        }
        "libmtl_PCGrad" | "torchjd_PCGrad" => {
            let m = if method == "libmtl_PCGrad" {
                PcGrad::libmtl()
            } else {
                PcGrad::torchjd()
            };
            let o = orders(&c.case["recorded"]["task_orders"]);
            let w = m.aggregate_with_orders(&g, &o)?;
            c.check("expected_weights", &w);
            c.check("expected_direction", &combine(&g, &w)?);
        }
        "libmtl_GradVac" | "torchjd_GradVac" => {
            let (mut m, key) = if method == "libmtl_GradVac" {
                (GradVac::libmtl(), "rho_T")
            } else {
                (GradVac::torchjd(), "phi_hat")
            };
            m.set_phi_hat(mat(&c.case["state_before"][key]))?;
            let o = orders(&c.case["recorded"]["task_orders"]);
            let w = m.aggregate_with_orders(&g, &o)?;
            c.check("expected_weights", &w);
            c.check("expected_direction", &combine(&g, &w)?);
            let exp = c.case["expected_state_after"][key].clone();
            c.check_value("expected_state_after", &m.phi_hat.concat(), &exp);
        }
        "libmtl_DWA" => {
            // The crate's Dwa, fed the epoch averages LibMTL keeps in train_loss_buffer[k][e]
            // for the epochs before the current one.
            let buffer = mat(&c.case["train_loss_buffer"]);
            let epoch = c.case["epoch"].as_u64().unwrap() as usize;
            let mut m = Dwa::default();
            for e in 0..epoch {
                let avg: Vec<f64> = buffer.iter().map(|task| task[e]).collect();
                m.record(&avg)?;
                m.step();
            }
            let w = m.weights(k)?;
            c.check("expected_weights", &w);
            c.check("expected_effective_weights", &w);
            c.check("expected_direction", &combine(&g, &w)?);
        }
        "libmtl_GLS" => {
            // The crate's GeometricMean gives the gradient coefficients. LibMTL's return value
            // (expected_weights) is L_k / (K prod L), not a coefficient vector (golden README).
            let losses = c.v("losses");
            let out = GeometricMean.scalarize(&losses)?;
            let prod: f64 = losses.iter().product();
            let libmtl_return: Vec<f64> = losses.iter().map(|l| l / (k as f64 * prod)).collect();
            c.check("expected_weights", &libmtl_return);
            c.check("expected_effective_weights", &out.loss_weights);
            c.check("expected_direction", &combine(&g, &out.loss_weights)?);
        }
        "libmtl_UW" => {
            // LibMTL's UW is the crate's Uncertainty with log_var = loss_scale.
            let mut m = Uncertainty::new(k);
            m.log_var = vecf(&c.case["state_before"]["loss_scale"]);
            let losses = c.v("losses");
            let w = m.scalarize(&losses)?.loss_weights;
            c.check("expected_weights", &w);
            c.check("expected_effective_weights", &w);
            c.check("expected_grad_loss_scale", &m.parameter_gradient(&losses)?);
            c.check("expected_direction", &combine(&g, &w)?);
        }
        "libmtl_GradNorm" => {
            let mut m = GradNorm::default();
            m.set_state(
                vecf(&c.case["state_before"]["loss_scale"]),
                c.v("initial_losses"),
            )?;
            let out = m.step(&g, &c.v("losses"))?;
            c.check("expected_weights", &out.weights);
            c.check("expected_grad_loss_scale", &out.grad_loss_scale);
            c.check("expected_direction", &combine(&g, &out.weights)?);
        }
        "libmtl_RLW" | "torchjd_Random" => {
            let draw = vecf(&c.case["recorded"]["normal_draw"]);
            let w = Rlw::scalarize_with_draw(&vec![1.0; k], &draw)?.loss_weights;
            c.check("expected_weights", &w);
            if c.case.get("expected_effective_weights").is_some() {
                c.check("expected_effective_weights", &w);
            }
            c.check("expected_direction", &combine(&g, &w)?);
        }
        "torchjd_GradDrop" => {
            let d = GradDrop::default()
                .aggregate_with_uniform(&g, &vecf(&c.case["recorded"]["uniform_U"]))?;
            c.check("expected_direction", &d);
        }
        "torchjd_ConFIG" => {
            c.check("expected_direction", &ConFig.direction(&g)?);
        }
        "torchjd_Krum_b1_s1" | "torchjd_Krum_b1_s2" => {
            let m = Krum {
                n_byzantine: 1,
                n_selected: if method.ends_with("s1") { 1 } else { 2 },
            };
            let gram = gram(&g);
            let w = m.weights_from_gramian(&gram)?;
            let ew = c.v("expected_weights");
            if w != ew {
                // Exact ties in the Krum scores (the two rows of the closest pair always tie when
                // K - f - 2 = 1) are decided in torch by last-bit rounding of `J @ J.T`, which
                // cannot be reproduced. Accept the reference's choice if it is one of the tied
                // optimal selections.
                let scores = m.scores_from_gramian(&gram)?;
                let mut sorted = scores.clone();
                sorted.sort_by(|a, b| a.total_cmp(b));
                let cut = sorted[m.n_selected - 1];
                let worst_chosen = (0..k)
                    .filter(|&i| ew[i] > 0.0)
                    .map(|i| scores[i])
                    .fold(f64::NEG_INFINITY, f64::max);
                let gap = worst_chosen - cut;
                c.skip(
                    "expected_weights",
                    &format!("tie in Krum scores (gap {gap:.1e}) broken by rounding noise in the reference; checked the reference's selection is a tied optimum"),
                );
                c.skip("expected_direction", "follows the tie-broken selection");
                c.results.push(Cmp {
                    key: "krum selected score - cut".to_string(),
                    err: gap.max(0.0),
                    allowed: 1e-12 * cut.abs().max(1.0),
                });
            } else {
                c.check("expected_weights", &w);
                c.check("expected_direction", &combine(&g, &w)?);
            }
        }
        "torchjd_TrimmedMean_1" => {
            c.check("expected_direction", &TrimmedMean::default().direction(&g)?);
        }
        "torchjd_ExcessMTL" | "torchjd_PCD" => {
            let g2 = mat(&c.case["G_second_call"]);
            let (w1, w2) = if method == "torchjd_PCD" {
                let mut m = Pcd::default();
                (
                    m.weights_from_gramian(&gram(&g))?,
                    m.weights_from_gramian(&gram(&g2))?,
                )
            } else {
                let mut m = ExcessMtl::default();
                (m.step(&g)?, m.step(&g2)?)
            };
            c.check("expected_weights", &w1);
            c.check("expected_direction", &combine(&g, &w1)?);
            c.check("expected_second_call_weights", &w2);
            c.check("expected_second_call_direction", &combine(&g2, &w2)?);
        }
        other => return Err(format!("no driver for {other}")),
    }
    Ok(())
}

const METHODS: &[&str] = &[
    "libmtl_EW",
    "libmtl_MGDA_none",
    "libmtl_MGDA_l2",
    "libmtl_MGDA_loss",
    "libmtl_MGDA_lossplus",
    "libmtl_CAGrad",
    "libmtl_IMTL",
    "libmtl_PCGrad",
    "libmtl_GradVac",
    "libmtl_DWA",
    "libmtl_GLS",
    "libmtl_UW",
    "libmtl_GradNorm",
    "libmtl_RLW",
    "torchjd_PCGrad",
    "torchjd_GradVac",
    "torchjd_GradDrop",
    "torchjd_ConFIG",
    "torchjd_Krum_b1_s1",
    "torchjd_Krum_b1_s2",
    "torchjd_TrimmedMean_1",
    "torchjd_ExcessMTL",
    "torchjd_PCD",
    "torchjd_Random",
];

#[test]
fn golden_files() {
    let Some(dir) = golden_dir() else { return };
    let mut failures = Vec::new();
    println!("| file | cases: full pass / pass with entries not compared / fail | worst err / allowed | notes |");
    println!("|---|---|---|---|");
    for method in METHODS {
        let path = dir.join(format!("{method}.json"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            println!("| {method} | SKIPPED: {} missing | | |", path.display());
            continue;
        };
        let file: Value = serde_json::from_str(&text).unwrap();
        let (mut pass, mut fail, mut partial) = (0, 0, 0);
        let mut worst = (0.0_f64, String::new());
        let mut notes = BTreeSet::new();
        for (ci, case) in file["cases"].as_array().unwrap().iter().enumerate() {
            let mut ctx = CaseCtx::new(case);
            let res = run_case(method, &mut ctx);
            let mut case_ok = true;
            if let Err(e) = res {
                case_ok = false;
                failures.push(format!("{method} case {ci}: method error: {e}"));
            }
            for r in &ctx.results {
                let ratio = r.err / r.allowed;
                if ratio > worst.0 || worst.1.is_empty() {
                    worst = (
                        ratio,
                        format!(
                            "case {ci} {} err {:.2e} allowed {:.2e}",
                            r.key, r.err, r.allowed
                        ),
                    );
                }
                if r.err.is_nan() || r.err > r.allowed {
                    case_ok = false;
                    failures.push(format!(
                        "{method} case {ci} {}: err {:.3e} > allowed {:.3e}",
                        r.key, r.err, r.allowed
                    ));
                }
            }
            for u in ctx.unchecked() {
                case_ok = false;
                failures.push(format!("{method} case {ci}: {u} present but not checked"));
            }
            for n in &ctx.notes {
                notes.insert(format!("case {ci}: {n}"));
            }
            if case_ok && ctx.notes.iter().any(|n| n.contains("not compared")) {
                partial += 1;
            } else if case_ok {
                pass += 1;
            } else {
                fail += 1;
            }
        }
        println!(
            "| {method} | {pass} / {partial} / {fail} | {:.3} ({}) | {} |",
            worst.0,
            worst.1,
            notes.into_iter().collect::<Vec<_>>().join("; ")
        );
    }
    if !failures.is_empty() {
        for f in &failures {
            println!("FAIL {f}");
        }
        panic!("{} golden comparisons failed", failures.len());
    }
}
