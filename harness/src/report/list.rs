//! `kmbench list` / `kmbench report --list`: print the runs stored under
//! `results/<run-id>/results.json` (found by [`crate::run_dir::list_runs`]).
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::run_dir::{list_runs, RunSummary};

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Where runs are stored.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
}

pub fn print_list(runs: &[RunSummary], results_dir: &Path, out: &mut impl Write) -> io::Result<()> {
    if runs.is_empty() {
        return writeln!(out, "no runs in {}", results_dir.display());
    }
    let headers = [
        "run id",
        "started",
        "config",
        "accel/hypervisor/cpl",
        "benchmarks",
        "complete",
    ];
    let rows: Vec<[String; 6]> = runs
        .iter()
        .map(|r| {
            [
                r.run_id.clone(),
                r.started_at.clone(),
                r.config.clone(),
                format!("{}/{}/{}", r.accel, r.hypervisor, r.cpl),
                r.benchmarks.to_string(),
                match (&r.error, r.complete) {
                    (Some(e), _) => format!("unreadable ({e})"),
                    (None, Some(true)) => "yes".into(),
                    (None, Some(false)) => "no".into(),
                    (None, None) => "?".into(),
                },
            ]
        })
        .collect();
    let mut w = headers.map(|h| h.chars().count());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let fmt = |cells: [String; 6]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = " ".repeat(w[i] - c.chars().count());
                if i == 4 {
                    format!("{pad}{c}")
                } else {
                    format!("{c}{pad}")
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", fmt(headers.map(String::from)))?;
    for r in rows {
        writeln!(out, "{}", fmt(r))?;
    }
    Ok(())
}

pub fn main(args: ListArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    print_list(
        &list_runs(&args.results_dir),
        &args.results_dir,
        &mut io::stdout().lock(),
    )?;
    Ok(ExitCode::SUCCESS)
}
