//! Chart tests.
use super::*;
use crate::report::plot::{Marker, XKind};
use crate::results::BenchEntry;
use kmbench_protocol::BenchStatus;
use serde_json::json;

fn e(name: &str, suite: &str, params: serde_json::Value, ns: bool) -> BenchEntry {
    let mut x =
        crate::report::fixture::entry(name, suite, 10.0, serde_json::from_value(params).unwrap());
    if !ns {
        x.record.ns = None;
    }
    x
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
    crate::report::fixture::run_of(benchmarks)
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
            label: "L1 4K reach 256 KiB".into(),
            inferred: false,
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

#[test]
fn without_cpuid_sizes_the_markers_come_from_the_analysis_and_say_so() {
    use crate::analysis::{Analysis, MappingAnalysis, TlbAnalysis, TlbLevel, ANALYSIS_SCHEMA};
    let mut b = vec![];
    for m in ["direct-4K", "direct-2M"] {
        for ws in [4096u64, 1 << 20] {
            b.push(e(
                &format!("tlb/random/{m}/{ws}"),
                "tlb",
                json!({"mapping": m, "bytes": ws, "pattern": "random"}),
                true,
            ));
        }
    }
    let mut run = run_of(b);
    let level = TlbLevel {
        index: 1,
        bytes_min: 262144,
        bytes_max: 368640,
        entries_min: 64,
        entries_max: 90,
        bytes_estimate: 286720,
        entries_estimate: 70,
        latency_before_ns: 1.3,
        latency_after_ns: 3.5,
        extra_ns: 2.2,
        cpuid: vec![],
        matches: None,
    };
    run.analysis = Some(Analysis {
        schema: ANALYSIS_SCHEMA.into(),
        tlb: vec![TlbAnalysis {
            variant: String::new(),
            pattern: "random".into(),
            mappings: vec![MappingAnalysis {
                mapping: "direct-4K".into(),
                page_bytes: 4096,
                points: 2,
                levels: vec![level],
                effective_entry: None,
            }],
        }],
    });
    let t = tlb_charts(&run);
    assert_eq!(
        t[0].panels[0].markers,
        [Marker {
            x: 286720.0,
            label: "inferred 4K step 1 ≈ 70 entries (280 KiB)".into(),
            inferred: true,
        }]
    );
    assert!(
        t[0].note.contains("CPUID reports no data-TLB sizes")
            && t[0].note.contains("inferred from the latency steps"),
        "{}",
        t[0].note
    );
    let svg = super::super::plot::render(&t[0]).unwrap();
    assert!(svg.contains("inferred 4K step 1"), "{svg}");
    // With CPUID sizes, CPUID's markers win and the note names CPUID.
    run.info.insert(
        "tlb/cpuid".into(),
        json!({"entries": [{"type": "data", "level": "L1", "page_size": "4K", "entries": 64}]}),
    );
    let t = tlb_charts(&run);
    assert!(t[0].panels[0].markers.iter().all(|m| !m.inferred));
    assert!(t[0].note.contains("from CPUID"), "{}", t[0].note);
}
