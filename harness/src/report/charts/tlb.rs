//! The TLB headline charts: `tlb-<pattern>` (with reach markers) and `tlb-ratio`.
use std::collections::BTreeMap;

use super::group::{access_points, backing_of, is_access, unit_of};
use super::{run_tag, slug, y_desc};
use crate::analysis::Analysis;
use crate::format::human_size;
use crate::report::plot::{Chart, Line, Marker, Panel, Pt, XKind, YKind};
use crate::results::{BenchEntry, RunResults};

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
                inferred: false,
            })
        })
        .collect();
    out.sort_by(|a, b| a.x.total_cmp(&b.x));
    out.dedup_by(|a, b| a.label == b.label);
    out
}

/// Reach inferred from the latency steps (`analysis` section, [`Analysis`]) for a variant,
/// for when CPUID reports no data-TLB sizes: one marker per step of the direct mappings,
/// at its point estimate, from the sweep of `pattern` when analysed, else the analysed one.
pub fn inferred_markers(analysis: Option<&Analysis>, variant: &str, pattern: &str) -> Vec<Marker> {
    let Some(a) = analysis else { return vec![] };
    let of_variant = a.tlb.iter().filter(|t| t.variant == variant);
    let Some(t) = of_variant
        .clone()
        .find(|t| t.pattern == pattern)
        .or_else(|| of_variant.clone().next())
    else {
        return vec![];
    };
    let mut out: Vec<Marker> = t
        .mappings
        .iter()
        .filter(|m| m.mapping.starts_with("direct-"))
        .flat_map(|m| {
            m.levels.iter().map(move |l| Marker {
                x: l.bytes_estimate as f64,
                label: format!(
                    "inferred {} step {} ≈ {} entries ({})",
                    m.mapping.trim_start_matches("direct-"),
                    l.index,
                    l.entries_estimate,
                    human_size(l.bytes_estimate)
                ),
                inferred: true,
            })
        })
        .filter(|m| m.x > 0.0)
        .collect();
    out.sort_by(|a, b| a.x.total_cmp(&b.x));
    out
}

/// The largest 4K-page TLB reach over the run's variants, and where it comes from: CPUID
/// (entries × 4 KiB, every level) where it reports 4K entries, else the direct-4K sweep's
/// last latency step in the `analysis` section. None: neither knows one.
pub fn max_4k_reach(run: &RunResults) -> Option<(u64, &'static str)> {
    let acc: Vec<&BenchEntry> = run.benchmarks.iter().filter(|e| is_access(e)).collect();
    let (_, variants) = access_points(run, &unit_of(&acc));
    let analysis = run
        .analysis
        .clone()
        .or_else(|| crate::report::tlb_analysis::analyze(run));
    let mut best: Option<(u64, &'static str)> = None;
    for v in &variants {
        let cpuid = crate::report::tlb::cpuid_entries(run, v)
            .into_iter()
            .filter(|(_, ps, _)| ps == "4K")
            .map(|(_, _, n)| n * 4096)
            .max();
        let reach = match cpuid {
            Some(b) => Some((b, "CPUID")),
            None => analysis
                .iter()
                .flat_map(|a| &a.tlb)
                .filter(|t| t.variant == *v)
                .flat_map(|t| &t.mappings)
                .filter(|m| m.mapping == "direct-4K")
                .flat_map(|m| m.levels.iter().map(|l| l.bytes_max))
                .max()
                .map(|b| (b, "inferred from the latency steps")),
        };
        if let Some(r) = reach {
            if best.is_none_or(|b| r.0 > b.0) {
                best = Some(r);
            }
        }
    }
    best
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

/// Latency vs working set per access pattern: panels per host backing, lines per mapping.
pub fn tlb_charts(run: &RunResults) -> Vec<Chart> {
    let acc: Vec<&BenchEntry> = run.benchmarks.iter().filter(|e| is_access(e)).collect();
    if acc.is_empty() {
        return vec![];
    }
    let unit = unit_of(&acc);
    // pattern → variant → mapping → points
    let (pts, variants) = access_points(run, &unit);
    // pattern → variant → mapping → points
    let mut g: BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<Pt>>>> = BTreeMap::new();
    for a in pts {
        g.entry(a.pattern)
            .or_default()
            .entry(a.variant)
            .or_default()
            .entry(a.mapping)
            .or_default()
            .push(a.pt);
    }
    let patterns: Vec<String> = {
        let mut p: Vec<String> = g.keys().cloned().collect();
        // The headline pattern first.
        p.sort_by_key(|s| (s != "random", s.clone()));
        p
    };
    let analysis = run
        .analysis
        .clone()
        .or_else(|| crate::report::tlb_analysis::analyze(run));
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
                markers: {
                    let cpuid = reach_markers(run, v, &["4K", "2M", "1G"]);
                    if cpuid.is_empty() {
                        inferred_markers(analysis.as_ref(), v, &pattern)
                    } else {
                        cpuid
                    }
                },
            });
        }
        if panels.is_empty() {
            continue;
        }
        let markers = || panels.iter().flat_map(|p| &p.markers);
        let cpuid = markers().any(|m| !m.inferred);
        let inferred = markers().any(|m| m.inferred);
        let marker_note = match (cpuid, inferred) {
            (false, false) => {
                "CPUID reports no data-TLB sizes and no latency step was found (no reach markers)"
            }
            (true, false) => "dashed grey verticals: TLB reach from CPUID (entries × page size)",
            (false, true) => {
                "CPUID reports no data-TLB sizes here: dotted orange verticals are TLB reach \
                 inferred from the latency steps (results.json analysis)"
            }
            (true, true) => {
                "dashed grey verticals: TLB reach from CPUID; dotted orange: inferred from the \
                 latency steps (results.json analysis) where CPUID reports none"
            }
        };
        charts.push(Chart {
            name: format!("tlb-{}", slug(&pattern)),
            title: format!("Huge pages or 4K? {pattern} access: latency vs working set"),
            note: format!("{marker_note}; {}", run_tag(run)),
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
    let (pts, variants) = access_points(run, &unit);
    // (pattern, variant, mapping) → x → y
    let mut m: BTreeMap<(String, String, String), BTreeMap<u64, f64>> = BTreeMap::new();
    for a in pts {
        m.entry((a.pattern, a.variant, a.mapping))
            .or_default()
            .insert(a.pt.x as u64, a.pt.y);
    }
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
