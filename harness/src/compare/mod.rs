//! `kmbench compare BASE NEW`: per-benchmark verdicts a CI job can act on.
//!
//! Lower is better (every statistic is a latency). The pieces:
//!
//! * [`gate`]: broken runs, environment differences and host-state differences, checked
//!   before any benchmark is looked at.
//! * [`verdict`]: one benchmark's test and verdict: per-boot data, a rank test with its
//!   dual Hodges–Lehmann interval, Bonferroni across the benchmarks, a minimum effect.
//! * [`policy`]: `[compare]` in the config, per-benchmark thresholds and ignores.
//! * [`render`]: text, Markdown (PR comments) and JSON (`kmbench.compare/1`).
//!
//! # Family-wise error control: Bonferroni, and why
//!
//! A CI job compares ~40 benchmarks at once; at 5% each, an A/A job would flag one
//! benchmark nearly every time. The family-wise error rate (the chance that *any*
//! benchmark of an unchanged build is flagged) is held at `alpha` by testing each at
//! `alpha/m`. Bonferroni, rather than a method needing independence (Šidák, Hochberg,
//! Benjamini–Hochberg), because benchmarks here are strongly dependent: they share the
//! host's state of the moment and several are decompositions of others (vmalloc phases).
//! Rather than Holm's step-down because Holm's first step *is* Bonferroni — detecting one
//! regression has the same power — and a single per-test level lets the p-value shown,
//! the interval shown and the verdict be one rule (see [`verdict`]).
//!
//! Exit status: 0 when nothing regressed, 1 on a regression, a broken benchmark or a
//! broken new run, 2 for unusable input (missing file, bad JSON, wrong schema, broken
//! base, different environments or host states without `--force`).
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::results::RunResults;
use crate::stats;

pub mod gate;
pub mod policy;
pub mod render;
pub mod verdict;

pub use gate::{env_differences, EnvDiff};
pub use policy::ComparePolicy;
pub use render::{render_markdown, render_text, use_color};
pub use verdict::{boot_values, BenchComparison, Significance, Verdict};

pub const COMPARE_SCHEMA: &str = "kmbench.compare/1";

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Md,
    Json,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunRef {
    pub path: String,
    pub run_id: String,
    pub started_at: String,
    pub complete: bool,
    /// Why the run is broken (empty when sound).
    pub problems: Vec<String>,
    /// The noise guard's one-line summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise: Option<String>,
    pub unstable_host: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub regressed: usize,
    pub improved: usize,
    pub unchanged: usize,
    pub broken: usize,
    pub fixed: usize,
    pub insufficient: usize,
    pub not_applicable: usize,
    pub ignored: usize,
}

/// The whole comparison (also the `--format json` document).
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub schema: &'static str,
    pub base: RunRef,
    pub new: RunRef,
    /// "paired" (`kmbench ab`: per-pair signed-rank) or "unpaired" (rank-sum).
    pub design: &'static str,
    /// Pairs of (base, new) boot indices, for paired designs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairs: Option<Vec<(usize, usize)>>,
    /// Default minimum effect (fraction); per-benchmark values are in `benchmarks`.
    pub threshold: f64,
    /// Family-wise error rate.
    pub alpha: f64,
    /// "bonferroni".
    pub family: &'static str,
    /// Benchmarks tested (m).
    pub tests: usize,
    /// Per-test level, alpha / m.
    pub level: f64,
    pub env_differences: Vec<EnvDiff>,
    pub forced: bool,
    /// Sorted by effect size (largest |change| first).
    pub benchmarks: Vec<BenchComparison>,
    /// Benchmarks the base has and the new run lacks: broken.
    pub only_in_base: Vec<String>,
    pub only_in_new: Vec<String>,
    pub summary: Summary,
    /// `kmbench ab`: how the job ran (order, pairs booted / used / left out, sides, wall time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ab: Option<serde_json::Value>,
}

impl Comparison {
    pub fn has_regression(&self) -> bool {
        self.benchmarks.iter().any(|b| b.verdict.is_regression())
            || !self.only_in_base.is_empty()
            || !self.new.problems.is_empty()
    }
}

