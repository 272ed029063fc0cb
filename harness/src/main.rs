//! `kmbench`: the host CLI. Each subcommand lives in its own module of the library.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
    Compare(kmbench::compare::Args),
    /// Export a run for benchmark trackers (Bencher BMF, github-action-benchmark).
    Export(kmbench::export::Args),
    /// Re-print a run's tables and write its SVG plots; `kmbench report --list` lists runs.
    Report(kmbench::report::Args),
    /// List the runs stored under results/ (same as `kmbench report --list`).
    List(kmbench::report::ListArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => kmbench::run::main(a),
        Command::Compare(a) => kmbench::compare::main(a),
        Command::Export(a) => kmbench::export::main(a),
        Command::Report(a) => kmbench::report::main(a),
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
