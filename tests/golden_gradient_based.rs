//! Golden tests: every case of every golden file of this crate's methods, with the files' pass
//! rule `max_i |a_i - e_i| <= tol * max(1, max_i |e_i|)`.
//!
//! Files are read from `$CANDLE_MTL_GOLDEN_DIR`; if absent the tests
//! print why and pass without checking (unless `CANDLE_MTL_REQUIRE_DATA=1`).

mod common;

use candle_mtl::solvers::matrix::{combine, cross_matrix, gramian};
use candle_mtl::weighting::gradient_based::*;
use candle_mtl::weighting::{Decision, Equal, Fixed, StepInput, TaskWeighting};
use common::golden::golden_dir;
use serde_json::Value;

/// The crate's linear strategies ([`Equal`], [`Fixed`]) seen as Gramian weightings.
struct Linear<F: Fn() -> Box<dyn TaskWeighting>>(F);

impl<F: Fn() -> Box<dyn TaskWeighting>> GramianWeighting for Linear<F> {
    fn name(&self) -> &str {
        "linear"
    }

    fn weights(&self, gramian: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let losses = vec![1.0; gramian.len()];
        let input = StepInput {
            step: 0,
            epoch: 0,
            losses: &losses,
            gradients: None,
            second_gradients: None,
        };
        match (self.0)().decide(&input).map_err(|e| e.to_string())? {
            Decision::Weights(w) => Ok(w),
            Decision::Direction(_) => Err("direction".into()),
        }
    }
}

#[allow(non_upper_case_globals)]
const Mean: Linear<fn() -> Box<dyn TaskWeighting>> = Linear(|| Box::new(Equal::mean()));
#[allow(non_upper_case_globals)]
const Sum: Linear<fn() -> Box<dyn TaskWeighting>> = Linear(|| Box::new(Equal::sum()));

