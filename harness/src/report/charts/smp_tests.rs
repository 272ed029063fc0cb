//! SMP chart tests: both naming styles, grouping, and no chart without SMP records.
use super::smp::strip_counts;
use super::*;
use crate::report::plot::{render, XKind};
use crate::results::BenchEntry;
use serde_json::json;

/// An ok entry with median `cycles` (ns = cycles / 2, band min 0.9× .. p99 2×).
fn e(name: &str, suite: &str, cycles: f64, params: serde_json::Value) -> BenchEntry {
    crate::report::fixture::entry(name, suite, cycles, serde_json::from_value(params).unwrap())
}

fn run_of(benchmarks: Vec<BenchEntry>) -> RunResults {
    crate::report::fixture::run_of(benchmarks)
}

/// The non-SMP records of a small run (which get alloc-cost and latency charts).
fn plain() -> Vec<BenchEntry> {
    vec![
        e("kmalloc/pair/64", "kmalloc", 40.0, json!({"size": 64})),
        e("kmalloc/pair/4096", "kmalloc", 60.0, json!({"size": 4096})),
        e(
            "vmalloc/pair/4096/lazy",
            "vmalloc",
            900.0,
            json!({"size": 4096, "flush_mode": "lazy"}),
        ),
    ]
}

/// Families for cpus 1, 2, 4: the name carries `cpus=<n>` when `segment`, else only the
/// param does. Cost grows with CPUs (100, 200, 400 cycles for kmalloc).
fn families(segment: bool) -> Vec<BenchEntry> {
    let name = |base: &str, n: u64| {
        if segment {
            format!("{base}/cpus={n}")
        } else {
            base.to_string()
        }
    };
    let mut b = vec![];
    for n in [1u64, 2, 4] {
        b.push(e(
            &name("smp/kmalloc/pair/64", n),
            "smp",
            100.0 * n as f64,
            json!({"cpus": n, "size": 64}),
        ));
        b.push(e(
            &name("smp/vmalloc/pair/4096", n),
            "smp",
            1000.0 * n as f64,
            json!({"cpus": n, "size": 4096}),
        ));
        b.push(e(
            &name("smp/alloc_pages/pair/0", n),
            "smp",
            300.0,
            json!({"cpus": n, "order": 0}),
        ));
    }
    b
}

fn labels(c: &Chart) -> Vec<&str> {
    c.panels[0].lines.iter().map(|l| l.label.as_str()).collect()
}

fn xs(c: &Chart, label: &str) -> Vec<f64> {
    let l = c.panels[0].lines.iter().find(|l| l.label == label).unwrap();
    l.pts.iter().map(|p| p.x).collect()
}

fn ys(c: &Chart, label: &str) -> Vec<f64> {
    let l = c.panels[0].lines.iter().find(|l| l.label == label).unwrap();
    l.pts.iter().map(|p| p.y).collect()
}

const FAMILIES: [&str; 3] = [
    "smp/kmalloc/pair/64",
    "smp/vmalloc/pair/4096",
    "smp/alloc_pages/pair/0",
];

