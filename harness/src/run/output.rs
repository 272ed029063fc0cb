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
//! * `<chart>.svg` and `index.html`: the charts and the self-contained report page;
//! * `.kmbench.lock`: the folder's lock, held while a run writes there (a second run into
//!   the same folder is refused, exit 2).
//!
//! A reused folder loses the earlier run's files ([`is_run_output`]) before the run starts;
//! every file is created without following symlinks ([`crate::safe_fs`]).
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use kmbench_protocol::Record;

use super::clock::run_id;
use crate::error::{HarnessError, IoContext, Result};
use crate::results::RunResults;
use crate::safe_fs;

/// A run's folder and id, claimed for the run's lifetime (see [`safe_fs::lock_folder`]).
#[derive(Debug)]
pub struct RunFolder {
    pub id: String,
    pub dir: PathBuf,
    /// Files of an earlier run removed from a reused `--out` folder.
    pub removed_stale: Vec<String>,
    /// Lines in `records.jsonl` so far (its [`RecordsLog`] counts them).
    journal_lines: Arc<AtomicU64>,
    _lock: safe_fs::FolderLock,
}

/// Whether `name` is a file an earlier `kmbench run` leaves in its folder (and a new run
/// into the same folder must not keep).
pub fn is_run_output(name: &str) -> bool {
    name == "results.json"
        || name == "records.jsonl"
        || (name.starts_with("guest") && name.ends_with(".log"))
        || (name.starts_with("guest") && name.ends_with(".plan.json"))
        || name.ends_with(".svg")
        || name == "index.html"
        || (name.starts_with(".results.json") && name.ends_with(".tmp"))
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
            Some(d) => {
                std::fs::create_dir_all(d).ctx(|| format!("creating {}", d.display()))?;
                d.to_path_buf()
            }
            None => {
                let base = root.join("results");
                std::fs::create_dir_all(&base).ctx(|| format!("creating {}", base.display()))?;
                // create_dir, not exists-then-create: two runs started in the same second
                // never share a folder.
                let mut n = 2;
                loop {
                    let dir = base.join(&id);
                    match std::fs::create_dir(&dir) {
                        Ok(()) => break dir,
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            id = format!("{}-{n}", run_id(started, config));
                            n += 1;
                        }
                        Err(e) => {
                            return Err(HarnessError::io(format!("creating {}", dir.display()), e))
                        }
                    }
                }
            }
        };
        let lock = match safe_fs::lock_folder(&dir) {
            Ok(l) => l,
            Err(safe_fs::LockError::Busy(pid)) => {
                return Err(HarnessError::FolderBusy {
                    dir: dir.clone(),
                    pid,
                })
            }
            Err(safe_fs::LockError::Io(e)) => {
                return Err(HarnessError::io(format!("locking {}", dir.display()), e))
            }
        };
        // A reused folder: the earlier run's files go, so nothing stale is mistaken for
        // this run's (other files are left alone).
        let mut removed_stale = Vec::new();
        for e in std::fs::read_dir(&dir).ctx(|| format!("reading {}", dir.display()))? {
            let e = e.ctx(|| format!("reading {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let is_file = e.file_type().map(|t| !t.is_dir()).unwrap_or(false);
            if is_file && is_run_output(&name) {
                std::fs::remove_file(e.path())
                    .ctx(|| format!("removing stale {}", e.path().display()))?;
                removed_stale.push(name);
            }
        }
        removed_stale.sort();
        Ok(RunFolder {
            id,
            dir,
            removed_stale,
            journal_lines: Arc::new(AtomicU64::new(0)),
            _lock: lock,
        })
    }

    /// Where one boot's guest log goes (`name` from `VariantRun::log_name`).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Start `records.jsonl` (truncating a previous one).
    pub fn open_records(&self) -> Result<RecordsLog> {
        let path = self.dir.join("records.jsonl");
        let file = safe_fs::create_fresh(&path).ctx(|| format!("creating {}", path.display()))?;
        Ok(RecordsLog {
            file,
            path,
            error: None,
            lines: self.journal_lines.clone(),
        })
    }

    /// Journal lines written so far.
    pub fn journal_lines(&self) -> u64 {
        self.journal_lines.load(Ordering::SeqCst)
    }

    /// Write `results.json` atomically, stamped with the journal lines written so far
    /// (everything it reflects); returns its path.
    pub fn write_results(&self, results: &RunResults) -> Result<PathBuf> {
        self.write_results_at(results, self.journal_lines())
    }

    /// [`Self::write_results`] for content that reflects the first `lines` journal lines.
    pub fn write_results_at(&self, results: &RunResults, lines: u64) -> Result<PathBuf> {
        let mut r = results.clone();
        r.env
            .extra
            .insert(JOURNAL_LINES_KEY.into(), serde_json::json!(lines));
        write_results(&self.dir, &r)
    }
}

