//! Which charts a run gets, built from its results (drawing is [`super::plot`]'s).
//!
//! Headline charts, answering the two questions kmbench exists for:
//! * `alloc-cost`: kmalloc vs vmalloc (and pages) — one alloc+free pair by size, every
//!   vmalloc flush mode, min–p99 bands;
//! * `vmalloc-phases`: vmalloc decomposed (bookkeeping, PTE writes, TLB flush, alloc, free)
//!   per flush mode, with kmalloc's pair as a dashed reference;
//! * `tlb-<pattern>`: ns per access vs working set, one line per mapping, one panel per
//!   host backing (variant), min–p99 bands, TLB-reach markers (CPUID entries × page size);
//! * `tlb-ratio`: direct-4K / direct-2M and vmalloc / vmalloc_huge vs working set.
//!
//! Then one `latency-<suite>` chart per suite with sizes: series grouped by operation and
//! mode (the name without its size: `vmalloc/pair/4096/lazy` is a point of
//! `vmalloc/pair … lazy`), x in bytes or page orders, panels per variant or flush mode.
use std::collections::{BTreeMap, BTreeSet};

use kmbench_protocol::BenchStatus;

use super::plot::{Chart, Line, Marker, Panel, Pt, XKind, YKind};
use crate::format::{human_size, parse_size};
use crate::results::{BenchEntry, RunResults};

fn param_str(e: &BenchEntry, key: &str) -> Option<String> {
    e.params.get(key).map(|v| match v {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    })
}

fn param_u64(e: &BenchEntry, key: &str) -> Option<u64> {
    match e.params.get(key)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => parse_size(s),
        _ => None,
    }
}

