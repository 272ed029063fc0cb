//! `kmbench list` / `kmbench report --list`: print the runs stored under
//! `results/<run-id>/results.json` (found by [`crate::run_dir::list_runs`]), as a table
//! or as JSON (`--format json`).
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::run_dir::{list_runs, RunSummary};

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub runs: crate::run_dir::RunsDirArg,
    /// Output format: a table, or JSON (one object per run, oldest first).
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ListFormat {
    #[default]
    Text,
    Json,
}

fn status(r: &RunSummary) -> String {
    match (&r.error, r.complete) {
        (Some(e), _) => format!("unreadable ({e})"),
        (None, Some(true)) => "yes".into(),
        (None, Some(false)) => "no".into(),
        (None, None) => "?".into(),
    }
}

/// The runs as a table (comfy-table, no borders): id, start, config, accel/hypervisor/cpl,
/// benchmark count, complete, folder.
pub fn print_list(runs: &[RunSummary], results_dir: &Path, out: &mut impl Write) -> io::Result<()> {
    use comfy_table::{presets::NOTHING, CellAlignment, ContentArrangement, Table};
    if runs.is_empty() {
        return writeln!(out, "no runs in {}", results_dir.display());
    }
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
            "run id",
            "started",
            "config",
            "accel/hypervisor/cpl",
            "benchmarks",
            "complete",
            "folder",
        ]);
    for r in runs {
        t.add_row([
            r.run_id.clone(),
            r.started_at.clone(),
            r.config.clone(),
            format!("{}/{}/{}", r.accel, r.hypervisor, r.cpl),
            r.benchmarks.to_string(),
            status(r),
            r.dir.display().to_string(),
        ]);
    }
    if let Some(c) = t.column_mut(4) {
        c.set_cell_alignment(CellAlignment::Right);
    }
    for line in t.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The runs as JSON: `[{"run_id", "folder", "results", "started_at", "config", "accel",
/// "hypervisor", "cpl", "benchmarks", "complete", "error"}]`.
pub fn list_json(runs: &[RunSummary]) -> serde_json::Value {
    serde_json::Value::Array(
        runs.iter()
            .map(|r| {
                serde_json::json!({
                    "run_id": r.run_id,
                    "folder": r.dir.display().to_string(),
                    "results": r.dir.join("results.json").display().to_string(),
                    "started_at": r.started_at,
                    "config": r.config,
                    "accel": r.accel,
                    "hypervisor": r.hypervisor,
                    "cpl": r.cpl.parse::<u8>().ok(),
                    "benchmarks": r.benchmarks,
                    "complete": r.complete,
                    "error": r.error,
                })
            })
            .collect(),
    )
}

pub fn main(args: ListArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let dir = args.runs.dir();
    let runs = list_runs(&dir);
    let mut out = io::stdout().lock();
    match args.format {
        ListFormat::Text => print_list(&runs, &dir, &mut out)?,
        ListFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &list_json(&runs))?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
