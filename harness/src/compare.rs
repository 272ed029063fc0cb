//! `kmbench compare BASE NEW`: per-benchmark change in median, with significance.
//!
//! # Rule (lower is better: every statistic is a latency)
//!
//! For each benchmark present and `ok` on both sides:
//!
//! * **Point estimate.** The median of the per-boot medians (`boot_medians`; a single-boot
//!   run falls back to `median`). `change = new / base - 1`.
//! * **Significance, when both sides have at least [`MIN_BOOTS`] boots.** A two-sided
//!   Mann-Whitney U test on the per-boot medians (exact without ties, normal approximation
//!   with tie correction otherwise) and a seeded percentile bootstrap CI (level
//!   `1 - alpha`) of the ratio of medians, resampling boots with replacement. The change
//!   is *significant* when `p < alpha` **and** the CI excludes 1 (the two must agree).
//!   Note the exact test cannot reach p < 0.05 with 3 boots per side (min p = 0.1): use
//!   `--boots 5` or more when the verdict matters.
//! * **Verdict.**
//!   - `|change| < threshold` → **unchanged**, whatever the test says.
//!   - enough boots: significant → **regressed** (`change > 0`) / **improved**;
//!     otherwise **unchanged (not significant)**.
//!   - fewer than [`MIN_BOOTS`] boots on either side (single-boot runs included):
//!     significance is `n/a`; a change of at least **twice** the threshold is still
//!     reported as **regressed** / **improved** (a large change in a single boot is worth
//!     a red CI light), anything smaller is **unchanged (insufficient boots)**.
//!   - `ok` in BASE but not in NEW (oom, error, unsupported) → **broken**, counted as a
//!     regression; the reverse → **fixed**; neither ok → **n/a**.
//!
//! Exit status: 0 when nothing regressed (or broke), 1 otherwise, 2 for unusable input
//! (missing file, bad JSON, wrong schema, different environments without `--force`).
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kmbench_protocol::BenchStatus;
use serde::Serialize;

use crate::format::fmt_ns;
use crate::results::{BenchEntry, RunResults};
use crate::run_dir::{load_run, resolve_run};
use crate::stats;

/// Fewest boots per side for which significance is computed.
pub const MIN_BOOTS: usize = 3;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Baseline: a results.json file, a run folder containing one, or a run id under results/.
    pub base: PathBuf,
    /// Candidate: a results.json file, a run folder containing one, or a run id under results/.
    pub new: PathBuf,
    /// Noise threshold in percent: smaller changes are "unchanged".
    #[arg(long, default_value_t = 5.0)]
    pub threshold: f64,
    /// Significance level for the rank test and the bootstrap CI (1 - alpha).
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Compare even when the environments differ.
    #[arg(long)]
    pub force: bool,
    /// No ANSI colours (also: NO_COLOR set, or stdout not a terminal).
    #[arg(long)]
    pub no_color: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Md,
    Json,
}

/// One environment field that differs between two runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvDiff {
    pub field: &'static str,
    pub base: String,
    pub new: String,
}