/// The name without its `@variant` suffix.
fn base_name(e: &BenchEntry) -> &str {
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
fn panels_of(
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

fn y_desc(unit: &str, what: &str) -> String {
    if unit == "ns" {
        format!("{what} (log)")
    } else {
        format!("{what}, {unit} (log)")
    }
}

fn run_tag(run: &RunResults) -> String {
    let e = &run.env;
    format!(
        "run {} · {} {} · CPL {} · host backing {}",
        run.run_id, e.accel, e.hypervisor, e.cpl, e.host_backing
    )
}

/// kmalloc vs vmalloc: the cost of one alloc+free pair by size.
pub fn alloc_cost(run: &RunResults) -> Option<Chart> {
    let pairs: Vec<&BenchEntry> = run
        .benchmarks
        .iter()
        .filter(|e| base_name(e).split('/').nth(1) == Some("pair"))
        .filter(|e| {
            matches!(
                base_name(e).split('/').next(),
                Some("kmalloc" | "kzalloc" | "alloc_pages" | "vmalloc" | "vmalloc_huge")
            )
        })
        .collect();
    let has = |p: &str| pairs.iter().any(|e| e.name.starts_with(p));
    if !(has("kmalloc/") || has("alloc_pages/")) || !has("vmalloc") {
        return None;
    }
    let unit = unit_of(&pairs);
    let mut lines: Vec<Line> = Vec::new();
    for e in &pairs {
        // Pages: by bytes here (4 KiB << order), to share the axis with kmalloc and vmalloc.
        let x = param_u64(e, "size")
            .or_else(|| param_u64(e, "bytes"))
            .map(|b| b as f64)
            .or_else(|| size_of(e).map(|s| s.1));
        let Some(p) = x.and_then(|x| point(e, &unit, x)) else {
            continue;
        };
        let label = series_label(e, &[]);
        match lines.iter_mut().find(|l| l.label == label) {
            Some(l) => l.pts.push(p),
            None => lines.push(Line {
                label,
                pts: vec![p],
                dashed: false,
            }),
        }
    }
    lines
        .iter_mut()
        .for_each(|l| l.pts.sort_by(|a, b| a.x.total_cmp(&b.x)));
    Some(Chart {
        name: "alloc-cost".into(),
        title: "kmalloc or vmalloc? One alloc+free pair by size".into(),
        note: format!("lower is better; vmalloc per flush mode; {}", run_tag(run)),
        x_desc: "allocation size".into(),
        x_kind: XKind::Bytes,
        y_desc: y_desc(&unit, "median per alloc+free pair"),
        y: YKind::Latency { unit },
        panels: vec![Panel {
            title: String::new(),
            lines,
            markers: vec![],
        }],
    })
}

/// vmalloc decomposed per flush mode, with kmalloc's pair as the reference.
pub fn vmalloc_phases(run: &RunResults) -> Option<Chart> {
    let v: Vec<&BenchEntry> = run
        .benchmarks
        .iter()
        .filter(|e| e.suite == "vmalloc")
        .filter(|e| {
            let b = base_name(e);
            b.starts_with("vmalloc/") || b.starts_with("vmalloc_huge/")
        })
        .filter(|e| size_of(e).is_some())
        .collect();
    if !v.iter().any(|e| e.name.contains("/phase/")) {
        return None;
    }
    let km: Vec<&BenchEntry> = run
        .benchmarks
        .iter()
        .filter(|e| base_name(e).starts_with("kmalloc/pair/"))
        .collect();
    let mut all = v.clone();
    all.extend(&km);
    let unit = unit_of(&all);
    let mut panels = panels_of(&v, &unit, &["flush_mode"], XKind::Bytes);
    let reference = panels_of(&km, &unit, &[], XKind::Bytes);
    if let Some(r) = reference.into_iter().next() {
        for p in &mut panels {
            p.lines.extend(r.lines.iter().cloned().map(|mut l| {
                l.dashed = true;
                l.label = format!("{} (reference)", l.label);
                l
            }));
        }
    }
    Some(Chart {
        name: "vmalloc-phases".into(),
        title: "Where vmalloc's time goes, per flush mode".into(),
        note: format!(
            "phases: bookkeeping (range), pte_writes (map), tlb_flush; dashed: kmalloc pair; {}",
            run_tag(run)
        ),
        x_desc: "allocation size".into(),
        x_kind: XKind::Bytes,
        y_desc: y_desc(&unit, "median per operation"),
        y: YKind::Latency { unit },
        panels,
    })
}

/// CPUID data-TLB reach markers for a mapping's page size: `L1 4K: 64 × 4 KiB = 256 KiB`.
pub fn reach_markers(run: &RunResults, variant: &str, pages: &[&str]) -> Vec<Marker> {
    let mut out: Vec<Marker> = crate::report::tlb::cpuid_entries(run, variant)
        .into_iter()
        .filter(|(_, ps, _)| pages.contains(&ps.as_str()))
        .filter_map(|(level, ps, n)| {
            let page: u64 = match ps.as_str() {
                "4K" => 4096,
                "2M" => 2 << 20,
                "1G" => 1 << 30,
                _ => return None,
            };
            Some(Marker {
                x: (n * page) as f64,
                label: format!("{level} {ps} reach {}", human_size(n * page)),
            })
        })
        .collect();
    out.sort_by(|a, b| a.x.total_cmp(&b.x));
    out.dedup_by(|a, b| a.label == b.label);
    out
}

fn access_parts(e: &BenchEntry) -> Option<(String, String, String, f64)> {
    let segs: Vec<&str> = base_name(e).split('/').collect();
    let pattern = param_str(e, "pattern").or_else(|| segs.get(1).map(|s| s.to_string()))?;
    let mapping = param_str(e, "mapping").or_else(|| segs.get(2).map(|s| s.to_string()))?;
    let variant = param_str(e, "variant").unwrap_or_default();
    let x = param_u64(e, "bytes").or_else(|| segs.get(3).and_then(|s| parse_size(s)))? as f64;
    Some((pattern, mapping, variant, x))
}

const MAPPING_ORDER: [&str; 5] = [
    "direct-4K",
    "direct-2M",
    "direct-1G",
    "vmalloc",
    "vmalloc_huge",
];

fn mapping_rank(m: &str) -> usize {
    MAPPING_ORDER
        .iter()
        .position(|x| *x == m)
        .unwrap_or(MAPPING_ORDER.len())
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

fn backing_of(run: &RunResults, variant: &str) -> String {
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

/// Latency vs working set per access pattern: panels per host backing, lines per mapping.
pub fn tlb_charts(run: &RunResults) -> Vec<Chart> {
    let acc: Vec<&BenchEntry> = run.benchmarks.iter().filter(|e| is_access(e)).collect();
    if acc.is_empty() {
        return vec![];
    }
    let unit = unit_of(&acc);
    // pattern → variant → mapping → points
    let mut g: BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<Pt>>>> = BTreeMap::new();
    let mut seen_variants: Vec<String> = Vec::new();
    for e in &acc {
        let Some((pattern, mapping, variant, x)) = access_parts(e) else {
            continue;
        };
        let Some(p) = point(e, &unit, x) else {
            continue;
        };
        if !seen_variants.contains(&variant) {
            seen_variants.push(variant.clone());
        }
        g.entry(pattern)
            .or_default()
            .entry(variant)
            .or_default()
            .entry(mapping)
            .or_default()
            .push(p);
    }
    let variants = variant_order(run, &seen_variants);
    let patterns: Vec<String> = {
        let mut p: Vec<String> = g.keys().cloned().collect();
        // The headline pattern first.
        p.sort_by_key(|s| (s != "random", s.clone()));
        p
    };
    let mut charts = Vec::new();
    for pattern in patterns {
        let by_variant = &g[&pattern];
        let mut panels = Vec::new();
        for v in &variants {
            let Some(maps) = by_variant.get(v) else {
                continue;
            };
            let mut names: Vec<&String> = maps.keys().collect();
            names.sort_by_key(|m| (mapping_rank(m), m.to_string()));
            let lines = names
                .into_iter()
                .map(|m| {
                    let mut pts = maps[m].clone();
                    pts.sort_by(|a, b| a.x.total_cmp(&b.x));
                    Line {
                        label: m.clone(),
                        pts,
                        dashed: false,
                    }
                })
                .collect();
            panels.push(Panel {
                title: if v.is_empty() {
                    format!("host backing {}", run.env.host_backing)
                } else {
                    format!("variant {v} (host backing {})", backing_of(run, v))
                },
                lines,
                markers: reach_markers(run, v, &["4K", "2M", "1G"]),
            });
        }
        if panels.is_empty() {
            continue;
        }
        let cpuid_note = if panels.iter().all(|p| p.markers.is_empty()) {
            "CPUID reports no data-TLB sizes here (no reach markers)".to_string()
        } else {
            "dashed verticals: TLB reach from CPUID (entries × page size)".to_string()
        };
        charts.push(Chart {
            name: format!("tlb-{}", slug(&pattern)),
            title: format!("Huge pages or 4K? {pattern} access: latency vs working set"),
            note: format!("{cpuid_note}; {}", run_tag(run)),
            x_desc: "working set".into(),
            x_kind: XKind::Bytes,
            y_desc: y_desc(&unit, "median per access"),
            y: YKind::Latency { unit: unit.clone() },
            panels,
        });
    }
    charts
}

/// 4K/2M ratio vs working set: direct-4K / direct-2M and vmalloc / vmalloc_huge, one
/// panel per pattern (random and page_stride when present), one line per pair and variant.
pub fn tlb_ratio(run: &RunResults) -> Option<Chart> {
    let acc: Vec<&BenchEntry> = run.benchmarks.iter().filter(|e| is_access(e)).collect();
    let unit = unit_of(&acc);
    // (pattern, variant, mapping) → x → y
    let mut m: BTreeMap<(String, String, String), BTreeMap<u64, f64>> = BTreeMap::new();
    let mut seen: Vec<String> = Vec::new();
    for e in &acc {
        let Some((pattern, mapping, variant, x)) = access_parts(e) else {
            continue;
        };
        let Some(p) = point(e, &unit, x) else {
            continue;
        };
        if !seen.contains(&variant) {
            seen.push(variant.clone());
        }
        m.entry((pattern, variant, mapping))
            .or_default()
            .insert(x as u64, p.y);
    }
    let variants = variant_order(run, &seen);
    let mut panels = Vec::new();
    for pattern in ["random", "page_stride", "random_line"] {
        let mut lines = Vec::new();
        for v in &variants {
            for (small, huge, name) in [
                ("direct-4K", "direct-2M", "direct 4K/2M"),
                ("vmalloc", "vmalloc_huge", "vmalloc 4K/2M"),
            ] {
                let get = |map: &str| m.get(&(pattern.to_string(), v.clone(), map.to_string()));
                let (Some(a), Some(b)) = (get(small), get(huge)) else {
                    continue;
                };
                let pts: Vec<Pt> = a
                    .iter()
                    .filter_map(|(x, ya)| b.get(x).map(|yb| Pt::new(*x as f64, ya / yb)))
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let label = if v.is_empty() {
                    name.to_string()
                } else {
                    format!("{name} [{v}]")
                };
                lines.push(Line {
                    label,
                    pts,
                    dashed: small == "vmalloc",
                });
            }
        }
        if !lines.is_empty() {
            panels.push(Panel {
                title: format!("{pattern} access"),
                lines,
                markers: vec![],
            });
        }
        if panels.len() == 2 {
            break;
        }
    }
    if panels.is_empty() {
        return None;
    }
    Some(Chart {
        name: "tlb-ratio".into(),
        title: "Huge pages or 4K? Cost of 4K pages relative to 2M".into(),
        note: format!(
            "above 1: 4K pages are slower by that factor; {}",
            run_tag(run)
        ),
        x_desc: "working set".into(),
        x_kind: XKind::Bytes,
        y_desc: "4K latency / 2M latency".into(),
        y: YKind::Ratio,
        panels,
    })
}

/// One chart per suite whose benchmarks have sizes (access benchmarks excluded).
pub fn suite_charts(run: &RunResults) -> Vec<Chart> {
    let mut out = Vec::new();
    for (suite, entries) in crate::report::table::by_suite(run) {
        let entries: Vec<&BenchEntry> = entries.into_iter().filter(|e| !is_access(e)).collect();
        for kind in [XKind::Bytes, XKind::Order] {
            let of_kind: Vec<&BenchEntry> = entries
                .iter()
                .copied()
                .filter(|e| size_of(e).is_some_and(|(k, _, _)| k == kind))
                .collect();
            let unit = unit_of(&of_kind);
            let panels = panels_of(&of_kind, &unit, &["variant", "flush_mode"], kind);
            if panels.is_empty() {
                continue;
            }
            out.push(Chart {
                name: format!(
                    "latency-{}{}",
                    slug(&suite),
                    if kind == XKind::Order && entries.len() != of_kind.len() {
                        "-orders"
                    } else {
                        ""
                    }
                ),
                title: format!(
                    "{suite}: median latency by {}",
                    if kind == XKind::Order {
                        "order"
                    } else {
                        "size"
                    }
                ),
                note: format!(
                    "series = operation and mode, x = its size; {}",
                    run_tag(run)
                ),
                x_desc: if kind == XKind::Order {
                    "order (block of 2^order pages)".into()
                } else {
                    "size".into()
                },
                x_kind: kind,
                y_desc: y_desc(&unit, "median per operation"),
                y: YKind::Latency { unit },
                panels,
            });
        }
    }
    out
}

/// Every chart of a run, headline charts first.
pub fn charts(run: &RunResults) -> Vec<Chart> {
    let mut out = Vec::new();
    out.extend(alloc_cost(run));
    out.extend(vmalloc_phases(run));
    out.extend(tlb_charts(run));
    out.extend(tlb_ratio(run));
    out.extend(suite_charts(run));
    out
}

pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmbench_protocol::{BenchRecord, Summary};
    use serde_json::json;

    fn e(name: &str, suite: &str, params: serde_json::Value, ns: bool) -> BenchEntry {
        let s = Summary {
            min: 9.0,
            median: 10.0,
            p99: 20.0,
            max: 40.0,
            mean: 11.0,
        };
        BenchEntry {
            record: BenchRecord {
                name: name.into(),
                suite: suite.into(),
                status: BenchStatus::Ok,
                unit: "cycles".into(),
                samples: 10,
                min: s.min,
                median: s.median,
                p99: s.p99,
                max: s.max,
                mean: s.mean,
                ns: ns.then(|| s.scaled(0.5)),
                params: serde_json::from_value(params).unwrap(),
                extra: Default::default(),
                message: None,
            },
            boot_medians: vec![],
            unstable_boots: vec![],
        }
    }

    #[test]
    fn series_are_the_name_without_its_size() {
        let v = e(
            "vmalloc/pair/4096/lazy",
            "vmalloc",
            json!({"size": 4096, "flush_mode": "lazy"}),
            true,
        );
        assert_eq!(series_label(&v, &[]), "vmalloc/pair … lazy");
        assert_eq!(series_label(&v, &["lazy"]), "vmalloc/pair");
        let ph = e(
            "vmalloc/phase/65536/full/pte_writes",
            "vmalloc",
            json!({"size": 65536}),
            true,
        );
        assert_eq!(series_label(&ph, &["full"]), "vmalloc/phase … pte_writes");
        let km = e("kmalloc/pair/64", "kmalloc", json!({"size": 64}), true);
        assert_eq!(series_label(&km, &[]), "kmalloc/pair");
        // map/<leaf>/<size>: the leaf "4K" is not the size.
        let map = e(
            "map/4K/2MiB@thp",
            "map",
            json!({"bytes": 2097152, "variant": "thp"}),
            true,
        );
        assert_eq!(series_label(&map, &["thp"]), "map/4K");
        assert_eq!(size_of(&map).map(|s| s.1), Some(2097152.0));
    }

    #[test]
    fn orders_are_orders_not_bytes() {
        let p = e(
            "alloc_pages/alloc_n/9",
            "pages",
            json!({"order": 9, "n": 100}),
            true,
        );
        let (kind, x, idx) = size_of(&p).unwrap();
        assert_eq!(
            (kind, x, idx),
            (XKind::Order, (4096u64 << 9) as f64, Some(2))
        );
        assert_eq!(series_label(&p, &[]), "alloc_pages/alloc_n");
        let run = run_of(vec![
            p,
            e("alloc_pages/alloc_n/0", "pages", json!({"order": 0}), true),
        ]);
        let c = suite_charts(&run);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].x_kind, XKind::Order);
        assert_eq!(
            c[0].panels[0].lines[0].pts.len(),
            2,
            "one series, two orders"
        );
    }

    fn run_of(benchmarks: Vec<BenchEntry>) -> RunResults {
        RunResults {
            schema: crate::results::RESULTS_SCHEMA.into(),
            complete: true,
            run_id: "t".into(),
            started_at: String::new(),
            env: Default::default(),
            exit: None,
            benchmarks,
            selftests: vec![],
            info: Default::default(),
            faults: vec![],
            rejected_records: vec![],
            noise: None,
            analysis: None,
        }
    }

    #[test]
    fn unit_ignores_entries_that_were_not_measured() {
        let mut un = e(
            "tlb/random/direct-1G/4KiB",
            "tlb",
            json!({"mapping": "direct-1G", "bytes": 4096}),
            false,
        );
        un.status = BenchStatus::Unsupported;
        let ok = e(
            "tlb/random/direct-4K/4KiB",
            "tlb",
            json!({"mapping": "direct-4K", "bytes": 4096}),
            true,
        );
        assert_eq!(unit_of(&[&un, &ok]), "ns");
        let raw = e(
            "tlb/random/direct-2M/4KiB",
            "tlb",
            json!({"mapping": "direct-2M", "bytes": 4096}),
            false,
        );
        assert_eq!(
            unit_of(&[&raw, &ok]),
            "cycles",
            "mixed: the records' unit for all"
        );
        let p = point(&ok, "ns", 4096.0).unwrap();
        assert_eq!((p.lo, p.y, p.hi), (4.5, 5.0, 10.0), "band = min..p99 in ns");
    }

    #[test]
    fn vmalloc_groups_by_flush_mode_and_tlb_panels_by_variant_with_reach() {
        let mut b = vec![];
        for mode in ["lazy", "full"] {
            for size in [4096u64, 65536] {
                b.push(e(
                    &format!("vmalloc/pair/{size}/{mode}"),
                    "vmalloc",
                    json!({"size": size, "flush_mode": mode}),
                    true,
                ));
                b.push(e(
                    &format!("vmalloc/phase/{size}/{mode}/tlb_flush"),
                    "vmalloc",
                    json!({"size": size, "flush_mode": mode}),
                    true,
                ));
            }
        }
        b.push(e(
            "kmalloc/pair/4096",
            "kmalloc",
            json!({"size": 4096}),
            true,
        ));
        for v in ["4K", "thp"] {
            for m in ["direct-4K", "direct-2M"] {
                for ws in [4096u64, 1 << 20] {
                    b.push(e(
                        &format!("tlb/random/{m}/{ws}@{v}"),
                        "tlb",
                        json!({"mapping": m, "bytes": ws, "pattern": "random", "variant": v}),
                        true,
                    ));
                }
            }
        }
        let mut run = run_of(b);
        run.info.insert(
            "tlb/cpuid@thp".into(),
            json!({"entries": [{"type": "data", "level": "L1", "page_size": "4K", "entries": 64}]}),
        );
        let ph = vmalloc_phases(&run).unwrap();
        assert_eq!(
            ph.panels
                .iter()
                .map(|p| p.title.as_str())
                .collect::<Vec<_>>(),
            ["flush_mode lazy", "flush_mode full"]
        );
        let labels: Vec<&str> = ph.panels[0]
            .lines
            .iter()
            .map(|l| l.label.as_str())
            .collect();
        assert_eq!(
            labels,
            [
                "vmalloc/pair",
                "vmalloc/phase … tlb_flush",
                "kmalloc/pair (reference)"
            ]
        );
        assert!(ph.panels[0].lines[2].dashed);
        let ac = alloc_cost(&run).unwrap();
        let labels: Vec<&str> = ac.panels[0]
            .lines
            .iter()
            .map(|l| l.label.as_str())
            .collect();
        assert_eq!(
            labels,
            ["vmalloc/pair … lazy", "vmalloc/pair … full", "kmalloc/pair"]
        );
        let t = tlb_charts(&run);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].panels.len(), 2, "one panel per host backing");
        assert!(t[0].panels[0].markers.is_empty());
        assert_eq!(
            t[0].panels[1].markers,
            [Marker {
                x: 262144.0,
                label: "L1 4K reach 256 KiB".into()
            }]
        );
        let svg = super::super::plot::render(&t[0]).unwrap();
        assert!(
            svg.contains("L1 4K reach 256 KiB") && svg.contains("variant thp"),
            "{svg}"
        );
        let r = tlb_ratio(&run).unwrap();
        assert_eq!(r.panels[0].lines.len(), 2, "direct 4K/2M per variant");
        assert_eq!(r.panels[0].lines[0].pts[0].y, 1.0);
    }
}
