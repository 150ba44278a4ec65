//! Helpers shared by the examples: a small flag parser, data-directory lookup, peak memory,
//! and JSON output. Kept out of the library so that dependents do not build them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `--name value` and `--flag` arguments.
pub struct Args {
    values: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    /// Parses `std::env::args`; `boolean` lists the flags that take no value.
    pub fn parse(boolean: &[&str], usage: &str) -> Result<Self, String> {
        let mut values = HashMap::new();
        let mut flags = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            if arg == "--help" || arg == "-h" {
                println!("{usage}");
                std::process::exit(0);
            }
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument '{arg}'\n\n{usage}"));
            };
            if boolean.contains(&name) {
                flags.push(name.to_string());
            } else {
                let value = it
                    .next()
                    .ok_or_else(|| format!("flag --{name} needs a value\n\n{usage}"))?;
                values.insert(name.to_string(), value);
            }
        }
        Ok(Self { values, flags })
    }

    /// The value of `--name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    /// `--name` parsed as `T`, or `default`; `expected` says what a valid value is.
    pub fn parse_or<T: std::str::FromStr>(
        &self,
        name: &str,
        default: T,
        expected: &str,
    ) -> candle_mtl::Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| candle_mtl::Error::config(format!("--{name}"), v, expected)),
        }
    }

    /// Fails on any `--name value` not in `known`.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), String> {
        match self.values.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(format!("unknown flag --{k}")),
            None => Ok(()),
        }
    }
}

/// Where to read an MNIST-format dataset from: `--data-dir`, else `$CANDLE_MTL_DATA/<name>`,
/// else the first of `candidates` that exists. Returns the directory and a note on how it was
/// chosen; when nothing exists, the first place looked.
pub fn find_data_dir(explicit: Option<&str>, name: &str, candidates: &[&str]) -> (PathBuf, String) {
    if let Some(dir) = explicit {
        return (PathBuf::from(dir), "from --data-dir".into());
    }
    if let Ok(root) = std::env::var("CANDLE_MTL_DATA") {
        return (Path::new(&root).join(name), "from $CANDLE_MTL_DATA".into());
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for c in candidates {
        let p = manifest.join(c);
        if p.is_dir() {
            return (p, format!("found {c}"));
        }
    }
    (
        manifest.join(candidates.first().copied().unwrap_or("data")),
        "default".into(),
    )
}

/// Peak resident memory of this process in MiB (Linux), if known.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A JSON number (`null` for NaN or infinity).
pub fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
