//! TLB suites end to end under TCG (no timings asserted): configs/tlb-quick.toml, the TLB
//! report and plots, and `[[variants]]` runs.
mod common;

use common::{kmbench_run, run, Opts};
use kmbench_protocol::BenchStatus;

const PATTERNS: [&str; 4] = ["random", "random_line", "page_stride", "sequential"];
use kmbench::report::tlb::MAPPINGS;

/// `4KiB`, `64MiB`, `1GiB`, or 3 significant digits (`1.41MiB`).
fn label_ok(label: &str, bytes: u64) -> bool {
    let (num, unit) = label.split_at(
        label
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(label.len()),
    );
    let mult = match unit {
        "B" => 1u64,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return false,
    };
    let Ok(v) = num.parse::<f64>() else {
        return false;
    };
    let exact = bytes as f64 / mult as f64;
    (v - exact).abs() / exact < 0.01 && bytes.is_multiple_of(mult) != num.contains('.')
}

#[test]
fn tlb_quick_records_report_and_plots() {
    let (code, stderr, r, t) = run("configs/tlb-quick.toml", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(r.complete);
    let tlb: Vec<_> = r.benchmarks.iter().filter(|b| b.suite == "tlb").collect();
    assert!(!tlb.is_empty());
    let mut ok = 0;
    for b in &tlb {
        let segs: Vec<&str> = b.name.split('/').collect();
        assert_eq!(segs.len(), 4, "{}", b.name);
        assert_eq!(segs[0], "tlb");
        assert!(PATTERNS.contains(&segs[1]), "{}", b.name);
        assert!(MAPPINGS.contains(&segs[2]), "{}", b.name);
        assert_eq!(b.params["pattern"], segs[1]);
        assert_eq!(b.params["mapping"], segs[2]);
        let bytes = b.params["bytes"].as_u64().unwrap();
        assert!(label_ok(segs[3], bytes), "{} vs {bytes}", b.name);
        if b.status == BenchStatus::Ok {
            ok += 1;
            assert!(b.samples > 0);
            assert!(b.min > 0.0, "{}", b.name);
            assert!(
                b.min <= b.median && b.median <= b.p99 && b.p99 <= b.max,
                "{b:?}"
            );
            assert!(b.ns.is_some());
            assert_eq!(b.extra["dtlb_misses"], "unavailable", "TCG exposes no PMU");
            assert!(
                b.params["pages"].as_u64().is_some() && b.params["accesses"].as_u64().is_some()
            );
        } else {
            // only direct-1G may be missing here (no 1 GiB of free RAM in 512 MiB)
            assert_eq!(segs[2], "direct-1G", "{b:?}");
            assert!(matches!(
                b.status,
                BenchStatus::Oom | BenchStatus::Unsupported
            ));
            assert!(b.message.as_deref().is_some_and(|m| !m.is_empty()));
        }
    }
    // every pattern × mapping except direct-1G measured
    assert!(ok >= 4 * 4 * 4, "{ok} ok records");
    assert!(r.info.contains_key("tlb/cpuid"), "{:?}", r.info.keys());
    for n in [
        "tlbflush/invlpg",
        "tlbflush/invlpg/refill",
        "tlbflush/cr3",
        "tlbflush/cr3/refill",
        "tlbflush/invpcid",
    ] {
        assert!(r.benchmarks.iter().any(|b| b.name == n), "{n} missing");
    }
    for n in [
        "map/4K/2MiB",
        "unmap/4K/2MiB",
        "map/2M/2MiB",
        "unmap/2M/2MiB",
    ] {
        let b = r
            .benchmarks
            .iter()
            .find(|b| b.name == n)
            .unwrap_or_else(|| panic!("{n} missing"));
        assert_eq!(b.status, BenchStatus::Ok, "{b:?}");
        assert!(b.extra.contains_key("per_leaf_cycles"));
    }

    // The refill is a difference of two measured chases' medians, with both stated.
    let refill = r
        .benchmarks
        .iter()
        .find(|b| b.name == "tlbflush/cr3/refill")
        .unwrap();
    let (after, warm) = (
        refill.extra["chase_after_flush_median"].as_f64().unwrap(),
        refill.extra["chase_warm_median"].as_f64().unwrap(),
    );
    let diff = refill.extra["refill_median"].as_f64().unwrap();
    assert!((after - warm - diff).abs() < 1e-9, "{:?}", refill.extra);
    assert!(
        (refill.median - diff).abs() <= 1e-9 * diff.abs().max(1.0),
        "the record's median is the difference of medians: {refill:?}"
    );
    for n in ["tlbflush/chase/warm"] {
        assert!(r.benchmarks.iter().any(|b| b.name == n), "{n} missing");
    }

    // The geometry is in results.json (r was read back from it), versioned, one entry per swept mapping.
    let a = r.analysis.as_ref().expect("analysis section");
    assert_eq!(a.schema, "kmbench.analysis/1");
    let geo = a
        .tlb
        .iter()
        .find(|t| t.variant.is_empty())
        .expect("tlb analysis");
    assert_eq!(geo.pattern, "random");
    let names: Vec<&str> = geo.mappings.iter().map(|m| m.mapping.as_str()).collect();
    for m in ["direct-4K", "direct-2M"] {
        assert!(names.contains(&m), "{names:?}");
    }
    for m in &geo.mappings {
        assert!(m.points >= 3, "{m:?}");
        for (i, l) in m.levels.iter().enumerate() {
            assert_eq!(l.index as usize, i + 1);
            assert!(l.bytes_min < l.bytes_max, "{l:?}");
            assert!(
                (l.bytes_min..=l.bytes_max).contains(&l.bytes_estimate),
                "{l:?}"
            );
            assert!(l.entries_min <= l.entries_estimate && l.entries_estimate <= l.entries_max);
        }
        if let Some(e) = &m.effective_entry {
            assert!(!e.evidence.is_empty());
        }
    }

    let mut out = Vec::new();
    kmbench::report::tlb::print_report(&r, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("TLB geometry inferred"), "{text}");
    assert!(text.contains("4K/2M"), "{text}");
    assert!(text.contains("hypervisor tcg"), "{text}");

    let svg = t.path().join("run/tlb-random.svg");
    let s = std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("{}: {e}", svg.display()));
    assert!(s.starts_with("<svg") && s.contains("direct-4K"), "{s}");
}

