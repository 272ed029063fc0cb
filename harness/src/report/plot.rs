//! SVG plots of a run (plotters' SVG backend: text is emitted as `<text>` elements, so no
//! font libraries are needed).
//!
//! * `latency-<suite>.svg`: per suite, median latency by size, log-log, one line per
//!   benchmark family (the name without its size segment).
//! * `tlb-<pattern>.svg`: access benchmarks (`tlb/<pattern>/<mapping>/<size>`, params
//!   `bytes`, `mapping`, `pattern`): ns per access vs working set (log x), one line per mapping.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kmbench_protocol::BenchStatus;
use plotters::prelude::*;

use super::table;
use crate::format::{bench_size, fmt_ns, human_size, parse_size};
use crate::results::{BenchEntry, RunResults};

/// One line: label and (x, y) points sorted by x.
pub type Series = (String, Vec<(f64, f64)>);

fn param_str(e: &BenchEntry, key: &str) -> Option<String> {
    e.params.get(key).map(|v| match v {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    })
}

/// (pattern, mapping) of an access benchmark, from params or the name.
pub fn access_keys(e: &BenchEntry) -> Option<(String, String)> {
    let segs: Vec<&str> = e.name.split('/').collect();
    let from_name = segs.len() >= 4 && segs[0] == "tlb";
    let pattern = param_str(e, "pattern").or_else(|| from_name.then(|| segs[1].to_string()))?;
    let mapping = param_str(e, "mapping").or_else(|| from_name.then(|| segs[2].to_string()))?;
    Some((pattern, mapping))
}

fn is_access(e: &BenchEntry) -> bool {
    e.suite == "tlb" || (e.params.contains_key("pattern") && e.params.contains_key("mapping"))
}

/// Latency of an entry for plotting: ns median if known, else the unit's median.
fn y_value(e: &BenchEntry) -> Option<f64> {
    let y = e.ns.as_ref().map(|s| s.median).unwrap_or(e.median);
    (e.status == BenchStatus::Ok && y.is_finite() && y > 0.0).then_some(y)
}

fn y_unit(entries: &[&BenchEntry]) -> String {
    if entries.iter().all(|e| e.ns.is_some()) {
        "ns".into()
    } else {
        entries.first().map(|e| e.unit.clone()).unwrap_or_default()
    }
}

fn family(e: &BenchEntry) -> String {
    match e.name.rsplit_once('/') {
        Some((head, last)) if parse_size(last).is_some() => head.to_string(),
        _ => e.name.clone(),
    }
}

fn finish(mut m: BTreeMap<String, Vec<(f64, f64)>>) -> Vec<Series> {
    m.values_mut()
        .for_each(|v| v.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal)));
    m.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// Size-vs-latency series of one suite's (non-access) benchmarks.
pub fn suite_series(entries: &[&BenchEntry]) -> Vec<Series> {
    let mut m: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for e in entries {
        if let (Some(x), Some(y)) = (bench_size(e), y_value(e)) {
            if x > 0 {
                m.entry(family(e)).or_default().push((x as f64, y));
            }
        }
    }
    finish(m)
}

/// Working-set-vs-latency series per pattern, one line per mapping.
pub fn access_series(run: &RunResults) -> BTreeMap<String, Vec<Series>> {
    let mut by_pattern: BTreeMap<String, BTreeMap<String, Vec<(f64, f64)>>> = BTreeMap::new();
    for e in run.benchmarks.iter().filter(|e| is_access(e)) {
        let Some((pattern, mapping)) = access_keys(e) else {
            continue;
        };
        // Runs with [[variants]]: one plot per pattern and variant (tlb-<pattern>-<variant>.svg).
        let pattern = match param_str(e, "variant") {
            Some(v) => format!("{pattern}@{v}"),
            None => pattern,
        };
        if let (Some(x), Some(y)) = (bench_size(e), y_value(e)) {
            if x > 0 {
                by_pattern
                    .entry(pattern)
                    .or_default()
                    .entry(mapping)
                    .or_default()
                    .push((x as f64, y));
            }
        }
    }
    by_pattern
        .into_iter()
        .map(|(p, m)| (p, finish(m)))
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Matplotlib's tab10: readable on white (Palette99's yellow is not).
const TAB10: [(u8, u8, u8); 10] = [
    (0x1f, 0x77, 0xb4),
    (0xd6, 0x27, 0x28),
    (0x2c, 0xa0, 0x2c),
    (0xff, 0x7f, 0x0e),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0x7f, 0x7f, 0x7f),
    (0xbc, 0xbd, 0x22),
    (0x17, 0xbe, 0xcf),
];