#[test]
fn scalability_lines_are_families_with_cpus_as_x_in_both_naming_styles() {
    for segment in [false, true] {
        let mut b = plain();
        // Run order is not x order.
        let mut f = families(segment);
        f.reverse();
        b.extend(f);
        b.push(e("ipi/roundtrip", "smp", 2000.0, json!({"cpus": 2})));
        b.push(e("ipi/roundtrip", "smp", 2400.0, json!({"cpus": 4})));
        let run = run_of(b);
        let c = smp_scalability(&run).unwrap();
        assert_eq!(c.name, "smp-scalability");
        assert_eq!(c.x_kind, XKind::Count);
        assert_eq!(
            c.y,
            crate::report::plot::YKind::Latency { unit: "ns".into() }
        );
        assert!(c.note.contains(&run_tag(&run)), "{}", c.note);
        assert_eq!(c.panels.len(), 1);
        let mut want: Vec<&str> = FAMILIES.iter().rev().copied().collect();
        want.push("ipi/roundtrip");
        assert_eq!(labels(&c), want, "segment style: {segment}");
        for f in FAMILIES {
            assert_eq!(xs(&c, f), [1.0, 2.0, 4.0], "{f}");
        }
        assert_eq!(ys(&c, "smp/kmalloc/pair/64"), [50.0, 100.0, 200.0], "ns");
        assert_eq!(xs(&c, "ipi/roundtrip"), [2.0, 4.0]);
        let p = c.panels[0].lines[0].pts[0];
        assert_eq!((p.lo, p.hi), (p.y * 0.9, p.y * 2.0), "band = min..p99");
        let svg = render(&c).unwrap();
        assert!(svg.contains("Per-op cost vs CPUs") && svg.contains("smp/kmalloc/pair/64"));
        // The charts are in the report's list, and SMP records make no by-size chart.
        let names: Vec<String> = charts(&run).into_iter().map(|c| c.name).collect();
        assert!(names.contains(&"smp-scalability".to_string()), "{names:?}");
        assert!(names.contains(&"alloc-cost".to_string()), "{names:?}");
        assert!(
            !names
                .iter()
                .any(|n| n.contains("smp") && n.starts_with("latency-")),
            "{names:?}"
        );
        // alloc-cost is not fed SMP pairs.
        let ac = alloc_cost(&run).unwrap();
        assert!(labels(&ac).iter().all(|l| !l.starts_with("smp")), "{ac:?}");
    }
}

#[test]
fn styles_mix_and_a_name_segment_alone_gives_x() {
    let run = run_of(vec![
        e(
            "smp/kmalloc/pair/64",
            "smp",
            10.0,
            json!({"cpus": 1, "size": 64}),
        ),
        e(
            "smp/kmalloc/pair/64/cpus=2",
            "smp",
            20.0,
            json!({"cpus": 2, "size": 64}),
        ),
        // No cpus param: x from the segment.
        e(
            "smp/kmalloc/pair/64/cpus=4",
            "smp",
            40.0,
            json!({"size": 64}),
        ),
        // A repeated record does not add a second point at x = 1.
        e(
            "smp/kmalloc/pair/64/cpus=1",
            "smp",
            99.0,
            json!({"size": 64}),
        ),
    ]);
    let c = smp_scalability(&run).unwrap();
    assert_eq!(labels(&c), ["smp/kmalloc/pair/64"]);
    assert_eq!(xs(&c, "smp/kmalloc/pair/64"), [1.0, 2.0, 4.0]);
    assert_eq!(ys(&c, "smp/kmalloc/pair/64"), [5.0, 10.0, 20.0]);
}

#[test]
fn families_are_split_by_params_other_than_cpus_and_told_apart() {
    let mut b = vec![];
    for n in [1u64, 2] {
        for mode in ["lazy", "full"] {
            b.push(e(
                "smp/vmalloc/pair/4096",
                "smp",
                10.0,
                json!({"cpus": n, "size": 4096, "flush_mode": mode}),
            ));
        }
        b.push(e(
            &format!("smp/vmalloc/pair/4096/cpus={n}@thp"),
            "smp",
            10.0,
            json!({"cpus": n, "size": 4096, "variant": "thp"}),
        ));
    }
    let c = smp_scalability(&run_of(b)).unwrap();
    assert_eq!(
        labels(&c),
        [
            "smp/vmalloc/pair/4096 (flush_mode=lazy)",
            "smp/vmalloc/pair/4096 (flush_mode=full)",
            "smp/vmalloc/pair/4096@thp",
        ]
    );
    assert!(c.panels[0].lines.iter().all(|l| l.pts.len() == 2));
}

