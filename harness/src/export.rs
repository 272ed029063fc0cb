//! `kmbench export`: a run in the formats benchmark trackers read.
//!
//! * `bmf` — [Bencher Metric Format](https://bencher.dev/docs/reference/bencher-metric-format/):
//!   `{ "<benchmark>": { "latency": { "value": ns, "lower_value": ns, "upper_value": ns } } }`.
//!   `latency` is Bencher's built-in measure, in nanoseconds: `value` is the median
//!   across boots.
//! * `github-action-benchmark` — the `customSmallerIsBetter` tool's input: an array of
//!   `{ "name", "unit", "value", "range"?, "extra"? }` with `unit` "ns", `extra` a
//!   one-line description (min, p99, samples, boots, the bound's level).
//!
//! **Bounds mean one thing in both formats: the distribution-free confidence interval of
//! the median across boots** ([`crate::stats::median_ci`], order statistics of the per-boot
//! medians, the narrowest at ≥ 95% or `[min, max]` of the boots when fewer than 6 boots
//! cannot reach 95%; the level reached is in `extra`). BMF gives it as
//! `lower_value`/`upper_value`; github-action-benchmark as `range` = "± h" with `h` the
//! larger distance from the value to either end. Single-boot runs have no bounds.
//!
//! `--cycles` adds the same statistics in TSC cycles: a BMF measure `cycles` beside
//! `latency`, and github-action-benchmark entries `<name> (cycles)` with unit `cycles`.
//!
//! **A broken run is not published**: an incomplete run, or one whose exit was not
//! `success`, is refused (exit 2, naming why) unless `--allow-incomplete`.
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
    /// Also export the TSC-cycle statistics (BMF measure `cycles`; `<name> (cycles)` entries).
    #[arg(long)]
    pub cycles: bool,
    /// Export a run that is incomplete or did not exit with success (refused otherwise).
    #[arg(long)]
    pub allow_incomplete: bool,
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

impl Point {
    /// The CI of the median across boots, and its coverage (`None`: fewer than 2 boots).
    pub fn bounds(&self) -> Option<(f64, f64, f64)> {
        crate::stats::median_ci(&self.boot_medians, 0.05)
    }
}

/// The benchmark's statistics in TSC cycles (its own unit).
pub fn cycles_point(e: &BenchEntry) -> Point {
    Point {
        unit: e.unit.clone(),
        min: e.min,
        median: e.median,
        p99: e.p99,
        boot_medians: e.boot_medians.clone(),
    }
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

fn bmf_metric(p: &Point) -> Value {
    match p.bounds() {
        Some((lo, hi, _)) => json!({ "value": p.median, "lower_value": lo, "upper_value": hi }),
        None => json!({ "value": p.median }),
    }
}

/// Bencher Metric Format document (`cycles`: add the `cycles` measure).
pub fn to_bmf(run: &RunResults, cycles: bool) -> Value {
    let mut doc = Map::new();
    for e in exported(run) {
        let p = point(e, run);
        let measure = if p.unit == "ns" {
            "latency".to_string()
        } else {
            p.unit.to_lowercase().replace(' ', "-")
        };
        let entry = doc
            .entry(e.name.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        let obj = entry.as_object_mut().expect("object");
        obj.insert(measure.clone(), bmf_metric(&p));
        if cycles && e.unit == "cycles" && measure != "cycles" {
            obj.insert("cycles".into(), bmf_metric(&cycles_point(e)));
        }
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

/// github-action-benchmark `customSmallerIsBetter` array (`cycles`: add `(cycles)` entries).
pub fn to_github_action_benchmark(run: &RunResults, cycles: bool) -> Vec<GabEntry> {
    let mut v = Vec::new();
    for e in exported(run) {
        v.push(gab_entry(e, point(e, run), e.name.clone()));
        if cycles && e.unit == "cycles" {
            v.push(gab_entry(
                e,
                cycles_point(e),
                format!("{} (cycles)", e.name),
            ));
        }
    }
    v
}

fn gab_entry(e: &BenchEntry, p: Point, name: String) -> GabEntry {
    {
        {
            let bounds = p.bounds();
            let range = bounds
                .map(|(lo, hi, _)| format!("± {}", fmt_num((p.median - lo).max(hi - p.median))));
            let mut extra = format!(
                "min {} {u}, p99 {} {u}, {} samples",
                fmt_num(p.min),
                fmt_num(p.p99),
                e.samples,
                u = p.unit
            );
            if let Some((_, _, level)) = bounds {
                extra.push_str(&format!(
                    ", {} boots, range = {:.1}% CI of the median across boots",
                    p.boot_medians.len(),
                    level * 100.0
                ));
            }
            if e.unit != p.unit {
                extra.push_str(&format!(", median {} {}", fmt_num(e.median), e.unit));
            }
            GabEntry {
                name,
                unit: p.unit,
                value: p.median,
                range,
                extra: Some(extra),
            }
        }
    }
}

pub fn render(run: &RunResults, format: ExportFormat, cycles: bool) -> String {
    let mut s = match format {
        ExportFormat::Bmf => serde_json::to_string_pretty(&to_bmf(run, cycles)),
        ExportFormat::GithubActionBenchmark => {
            serde_json::to_string_pretty(&to_github_action_benchmark(run, cycles))
        }
    }
    .expect("serialisable");
    s.push('\n');
    s
}

pub fn main(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (run, path) =
        crate::run_dir::load_run(&crate::run_dir::resolve_run(&args.run, &args.runs.dir()))?;
    let problems = crate::compare::gate::run_problems(&run);
    if !problems.is_empty() && !args.allow_incomplete {
        eprintln!(
            "kmbench export: refusing to publish a broken run ({}): {} (--allow-incomplete exports it anyway)",
            path.display(),
            problems.join("; ")
        );
        return Ok(ExitCode::from(2));
    }
    let text = render(&run, args.format, args.cycles);
    match &args.out {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
