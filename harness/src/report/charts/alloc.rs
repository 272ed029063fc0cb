//! The allocator headline charts: `alloc-cost` and `vmalloc-phases`.
use super::group::{base_name, panels_of, param_u64, point, series_label, size_of, unit_of};
use super::{run_tag, y_desc};
use crate::report::plot::{Chart, Line, Panel, XKind, YKind};
use crate::results::{BenchEntry, RunResults};

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
