//! Reading the reference outputs in `$CANDLE_MTL_GOLDEN_DIR` (see its README) and checking results
//! with their pass rule: `max_i |actual_i - expected_i| <= tolerance * max(1, max_i |expected_i|)`.

use std::path::PathBuf;

use serde_json::Value;

/// `$CANDLE_MTL_GOLDEN_DIR`, else `golden/` in the crate; `None` (with the reason printed) when
/// absent, unless `CANDLE_MTL_REQUIRE_DATA=1` makes that a failure.
pub fn golden_dir() -> Option<PathBuf> {
    let dir = std::env::var("CANDLE_MTL_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden"));
    if dir.is_dir() {
        return Some(dir);
    }
    let reason = format!("{} not found (set CANDLE_MTL_GOLDEN_DIR)", dir.display());
    if std::env::var("CANDLE_MTL_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("CANDLE_MTL_REQUIRE_DATA=1 but {reason}");
    }
    println!("skipped: {reason}");
    None
}

/// The parsed file `<name>.json`.
pub fn load(dir: &std::path::Path, name: &str) -> Value {
    let path = dir.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn vecf(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

pub fn matf(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(vecf).collect()
}

/// Worst ratio err / allowed over the file, and failures.
pub struct Tally {
    pub worst_ratio: f64,
    pub worst_err: f64,
    pub worst_tol: f64,
    pub failures: Vec<String>,
    pub checks: usize,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    pub fn new() -> Self {
        Tally {
            worst_ratio: 0.0,
            worst_err: 0.0,
            worst_tol: 0.0,
            failures: vec![],
            checks: 0,
        }
    }
    pub fn check(&mut self, label: &str, actual: &[f64], expected: &[f64], tol: f64) {
        self.checks += 1;
        if actual.len() != expected.len() {
            self.failures.push(format!(
                "{label}: length {} vs expected {}",
                actual.len(),
                expected.len()
            ));
            return;
        }
        let scale = expected.iter().fold(1.0f64, |m, e| m.max(e.abs()));
        let err = actual
            .iter()
            .zip(expected)
            .fold(0.0f64, |m, (a, e)| m.max((a - e).abs()));
        let allowed = tol * scale;
        let ratio = err / allowed;
        if ratio > self.worst_ratio {
            self.worst_ratio = ratio;
            self.worst_err = err;
            self.worst_tol = tol;
        }
        if err.is_nan() || err > allowed {
            self.failures.push(format!(
                "{label}: max err {err:.3e} > allowed {allowed:.3e}; actual {actual:?} expected {expected:?}"
            ));
        }
    }
}

/// Expected vectors of a case, keyed like `Outputs::extra`, with state objects flattened.
pub fn expected_entries(c: &Value) -> Vec<(String, Vec<f64>)> {
    let mut out = vec![];
    for (key, v) in c.as_object().unwrap() {
        if !key.starts_with("expected_") {
            continue;
        }
        match v {
            Value::Number(n) => out.push((key.clone(), vec![n.as_f64().unwrap()])),
            Value::Array(_) => out.push((key.clone(), vecf(v))),
            Value::Object(o) => {
                for (sub, sv) in o {
                    out.push((format!("{key}.{sub}"), vecf(sv)));
                }
            }
            _ => panic!("unexpected value type for {key}"),
        }
    }
    out
}

impl Tally {
    /// Prints the summary line of `method` and returns its failures.
    pub fn report(self, method: &str, cases: usize) -> Vec<String> {
        println!(
            "GOLDEN {method}: {cases} cases, {} checks, {} failures, worst err {:.3e} at tol {:.0e} (ratio {:.3})",
            self.checks,
            self.failures.len(),
            self.worst_err,
            self.worst_tol,
            self.worst_ratio
        );
        for f in &self.failures {
            println!("  FAIL {f}");
        }
        self.failures
    }
}
