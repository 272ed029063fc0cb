//! The allocation suites (kmalloc, pages, vmalloc + test_vmalloc, stack_vs_heap,
//! talc_vs_slab) produce well-formed, ordered statistics for every benchmark they name.
//! Runs configs/alloc-quick.toml under TCG at CPL0 and CPL3, and with mm_debug on.
//! Asserts structure and exact bookkeeping (phases that add up, Linux's test_vmalloc
//! parameters and summary fields, the leaf size a page-table walk found), never timings.
mod common;

use common::{kmbench_run, Opts};
use kmbench::results::RunResults;
use kmbench_protocol::BenchStatus;

const EXPECTED: &[&str] = &[
    "kmalloc/pair/8",
    "kmalloc/pair/64",
    "kmalloc/pair/16384",
    "kmalloc/alloc_n/8",
    "kmalloc/free_n/8",
    "kmalloc/alloc_n/8/cold",
    "kmalloc/free_n/8/cold",
    "kzalloc/pair/64",
    "kmalloc/mixed",
    "alloc_pages/pair/0",
    "alloc_pages/alloc_n/9",
    "alloc_pages/free_n/9",
    "vmalloc/pair/4096/lazy",
    "vmalloc/alloc/65536/per-page",
    "vmalloc/free/65536/full",
    "vmalloc/phase/4096/lazy/bookkeeping",
    "vmalloc/phase/4096/per-page/pte_writes",
    "vmalloc/phase/4096/full/tlb_flush",
    "vmalloc/phase/65536/full/page_alloc",
    "vmalloc/phase/65536/lazy/remainder",
    "vmalloc/warm/pair/4096/lazy",
    "vmalloc/warm/phase/4096/lazy/bookkeeping",
    "vmalloc_huge/pair/2097152/lazy",
    "vmalloc_huge/phase/2097152/lazy/pte_writes",
    "vmalloc/lazy_amortized/65536/pair",
    "vmalloc/lazy_amortized/65536/per_cycle",
    "vmalloc/lazy_amortized/65536/purge",
    "test_vmalloc/no_block_alloc_test",
    "test_vmalloc/fix_size_alloc_test",
    "test_vmalloc/full_fit_alloc_test",
    "test_vmalloc/long_busy_list_alloc_test",
    "test_vmalloc/random_size_alloc_test",
    "test_vmalloc/fix_align_alloc_test",
    "test_vmalloc/random_size_align_alloc_test",
    "test_vmalloc/align_shift_alloc_test",
    "stack_vs_heap/stack/2048",
    "stack_vs_heap/kmalloc/2048",
    "stack_vs_heap/percpu/2048",
    "talc_vs_slab/talc/64",
    "talc_vs_slab/kmalloc/64",
];

fn check(r: &RunResults, label: &str) {
    for name in EXPECTED {
        let b = r
            .benchmarks
            .iter()
            .find(|b| b.name == *name)
            .unwrap_or_else(|| panic!("{label}: no benchmark {name}"));
        assert_eq!(
            b.status,
            BenchStatus::Ok,
            "{label}: {name}: {:?}",
            b.message
        );
        assert!(b.samples > 0, "{label}: {name} has no samples");
        assert!(
            b.min <= b.median && b.median <= b.p99 && b.p99 <= b.max,
            "{label}: {name} statistics out of order: {b:?}"
        );
        assert!(b.max > 0.0 && b.mean > 0.0, "{label}: {name} is all zero");
        assert_eq!(b.unit, "cycles");
        let ns = b.ns.expect("ns view");
        assert!(ns.min <= ns.median && ns.median <= ns.max);
        assert!(!b.suite.is_empty());
    }
    check_test_vmalloc(r, label);
    check_phases(r, label);
    check_params(r, label);
    let phase = r
        .benchmarks
        .iter()
        .find(|b| b.name == "vmalloc/phase/4096/lazy/bookkeeping")
        .unwrap();
    assert_eq!(phase.params["flush_mode"], "lazy");
    let pair = r
        .benchmarks
        .iter()
        .find(|b| b.name == "alloc_pages/pair/0")
        .unwrap();
    assert!(pair.extra.contains_key("splits_per_op"));
}

