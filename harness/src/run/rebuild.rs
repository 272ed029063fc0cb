//! `results.json` rebuilt from `records.jsonl`, the run's journal and source of truth.
//!
//! The journal ([`super::output::RecordsLog`]) starts with a [`Header`] (the run as
//! planned), then holds every record, every rejected line and every boot's end, appended
//! and flushed one line at a time. Replaying it through the same assembly the run uses
//! ([`super::assemble::results`]) gives the `results.json` the run wrote, or, when the
//! harness was killed, what it would have written: boots that never ended are judged
//! `killed` and the run is incomplete. `kmbench report --rebuild RUN` does it on demand;
//! `kmbench report|compare|export` do it by themselves when a folder's `results.json`
//! reflects fewer journal lines than `records.jsonl` holds ([`refresh_if_stale`]).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kmbench_protocol::{GuestPlan, Record};
use serde::{Deserialize, Serialize};

use super::assemble;
use super::boots::BootData;
use super::output::{write_results, JOURNAL_LINES_KEY};
use super::status;
use super::variants::VariantRun;
use super::verdict::{ExitInfoParts, Verdict};
use crate::config::{Config, HostBacking};
use crate::error::{HarnessError, IoContext, Result};
use crate::results::RunResults;
use crate::safe_fs;

/// Schema of the journal's header line.
pub const JOURNAL_SCHEMA: &str = "kmbench.records/1";

/// The first line of `records.jsonl`: `{"header": Header}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    pub schema: String,
    /// `results.json` before any boot (env, run id, start time).
    pub base: RunResults,
    pub planned_boots: u32,
    pub variants: Vec<VariantMeta>,
}

/// What the journal keeps of a [`VariantRun`] before it boots.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VariantMeta {
    pub name: Option<String>,
    pub cfg: Config,
    pub cpl: u8,
    pub cpl_source: String,
    pub plan: GuestPlan,
    pub cmdline: String,
    pub backing: HostBacking,
    pub skipped: Option<String>,
}

impl Header {
    pub fn new(base: &RunResults, planned_boots: u32, runs: &[VariantRun]) -> Header {
        Header {
            schema: JOURNAL_SCHEMA.into(),
            base: base.clone(),
            planned_boots,
            variants: runs
                .iter()
                .map(|r| VariantMeta {
                    name: r.name.clone(),
                    cfg: r.cfg.clone(),
                    cpl: r.cpl,
                    cpl_source: r.cpl_source.clone(),
                    plan: r.plan.clone(),
                    cmdline: r.cmdline.clone(),
                    backing: r.backing,
                    skipped: r.skipped.clone(),
                })
                .collect(),
        }
    }

    pub fn to_line(&self) -> serde_json::Value {
        serde_json::json!({ "header": self })
    }
}

/// The journal entry for a boot's end.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BootEndEntry {
    pub verdict: Verdict,
    pub command_line: Vec<String>,
    pub stderr: String,
    /// The backend's additions to `env.extra`.
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One journal line, as read back.
#[derive(Deserialize)]
struct Entry {
    header: Option<Header>,
    boot: Option<u32>,
    variant: Option<String>,
    ms: Option<f64>,
    record: Option<Record>,
    rejected: Option<Rejected>,
    boot_end: Option<BootEndEntry>,
}

#[derive(Deserialize)]
struct Rejected {
    error: String,
    line: String,
}

/// What a replay found besides the results.
#[derive(Debug, Default, PartialEq)]
pub struct Replay {
    /// Complete lines read (the value `results.json` is stamped with).
    pub lines: u64,
    /// Lines that did not parse (a torn last line after a SIGKILL).
    pub skipped: u64,
    /// Boots that started but never ended (judged `killed`).
    pub unfinished: u32,
}

/// The verdict of a boot whose end never reached the journal.
fn killed() -> Verdict {
    Verdict {
        ok: false,
        status: status::UNEXPECTED,
        info: ExitInfoParts {
            status: "killed".into(),
            code: None,
            message: "the harness stopped during this boot (killed?): results rebuilt from \
                      records.jsonl"
                .into(),
        },
    }
}