fn run_ref(run: &RunResults, path: &Path) -> RunRef {
    RunRef {
        path: path.display().to_string(),
        run_id: run.run_id.clone(),
        started_at: run.started_at.clone(),
        complete: run.complete,
        problems: gate::run_problems(run),
        noise: run.noise.as_ref().map(|n| n.summary()),
        unstable_host: run.noise.as_ref().is_some_and(|n| n.unstable),
    }
}

/// How to compare: the policy, and for paired runs the boot pairs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub policy: ComparePolicy,
    /// `(base boot, new boot)` index pairs (`kmbench ab`); `None`: unpaired runs.
    pub pairs: Option<Vec<(usize, usize)>>,
    /// Paired runs: per suite, the pairs whose canaries agree around that suite
    /// (`noise::suite_pair_agrees`). A suite listed here is tested on exactly these pairs;
    /// other suites use `pairs` less the pairs flagged on one side only.
    pub suite_pairs: BTreeMap<String, Vec<(usize, usize)>>,
}

/// Compare two loaded runs (no refusals here: see [`gate`] and [`run`]).
pub fn compare_runs(
    base: &RunResults,
    base_path: &Path,
    new: &RunResults,
    new_path: &Path,
    opts: &Options,
) -> Comparison {
    let policy = &opts.policy;
    let new_by_name: BTreeMap<&str, &crate::results::BenchEntry> = new
        .benchmarks
        .iter()
        .map(|e| (e.name.as_str(), e))
        .collect();
    let base_names: BTreeSet<&str> = base.benchmarks.iter().map(|e| e.name.as_str()).collect();
    let mut prepared = Vec::new();
    let mut ignored = Vec::new();
    let mut only_in_base = Vec::new();
    let mut seen = BTreeSet::new();
    let tsc = (base.env.tsc_hz, new.env.tsc_hz);
    for b in &base.benchmarks {
        if !seen.insert(b.name.as_str()) {
            continue; // duplicate name: first one wins
        }
        let rule = policy.rule(&b.name);
        match new_by_name.get(b.name.as_str()) {
            _ if rule.ignore => ignored.push(b.name.clone()),
            Some(n) => prepared.push(verdict::prepare(
                b,
                n,
                opts.pairs
                    .as_deref()
                    .map(|all| match opts.suite_pairs.get(&b.suite) {
                        Some(p) => verdict::Pairs::Agreeing(p),
                        None => verdict::Pairs::Flagged(all),
                    }),
                rule.threshold,
                tsc,
            )),
            None => only_in_base.push(b.name.clone()),
        }
    }
    let mut only_in_new: Vec<String> = Vec::new();
    for n in &new.benchmarks {
        if !base_names.contains(n.name.as_str()) && !only_in_new.contains(&n.name) {
            only_in_new.push(n.name.clone());
        }
    }
    let m = prepared.iter().filter(|p| p.testable()).count();
    let level = stats::bonferroni_level(policy.alpha, m);
    let mut benchmarks: Vec<BenchComparison> = prepared
        .into_iter()
        .map(|p| p.decide(level, m, policy.alpha))
        .collect();
    for name in ignored {
        let b = base
            .benchmarks
            .iter()
            .find(|e| e.name == name)
            .expect("from base");
        let mut c = verdict::prepare(b, b, None, 0.0, tsc).cmp;
        c.verdict = Verdict::Ignored;
        c.note = Some("ignored by [compare] policy".into());
        c.new_status = new_by_name
            .get(name.as_str())
            .map_or(c.new_status, |n| n.status);
        benchmarks.push(c);
    }
    // Effect size, largest first; not-comparable rows on top, then by name.
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
            Verdict::Unchanged | Verdict::NotSignificant | Verdict::BelowThreshold => {
                summary.unchanged += 1
            }
            Verdict::InsufficientBoots => summary.insufficient += 1,
            Verdict::Broken => summary.broken += 1,
            Verdict::Fixed => summary.fixed += 1,
            Verdict::NotApplicable => summary.not_applicable += 1,
            Verdict::Ignored => summary.ignored += 1,
        }
    }
    summary.broken += only_in_base.len();
    Comparison {
        schema: COMPARE_SCHEMA,
        base: run_ref(base, base_path),
        new: run_ref(new, new_path),
        design: if opts.pairs.is_some() {
            "paired"
        } else {
            "unpaired"
        },
        pairs: opts.pairs.clone(),
        threshold: policy.threshold / 100.0,
        alpha: policy.alpha,
        family: "bonferroni",
        tests: m,
        level,
        env_differences: env_differences(base, new),
        forced: false,
        benchmarks,
        only_in_base,
        only_in_new,
        summary,
        ab: None,
    }
}