fn bench<'a>(r: &'a RunResults, name: &str, label: &str) -> &'a kmbench::results::BenchEntry {
    r.benchmarks
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("{label}: no benchmark {name}"))
}

/// Linux's Summary fields beside the per-iteration cycles; the parameters of
/// lib/test_vmalloc.c (alloc-quick: test_loops 50, test_repeat 2).
fn check_test_vmalloc(r: &RunResults, label: &str) {
    let mut seen = 0;
    for case in r
        .benchmarks
        .iter()
        .filter(|b| b.name.starts_with("test_vmalloc/") && b.status == BenchStatus::Ok)
    {
        seen += 1;
        let l = &case.extra["linux"];
        let ctx = format!("{label}: {}: {l}", case.name);
        let (passed, failed) = (l["passed"].as_u64().unwrap(), l["failed"].as_u64().unwrap());
        assert_eq!(passed + failed, 2, "{ctx}: one pass/fail per run");
        assert_eq!(l["repeat"], 2, "{ctx}");
        assert_eq!(l["loops"], 50, "{ctx}");
        assert_eq!(case.params["loops"], 50, "{ctx}");
        assert!(l["avg_usec"].as_f64().unwrap() > 0.0, "{ctx}");
        if case.name == "test_vmalloc/align_shift_alloc_test" {
            // "This test case is supposed to be failed": alignments up to 2^63 cannot fit.
            assert_eq!((passed, failed), (0, 2), "{ctx}");
            assert!(case.samples < 2 * 64, "{ctx}: stopped at the first failure");
        } else {
            assert_eq!((passed, failed), (2, 0), "{ctx}");
            assert_eq!(case.samples, 2 * 50, "{ctx}: one sample per iteration");
        }
    }
    assert_eq!(seen, 8, "{label}: the 8 implemented cases ran");
    let fix = bench(r, "test_vmalloc/fix_size_alloc_test", label);
    assert_eq!(
        fix.params["nr_pages"], 1,
        "{label}: Linux's default nr_pages"
    );
    assert_eq!(fix.params["use_huge"], false, "{label}");
    for (case, why) in [
        ("pcpu_alloc_test", "per-CPU"),
        ("vm_map_ram_test", "vm_map_ram"),
    ] {
        let b = bench(r, &format!("test_vmalloc/{case}"), label);
        assert_eq!(b.status, BenchStatus::Unsupported, "{label}: {case}");
        assert!(
            b.message.as_deref().unwrap_or("").contains(why),
            "{label}: {b:?}"
        );
    }
}