/// Replay journal text into results.
pub fn replay(text: &str) -> std::result::Result<(RunResults, Replay), String> {
    let mut stats = Replay::default();
    let mut header: Option<Header> = None;
    let mut runs: Vec<VariantRun> = Vec::new();
    let mut base: Option<RunResults> = None;
    // Boots under way: (variant index, boot) → data, in the order they started.
    let mut open: Vec<((usize, u32), BootData)> = Vec::new();
    let complete_lines = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
    for line in complete_lines {
        stats.lines += 1;
        let Ok(e) = serde_json::from_str::<Entry>(line) else {
            stats.skipped += 1;
            continue;
        };
        if let Some(h) = e.header {
            if h.schema != JOURNAL_SCHEMA {
                return Err(format!(
                    "journal schema is {:?}, expected {JOURNAL_SCHEMA:?}",
                    h.schema
                ));
            }
            base = Some(h.base.clone());
            runs = h.variants.iter().map(VariantRun::from_meta).collect();
            header = Some(h);
            continue;
        }
        let Some(base) = base.as_mut() else {
            return Err("records.jsonl has no header line (written by an older kmbench)".into());
        };
        let (Some(boot), vi) = (e.boot, variant_index(&runs, e.variant.as_deref())) else {
            stats.skipped += 1;
            continue;
        };
        let Some(vi) = vi else {
            stats.skipped += 1;
            continue;
        };
        let key = (vi, boot);
        let slot = match open.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                open.push((key, BootData::default()));
                open.len() - 1
            }
        };
        if let Some(r) = e.record {
            let data = &mut open[slot].1;
            if data.boot_ms.is_none() {
                data.boot_ms = e.ms;
            }
            data.push(r);
        } else if let Some(r) = e.rejected {
            open[slot].1.bad_records.push((r.error, r.line));
        } else if let Some(end) = e.boot_end {
            let (_, data) = open.remove(slot);
            let run = &mut runs[vi];
            run.boots.push(data);
            run.verdict = Some(end.verdict);
            if run.command_line.is_empty() {
                run.command_line = end.command_line;
            }
            run.stderr.push_str(&end.stderr);
            base.env.extra.extend(end.extra);
        } else {
            stats.skipped += 1;
        }
    }
    let (Some(header), Some(base)) = (header, base) else {
        return Err("records.jsonl is empty or has no header line".into());
    };
    for ((vi, _), data) in open {
        stats.unfinished += 1;
        runs[vi].boots.push(data);
        runs[vi].verdict = Some(killed());
    }
    if runs.is_empty() {
        return Err("the journal's header lists no run".into());
    }
    let mut results = assemble::results(&base, &runs, header.planned_boots);
    results
        .env
        .extra
        .insert(JOURNAL_LINES_KEY.into(), serde_json::json!(stats.lines));
    Ok((results, stats))
}

fn variant_index(runs: &[VariantRun], name: Option<&str>) -> Option<usize> {
    match name {
        None if runs.iter().all(|r| r.name.is_none()) => Some(0),
        None => None,
        Some(n) => runs.iter().position(|r| r.name.as_deref() == Some(n)),
    }
}

impl VariantRun {
    fn from_meta(m: &VariantMeta) -> VariantRun {
        VariantRun {
            name: m.name.clone(),
            cfg: m.cfg.clone(),
            cpl: m.cpl,
            cpl_source: m.cpl_source.clone(),
            plan: m.plan.clone(),
            cmdline: m.cmdline.clone(),
            backing: m.backing,
            skipped: m.skipped.clone(),
            boots: vec![],
            verdict: None,
            command_line: vec![],
            stderr: String::new(),
        }
    }
}

/// The run folder a `report`/`compare`/`export` argument names, if it is a folder with a
/// journal (a results.json path names its folder).
pub fn journal_folder(arg: &Path) -> Option<PathBuf> {
    let dir = if arg.is_dir() {
        arg.to_path_buf()
    } else {
        arg.parent()?.to_path_buf()
    };
    dir.join("records.jsonl").is_file().then_some(dir)
}

/// Rebuild `dir/results.json` from `dir/records.jsonl` and write it (atomically, holding
/// the folder's lock, so never under a run still writing there).
pub fn rebuild(dir: &Path) -> Result<(RunResults, Replay)> {
    let _lock = match safe_fs::lock_folder(dir) {
        Ok(l) => l,
        Err(safe_fs::LockError::Busy(pid)) => {
            return Err(HarnessError::FolderBusy {
                dir: dir.to_path_buf(),
                pid,
            })
        }
        Err(safe_fs::LockError::Io(e)) => {
            return Err(HarnessError::io(format!("locking {}", dir.display()), e))
        }
    };
    let path = dir.join("records.jsonl");
    let text = std::fs::read_to_string(&path).ctx(|| format!("reading {}", path.display()))?;
    let (results, stats) = replay(&text).map_err(|reason| HarnessError::Journal {
        path: path.clone(),
        reason,
    })?;
    write_results(dir, &results)?;
    Ok((results, stats))
}

/// Whether `dir/results.json` reflects fewer journal lines than `dir/records.jsonl` has
/// (or is missing while a journal with a header exists).
pub fn is_stale(dir: &Path) -> bool {
    let Ok(journal) = std::fs::read(dir.join("records.jsonl")) else {
        return false;
    };
    if !journal.starts_with(b"{\"header\"") {
        return false;
    }
    let lines = journal.iter().filter(|&&b| b == b'\n').count() as u64;
    let stamped = std::fs::read_to_string(dir.join("results.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["env"]["extra"][JOURNAL_LINES_KEY].as_u64());
    stamped.is_none_or(|n| n < lines)
}

/// Rebuild a stale run folder (not one a run is still writing); says so on stderr.
pub fn refresh_if_stale(arg: &Path) {
    let Some(dir) = journal_folder(arg) else {
        return;
    };
    if !is_stale(&dir) {
        return;
    }
    match rebuild(&dir) {
        Ok((_, stats)) => {
            eprintln!(
            "kmbench: {}: results.json was behind records.jsonl; rebuilt from {} journal line(s){}",
            dir.display(),
            stats.lines,
            if stats.unfinished > 0 {
                format!(", {} boot(s) that never ended judged killed", stats.unfinished)
            } else {
                String::new()
            }
        )
        }
        Err(HarnessError::FolderBusy { .. }) => {}
        Err(e) => eprintln!(
            "kmbench: warning: {}: cannot rebuild results.json: {e}",
            dir.display()
        ),
    }
}
