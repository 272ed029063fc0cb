//! `kmbench`: the host CLI. Each subcommand lives in its own module of the library.
use clap::{Parser, Subcommand};
use std::path::Path;
use std::process::ExitCode;

use kmbench::run_dir::resolve_run;

#[derive(Parser, Debug)]
#[command(
    name = "kmbench",
    version,
    about = "kmalloc vs vmalloc, huge pages vs 4K: measured in a unikernel under KVM"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build the kernel, boot it, run a config's suites and write results/<run-id>/results.json.
    Run(kmbench::run::Args),
    /// Compare two runs: change in medians, significance, exit 1 on regression.
    Compare(kmbench::compare_cmd::Args),
    /// A/B in one job: boot two sides (kernel, config, backend) interleaved, verdict from
    /// paired boots, exit 1 on regression. The recommended CI workflow (docs/ci.md).
    Ab(kmbench::ab::Args),
    /// Export a run for benchmark trackers (Bencher BMF, github-action-benchmark).
    Export(kmbench::export::Args),
    /// Re-print a run's tables and write its SVG plots; `kmbench report --list` lists runs.
    Report(kmbench::report::Args),
    /// List the runs stored under results/ (same as `kmbench report --list`).
    List(kmbench::report::ListArgs),
}

/// Bring a stored run's results.json up to date with its journal before reading it.
fn refresh(arg: &Path, results_dir: &Path) {
    kmbench::run::rebuild::refresh_if_stale(&resolve_run(arg, results_dir));
}

/// `kmbench report --rebuild RUN`.
fn rebuild(arg: &Path, results_dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let target = resolve_run(arg, results_dir);
    let dir = kmbench::run::rebuild::journal_folder(&target)
        .ok_or_else(|| format!("{}: no records.jsonl to rebuild from", target.display()))?;
    let (_, stats) = kmbench::run::rebuild::rebuild(&dir)?;
    eprintln!(
        "kmbench: {}: results.json rebuilt from {} journal line(s) ({} unreadable, {} boot(s) never ended)",
        dir.display(),
        stats.lines,
        stats.skipped,
        stats.unfinished
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every subcommand resolves run arguments against one results folder (--results-dir,
    // default results/ in the workspace root, where `run` writes).
    let result = match cli.command {
        Command::Run(a) => kmbench::run::main(a),
        Command::Ab(a) => kmbench::ab::main(a),
        Command::Compare(a) => {
            let results = a.runs.dir();
            refresh(&a.base, &results);
            refresh(&a.new, &results);
            kmbench::compare_cmd::main(a)
        }
        Command::Export(a) => {
            refresh(&a.run, &a.runs.dir());
            kmbench::export::main(a)
        }
        Command::Report(a) => match &a.run {
            Some(run) if a.rebuild => {
                rebuild(run, &a.runs.dir()).and_then(|()| kmbench::report::main(a))
            }
            Some(run) => {
                refresh(run, &a.runs.dir());
                kmbench::report::main(a)
            }
            None => kmbench::report::main(a),
        },
        Command::List(a) => kmbench::report::list::main(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kmbench: error: {e}");
            ExitCode::from(2)
        }
    }
}