/// Powers of two in `[lo, hi]`, thinned to at most `max` (sizes read best as 4 KiB, 2 MiB…).
pub fn pow2_points(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    let (a, b) = (
        lo.max(1.0).log2().ceil() as i32,
        hi.max(1.0).log2().floor() as i32,
    );
    if b < a {
        return vec![];
    }
    let count = (b - a + 1) as usize;
    let stride = count.div_ceil(max.max(1)).max(1);
    (a..=b).step_by(stride).map(|e| 2f64.powi(e)).collect()
}

/// Draw series on log axes (log y when `log_y`).
pub fn draw(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    log_y: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let pts = series.iter().flat_map(|(_, v)| v.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, 0.0f64, f64::INFINITY, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return Err("nothing to plot".into());
    }
    // Pad so single points and flat lines have room.
    let (x0, x1) = (x0 / 1.5, x1 * 1.5);
    let (y0, y1) = if log_y {
        (y0 / 1.5, y1 * 1.5)
    } else {
        (0.0, y1 * 1.15)
    };

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80);
    let x_fmt = |x: &f64| human_size(x.round() as u64);
    let y_fmt = |y: &f64| fmt_ns(*y).replace(" ns", "");
    macro_rules! body {
        ($chart:ident) => {{
            $chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&|y: &f64| {
                    if y_desc.ends_with("(ns)") {
                        y_fmt(y)
                    } else {
                        format!("{y:.0}")
                    }
                })
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            for (i, (label, v)) in series.iter().enumerate() {
                let (r, g, b) = TAB10[i % TAB10.len()];
                let color = RGBColor(r, g, b).to_rgba();
                $chart
                    .draw_series(LineSeries::new(v.iter().copied(), color.stroke_width(2)))?
                    .label(label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                $chart.draw_series(v.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
            $chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()?;
        }};
    }
    let x_range = (x0..x1)
        .log_scale()
        .with_key_points(pow2_points(x0, x1, 10));
    if log_y {
        let mut chart = builder.build_cartesian_2d(x_range, (y0..y1).log_scale())?;
        body!(chart);
    } else {
        let mut chart = builder.build_cartesian_2d(x_range, y0..y1)?;
        body!(chart);
    }
    root.present()?;
    Ok(())
}

/// Write every plot for `run` into `dir`; returns the files written.
pub fn write_plots(
    run: &RunResults,
    dir: &Path,
) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let mut written = Vec::new();
    for (suite, entries) in table::by_suite(run) {
        let entries: Vec<&BenchEntry> = entries.into_iter().filter(|e| !is_access(e)).collect();
        let series = suite_series(&entries);
        if series.is_empty() {
            continue;
        }
        let unit = y_unit(&entries);
        let path = dir.join(format!("latency-{}.svg", slug(&suite)));
        draw(
            &path,
            &format!("{suite}: median latency by size ({})", run.run_id),
            "size",
            &format!("median latency ({unit})"),
            &series,
            true,
        )?;
        written.push(path);
    }
    let access: Vec<&BenchEntry> = run.benchmarks.iter().filter(|e| is_access(e)).collect();
    let unit = y_unit(&access);
    for (pattern, series) in access_series(run) {
        let path = dir.join(format!("tlb-{}.svg", slug(&pattern)));
        draw(
            &path,
            &format!("{pattern} access: latency vs working set ({})", run.run_id),
            "working set",
            &format!(
                "{} per access",
                if unit == "ns" {
                    "latency (ns)".to_string()
                } else {
                    unit.clone()
                }
            ),
            &series,
            false,
        )?;
        written.push(path);
    }
    Ok(written)
}
