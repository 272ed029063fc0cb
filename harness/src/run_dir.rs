//! Run folders on disk: resolve a run argument (a results.json, a folder holding one, a run
//! id under `results/`, or `latest`), load and schema-check a run, and list the stored runs.
//!
//! A leaf module (it depends only on [`crate::results`]) so `compare`, `report`, `export`
//! and `list` share it without importing each other. The listing reads files leniently (as
//! plain JSON) so partial or older files still show up.
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::results::{RunResults, RESULTS_SCHEMA};

/// Why a results file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}: no such file or folder")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a kmbench results file: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: schema is {found:?}, expected {RESULTS_SCHEMA:?}")]
    Schema { path: PathBuf, found: String },
}

/// Resolve a run argument (a results.json, or a folder holding one) to the file's path.
pub fn results_path(arg: &Path) -> Result<PathBuf, LoadError> {
    if arg.is_dir() {
        let p = arg.join("results.json");
        if p.is_file() {
            Ok(p)
        } else {
            Err(LoadError::Missing(p))
        }
    } else if arg.exists() {
        Ok(arg.to_path_buf())
    } else {
        Err(LoadError::Missing(arg.to_path_buf()))
    }
}

/// Load and schema-check a run. Returns the results and the path of the file read.
pub fn load_run(arg: &Path) -> Result<(RunResults, PathBuf), LoadError> {
    let path = results_path(arg)?;
    let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
        path: path.clone(),
        source,
    })?;
    // Check the schema first, so a future schema is named rather than failing on a field.
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| LoadError::Json {
            path: path.clone(),
            source,
        })?;
    let schema = value.get("schema").and_then(|s| s.as_str()).unwrap_or("");
    if schema != RESULTS_SCHEMA {
        let found = if schema.is_empty() {
            "<missing>".to_string()
        } else {
            schema.to_string()
        };
        return Err(LoadError::Schema { path, found });
    }
    let run: RunResults = serde_json::from_value(value).map_err(|source| LoadError::Json {
        path: path.clone(),
        source,
    })?;
    Ok((run, path))
}

/// Where runs are stored when no `--results-dir` is given: `results/` in the workspace root,
/// the folder `kmbench run` writes to (so `list`, `report`, `compare` and `export` find the
/// same runs from any directory inside the workspace); `./results` outside one.
pub fn default_results_dir() -> PathBuf {
    crate::build::workspace_root()
        .map(|r| r.join("results"))
        .unwrap_or_else(|_| PathBuf::from("results"))
}

/// `--results-dir` when given, else [`default_results_dir`].
pub fn results_dir_or_default(given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .unwrap_or_else(default_results_dir)
}

/// The run argument every subcommand takes (a results.json, a run folder, a run id under
/// the results folder, or `latest`), resolved the same way everywhere.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunsDirArg {
    /// Where runs are stored [default: results/ in the workspace root, where `run` writes].
    #[arg(long, value_name = "DIR")]
    pub results_dir: Option<PathBuf>,
}

impl RunsDirArg {
    pub fn dir(&self) -> PathBuf {
        results_dir_or_default(self.results_dir.as_deref())
    }
}

/// Resolve a run argument: a path, a run id under `results_dir`, or `latest`.
pub fn resolve_run(arg: &Path, results_dir: &Path) -> PathBuf {
    if arg.exists() {
        return arg.to_path_buf();
    }
    if arg == Path::new("latest") {
        if let Some(last) = list_runs(results_dir)
            .into_iter()
            .rfind(|r| r.error.is_none())
        {
            return last.dir;
        }
    }
    let under = results_dir.join(arg);
    if under.exists() {
        under
    } else {
        arg.to_path_buf()
    }
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
    if v.get("schema").and_then(Value::as_str) != Some(RESULTS_SCHEMA) {
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