#[test]
fn a_one_cpu_run_still_charts_its_points() {
    let run = run_of(vec![e(
        "smp/kmalloc/pair/64/cpus=1",
        "smp",
        10.0,
        json!({"cpus": 1, "size": 64}),
    )]);
    let c = smp_scalability(&run).unwrap();
    assert_eq!(xs(&c, "smp/kmalloc/pair/64"), [1.0]);
    render(&c).unwrap();
    assert!(smp_shootdown(&run).is_none());
}

#[test]
fn no_smp_chart_without_smp_records() {
    let run = run_of(plain());
    assert!(smp_scalability(&run).is_none());
    assert!(smp_shootdown(&run).is_none());
    let names: Vec<String> = charts(&run).into_iter().map(|c| c.name).collect();
    assert!(names.iter().all(|n| !n.starts_with("smp-")), "{names:?}");
    assert!(names.contains(&"latency-kmalloc".to_string()), "{names:?}");
    // Unmeasured SMP records: no chart either.
    let mut x = e("smp/kmalloc/pair/64", "smp", 10.0, json!({"cpus": 2}));
    x.status = kmbench_protocol::BenchStatus::Unsupported;
    assert!(smp_scalability(&run_of(vec![x])).is_none());
}

#[test]
fn shootdown_lines_are_pages_and_leaf_with_targets_as_x() {
    let mut b = plain();
    for t in [1u64, 2, 3] {
        for (pages, leaf) in [(1u64, "4K"), (512, "4K"), (1, "2M")] {
            // 512 pages: the name carries targets=<t>, the others only the param.
            let name = if pages == 512 {
                format!("tlb_shootdown/{pages}/{leaf}/targets={t}")
            } else {
                format!("tlb_shootdown/{pages}/{leaf}")
            };
            let mut x = e(
                &name,
                "tlb_shootdown",
                1000.0 * t as f64 * pages as f64,
                json!({"targets": t, "pages": pages, "leaf": leaf, "cpus": 4}),
            );
            x.record.extra.insert("send".into(), json!(100.0));
            b.push(x);
        }
    }
    let run = run_of(b);
    let c = smp_shootdown(&run).unwrap();
    assert_eq!(c.name, "smp-shootdown");
    assert_eq!(c.x_kind, XKind::Count);
    assert_eq!(labels(&c), ["1 page 4K", "512 pages 4K", "1 page 2M"]);
    for l in labels(&c) {
        assert_eq!(xs(&c, l), [1.0, 2.0, 3.0], "{l}");
    }
    assert_eq!(ys(&c, "512 pages 4K"), [256000.0, 512000.0, 768000.0]);
    assert!(c.note.contains(&run_tag(&run)));
    let svg = render(&c).unwrap();
    assert!(svg.contains("512 pages 4K") && svg.contains("target CPUs"));
    // Shootdowns are not scaling families, and get no by-size chart.
    assert!(smp_scalability(&run).is_none());
    let names: Vec<String> = charts(&run).into_iter().map(|c| c.name).collect();
    assert!(names.contains(&"smp-shootdown".to_string()), "{names:?}");
    assert!(!names
        .iter()
        .any(|n| n.contains("shootdown") && n.starts_with("latency-")));
}

#[test]
fn pv_flush_rows_are_lines_of_their_own() {
    let mut b = Vec::new();
    for (name, flush, y) in [
        ("tlb_shootdown/1/4K/targets=1", "ipi", 100.0),
        ("tlb_shootdown/1/4K/targets=1/pv", "pv", 90.0),
    ] {
        b.push(e(
            name,
            "tlb_shootdown",
            y,
            json!({"targets": 1, "pages": 1, "leaf": "4K", "cpus": 2, "flush": flush}),
        ));
    }
    let c = smp_shootdown(&run_of(b)).unwrap();
    assert_eq!(labels(&c), ["1 page 4K", "1 page 4K [PV flush]"]);
    let (ipi, pv) = (ys(&c, "1 page 4K"), ys(&c, "1 page 4K [PV flush]"));
    assert_eq!((ipi.len(), pv.len()), (1, 1));
    assert!(pv[0] < ipi[0], "the PV row's own value: {pv:?} vs {ipi:?}");
}

