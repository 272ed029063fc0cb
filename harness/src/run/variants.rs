//! `[[variants]]`: one run, several guest/host settings (e.g. host backing 4K | thp |
//! hugetlbfs), each booted `boots` times.
//!
//! * Order: with `boots = 1`, A B C. With more boots the order alternates direction each
//!   round (ABBA: A B B A A B … for two variants), so slow drift of the host hits every
//!   variant alike.
//! * Naming: every benchmark of variant `v` is stored as `<name>@v` with the param
//!   `variant = "v"`; info records keep their plain key (first variant that sent it) and
//!   are also stored as `<key>@v`. `env.extra.variants` lists each variant's settings,
//!   outcome and boot times; the top-level env describes the run as a whole.
//! * A variant that cannot start (hugetlbfs without reserved huge pages, …) is recorded
//!   as skipped with the harness's message and the others still run. A variant whose
//!   guest fails stops its own remaining boots only.
use std::collections::BTreeMap;

use crate::config::{Config, HostBacking};
use crate::results::{ExitInfo, RunResults};

use super::{BootData, Verdict};

/// Boot order: (variant index, boot number from 1) for `n` variants × `boots`.
pub fn schedule(n: usize, boots: u32) -> Vec<(usize, u32)> {
    let mut v = Vec::new();
    for round in 0..boots {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..n).collect()
        } else {
            (0..n).rev().collect()
        };
        for i in order {
            v.push((i, round + 1));
        }
    }
    v
}

/// One variant's state during a run.
#[derive(Debug)]
pub struct VariantRun {
    /// `None` for a run without `[[variants]]`.
    pub name: Option<String>,
    pub cfg: Config,
    pub cpl: u8,
    pub cpl_source: String,
    pub plan: kmbench_protocol::GuestPlan,
    pub cmdline: String,
    pub backing: HostBacking,
    /// Why the variant did not run.
    pub skipped: Option<String>,
    pub boots: Vec<BootData>,
    pub verdict: Option<Verdict>,
    pub command_line: Vec<String>,
    pub stderr: String,
}

impl VariantRun {
    /// Still has boots to do.
    pub fn active(&self) -> bool {
        self.skipped.is_none() && self.verdict.as_ref().is_none_or(|v| v.ok)
    }

    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// Log file of one boot.
    pub fn log_name(&self, boot: u32, boots: u32) -> String {
        match (&self.name, boots) {
            (None, 1) => "guest.log".into(),
            (None, _) => format!("guest-{boot}.log"),
            (Some(n), 1) => format!("guest-{n}.log"),
            (Some(n), _) => format!("guest-{n}-{boot}.log"),
        }
    }

    /// This variant's facts for `env.extra.variants`.
    pub fn env_entry(&self, results: Option<&RunResults>) -> serde_json::Value {
        let status = match (&self.skipped, &self.verdict) {
            (Some(_), _) => "skipped".to_string(),
            (None, Some(v)) => v.info.status.clone(),
            (None, None) => "not run".to_string(),
        };
        let message = self
            .skipped
            .clone()
            .or_else(|| self.verdict.as_ref().map(|v| v.info.message.clone()));
        serde_json::json!({
            "name": self.label(),
            "status": status,
            "message": message,
            "host_backing": self.backing.label(),
            "direct_map_page": self.cfg.guest.direct_map_page.label(),
            "cpl": self.cpl,
            "cpl_source": self.cpl_source,
            "mm_debug": self.cfg.guest.mm_debug,
            "flush_mode": self.cfg.guest.flush_mode.label(),
            "boots": self.boots.len(),
            "boot_ms": self.boots.iter().map(|b| b.boot_ms).collect::<Vec<_>>(),
            "guest": results.and_then(|r| r.env.guest.clone()),
            "command": self.command_line,
            "plan": self.plan,
        })
    }
}

/// Fold per-variant results into one `results.json`: names get `@<variant>`.
pub fn merge(mut base: RunResults, parts: &[(&VariantRun, Option<RunResults>)]) -> RunResults {
    base.benchmarks.clear();
    base.selftests.clear();
    base.info = BTreeMap::new();
    base.faults.clear();
    let mut complete = true;
    let mut exit: Option<ExitInfo> = None;
    let mut entries = Vec::new();
    let mut first_env = None;
    for (v, r) in parts {
        entries.push(v.env_entry(r.as_ref()));
        let name = v.label().to_string();
        let Some(r) = r else {
            continue;
        };
        if first_env.is_none() {
            first_env = Some(r.env.clone());
        }
        complete &= r.complete;
        if let Some(e) = &r.exit {
            let failing = e.status != "success";
            if exit.is_none() || (failing && exit.as_ref().is_some_and(|x| x.status == "success")) {
                let mut e = e.clone();
                if failing {
                    e.message = format!("[{name}] {}", e.message);
                }
                exit = Some(e);
            }
        }
        for b in &r.benchmarks {
            let mut b = b.clone();
            b.name = format!("{}@{name}", b.name);
            b.params.insert("variant".into(), serde_json::json!(name));
            base.benchmarks.push(b);
        }
        for s in &r.selftests {
            let mut s = s.clone();
            s.name = format!("{}@{name}", s.name);
            base.selftests.push(s);
        }
        for (k, val) in &r.info {
            base.info.entry(k.clone()).or_insert_with(|| val.clone());
            base.info.insert(format!("{k}@{name}"), val.clone());
        }
        for f in &r.faults {
            let mut f = f.clone();
            f.message = format!("[{name}] {}", f.message);
            base.faults.push(f);
        }
    }
    if let Some(env) = first_env {
        base.env.tsc_hz = env.tsc_hz;
        base.env.tsc_source = env.tsc_source;
        base.env.guest = env.guest;
        base.env.boot_ms = env.boot_ms;
    }
    let backings: Vec<&str> = parts.iter().map(|(v, _)| v.backing.label()).collect();
    let mut distinct = backings.clone();
    distinct.dedup();
    base.env.host_backing = if distinct.len() == 1 {
        distinct[0].to_string()
    } else {
        format!("per variant ({})", backings.join(", "))
    };
    base.env
        .extra
        .insert("variants".into(), serde_json::json!(entries));
    let skipped: Vec<String> = parts
        .iter()
        .filter_map(|(v, _)| v.skipped.as_ref().map(|m| format!("{}: {m}", v.label())))
        .collect();
    if !skipped.is_empty() {
        base.env
            .extra
            .insert("variants_skipped".into(), serde_json::json!(skipped));
    }
    base.complete = complete && parts.iter().any(|(_, r)| r.is_some());
    base.exit = exit;
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abba_order() {
        let s: Vec<usize> = schedule(2, 3).into_iter().map(|(i, _)| i).collect();
        assert_eq!(s, [0, 1, 1, 0, 0, 1]);
        let s = schedule(3, 2);
        assert_eq!(s, [(0, 1), (1, 1), (2, 1), (2, 2), (1, 2), (0, 2)]);
        assert_eq!(schedule(3, 1).len(), 3);
    }
}
