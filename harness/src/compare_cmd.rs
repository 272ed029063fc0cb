//! `kmbench compare BASE NEW`: the command. Loads both runs (and a `--config` policy),
//! refuses broken runs and environment differences, compares ([`crate::compare`]),
//! writes the verdict (text, markdown, JSON; `--html` through [`crate::report::html`]).
//! It is the layer above `compare` (analysis), `config` and `report`, so none of those
//! needs the others' command-line side.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::compare::{
    compare_runs, recorded_policy, refusal, report_to_stderr, use_color, write, Format, Options,
};
use crate::run_dir::{load_run, resolve_run};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Baseline: a results.json file, a run folder containing one, or a run id under results/.
    pub base: PathBuf,
    /// Candidate: a results.json file, a run folder containing one, or a run id under results/.
    pub new: PathBuf,
    /// Minimum effect in percent: smaller changes are "unchanged" [default: the new run's
    /// `[compare] threshold`, else 3].
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Family-wise error rate across the benchmarks [default: `[compare] alpha`, else 0.05].
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Take `[compare]` (thresholds, per-benchmark overrides) from this config instead of
    /// the policy recorded in the new run.
    #[arg(long, value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Compare even when the environments or host states differ.
    #[arg(long)]
    pub force: bool,
    /// No ANSI colours (also: NO_COLOR set, or stdout not a terminal).
    #[arg(long)]
    pub no_color: bool,
    #[command(flatten)]
    pub runs: crate::run_dir::RunsDirArg,
    /// Also write a self-contained HTML page (change chart with CIs, verdicts, table) here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
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
    let results_dir = &args.runs.dir();
    let (base, base_path) = match load_run(&resolve_run(&args.base, results_dir)) {
        Ok(x) => x,
        Err(e) => {
            writeln!(err, "kmbench compare: base: {e}")?;
            return Ok(2);
        }
    };
    let (new, new_path) = match load_run(&resolve_run(&args.new, results_dir)) {
        Ok(x) => x,
        Err(e) => {
            writeln!(err, "kmbench compare: new: {e}")?;
            return Ok(2);
        }
    };
    let mut policy = match &args.config {
        Some(c) => match crate::config::load(c) {
            Ok(l) => l.config.compare,
            Err(e) => {
                writeln!(err, "kmbench compare: {e}")?;
                return Ok(2);
            }
        },
        None => recorded_policy(&new).unwrap_or_default(),
    };
    if let Some(t) = args.threshold {
        policy.threshold = t;
    }
    if let Some(a) = args.alpha {
        policy.alpha = a;
    }
    if let Err(e) = policy.validate() {
        writeln!(
            err,
            "kmbench compare: {e} (--threshold is a percentage ≥ 0, --alpha in (0, 1))"
        )?;
        return Ok(2);
    }
    if let Some(code) = refusal(&base, &new, false, args.force, &[], err)? {
        return Ok(code);
    }
    let opts = Options {
        policy,
        pairs: None,
        suite_pairs: Default::default(),
    };
    let mut cmp = compare_runs(&base, &base_path, &new, &new_path, &opts);
    cmp.forced = args.force && !cmp.env_differences.is_empty();
    if let Some(p) = &args.html {
        if let Err(e) = std::fs::write(p, crate::report::html::compare_page(&cmp)) {
            writeln!(err, "kmbench compare: --html {}: {e}", p.display())?;
            return Ok(2);
        }
    }
    write(&cmp, args.format, use_color(args.no_color), out)?;
    report_to_stderr(&cmp, args.format, err)?;
    Ok(if cmp.has_regression() { 1 } else { 0 })
}