/// `records.jsonl`, the run's journal and its source of truth: appended and flushed line
/// by line, never rewritten, and enough to rebuild `results.json`
/// ([`super::rebuild`]). Lines, in order:
/// * `{"header": {...}}`: the run as planned (first line, see [`super::rebuild::Header`]);
/// * `{"boot", "ms", "record", "variant"?}`: one record as it arrived;
/// * `{"boot", "rejected": {"error", "line"}, "variant"?}`: a refused channel line;
/// * `{"boot", "boot_end": {...}, "variant"?}`: how the boot ended (its verdict).
///
/// A SIGKILL loses at most the line being written (a torn last line is skipped on
/// rebuild). The first write error stops further writes and is kept for one warning
/// ([`RecordsLog::take_error`]): a full disk must not stop the run.
#[derive(Debug)]
pub struct RecordsLog {
    file: std::fs::File,
    path: PathBuf,
    error: Option<std::io::Error>,
    lines: Arc<AtomicU64>,
}

impl RecordsLog {
    /// Append one journal line (a JSON object).
    pub fn append_line(&mut self, line: &serde_json::Value) {
        if self.error.is_some() {
            return;
        }
        let res = writeln!(self.file, "{line}").and_then(|_| self.file.flush());
        match res {
            Ok(()) => {
                self.lines.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Append one record of boot `boot` (from 1), `ms` after the VM started.
    pub fn append(&mut self, boot: u32, variant: Option<&str>, ms: f64, record: &Record) {
        let mut line = serde_json::json!({
            "boot": boot,
            "ms": (ms * 1000.0).round() / 1000.0,
            "record": record,
        });
        if let Some(n) = variant {
            line["variant"] = serde_json::json!(n);
        }
        self.append_line(&line);
    }

    /// Append a boot-scoped entry `{"boot", key: value, "variant"?}`.
    pub fn append_event(
        &mut self,
        boot: u32,
        variant: Option<&str>,
        key: &str,
        value: serde_json::Value,
    ) {
        let mut line = serde_json::json!({ "boot": boot });
        line[key] = value;
        if let Some(n) = variant {
            line["variant"] = serde_json::json!(n);
        }
        self.append_line(&line);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines written so far (shared with [`RunFolder::journal_lines`]).
    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::SeqCst)
    }

    /// The write error that stopped the log, once.
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        self.error.take()
    }
}

/// The key in `results.json` `env.extra` that says how many journal lines it reflects;
/// a `records.jsonl` with more lines means `results.json` is stale.
pub const JOURNAL_LINES_KEY: &str = "journal_lines";

/// Write `path` atomically (see [`safe_fs::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    safe_fs::write_atomic(path, bytes).ctx(|| format!("writing {}", path.display()))
}

/// Write `dir/results.json` atomically; returns its path.
pub fn write_results(dir: &Path, results: &RunResults) -> Result<PathBuf> {
    let path = dir.join("results.json");
    let mut json =
        serde_json::to_vec_pretty(results).map_err(|source| HarnessError::Serialise {
            what: "results",
            source,
        })?;
    json.push(b'\n');
    write_atomic(&path, &json)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_started_in_the_same_second_get_distinct_folders() {
        let root = tempfile::tempdir().unwrap();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_072_000);
        let ids: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        RunFolder::create(None, root.path(), t, Path::new("ci.toml"))
                            .unwrap()
                            .id
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut uniq = ids.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 8, "{ids:?}");
        assert!(uniq.contains(&"20251125-120000-ci".to_string()));
        assert!(uniq.contains(&"20251125-120000-ci-8".to_string()));
    }

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
