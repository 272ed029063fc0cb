//! Reading benchmark names and params, and grouping entries into panels and lines.
use std::collections::{BTreeMap, BTreeSet};

use kmbench_protocol::BenchStatus;

use super::super::plot::{Line, Panel, Pt, XKind};
use crate::format::parse_size;
use crate::results::{BenchEntry, RunResults};

pub(super) fn param_str(e: &BenchEntry, key: &str) -> Option<String> {
    e.params.get(key).map(|v| match v {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    })
}

pub(super) fn param_u64(e: &BenchEntry, key: &str) -> Option<u64> {
    match e.params.get(key)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => parse_size(s),
        _ => None,
    }
}

/// The name without its `@variant` suffix.
pub(super) fn base_name(e: &BenchEntry) -> &str {
    e.name.split('@').next().unwrap_or(&e.name)
}

/// Is this an access benchmark of the TLB sweep (`tlb/<pattern>/<mapping>/<size>`)?
pub fn is_access(e: &BenchEntry) -> bool {
    e.suite == "tlb"
        && (e.params.contains_key("mapping")
            || (base_name(e).starts_with("tlb/") && base_name(e).split('/').count() >= 4))
}

/// The unit every plotted value of `entries` is in: ns when each ok entry has ns, else the
/// records' own unit (so a chart never mixes ns and cycles under one label).
pub fn unit_of(entries: &[&BenchEntry]) -> String {
    let ok: Vec<&&BenchEntry> = entries
        .iter()
        .filter(|e| e.status == BenchStatus::Ok)
        .collect();
    if ok.iter().all(|e| e.ns.is_some()) {
        "ns".into()
    } else {
        ok.first().map(|e| e.unit.clone()).unwrap_or_default()
    }
}

/// Median with its min–p99 band, in `unit` ("ns" = the ns summary).
pub fn point(e: &BenchEntry, unit: &str, x: f64) -> Option<Pt> {
    if e.status != BenchStatus::Ok {
        return None;
    }
    let (lo, y, hi) = match (unit, &e.ns) {
        ("ns", Some(s)) => (s.min, s.median, s.p99),
        ("ns", None) => return None,
        _ => (e.min, e.median, e.p99),
    };
    (y.is_finite() && y > 0.0 && x > 0.0).then(|| Pt {
        x,
        y,
        lo: if lo.is_finite() && lo > 0.0 {
            lo.min(y)
        } else {
            y
        },
        hi: if hi.is_finite() { hi.max(y) } else { y },
    })
}

/// Where a benchmark sits on a size axis: (x kind, x, index of the name segment that holds
/// the size). Orders come from the `order` param (x = 4 KiB << order), bytes from `size`,
/// `bytes` or `buffer`, else from a name segment that reads as a size.
pub fn size_of(e: &BenchEntry) -> Option<(XKind, f64, Option<usize>)> {
    let segs: Vec<&str> = base_name(e).split('/').collect();
    if let Some(o) = param_u64(e, "order").filter(|o| *o < 40) {
        let idx = segs
            .iter()
            .skip(1)
            .position(|s| *s == o.to_string())
            .map(|i| i + 1);
        return Some((XKind::Order, (4096u64 << o) as f64, idx));
    }
    let bytes = ["size", "bytes", "buffer"]
        .iter()
        .find_map(|k| param_u64(e, k));
    if let Some(b) = bytes {
        let idx = segs
            .iter()
            .skip(1)
            .position(|s| parse_size(s) == Some(b))
            .map(|i| i + 1);
        return Some((XKind::Bytes, b as f64, idx));
    }
    let idx = segs.iter().skip(1).rposition(|s| parse_size(s).is_some())? + 1;
    Some((XKind::Bytes, parse_size(segs[idx])? as f64, Some(idx)))
}

/// The series a benchmark belongs to: its name without the size segment (and without
/// segments equal to `drop`, e.g. the panel's flush mode): `vmalloc/pair … lazy`.
pub fn series_label(e: &BenchEntry, drop: &[&str]) -> String {
    let segs: Vec<&str> = base_name(e).split('/').collect();
    let idx = size_of(e).and_then(|(_, _, i)| i);
    let keep = |i: usize, s: &&str| Some(i) != idx && (i == 0 || !drop.contains(s));
    let before: Vec<&str> = segs
        .iter()
        .enumerate()
        .filter(|(i, s)| idx.is_none_or(|k| *i < k) && keep(*i, s))
        .map(|(_, s)| *s)
        .collect();
    let after: Vec<&str> = segs
        .iter()
        .enumerate()
        .filter(|(i, s)| idx.is_some_and(|k| *i > k) && keep(*i, s))
        .map(|(_, s)| *s)
        .collect();
    if after.is_empty() {
        before.join("/")
    } else {
        format!("{} … {}", before.join("/"), after.join("/"))
    }
}