#[test]
fn shootdown_without_params_reads_the_name_and_allows_zero_targets() {
    let run = run_of(vec![
        e(
            "tlb_shootdown/1/4K/targets=0",
            "tlb_shootdown",
            10.0,
            json!({}),
        ),
        e(
            "tlb_shootdown/1/4K/targets=1@thp",
            "tlb_shootdown",
            10.0,
            json!({}),
        ),
        e(
            "tlb_shootdown/1/4K/targets=1",
            "tlb_shootdown",
            20.0,
            json!({}),
        ),
    ]);
    let c = smp_shootdown(&run).unwrap();
    assert_eq!(labels(&c), ["1 page 4K", "1 page 4K [thp]"]);
    assert_eq!(xs(&c, "1 page 4K"), [0.0, 1.0]);
    render(&c).unwrap();
}

#[test]
fn count_segments_are_stripped_and_read() {
    let (n, c) = strip_counts("smp/kmalloc/pair/64/cpus=2@thp", &["cpus"]);
    assert_eq!(n, "smp/kmalloc/pair/64@thp");
    assert_eq!(c.get("cpus"), Some(&2));
    let (n, c) = strip_counts("tlb_shootdown/1/4K/targets=3/cpus=4", &["targets", "cpus"]);
    assert_eq!(n, "tlb_shootdown/1/4K");
    assert_eq!((c["targets"], c["cpus"]), (3, 4));
    // Not a count: kept.
    let (n, c) = strip_counts("smp/x/cpus=all/mode=a", &["cpus"]);
    assert_eq!(n, "smp/x/cpus=all/mode=a");
    assert!(c.is_empty());
}

#[test]
fn the_text_table_shows_cpus_when_names_repeat() {
    let run = run_of(families(false));
    let mut out = Vec::new();
    crate::report::table::print(&run, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let header = text
        .lines()
        .find(|l| l.trim_start().starts_with("benchmark "))
        .unwrap();
    assert!(header.contains("size  cpus"), "{text}");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("smp/kmalloc/pair/64"))
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    for (r, n) in rows.iter().zip(["1", "2", "4"]) {
        assert!(r.split_whitespace().any(|c| c == n), "{r}");
    }
    // Suites without the param get no column.
    let mut out = Vec::new();
    crate::report::table::print(&run_of(plain()), &mut out).unwrap();
    assert!(!String::from_utf8(out).unwrap().contains("cpus"));
}

#[test]
fn records_as_the_guest_emits_them() {
    use kmbench_protocol::BenchStatus;
    let mut workers = e("smp/workers", "smp", 1.0, json!({}));
    workers.status = BenchStatus::Error;
    let mut lone = e("tlb_shootdown", "tlb_shootdown", 1.0, json!({"cpus": 1}));
    lone.status = BenchStatus::Unsupported;
    let run = run_of(vec![
        e(
            "smp/alu/dependent-add/cpus=1",
            "smp",
            4.0,
            json!({"cpus": 1, "size": 0}),
        ),
        e(
            "smp/alu/dependent-add/cpus=2",
            "smp",
            4.0,
            json!({"cpus": 2, "size": 0}),
        ),
        e(
            "smp/kmalloc/remote_free/64/cpus=2",
            "smp",
            90.0,
            json!({"cpus": 2, "size": 64}),
        ),
        workers,
        lone,
    ]);
    let c = smp_scalability(&run).unwrap();
    assert_eq!(
        labels(&c),
        ["smp/alu/dependent-add", "smp/kmalloc/remote_free/64"]
    );
    assert_eq!(xs(&c, "smp/kmalloc/remote_free/64"), [2.0]);
    assert!(
        smp_shootdown(&run).is_none(),
        "no targets: no shootdown point"
    );
    let names: Vec<String> = charts(&run).into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["smp-scalability"]);
}
