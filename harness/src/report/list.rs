//! `kmbench list` / `kmbench report --list`: runs stored under `results/<run-id>/results.json`.
//!
//! Read leniently (as plain JSON) so partial or older files still show up.
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Where runs are stored.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub dir: PathBuf,
    pub run_id: String,
    pub started_at: String,
    pub config: String,
    pub accel: String,
    pub hypervisor: String,
    pub cpl: String,
    pub benchmarks: usize,
    pub complete: Option<bool>,
    /// Why the file could not be read, when it could not.
    pub error: Option<String>,
}

fn summarise(dir: &Path) -> Option<RunSummary> {
    let file = dir.join("results.json");
    if !file.is_file() {
        return None;
    }
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut s = RunSummary {
        dir: dir.to_path_buf(),
        run_id: dir_name,
        started_at: String::new(),
        config: String::new(),
        accel: String::new(),
        hypervisor: String::new(),
        cpl: String::new(),
        benchmarks: 0,
        complete: None,
        error: None,
    };
    let v: Value = match std::fs::read_to_string(&file)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            s.error = Some(e);
            return Some(s);
        }
    };
    let str_at = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if v.get("schema").and_then(Value::as_str) != Some(crate::results::RESULTS_SCHEMA) {
        s.error = Some(format!(
            "schema {:?}",
            v.get("schema")
                .and_then(Value::as_str)
                .unwrap_or("<missing>")
        ));
    }
    if let Some(id) = v.get("run_id").and_then(Value::as_str) {
        s.run_id = id.to_string();
    }
    s.started_at = str_at("/started_at");
    s.config = str_at("/env/config_file");
    s.accel = str_at("/env/accel");
    s.hypervisor = str_at("/env/hypervisor");
    s.cpl = v
        .pointer("/env/cpl")
        .map(|c| c.to_string())
        .unwrap_or_default();
    s.benchmarks = v
        .get("benchmarks")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    s.complete = v.get("complete").and_then(Value::as_bool);
    Some(s)
}

/// Runs under `results_dir`, oldest first (by start time, then id).
pub fn list_runs(results_dir: &Path) -> Vec<RunSummary> {
    let Ok(rd) = std::fs::read_dir(results_dir) else {
        return vec![];
    };
    let mut runs: Vec<RunSummary> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter_map(|p| summarise(&p))
        .collect();
    runs.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then(a.run_id.cmp(&b.run_id))
    });
    runs
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