/// Group entries into panels (by the first of `panel_keys` with several values) and lines.
pub(super) fn panels_of(
    entries: &[&BenchEntry],
    unit: &str,
    panel_keys: &[&str],
    x_kind: XKind,
) -> Vec<Panel> {
    let key = panel_keys.iter().copied().find(|k| {
        entries
            .iter()
            .filter_map(|e| param_str(e, k))
            .collect::<BTreeSet<_>>()
            .len()
            > 1
    });
    let mut order: Vec<String> = Vec::new();
    let mut m: BTreeMap<String, Vec<(String, Vec<Pt>)>> = BTreeMap::new();
    for e in entries {
        let Some((kind, x, _)) = size_of(e) else {
            continue;
        };
        if kind != x_kind {
            continue;
        }
        let Some(p) = point(e, unit, x) else { continue };
        let pv = key.and_then(|k| param_str(e, k)).unwrap_or_default();
        let drop: Vec<&str> = if pv.is_empty() {
            vec![]
        } else {
            vec![pv.as_str()]
        };
        let label = series_label(e, &drop);
        if !order.contains(&pv) {
            order.push(pv.clone());
        }
        let lines = m.entry(pv.clone()).or_default();
        match lines.iter_mut().find(|(l, _)| *l == label) {
            Some((_, pts)) => pts.push(p),
            None => lines.push((label, vec![p])),
        }
    }
    order
        .into_iter()
        .map(|pv| {
            let lines = m.remove(&pv).unwrap_or_default();
            Panel {
                title: match key {
                    Some(k) => format!("{k} {pv}"),
                    None => String::new(),
                },
                lines: lines
                    .into_iter()
                    .map(|(label, mut pts)| {
                        pts.sort_by(|a, b| a.x.total_cmp(&b.x));
                        Line {
                            label,
                            pts,
                            dashed: false,
                        }
                    })
                    .collect(),
                markers: vec![],
            }
        })
        .filter(|p| !p.lines.is_empty())
        .collect()
}

fn access_parts(e: &BenchEntry) -> Option<(String, String, String, f64)> {
    let segs: Vec<&str> = base_name(e).split('/').collect();
    let pattern = param_str(e, "pattern").or_else(|| segs.get(1).map(|s| s.to_string()))?;
    let mapping = param_str(e, "mapping").or_else(|| segs.get(2).map(|s| s.to_string()))?;
    let variant = param_str(e, "variant").unwrap_or_default();
    let x = param_u64(e, "bytes").or_else(|| segs.get(3).and_then(|s| parse_size(s)))? as f64;
    Some((pattern, mapping, variant, x))
}

/// Variants in run order (the order of `env.extra.variants`, else first appearance).
fn variant_order(run: &RunResults, seen: &[String]) -> Vec<String> {
    let mut out: Vec<String> = run
        .env
        .extra
        .get("variants")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_string))
                .filter(|n| seen.contains(n))
                .collect()
        })
        .unwrap_or_default();
    for s in seen {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

pub(super) fn backing_of(run: &RunResults, variant: &str) -> String {
    run.env
        .extra
        .get("variants")
        .and_then(|v| v.as_array())
        .and_then(|a| {
            a.iter()
                .find(|v| v.get("name").and_then(|n| n.as_str()) == Some(variant))
        })
        .and_then(|v| v.get("host_backing").and_then(|b| b.as_str()))
        .unwrap_or(&run.env.host_backing)
        .to_string()
}

/// One measured point of the TLB sweep.
pub(super) struct AccessPt {
    pub pattern: String,
    pub mapping: String,
    pub variant: String,
    pub pt: Pt,
}

/// The run's access benchmarks as points in `unit`, and their variants in run order.
pub(super) fn access_points(run: &RunResults, unit: &str) -> (Vec<AccessPt>, Vec<String>) {
    let mut pts = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for e in run.benchmarks.iter().filter(|e| is_access(e)) {
        let Some((pattern, mapping, variant, x)) = access_parts(e) else {
            continue;
        };
        let Some(pt) = point(e, unit, x) else {
            continue;
        };
        if !seen.contains(&variant) {
            seen.push(variant.clone());
        }
        pts.push(AccessPt {
            pattern,
            mapping,
            variant,
            pt,
        });
    }
    (pts, variant_order(run, &seen))
}
