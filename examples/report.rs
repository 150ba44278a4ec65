//! Plots from run logs: `cargo run --release --example report -- RUN_DIR [RUN_DIR ...]`.
//!
//! Each run folder holds the `run.jsonl` that `JsonlLog` writes (for example
//! `mnist_cls_reg --log-dir runs/equal`). Draws, into the first folder (or `--out DIR`), PNG and
//! SVG charts of: each task's training loss per step, each task's test metrics per epoch, the
//! task weights per step, and the number of conflicting gradient pairs per step when logged.
//! Several runs share each chart, one colour per run. Text uses a font embedded in the binary
//! (DejaVu Sans Mono), so no system font is needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

/// One run's series: name -> points.
struct Run {
    label: String,
    step_series: BTreeMap<String, Vec<(f64, f64)>>,
    epoch_series: BTreeMap<String, Vec<(f64, f64)>>,
}

fn read_run(dir: &Path) -> Result<Run, String> {
    let path = dir.join("run.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut run = Run {
        label: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into()),
        step_series: BTreeMap::new(),
        epoch_series: BTreeMap::new(),
    };
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        match v["type"].as_str() {
            Some("step") => {
                let step = v["step"].as_f64().unwrap_or(0.0);
                if v["skipped"].as_bool() == Some(true) {
                    continue;
                }
                for (key, prefix) in [("losses", "train loss"), ("weights", "weight")] {
                    if let Some(obj) = v[key].as_object() {
                        for (task, x) in obj {
                            if let Some(x) = x.as_f64() {
                                run.step_series
                                    .entry(format!("{prefix} {task}"))
                                    .or_default()
                                    .push((step, x));
                            }
                        }
                    }
                }
                if let Some(c) = v["conflicting_pairs"].as_f64() {
                    run.step_series
                        .entry("conflicting pairs".into())
                        .or_default()
                        .push((step, c));
                }
            }
            Some("epoch") => {
                let epoch = v["epoch"].as_f64().unwrap_or(0.0) + 1.0;
                if let Some(tasks) = v["eval"].as_object() {
                    for (task, metrics) in tasks {
                        for (m, x) in metrics.as_object().into_iter().flatten() {
                            if let Some(x) = x.as_f64() {
                                run.epoch_series
                                    .entry(format!("test {task} {m}"))
                                    .or_default()
                                    .push((epoch, x));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(run)
}

/// Draws `series` (one line per run) on `area`.
fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    runs: &[(String, Vec<(f64, f64)>)],
) -> Result<(), String> {
    let pts = runs.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Ok(());
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let mut c = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| e.to_string())?;
    c.configure_mesh()
        .x_desc(x_label)
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (label, points)) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label(label.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn draw_all<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    runs: &[Run],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut names: Vec<(String, bool)> = Vec::new();
    for r in runs {
        for k in r.step_series.keys() {
            if !names.contains(&(k.clone(), true)) {
                names.push((k.clone(), true));
            }
        }
        for k in r.epoch_series.keys() {
            if !names.contains(&(k.clone(), false)) {
                names.push((k.clone(), false));
            }
        }
    }
    let cols = 2;
    let rows = names.len().div_ceil(cols).max(1);
    let areas = root.split_evenly((rows, cols));
    for ((name, per_step), area) in names.iter().zip(areas.iter()) {
        let series: Vec<(String, Vec<(f64, f64)>)> = runs
            .iter()
            .filter_map(|r| {
                let s = if *per_step {
                    r.step_series.get(name)
                } else {
                    r.epoch_series.get(name)
                };
                s.map(|p| (r.label.clone(), p.clone()))
            })
            .collect();
        chart(
            area,
            name,
            if *per_step { "step" } else { "epoch" },
            &series,
        )?;
    }
    root.present().map_err(|e| e.to_string())
}

fn main() {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("report RUN_DIR [RUN_DIR ...] [--out DIR]: plots from run.jsonl logs");
                return;
            }
            _ => dirs.push(PathBuf::from(a)),
        }
    }
    if dirs.is_empty() {
        eprintln!("error: give at least one run folder holding run.jsonl (see --help)");
        std::process::exit(2);
    }
    if let Err(e) = register_font("sans-serif", FontStyle::Normal, FONT) {
        let _ = e;
        eprintln!("error: the embedded font could not be loaded");
        std::process::exit(1);
    }
    let runs = match dirs
        .iter()
        .map(|d| read_run(d))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let out = out.unwrap_or_else(|| dirs[0].clone());
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("error: {}: {e}", out.display());
        std::process::exit(1);
    }
    let n = runs
        .iter()
        .map(|r| r.step_series.len() + r.epoch_series.len())
        .max()
        .unwrap_or(1);
    let height = 300 * n.div_ceil(2).max(1) as u32;
    let png = out.join("report.png");
    let svg = out.join("report.svg");
    let result = draw_all(
        BitMapBackend::new(&png, (1200, height)).into_drawing_area(),
        &runs,
    )
    .and_then(|_| {
        draw_all(
            SVGBackend::new(&svg, (1200, height)).into_drawing_area(),
            &runs,
        )
    });
    match result {
        Ok(()) => println!("wrote {} and {}", png.display(), svg.display()),
        Err(e) => {
            eprintln!("error: drawing failed: {e}");
            std::process::exit(1);
        }
    }
}