#[test]
fn variants_run_in_turn_with_suffixed_names() {
    let cfg = r#"
[run]
memory_mib = 256
timeout_s = 60
boots = 2
[suites.tlb]
mappings = ["direct-4K", "direct-2M"]
patterns = ["random"]
min_bytes = 4096
max_bytes = 4194304
accesses = 500
samples = 3
[[variants]]
name = "small"
host_backing = "4K"
[[variants]]
name = "thp"
host_backing = "thp"
direct_map_page = "4K"
[[variants]]
name = "hugetlbfs"
host_backing = "hugetlbfs"
"#;
    let r = kmbench_run(
        "configs/variants.toml",
        Opts {
            config_text: Some(cfg.into()),
            ..Opts::default()
        },
    );
    assert_eq!(r.code, 0, "{}", r.context("variants"));
    let res = &r.results;
    let vars = res.env.extra["variants"].as_array().unwrap();
    assert_eq!(vars.len(), 3);
    let huge = &vars[2];
    let huge_ran = huge["status"] != "skipped";
    if !huge_ran {
        assert!(
            huge["message"].as_str().unwrap().contains("huge pages"),
            "{huge}"
        );
        assert!(
            r.stderr.contains("variant hugetlbfs skipped"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(vars[1]["direct_map_page"], "4K");
    for v in ["small", "thp"] {
        let names: Vec<_> = res
            .benchmarks
            .iter()
            .filter(|b| b.name.ends_with(&format!("@{v}")))
            .collect();
        assert!(!names.is_empty(), "no @{v} results");
        for b in names {
            assert_eq!(b.params["variant"], v);
            assert_eq!(b.boot_medians.len(), 2, "{b:?}");
        }
        assert!(res.info.contains_key(&format!("tlb/cpuid@{v}")));
    }
    assert!(res.benchmarks.iter().all(|b| b.name.contains('@')));
    // ABBA: small, thp, [hugetlbfs, hugetlbfs,] thp, small
    for v in ["small", "thp"] {
        for boot in 1..=2 {
            assert!(r
                .tmp
                .path()
                .join(format!("run/guest-{v}-{boot}.log"))
                .exists());
        }
    }
    let mut out = Vec::new();
    kmbench::report::tlb::print_report(res, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("[small]") && text.contains("[thp]"), "{text}");
    // One chart per pattern, one panel per variant (host backing side by side).
    let svg = std::fs::read_to_string(r.tmp.path().join("run/tlb-random.svg")).unwrap();
    assert!(
        svg.contains("variant small") && svg.contains("variant thp"),
        "{svg}"
    );
    assert!(r.tmp.path().join("run/index.html").exists());
}