/// The policy a run recorded (`env.extra.compare_policy`), if any.
pub fn recorded_policy(run: &RunResults) -> Option<ComparePolicy> {
    run.env
        .extra
        .get("compare_policy")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Write `cmp` in `format` to `out`.
pub fn write(
    cmp: &Comparison,
    format: Format,
    color: bool,
    out: &mut impl Write,
) -> std::io::Result<()> {
    match format {
        Format::Text => out.write_all(render_text(cmp, color).as_bytes()),
        Format::Md => out.write_all(render_markdown(cmp).as_bytes()),
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, cmp)?;
            writeln!(out)
        }
    }
}

/// Refusals before any benchmark is compared: `Some(2)` after writing why to `err`.
/// `allowed` are environment fields that may differ (ab's deliberate differences).
pub fn refusal(
    base: &RunResults,
    new: &RunResults,
    paired: bool,
    force: bool,
    allowed: &[&str],
    err: &mut impl Write,
) -> std::io::Result<Option<u8>> {
    let base_problems = gate::run_problems(base);
    if !base_problems.is_empty() {
        writeln!(
            err,
            "kmbench compare: the base run {} is broken: {}",
            base.run_id,
            base_problems.join("; ")
        )?;
        return Ok(Some(2));
    }
    let mut diffs: Vec<EnvDiff> = env_differences(base, new)
        .into_iter()
        .filter(|d| !allowed.contains(&d.field))
        .collect();
    if !paired {
        diffs.extend(gate::host_state_difference(
            base.noise.as_ref(),
            new.noise.as_ref(),
        ));
    }
    if !diffs.is_empty() && !force {
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
        if diffs.iter().any(|d| d.field.starts_with("host_state")) {
            writeln!(err, "  (unstable host: the canaries show the machine ran at different speeds; rerun both with --stable, or use `kmbench ab`, which interleaves the two sides)")?;
        }
        writeln!(err, "use --force to compare anyway")?;
        return Ok(Some(2));
    }
    Ok(None)
}

/// Broken-run and missing-benchmark lines on stderr (also when stdout is JSON).
pub fn report_to_stderr(
    cmp: &Comparison,
    format: Format,
    err: &mut impl Write,
) -> std::io::Result<()> {
    if !cmp.new.problems.is_empty() {
        writeln!(
            err,
            "kmbench compare: the new run {} is broken: {}",
            cmp.new.run_id,
            cmp.new.problems.join("; ")
        )?;
    }
    if !cmp.only_in_base.is_empty() {
        writeln!(
            err,
            "kmbench compare: {} benchmark(s) of the base are missing from the new run: {}",
            cmp.only_in_base.len(),
            cmp.only_in_base.join(", ")
        )?;
    }
    let broken: Vec<&str> = cmp
        .benchmarks
        .iter()
        .filter(|b| b.verdict == Verdict::Broken)
        .map(|b| b.name.as_str())
        .collect();
    if !broken.is_empty() {
        writeln!(
            err,
            "kmbench compare: {} benchmark(s) ok in the base are not ok in the new run: {}",
            broken.len(),
            broken.join(", ")
        )?;
    }
    if cmp.forced && format != Format::Text {
        for d in &cmp.env_differences {
            writeln!(
                err,
                "kmbench compare: warning: environments differ: {}: {:?} (base) vs {:?} (new)",
                d.field, d.base, d.new
            )?;
        }
    }
    Ok(())
}