/// Environment fields that make timings incomparable when they differ.
pub fn env_differences(base: &RunResults, new: &RunResults) -> Vec<EnvDiff> {
    let (b, n) = (&base.env, &new.env);
    let fields: [(&'static str, String, String); 6] = [
        ("host_cpu", b.host_cpu.clone(), n.host_cpu.clone()),
        ("accel", b.accel.clone(), n.accel.clone()),
        ("hypervisor", b.hypervisor.clone(), n.hypervisor.clone()),
        ("cpl", b.cpl.to_string(), n.cpl.to_string()),
        (
            "direct_map_page",
            b.direct_map_page.clone(),
            n.direct_map_page.clone(),
        ),
        (
            "host_backing",
            b.host_backing.clone(),
            n.host_backing.clone(),
        ),
    ];
    fields
        .into_iter()
        .filter(|(_, x, y)| x != y)
        .map(|(field, base, new)| EnvDiff { field, base, new })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Regressed,
    Improved,
    Unchanged,
    /// Beyond the threshold but the test did not confirm it.
    NotSignificant,
    /// Beyond the threshold (but below twice it) with too few boots to test.
    InsufficientBoots,
    /// ok in base, not ok in new.
    Broken,
    /// not ok in base, ok in new.
    Fixed,
    /// Not comparable (neither side ok, unit changed, zero baseline).
    NotApplicable,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::NotSignificant => "unchanged (not significant)",
            Verdict::InsufficientBoots => "unchanged (insufficient boots)",
            Verdict::Broken => "broken",
            Verdict::Fixed => "fixed",
            Verdict::NotApplicable => "n/a",
        }
    }

    /// Counts toward exit status 1.
    pub fn is_regression(self) -> bool {
        matches!(self, Verdict::Regressed | Verdict::Broken)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Significance {
    Significant,
    NotSignificant,
    /// Too few boots to test.
    #[serde(rename = "n/a")]
    NotApplicable,
}

/// One benchmark's comparison.
#[derive(Clone, Debug, Serialize)]
pub struct BenchComparison {
    pub name: String,
    pub suite: String,
    pub unit: String,
    pub base_status: BenchStatus,
    pub new_status: BenchStatus,
    /// Median of per-boot medians, in `unit`.
    pub base_median: f64,
    pub new_median: f64,
    /// The same in nanoseconds, when known.
    pub base_median_ns: Option<f64>,
    pub new_median_ns: Option<f64>,
    pub base_boots: usize,
    pub new_boots: usize,
    /// `new / base - 1` (0.2 = 20% slower). `None` when not comparable.
    pub change: Option<f64>,
    /// Bootstrap CI of `new / base - 1` at level `1 - alpha`.
    pub ci: Option<(f64, f64)>,
    pub p_value: Option<f64>,
    /// "exact" or "normal" (Mann-Whitney method).
    pub test: Option<&'static str>,
    pub significance: Significance,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunRef {
    pub path: String,
    pub run_id: String,
    pub started_at: String,
    pub complete: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub regressed: usize,
    pub improved: usize,
    pub unchanged: usize,
    pub broken: usize,
    pub fixed: usize,
    pub not_applicable: usize,
}

/// The whole comparison (also the `--format json` document).
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub schema: &'static str,
    pub base: RunRef,
    pub new: RunRef,
    /// Fraction (0.05 = 5%).
    pub threshold: f64,
    pub alpha: f64,
    pub min_boots: usize,
    pub env_differences: Vec<EnvDiff>,
    pub forced: bool,
    /// Sorted by effect size (largest |change| first).
    pub benchmarks: Vec<BenchComparison>,
    pub only_in_base: Vec<String>,
    pub only_in_new: Vec<String>,
    pub summary: Summary,
}

pub const COMPARE_SCHEMA: &str = "kmbench.compare/1";

impl Comparison {
    pub fn has_regression(&self) -> bool {
        self.benchmarks.iter().any(|b| b.verdict.is_regression())
    }
}

/// Per-boot medians of an entry, falling back to its overall median.
pub fn boot_values(e: &BenchEntry) -> Vec<f64> {
    let v: Vec<f64> = e
        .boot_medians
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        vec![e.median]
    } else {
        v
    }
}

fn to_ns(e: &BenchEntry, run: &RunResults, v: f64) -> Option<f64> {
    if e.unit == "ns" {
        return Some(v);
    }
    if let Some(ns) = &e.ns {
        if e.median != 0.0 {
            return Some(v * ns.median / e.median);
        }
    }
    if e.unit == "cycles" && run.env.tsc_hz > 0 {
        return Some(v * 1e9 / run.env.tsc_hz as f64);
    }
    None
}

