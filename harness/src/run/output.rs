//! The run folder, `results/<run-id>/` (or `--out DIR`): the one place that chooses,
//! creates and writes it.
//!
//! What a run leaves there:
//! * `records.jsonl`: every record as it arrived, one JSON object a line
//!   (`{"boot", "ms", "record", "variant"?}`), appended and flushed record by record
//!   ([`RecordsLog`]);
//! * `results.json`: the assembled run, rewritten atomically (temporary file + rename) at
//!   the start, while records stream in, after every boot and at the end
//!   ([`RunFolder::write_results`]);
//! * `guest*.log`: each boot's human-readable guest log ([`RunFolder::log_path`]);
//! * `tlb-*.svg`: plots, when the run has TLB sweeps.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kmbench_protocol::Record;

use super::clock::run_id;
use crate::error::{HarnessError, IoContext, Result};
use crate::results::RunResults;

/// A run's folder and id.
#[derive(Debug, Clone)]
pub struct RunFolder {
    pub id: String,
    pub dir: PathBuf,
}

impl RunFolder {
    /// `out` when given; else `<root>/results/<run-id>`, with `-2`, `-3`… appended when a
    /// folder of that id already exists. Creates the folder.
    pub fn create(
        out: Option<&Path>,
        root: &Path,
        started: SystemTime,
        config: &Path,
    ) -> Result<RunFolder> {
        let mut id = run_id(started, config);
        let dir = match out {
            Some(d) => d.to_path_buf(),
            None => {
                let base = root.join("results");
                let mut dir = base.join(&id);
                let mut n = 2;
                while dir.exists() {
                    id = format!("{}-{n}", run_id(started, config));
                    dir = base.join(&id);
                    n += 1;
                }
                dir
            }
        };
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        Ok(RunFolder { id, dir })
    }

    /// Where one boot's guest log goes (`name` from `VariantRun::log_name`).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Start `records.jsonl` (truncating a previous one).
    pub fn open_records(&self) -> Result<RecordsLog> {
        let path = self.dir.join("records.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        Ok(RecordsLog {
            file,
            path,
            error: None,
        })
    }

    /// Write `results.json` atomically; returns its path.
    pub fn write_results(&self, results: &RunResults) -> Result<PathBuf> {
        write_results(&self.dir, results)
    }
}

/// `records.jsonl`, appended as records arrive. The first write error stops further
/// writes and is kept for one warning ([`RecordsLog::take_error`]): a full disk must not
/// stop the run.
#[derive(Debug)]
pub struct RecordsLog {
    file: std::fs::File,
    path: PathBuf,
    error: Option<std::io::Error>,
}

impl RecordsLog {
    /// Append one record of boot `boot` (from 1), `ms` after the VM started.
    pub fn append(&mut self, boot: u32, variant: Option<&str>, ms: f64, record: &Record) {
        if self.error.is_some() {
            return;
        }
        let mut line = serde_json::json!({
            "boot": boot,
            "ms": (ms * 1000.0).round() / 1000.0,
            "record": record,
        });
        if let Some(n) = variant {
            line["variant"] = serde_json::json!(n);
        }
        let res = writeln!(self.file, "{line}").and_then(|_| self.file.flush());
        if let Err(e) = res {
            self.error = Some(e);
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The write error that stopped the log, once.
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        self.error.take()
    }
}

/// Write `path` atomically: a temporary file in the same directory, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out")
    ));
    {
        let mut f = std::fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .ctx(|| format!("writing {}", tmp.display()))?;
        f.sync_all().ctx(|| format!("syncing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).ctx(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Write `dir/results.json` atomically; returns its path.
pub fn write_results(dir: &Path, results: &RunResults) -> Result<PathBuf> {
    let path = dir.join("results.json");
    let mut json = serde_json::to_vec_pretty(results)
        .map_err(|e| HarnessError::Other(format!("serialising results: {e}")))?;
    json.push(b'\n');
    write_atomic(&path, &json)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("results.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
