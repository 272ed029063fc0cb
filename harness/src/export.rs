//! `kmbench export`: a run in the formats benchmark trackers read.
//!
//! * `bmf` — [Bencher Metric Format](https://bencher.dev/docs/reference/bencher-metric-format/):
//!   `{ "<benchmark>": { "latency": { "value": ns, "lower_value": ns, "upper_value": ns } } }`.
//!   `latency` is Bencher's built-in measure, in nanoseconds: `value` is the median,
//!   `lower_value` the minimum and `upper_value` the p99 (of the pooled samples).
//! * `github-action-benchmark` — the `customSmallerIsBetter` tool's input: an array of
//!   `{ "name", "unit", "value", "range"?, "extra"? }` with `unit` "ns"; `range` is
//!   "± x" with x half the spread of the per-boot medians (multi-boot runs only), `extra`
//!   a one-line description (min, p99, samples, boots, cycles).
//!
//! Only benchmarks with status `ok` are exported. Values are in nanoseconds when the run
//! has them (`ns`, or cycles and a TSC frequency); otherwise in the benchmark's own unit
//! (BMF measure named after the unit).
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use kmbench_protocol::BenchStatus;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::results::{BenchEntry, RunResults};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A results.json file, a run folder containing one, a run id under the results folder,
    /// or `latest`.
    pub run: PathBuf,
    #[command(flatten)]
    pub runs: crate::run_dir::RunsDirArg,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// Bencher Metric Format.
    Bmf,
    /// github-action-benchmark, tool `customSmallerIsBetter`.
    GithubActionBenchmark,
}

/// min / median / p99 of one benchmark in one unit, plus the per-boot medians.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub unit: String,
    pub min: f64,
    pub median: f64,
    pub p99: f64,
    pub boot_medians: Vec<f64>,
}

/// The benchmark's statistics in nanoseconds if they can be had, else in its own unit.
pub fn point(e: &BenchEntry, run: &RunResults) -> Point {
    if let Some(ns) = &e.ns {
        let f = if e.median != 0.0 {
            ns.median / e.median
        } else {
            0.0
        };
        return Point {
            unit: "ns".into(),
            min: ns.min,
            median: ns.median,
            p99: ns.p99,
            boot_medians: if f > 0.0 {
                e.boot_medians.iter().map(|b| b * f).collect()
            } else {
                vec![]
            },
        };
    }
    let f = if e.unit == "ns" {
        Some(1.0)
    } else if e.unit == "cycles" && run.env.tsc_hz > 0 {
        Some(1e9 / run.env.tsc_hz as f64)
    } else {
        None
    };
    match f {
        Some(f) => Point {
            unit: "ns".into(),
            min: e.min * f,
            median: e.median * f,
            p99: e.p99 * f,
            boot_medians: e.boot_medians.iter().map(|b| b * f).collect(),
        },
        None => Point {
            unit: e.unit.clone(),
            min: e.min,
            median: e.median,
            p99: e.p99,
            boot_medians: e.boot_medians.clone(),
        },
    }
}

fn exported(run: &RunResults) -> impl Iterator<Item = &BenchEntry> {
    run.benchmarks
        .iter()
        .filter(|e| e.status == BenchStatus::Ok && e.median.is_finite())
}

/// Bencher Metric Format document.
pub fn to_bmf(run: &RunResults) -> Value {
    let mut doc = Map::new();
    for e in exported(run) {
        let p = point(e, run);
        let measure = if p.unit == "ns" {
            "latency".to_string()
        } else {
            p.unit.to_lowercase().replace(' ', "-")
        };
        let metric = json!({ "value": p.median, "lower_value": p.min, "upper_value": p.p99 });
        let entry = doc
            .entry(e.name.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        entry
            .as_object_mut()
            .expect("object")
            .insert(measure, metric);
    }
    Value::Object(doc)
}

/// One `customSmallerIsBetter` entry.
#[derive(Clone, Debug, Serialize)]
pub struct GabEntry {
    pub name: String,
    pub unit: String,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<String>,
}

fn fmt_num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// github-action-benchmark `customSmallerIsBetter` array.
pub fn to_github_action_benchmark(run: &RunResults) -> Vec<GabEntry> {
    exported(run)
        .map(|e| {
            let p = point(e, run);
            let range = if p.boot_medians.len() >= 2 {
                let lo = p.boot_medians.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = p
                    .boot_medians
                    .iter()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max);
                Some(format!("± {}", fmt_num((hi - lo) / 2.0)))
            } else {
                None
            };
            let mut extra = format!(
                "min {} {u}, p99 {} {u}, {} samples",
                fmt_num(p.min),
                fmt_num(p.p99),
                e.samples,
                u = p.unit
            );
            if p.boot_medians.len() >= 2 {
                extra.push_str(&format!(", {} boots", p.boot_medians.len()));
            }
            if e.unit != p.unit {
                extra.push_str(&format!(", median {} {}", fmt_num(e.median), e.unit));
            }
            GabEntry {
                name: e.name.clone(),
                unit: p.unit,
                value: p.median,
                range,
                extra: Some(extra),
            }
        })
        .collect()
}

pub fn render(run: &RunResults, format: ExportFormat) -> String {
    let mut s = match format {
        ExportFormat::Bmf => serde_json::to_string_pretty(&to_bmf(run)),
        ExportFormat::GithubActionBenchmark => {
            serde_json::to_string_pretty(&to_github_action_benchmark(run))
        }
    }
    .expect("serialisable");
    s.push('\n');
    s
}

pub fn main(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (run, _) =
        crate::run_dir::load_run(&crate::run_dir::resolve_run(&args.run, &args.runs.dir()))?;
    let text = render(&run, args.format);
    match &args.out {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