/// Compare one benchmark. `threshold` is a fraction.
pub fn compare_entry(
    b: &BenchEntry,
    n: &BenchEntry,
    base_run: &RunResults,
    new_run: &RunResults,
    threshold: f64,
    alpha: f64,
) -> BenchComparison {
    let bv = boot_values(b);
    let nv = boot_values(n);
    let base_median = stats::median(&bv).unwrap_or(b.median);
    let new_median = stats::median(&nv).unwrap_or(n.median);
    let mut c = BenchComparison {
        name: b.name.clone(),
        suite: b.suite.clone(),
        unit: b.unit.clone(),
        base_status: b.status,
        new_status: n.status,
        base_median,
        new_median,
        base_median_ns: to_ns(b, base_run, base_median),
        new_median_ns: to_ns(n, new_run, new_median),
        base_boots: bv.len(),
        new_boots: nv.len(),
        change: None,
        ci: None,
        p_value: None,
        test: None,
        significance: Significance::NotApplicable,
        verdict: Verdict::NotApplicable,
        note: None,
    };
    let (bok, nok) = (b.status == BenchStatus::Ok, n.status == BenchStatus::Ok);
    match (bok, nok) {
        (true, false) => {
            c.verdict = Verdict::Broken;
            c.note = Some(format!(
                "status {:?} in new{}",
                n.status,
                n.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
            return c;
        }
        (false, true) => {
            c.verdict = Verdict::Fixed;
            return c;
        }
        (false, false) => {
            c.note = Some("not ok on either side".into());
            return c;
        }
        (true, true) => {}
    }
    if b.unit != n.unit {
        c.note = Some(format!("unit changed: {} → {}", b.unit, n.unit));
        return c;
    }
    let change = if base_median == new_median {
        0.0
    } else if base_median == 0.0 {
        c.note = Some("baseline median is 0".into());
        return c;
    } else {
        new_median / base_median - 1.0
    };
    c.change = Some(change);

    let enough = bv.len() >= MIN_BOOTS && nv.len() >= MIN_BOOTS;
    if enough {
        let mw = stats::mann_whitney_u(&bv, &nv).expect("non-empty");
        c.p_value = Some(mw.p_value);
        c.test = Some(mw.method.as_str());
        c.ci = stats::bootstrap_ratio_ci(
            &bv,
            &nv,
            alpha,
            stats::BOOTSTRAP_ITERS,
            stats::BOOTSTRAP_SEED,
        )
        .map(|(lo, hi)| (lo - 1.0, hi - 1.0));
        let ci_excludes_zero = c.ci.is_some_and(|(lo, hi)| lo > 0.0 || hi < 0.0);
        c.significance = if mw.p_value < alpha && ci_excludes_zero {
            Significance::Significant
        } else {
            Significance::NotSignificant
        };
    }
    c.verdict = if change.abs() < threshold {
        Verdict::Unchanged
    } else if enough {
        match c.significance {
            Significance::Significant if change > 0.0 => Verdict::Regressed,
            Significance::Significant => Verdict::Improved,
            _ => Verdict::NotSignificant,
        }
    } else if change.abs() >= 2.0 * threshold {
        if change > 0.0 {
            Verdict::Regressed
        } else {
            Verdict::Improved
        }
    } else {
        Verdict::InsufficientBoots
    };
    c
}

fn run_ref(run: &RunResults, path: &Path) -> RunRef {
    RunRef {
        path: path.display().to_string(),
        run_id: run.run_id.clone(),
        started_at: run.started_at.clone(),
        complete: run.complete,
    }
}

/// Compare two loaded runs. `threshold` is a fraction (0.05 = 5%).
pub fn compare_runs(
    base: &RunResults,
    base_path: &Path,
    new: &RunResults,
    new_path: &Path,
    threshold: f64,
    alpha: f64,
) -> Comparison {
    let new_by_name: BTreeMap<&str, &BenchEntry> = new
        .benchmarks
        .iter()
        .map(|e| (e.name.as_str(), e))
        .collect();
    let base_names: std::collections::BTreeSet<&str> =
        base.benchmarks.iter().map(|e| e.name.as_str()).collect();
    let mut benchmarks = Vec::new();
    let mut only_in_base = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for b in &base.benchmarks {
        if !seen.insert(b.name.as_str()) {
            continue; // duplicate name: first one wins
        }
        match new_by_name.get(b.name.as_str()) {
            Some(n) => benchmarks.push(compare_entry(b, n, base, new, threshold, alpha)),
            None => only_in_base.push(b.name.clone()),
        }
    }
    let mut only_in_new: Vec<String> = Vec::new();
    for n in &new.benchmarks {
        if !base_names.contains(n.name.as_str()) && !only_in_new.contains(&n.name) {
            only_in_new.push(n.name.clone());
        }
    }
    // Effect size, largest first; not-comparable rows (broken/fixed/n/a) on top, then by name.
    let key = |c: &BenchComparison| c.change.map(f64::abs).unwrap_or(f64::INFINITY);
    benchmarks.sort_by(|x, y| {
        key(y)
            .partial_cmp(&key(x))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(x.name.cmp(&y.name))
    });
    let mut summary = Summary::default();
    for c in &benchmarks {
        match c.verdict {
            Verdict::Regressed => summary.regressed += 1,
            Verdict::Improved => summary.improved += 1,
            Verdict::Unchanged | Verdict::NotSignificant | Verdict::InsufficientBoots => {
                summary.unchanged += 1
            }
            Verdict::Broken => summary.broken += 1,
            Verdict::Fixed => summary.fixed += 1,
            Verdict::NotApplicable => summary.not_applicable += 1,
        }
    }
    Comparison {
        schema: COMPARE_SCHEMA,
        base: run_ref(base, base_path),
        new: run_ref(new, new_path),
        threshold,
        alpha,
        min_boots: MIN_BOOTS,
        env_differences: env_differences(base, new),
        forced: false,
        benchmarks,
        only_in_base,
        only_in_new,
        summary,
    }
}

/// Whether to colour stdout: a terminal, no `NO_COLOR`, no `--no-color`.
pub fn use_color(no_color_flag: bool) -> bool {
    !no_color_flag
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stdout().is_terminal()
}

fn fmt_value(v: f64, ns: Option<f64>, unit: &str) -> String {
    match ns {
        Some(ns) => fmt_ns(ns),
        None => format!("{v:.1} {unit}"),
    }
}

fn fmt_pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

fn fmt_change(c: &BenchComparison) -> String {
    c.change.map(fmt_pct).unwrap_or_else(|| "-".into())
}

fn fmt_ci(c: &BenchComparison) -> String {
    match c.ci {
        Some((lo, hi)) => format!("[{}, {}]", fmt_pct(lo), fmt_pct(hi)),
        None => "n/a".into(),
    }
}

fn fmt_p(c: &BenchComparison) -> String {
    match c.p_value {
        Some(p) if p < 0.001 => "<0.001".into(),
        Some(p) => format!("{p:.3}"),
        None => "n/a".into(),
    }
}

fn verdict_text(c: &BenchComparison) -> String {
    match &c.note {
        Some(n) => format!("{} ({n})", c.verdict.label()),
        None => c.verdict.label().to_string(),
    }
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

fn summary_line(cmp: &Comparison) -> String {
    let s = &cmp.summary;
    let mut line = format!(
        "{} regressed, {} improved, {} unchanged",
        s.regressed, s.improved, s.unchanged
    );
    for (n, what) in [
        (s.broken, "broken"),
        (s.fixed, "fixed"),
        (s.not_applicable, "not comparable"),
    ] {
        if n > 0 {
            let _ = write!(line, ", {n} {what}");
        }
    }
    line
}

fn header_lines(cmp: &Comparison) -> Vec<String> {
    let mut v = vec![
        format!("base: {} ({}){}", cmp.base.run_id, cmp.base.path, if cmp.base.complete { "" } else { " [incomplete]" }),
        format!("new:  {} ({}){}", cmp.new.run_id, cmp.new.path, if cmp.new.complete { "" } else { " [incomplete]" }),
        format!(
            "threshold {:.1}%, alpha {}, CI {:.0}% bootstrap over boots, Mann-Whitney U on per-boot medians (≥{} boots per side); lower is better",
            cmp.threshold * 100.0,
            cmp.alpha,
            (1.0 - cmp.alpha) * 100.0,
            cmp.min_boots
        ),
    ];
    for d in &cmp.env_differences {
        v.push(format!(
            "warning: environments differ (--force): {}: {:?} (base) vs {:?} (new)",
            d.field, d.base, d.new
        ));
    }
    v
}

/// Plain-text table (optionally with ANSI colours).
pub fn render_text(cmp: &Comparison, color: bool) -> String {
    let mut out = String::new();
    for l in header_lines(cmp) {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(out);
    let headers = [
        "benchmark",
        "base",
        "new",
        "change",
        "CI",
        "p",
        "boots",
        "verdict",
    ];
    let rows: Vec<[String; 8]> = cmp
        .benchmarks
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                fmt_value(c.base_median, c.base_median_ns, &c.unit),
                fmt_value(c.new_median, c.new_median_ns, &c.unit),
                fmt_change(c),
                fmt_ci(c),
                fmt_p(c),
                format!("{}/{}", c.base_boots, c.new_boots),
                verdict_text(c),
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let pad = |s: &str, w: usize, right: bool| {
        let n = w.saturating_sub(s.chars().count());
        if right {
            format!("{}{s}", " ".repeat(n))
        } else {
            format!("{s}{}", " ".repeat(n))
        }
    };
    let right = [false, true, true, true, true, true, true, false];
    let head: Vec<String> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| pad(h, widths[i], right[i]))
        .collect();
    let head = head.join("  ");
    if color {
        let _ = writeln!(out, "{BOLD}{}{RESET}", head.trim_end());
    } else {
        let _ = writeln!(out, "{}", head.trim_end());
    }
    for (r, c) in rows.iter().zip(&cmp.benchmarks) {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| pad(s, widths[i], right[i]))
            .collect();
        let line = line.join("  ");
        let line = line.trim_end();
        if color {
            let code = match c.verdict {
                Verdict::Regressed | Verdict::Broken => RED,
                Verdict::Improved | Verdict::Fixed => GREEN,
                Verdict::NotSignificant | Verdict::InsufficientBoots => YELLOW,
                Verdict::Unchanged | Verdict::NotApplicable => DIM,
            };
            let _ = writeln!(out, "{code}{line}{RESET}");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    if cmp.benchmarks.is_empty() {
        let _ = writeln!(out, "(no benchmarks in common)");
    }
    for (list, side) in [(&cmp.only_in_base, "base"), (&cmp.only_in_new, "new")] {
        if !list.is_empty() {
            let _ = writeln!(
                out,
                "\nonly in {side} ({}): {}",
                list.len(),
                list.join(", ")
            );
        }
    }
    let _ = writeln!(out, "\n{}", summary_line(cmp));
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Markdown, for PR comments.
pub fn render_markdown(cmp: &Comparison) -> String {
    let mut out = String::new();
    let s = &cmp.summary;
    let icon = if cmp.has_regression() {
        "🔴"
    } else if s.improved > 0 {
        "🟢"
    } else {
        "⚪"
    };
    let _ = writeln!(out, "### kmbench: {icon} {}\n", summary_line(cmp));
    let _ = writeln!(
        out,
        "Base `{}` → new `{}`. Threshold {:.1}%, α = {}; CI: {:.0}% bootstrap over boots; p: Mann-Whitney U on per-boot medians (≥{} boots per side). Lower is better.\n",
        md_escape(&cmp.base.run_id),
        md_escape(&cmp.new.run_id),
        cmp.threshold * 100.0,
        cmp.alpha,
        (1.0 - cmp.alpha) * 100.0,
        cmp.min_boots
    );
    for d in &cmp.env_differences {
        let _ = writeln!(
            out,
            "> ⚠️ environments differ (`--force`): `{}`: `{}` (base) vs `{}` (new)\n",
            d.field,
            md_escape(&d.base),
            md_escape(&d.new)
        );
    }
    if !cmp.benchmarks.is_empty() {
        let _ = writeln!(
            out,
            "| Benchmark | Base | New | Change | CI | p | Boots | Verdict |"
        );
        let _ = writeln!(out, "|:--|--:|--:|--:|--:|--:|--:|:--|");
        for c in &cmp.benchmarks {
            let verdict = match c.verdict {
                Verdict::Regressed | Verdict::Broken => {
                    format!("🔴 **{}**", md_escape(&verdict_text(c)))
                }
                Verdict::Improved | Verdict::Fixed => format!("🟢 {}", md_escape(&verdict_text(c))),
                _ => md_escape(&verdict_text(c)),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {}/{} | {} |",
                md_escape(&c.name),
                fmt_value(c.base_median, c.base_median_ns, &c.unit),
                fmt_value(c.new_median, c.new_median_ns, &c.unit),
                fmt_change(c),
                fmt_ci(c),
                fmt_p(c),
                c.base_boots,
                c.new_boots,
                verdict
            );
        }
    }
    for (list, side) in [(&cmp.only_in_base, "base"), (&cmp.only_in_new, "new")] {
        if !list.is_empty() {
            let names: Vec<String> = list.iter().map(|n| format!("`{}`", md_escape(n))).collect();
            let _ = writeln!(out, "\nOnly in {side}: {}", names.join(", "));
        }
    }
    out
}

pub fn main(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let code = run(
        &args,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )?;
    Ok(ExitCode::from(code))
}

/// The command, with its outputs injectable. Returns the exit status (0, 1 or 2).
pub fn run(args: &Args, out: &mut impl Write, err: &mut impl Write) -> std::io::Result<u8> {
    let threshold_ok = args.threshold.is_finite() && args.threshold >= 0.0;
    let alpha_ok = args.alpha > 0.0 && args.alpha < 1.0;
    if !threshold_ok || !alpha_ok {
        writeln!(
            err,
            "kmbench compare: --threshold must be ≥ 0 (percent) and --alpha in (0, 1)"
        )?;
        return Ok(2);
    }
    // A run id under results/ (or `latest`) works as well as a path.
    let results_dir = Path::new("results");
    let base_arg = resolve_run(&args.base, results_dir);
    let new_arg = resolve_run(&args.new, results_dir);
    let (base, base_path) = match load_run(&base_arg) {
        Ok(x) => x,
        Err(e) => {
            writeln!(err, "kmbench compare: base: {e}")?;
            return Ok(2);
        }
    };
    let (new, new_path) = match load_run(&new_arg) {
        Ok(x) => x,
        Err(e) => {
            writeln!(err, "kmbench compare: new: {e}")?;
            return Ok(2);
        }
    };
    let diffs = env_differences(&base, &new);
    if !diffs.is_empty() && !args.force {
        writeln!(
            err,
            "kmbench compare: refusing to compare runs from different environments:"
        )?;
        for d in &diffs {
            writeln!(
                err,
                "  {}: {:?} (base) vs {:?} (new)",
                d.field, d.base, d.new
            )?;
        }
        writeln!(err, "use --force to compare anyway")?;
        return Ok(2);
    }
    let mut cmp = compare_runs(
        &base,
        &base_path,
        &new,
        &new_path,
        args.threshold / 100.0,
        args.alpha,
    );
    cmp.forced = !diffs.is_empty();
    match args.format {
        Format::Text => out.write_all(render_text(&cmp, use_color(args.no_color)).as_bytes())?,
        Format::Md => out.write_all(render_markdown(&cmp).as_bytes())?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &cmp)?;
            writeln!(out)?;
        }
    }
    if cmp.forced && args.format != Format::Text {
        for d in &diffs {
            writeln!(
                err,
                "kmbench compare: warning: environments differ: {}: {:?} (base) vs {:?} (new)",
                d.field, d.base, d.new
            )?;
        }
    }
    Ok(if cmp.has_regression() { 1 } else { 0 })
}