fn load(name: &str) -> Option<Value> {
    let dir = golden_dir()?;
    let path = dir.join(format!("{name}.json"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("SKIP {name}: {} not found", path.display());
        return None;
    };
    Some(serde_json::from_str(&text).unwrap())
}

fn vecf(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn matf(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(vecf).collect()
}

/// Ratio of the observed error to the allowed error (pass iff <= 1).
fn ratio(actual: &[f64], expected: &[f64], tol: f64) -> f64 {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    let scale = expected.iter().fold(1.0_f64, |s, x| s.max(x.abs()));
    let err = actual
        .iter()
        .zip(expected)
        .fold(0.0_f64, |s, (a, e)| s.max((a - e).abs()));
    err / (tol * scale)
}

/// What a method produced for a case.
struct Out {
    weights: Vec<f64>,
    /// Direction, when it is not `weights @ G`.
    direction: Option<Vec<f64>>,
}

impl Out {
    fn w(weights: Vec<f64>) -> Out {
        Out {
            weights,
            direction: None,
        }
    }
}

/// Outer `Err`: the case is skipped (reason); inner `Err`: the method failed.
type CaseResult = Result<Result<Out, String>, String>;

/// Runs every case of `name`, compares every expected_* vector, prints a summary line and
/// panics if any case fails. `run` returns `Err(reason)` to skip a case (reason printed).
fn run_file(
    name: &str,
    tol_override: &dyn Fn(&Value, f64) -> f64,
    run: &mut dyn FnMut(&Value) -> CaseResult,
) {
    let Some(file) = load(name) else { return };
    let cases = file["cases"].as_array().unwrap();
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    let mut worst = 0.0_f64;
    let mut worst_abs = 0.0_f64;
    let mut msgs = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let tol = tol_override(case, case["tolerance"].as_f64().unwrap());
        let out = match run(case) {
            Err(reason) => {
                skip += 1;
                println!("  {name} case {ci}: SKIP ({reason})");
                continue;
            }
            Ok(Err(e)) => {
                fail += 1;
                msgs.push(format!("case {ci}: method returned Err: {e}"));
                continue;
            }
            Ok(Ok(o)) => o,
        };
        let unique = case["info"]["weights_unique"].as_bool().unwrap_or(true);
        let mut ok = true;
        let mut case_worst = 0.0_f64;
        for (key, val) in case.as_object().unwrap() {
            if !key.starts_with("expected_") {
                continue;
            }
            let expected = vecf(val);
            let actual = match key.as_str() {
                "expected_weights" => {
                    if out.direction.is_some() {
                        continue;
                    }
                    if !unique {
                        println!(
                            "  {name} case {ci}: weights not unique (info.weights_unique = false), \
                             comparing the direction only"
                        );
                        continue;
                    }
                    o_weights(&out)
                }
                "expected_direction" => match &out.direction {
                    Some(d) => d.clone(),
                    None => combine(&out.weights, &matf(&case["G"])).unwrap(),
                },
                other => panic!("{name}: unhandled key {other}"),
            };
            let r = ratio(&actual, &expected, tol);
            let scale = expected.iter().fold(1.0_f64, |s, x| s.max(x.abs()));
            worst_abs = worst_abs.max(r * tol * scale);
            case_worst = case_worst.max(r);
            if r.is_nan() || r > 1.0 {
                ok = false;
                msgs.push(format!(
                    "case {ci} {key}: error/allowed = {r:.3e} (tol {tol:e})\n   actual   {actual:?}\n   expected {expected:?}"
                ));
            }
        }
        worst = worst.max(case_worst);
        println!("  {name} case {ci}: error/allowed {case_worst:.2e} (tol {tol:e})");
        if ok {
            pass += 1;
        } else {
            fail += 1;
        }
    }
    println!(
        "GOLDEN {name}: pass {pass}, fail {fail}, skip {skip}; max error {worst_abs:.2e}, \
         max error/allowed {worst:.2e}"
    );
    assert!(
        fail == 0,
        "{name}: {fail} failing cases:\n{}",
        msgs.join("\n")
    );
}

fn o_weights(o: &Out) -> Vec<f64> {
    o.weights.clone()
}

fn file_tol(_: &Value, t: f64) -> f64 {
    t
}

fn gram_of(case: &Value) -> Vec<Vec<f64>> {
    gramian(&matf(&case["G"])).unwrap()
}

fn stateless(name: &str, method: &dyn GramianWeighting) {
    run_file(name, &file_tol, &mut |case| {
        Ok(method.weights(&gram_of(case)).map(Out::w))
    });
}

#[test]
fn golden_mean() {
    stateless("torchjd_Mean", &Mean);
}

#[test]
fn golden_sum() {
    stateless("torchjd_Sum", &Sum);
}

#[test]
fn golden_constant() {
    run_file("torchjd_Constant", &file_tol, &mut |case| {
        let w = vecf(&case["constant_weights"]);
        if w.iter().any(|x| *x < 0.0) {
            return Err("the crate's Fixed weights are non-negative by design".into());
        }
        let c = Linear(move || Box::new(Fixed::new(w.clone()).unwrap()) as Box<dyn TaskWeighting>);
        Ok(c.weights(&gram_of(case)).map(Out::w))
    });
}

#[test]
fn golden_upgrad() {
    stateless("torchjd_UPGrad", &UPGrad::default());
}

#[test]
fn golden_dualproj() {
    stateless("torchjd_DualProj", &DualProj::default());
}

#[test]
fn golden_mgda_frank_wolfe() {
    // Same Frank-Wolfe iteration and stopping rule as the reference: file tolerance.
    stateless("torchjd_MGDA", &Mgda::default());
}

#[test]
fn golden_mgda_exact() {
    // Exact min-norm point: the golden values are an early-stopped iterate, so the README asks for
    // a tolerance at least info.diag_gap_to_exact_min_norm.
    println!(
        "MGDA exact solver: direction only, tolerance = max(file tolerance, 1.01 * \
         info.diag_gap_to_exact_min_norm)"
    );
    let m = Mgda {
        solver: MgdaSolver::Exact,
        ..Mgda::default()
    };
    let tol = |case: &Value, t: f64| {
        t.max(
            1.01 * case["info"]["diag_gap_to_exact_min_norm"]
                .as_f64()
                .unwrap_or(0.0),
        )
    };
    run_file("torchjd_MGDA", &tol, &mut |case| {
        // Only the direction is compared (the gap is defined on it): `direction: Some`.
        let g = matf(&case["G"]);
        Ok(m.weights(&gram_of(case)).map(|w| Out {
            direction: Some(combine(&w, &g).unwrap()),
            weights: w,
        }))
    });
}

#[test]
fn golden_cagrad() {
    stateless("torchjd_CAGrad", &CaGrad::default());
}

#[test]
fn golden_imtlg() {
    stateless("torchjd_IMTLG", &Imtlg);
}

#[test]
fn golden_aligned_mtl_min() {
    stateless("torchjd_AlignedMTL_min", &AlignedMtl::new(ScaleMode::Min));
}

#[test]
fn golden_aligned_mtl_median() {
    stateless(
        "torchjd_AlignedMTL_median",
        &AlignedMtl::new(ScaleMode::Median),
    );
}

#[test]
fn golden_aligned_mtl_rmse() {
    stateless("torchjd_AlignedMTL_rmse", &AlignedMtl::new(ScaleMode::Rmse));
}

#[test]
fn golden_nash_mtl() {
    run_file("torchjd_NashMTL", &file_tol, &mut |case| {
        if case["info"]["reference_converged"].as_bool() == Some(false) {
            return Err(format!(
                "info.reference_converged = false: torchjd stopped its ECOS iteration {:.3} away \
                 from the Nash point; this crate solves M a = 1/a exactly (README allows skipping)",
                case["info"]["diag_gap_to_exact_nash"]
                    .as_f64()
                    .unwrap_or(f64::NAN)
            ));
        }
        let mut nash = NashMtl::default();
        Ok(nash.weights(&gram_of(case)).map(Out::w))
    });
}

#[test]
fn golden_fairgrad_alpha1() {
    stateless("torchjd_FairGrad_alpha1", &FairGrad { alpha: 1.0 });
}

#[test]
fn golden_fairgrad_alpha2() {
    stateless("torchjd_FairGrad_alpha2", &FairGrad { alpha: 2.0 });
}

#[test]
fn golden_crmogm_upgrad() {
    run_file("torchjd_CRMOGM_UPGrad", &file_tol, &mut |case| {
        let mut m = CrMogm::new(UPGrad::default(), 0.9, Some(vecf(&case["initial_weights"])))
            .map_err(|e| e.to_string())?;
        Ok(m.weights(&gram_of(case)).map(Out::w))
    });
}

#[test]
fn golden_modo() {
    run_file("torchjd_MoDoWeighting", &file_tol, &mut |case| {
        let a = cross_matrix(&matf(&case["G"]), &matf(&case["G2"])).unwrap();
        let mut m = MoDo::default();
        Ok(m.weights(&a).map(Out::w))
    });
}

#[test]
fn golden_sdmgrad() {
    run_file("torchjd_SDMGradWeighting", &file_tol, &mut |case| {
        let a = cross_matrix(&matf(&case["G"]), &matf(&case["G2"])).unwrap();
        let mut m = SdmGrad::default();
        Ok(m.weights(&a).map(Out::w))
    });
}
