//! The allocation suites (kmalloc, pages, vmalloc + test_vmalloc, stack_vs_heap,
//! talc_vs_slab) produce well-formed, ordered statistics for every benchmark they name.
//! Runs configs/alloc-quick.toml under TCG at CPL0 and CPL3, and with mm_debug on.
//! Asserts structure, never timings.
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
    "vmalloc_huge/pair/2097152",
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
    for case in r
        .benchmarks
        .iter()
        .filter(|b| b.name.starts_with("test_vmalloc/"))
    {
        let passed = case.extra["passed"].as_u64().unwrap();
        let failed = case.extra["failed"].as_u64().unwrap();
        assert!(passed > 0, "{label}: {} passed nothing", case.name);
        if case.name != "test_vmalloc/align_shift_alloc_test" {
            assert_eq!(failed, 0, "{label}: {} failed {failed} loops", case.name);
        }
    }
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
