//! The SMP charts: `smp-scalability` (per-op cost vs CPUs) and `smp-shootdown` (one TLB
//! shootdown's cost vs target CPUs).
//!
//! Records read:
//! * scaling families, `smp/…` and `ipi/…` (e.g. `smp/kmalloc/pair/64`, `ipi/roundtrip`),
//!   x = the `cpus` param: how many CPUs ran the operation concurrently;
//! * shootdowns, `tlb_shootdown/<pages>/<leaf>` with params `targets`, `pages`, `leaf`:
//!   x = `targets`, one line per pages and leaf size (and flush: IPI, or `[PV flush]`).
//!
//! Both naming styles work: entries of one family may share a name and differ only in the
//! param (`smp/kmalloc/pair/64` with `cpus` 1, 2, 4), or carry it as a name segment
//! (`smp/kmalloc/pair/64/cpus=2`). Such `<key>=<n>` segments are dropped from the family's
//! name and serve as x when the param is missing. A family is its name so reduced (with
//! its `@variant`) and its params other than the x one; families sharing a name are told
//! apart by the params that differ (`smp/x (mode=a)`).
use std::collections::BTreeMap;

use super::group::{base_name, param_str, param_u64, point};
use super::{run_tag, unit_of, y_desc};
use crate::report::plot::{Chart, Line, Panel, Pt, XKind, YKind};
use crate::results::{BenchEntry, RunResults};

/// First name segments of the scaling families.
const SCALING: [&str; 2] = ["smp", "ipi"];
/// The shootdown records' suite and first name segment.
const SHOOTDOWN: &str = "tlb_shootdown";

fn first_seg(e: &BenchEntry) -> &str {
    base_name(e).split('/').next().unwrap_or("")
}

/// Is `e` an SMP record (suite or first name segment `smp`, `ipi` or `tlb_shootdown`)?
/// These are charted against CPU counts here, never by size.
pub fn is_smp(e: &BenchEntry) -> bool {
    let smp = |s: &str| SCALING.contains(&s) || s == SHOOTDOWN;
    smp(&e.suite) || smp(first_seg(e))
}

fn is_shootdown(e: &BenchEntry) -> bool {
    e.suite == SHOOTDOWN || first_seg(e) == SHOOTDOWN
}

/// The name without its `<key>=<n>` segments for `keys` (the `@variant` suffix kept), and
/// the values those segments held.
pub(super) fn strip_counts(name: &str, keys: &[&str]) -> (String, BTreeMap<String, u64>) {
    let (base, variant) = match name.split_once('@') {
        Some((b, v)) => (b, Some(v)),
        None => (name, None),
    };
    let mut counts = BTreeMap::new();
    let kept: Vec<&str> = base
        .split('/')
        .filter(|seg| {
            let hit = seg.split_once('=').and_then(|(k, v)| {
                keys.contains(&k)
                    .then(|| v.parse::<u64>().ok())
                    .flatten()
                    .map(|n| (k, n))
            });
            match hit {
                Some((k, n)) => {
                    counts.insert(k.to_string(), n);
                    false
                }
                None => true,
            }
        })
        .collect();
    let mut out = kept.join("/");
    if let Some(v) = variant {
        out.push('@');
        out.push_str(v);
    }
    (out, counts)
}

/// The count `key` of `e`: its param, else its `<key>=<n>` name segment.
fn count_of(e: &BenchEntry, key: &str) -> Option<u64> {
    param_u64(e, key).or_else(|| strip_counts(&e.name, &[key]).1.get(key).copied())
}

/// The median and band of `e` in `unit` at `x` (which may be 0 on a count axis).
fn pt_at(e: &BenchEntry, unit: &str, x: f64) -> Option<Pt> {
    point(e, unit, 1.0).map(|p| Pt { x, ..p })
}

/// Points grouped into lines by a key, in order of first appearance; the first point at an
/// x wins (a repeated record does not draw a vertical stroke).
struct Lines<K> {
    groups: Vec<(K, String, Vec<Pt>)>,
}

impl<K: PartialEq> Lines<K> {
    fn new() -> Self {
        Lines { groups: Vec::new() }
    }

    fn add(&mut self, key: K, label: impl FnOnce() -> String, p: Pt) {
        match self.groups.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, _, pts)) if pts.iter().any(|q| q.x == p.x) => {}
            Some((_, _, pts)) => pts.push(p),
            None => self.groups.push((key, label(), vec![p])),
        }
    }

    fn into_lines(self) -> Vec<Line> {
        self.groups
            .into_iter()
            .map(|(_, label, mut pts)| {
                pts.sort_by(|a, b| a.x.total_cmp(&b.x));
                Line {
                    label,
                    pts,
                    dashed: false,
                }
            })
            .collect()
    }
}

type Params = BTreeMap<String, serde_json::Value>;