/// Every vmalloc set: phases add up to the pair (exactly per sample, so their means add
/// up to the pair's mean), alloc + free = pair, no sample dropped.
fn check_phases(r: &RunResults, label: &str) {
    let mut sets = 0;
    for pair in r.benchmarks.iter().filter(|b| {
        b.status == BenchStatus::Ok
            && (b.name.starts_with("vmalloc/pair/") || b.name.starts_with("vmalloc_huge/pair/"))
    }) {
        sets += 1;
        let prefix = pair.name.split("/pair/").next().unwrap();
        let suffix = pair.name.split("/pair/").nth(1).unwrap();
        let ctx = format!("{label}: {}", pair.name);
        let pc = &pair.extra["phase_check"];
        assert_eq!(pc["samples"].as_u64(), Some(pair.samples), "{ctx}: {pc}");
        assert_eq!(pc["dropped_incomplete"], 0, "{ctx}: {pc}");
        let mean = |n: String| bench(r, &n, label).mean;
        let phases: f64 = [
            "bookkeeping",
            "page_alloc",
            "pte_writes",
            "tlb_flush",
            "remainder",
        ]
        .iter()
        .map(|p| mean(format!("{prefix}/phase/{suffix}/{p}")))
        .sum();
        let halves =
            mean(format!("{prefix}/alloc/{suffix}")) + mean(format!("{prefix}/free/{suffix}"));
        let tol = 1e-6 * pair.mean.abs().max(1.0);
        assert!(
            (phases - pair.mean).abs() < tol,
            "{ctx}: Σ phases {phases} vs pair {}",
            pair.mean
        );
        assert!(
            (halves - pair.mean).abs() < tol,
            "{ctx}: alloc + free {halves} vs pair {}",
            pair.mean
        );
    }
    assert_eq!(sets, 7, "{label}: 2 sizes × 3 modes + vmalloc_huge");
    // vmalloc_huge got 2 MiB leaves, as a page-table walk after each vmalloc found.
    let huge = bench(r, "vmalloc_huge/pair/2097152/lazy", label);
    assert_eq!(
        huge.extra["leaf_walked"]["4K"], 0,
        "{label}: {:?}",
        huge.extra
    );
    assert_eq!(
        huge.extra["leaf_walked"]["2M"].as_u64(),
        Some(huge.samples),
        "{label}"
    );
    // The lazy run crossed the purge threshold as often as configured.
    let lazy = bench(r, "vmalloc/lazy_amortized/65536/pair", label);
    assert_eq!(lazy.extra["purges"], 2, "{label}: {:?}", lazy.extra);
    assert_eq!(lazy.params["lazy_max_pages"], 8192, "{label}");
    assert_eq!(
        bench(r, "vmalloc/lazy_amortized/65536/purge", label).samples,
        2
    );
    assert_eq!(
        bench(r, "vmalloc/lazy_amortized/65536/per_cycle", label).samples,
        2
    );
    let warm = bench(r, "vmalloc/warm/pair/4096/lazy", label);
    assert_eq!(warm.params["touch"], false, "{label}");
    assert_eq!(
        bench(r, "vmalloc/pair/4096/lazy", label).params["touch"],
        true
    );
}

/// Names and params say what was measured.
fn check_params(r: &RunResults, label: &str) {
    for half in ["alloc_n", "free_n"] {
        let b = bench(r, &format!("alloc_pages/{half}/9"), label);
        assert_eq!(b.params["order"], 9, "{label}");
        assert_eq!(b.params["bytes"], 2 << 20, "{label}: order 9 is 2 MiB");
        let cold = bench(r, &format!("kmalloc/{half}/8/cold"), label);
        assert_eq!(cold.samples, 1, "{label}: slab_test's single cold run");
    }
    let stack = bench(r, "stack_vs_heap/stack/2048", label);
    assert_eq!(stack.params["buffer"], 2048, "{label}");
    let t = bench(r, "timer/tick", label);
    assert!(
        t.extra["tick"].as_f64().unwrap() >= 1.0,
        "{label}: {:?}",
        t.extra
    );
    let ovh = bench(r, "timer/serialized", label).extra["subtracted_overhead"].as_f64();
    assert!(
        ovh.is_some_and(|o| o > 0.0),
        "{label}: fractional mean overhead"
    );
}

#[test]
fn alloc_suites_are_well_formed_at_cpl0_and_cpl3() {
    for cpl in [0u8, 3] {
        let run = kmbench_run(
            "configs/alloc-quick.toml",
            Opts {
                cpl: Some(cpl),
                ..Default::default()
            },
        );
        assert_eq!(run.code, 0, "{}", run.context("alloc-quick"));
        check(&run.results, &format!("tcg cpl{cpl}"));
    }
}

#[test]
fn alloc_suites_run_with_mm_debug() {
    let text = std::fs::read_to_string(common::root().join("configs/alloc-quick.toml"))
        .unwrap()
        .replace("seed = 7", "seed = 7\nmm_debug = true");
    let run = kmbench_run(
        "configs/alloc-quick.toml",
        Opts {
            config_text: Some(text),
            ..Default::default()
        },
    );
    assert_eq!(run.code, 0, "{}", run.context("alloc-quick mm_debug"));
    assert!(run.results.env.mm_debug);
    check(&run.results, "tcg mm_debug");
}