/// Families sharing a label get the params that differ among them: `name (k=v, …)`.
fn disambiguate(lines: &mut Lines<(String, Params)>) {
    let keys: Vec<(String, Params)> = lines.groups.iter().map(|(k, _, _)| k.clone()).collect();
    for (key, label, _) in &mut lines.groups {
        let same: Vec<&Params> = keys
            .iter()
            .filter(|(n, _)| *n == key.0)
            .map(|(_, p)| p)
            .collect();
        if same.len() < 2 {
            continue;
        }
        let differ: Vec<String> = same
            .iter()
            .flat_map(|p| p.keys())
            .filter(|k| same.iter().any(|p| p.get(*k) != key.1.get(*k)))
            .filter_map(|k| key.1.get(k).map(|v| (k, v)))
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                v => format!("{k}={v}"),
            })
            .fold(Vec::new(), |mut acc, s| {
                if !acc.contains(&s) {
                    acc.push(s);
                }
                acc
            });
        if !differ.is_empty() {
            *label = format!("{label} ({})", differ.join(", "));
        }
    }
}

/// `smp-scalability`: per-op cost vs CPUs, one line per family, min–p99 bands. None when no
/// scaling record was measured.
pub fn smp_scalability(run: &RunResults) -> Option<Chart> {
    let entries: Vec<&BenchEntry> = run
        .benchmarks
        .iter()
        .filter(|e| is_smp(e) && !is_shootdown(e))
        .filter(|e| count_of(e, "cpus").is_some())
        .collect();
    let unit = unit_of(&entries);
    let mut lines = Lines::new();
    for e in &entries {
        let Some(cpus) = count_of(e, "cpus") else {
            continue;
        };
        let Some(p) = pt_at(e, &unit, cpus as f64) else {
            continue;
        };
        let name = strip_counts(&e.name, &["cpus"]).0;
        let mut rest = e.params.clone();
        rest.remove("cpus");
        lines.add((name.clone(), rest), || name, p);
    }
    disambiguate(&mut lines);
    let lines = lines.into_lines();
    if lines.is_empty() {
        return None;
    }
    Some(Chart {
        name: "smp-scalability".into(),
        title: "Per-op cost vs CPUs".into(),
        note: format!(
            "each CPU runs the operation concurrently; flat = scales; {}",
            run_tag(run)
        ),
        x_desc: "CPUs running concurrently".into(),
        x_kind: XKind::Count,
        y_desc: y_desc(&unit, "median per operation"),
        y: YKind::Latency { unit },
        panels: vec![Panel {
            title: String::new(),
            lines,
            markers: vec![],
        }],
    })
}

/// A shootdown line's label: `1 page 4K`, `512 pages 2M`, with ` [variant]` when there is one.
fn shootdown_label(pages: Option<u64>, leaf: &str, fallback: &str, variant: &str) -> String {
    let mut s = match pages {
        Some(n) => format!("{n} page{} {leaf}", if n == 1 { "" } else { "s" })
            .trim_end()
            .to_string(),
        None => fallback.to_string(),
    };
    if !variant.is_empty() {
        s.push_str(&format!(" [{variant}]"));
    }
    s
}

/// `smp-shootdown`: the cost of one shootdown by target CPUs, one line per pages and leaf.
/// None without shootdown records.
pub fn smp_shootdown(run: &RunResults) -> Option<Chart> {
    let entries: Vec<&BenchEntry> = run
        .benchmarks
        .iter()
        .filter(|e| is_shootdown(e))
        .filter(|e| count_of(e, "targets").is_some())
        .collect();
    let unit = unit_of(&entries);
    let mut lines = Lines::new();
    for e in &entries {
        let Some(targets) = count_of(e, "targets") else {
            continue;
        };
        let Some(p) = pt_at(e, &unit, targets as f64) else {
            continue;
        };
        let name = strip_counts(&e.name, &["targets", "cpus"]).0;
        let (base, name_variant) = name.split_once('@').unwrap_or((&name, ""));
        let segs: Vec<&str> = base.split('/').collect();
        let pages = param_u64(e, "pages").or_else(|| segs.get(1).and_then(|s| s.parse().ok()));
        let leaf = param_str(e, "leaf")
            .or_else(|| segs.get(2).map(|s| s.to_string()))
            .unwrap_or_default();
        let mut variant = param_str(e, "variant").unwrap_or_else(|| name_variant.to_string());
        // `…/pv` rows (param flush = "pv"): KVM's PV TLB flush beside the IPI rows.
        if param_str(e, "flush").as_deref() == Some("pv") || base.ends_with("/pv") {
            variant = if variant.is_empty() {
                "PV flush".into()
            } else {
                format!("{variant}, PV flush")
            };
        }
        let key = match pages {
            Some(n) => (n.to_string(), leaf.clone(), variant.clone()),
            None => (base.to_string(), String::new(), variant.clone()),
        };
        lines.add(key, || shootdown_label(pages, &leaf, base, &variant), p);
    }
    let lines = lines.into_lines();
    if lines.is_empty() {
        return None;
    }
    Some(Chart {
        name: "smp-shootdown".into(),
        title: "TLB shootdown cost vs target CPUs".into(),
        note: format!(
            "one shootdown initiated by CPU 0, per pages and leaf size; {}",
            run_tag(run)
        ),
        x_desc: "target CPUs".into(),
        x_kind: XKind::Count,
        y_desc: y_desc(&unit, "median per shootdown"),
        y: YKind::Latency { unit },
        panels: vec![Panel {
            title: String::new(),
            lines,
            markers: vec![],
        }],
    })
}
