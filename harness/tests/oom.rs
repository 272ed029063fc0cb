//! Out of memory in every allocating suite (configs/faults/oom.toml, a 128 MiB guest asked
//! for 1 GiB): each such benchmark reports status `oom` with a message, the guest frees
//! what it got and goes on, so the small sizes listed after the huge ones, and the other
//! suites, still run `ok`, and the run is complete with exit 0. TCG; no timings asserted.
mod common;

use common::{kmbench_run, Opts};
use kmbench_protocol::BenchStatus;

const GIB: &str = "1073741824";

#[test]
fn every_allocating_suite_reports_oom_and_the_run_goes_on() {
    let r = kmbench_run("configs/faults/oom.toml", Opts::default());
    let ctx = r.context("oom");
    assert_eq!(r.code, 0, "{ctx}");
    let res = &r.results;
    assert!(res.complete, "{ctx}");
    let status = |name: &str| {
        res.benchmarks
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no benchmark {name}; {ctx}"))
    };
    let oom = [
        format!("kmalloc/pair/{GIB}"),
        format!("kzalloc/pair/{GIB}"),
        format!("kmalloc/alloc_n/{GIB}"),
        // 1000 × 1 MiB: runs out part-way through the round (what it got is freed).
        "kmalloc/alloc_n/1048576".to_string(),
        "alloc_pages/pair/18".to_string(),
        "alloc_pages/alloc_n/18".to_string(),
        format!("vmalloc/pair/{GIB}/lazy"),
        format!("vmalloc/warm/pair/{GIB}/lazy"),
        format!("vmalloc_huge/pair/{GIB}/lazy"),
        format!("vmalloc/lazy_amortized/{GIB}/pair"),
        format!("stack_vs_heap/kmalloc/{GIB}"),
        format!("stack_vs_heap/percpu/{GIB}"),
        format!("talc_vs_slab/talc/{GIB}"),
        format!("talc_vs_slab/kmalloc/{GIB}"),
    ];
    for name in &oom {
        let b = status(name);
        assert_eq!(b.status, BenchStatus::Oom, "{name}: {:?}", b.message);
        assert!(
            b.message.as_deref().is_some_and(|m| !m.is_empty()),
            "{name}"
        );
        assert_eq!(b.samples, 0, "{name}: an oom benchmark has no samples");
    }
    // A 1 GiB stack buffer is refused as unsupported, not attempted.
    assert_eq!(
        status(&format!("stack_vs_heap/stack/{GIB}")).status,
        BenchStatus::Unsupported
    );
    let ok = [
        "timer/rdtsc",
        "kmalloc/pair/64",
        "alloc_pages/pair/0",
        "alloc_pages/alloc_n/0",
        "alloc_pages/free_n/0",
        "vmalloc/pair/4096/lazy",
        "talc_vs_slab/talc/64",
        "talc_vs_slab/kmalloc/64",
    ];
    for name in ok {
        let b = status(name);
        assert_eq!(b.status, BenchStatus::Ok, "{name}: {:?}", b.message);
        assert!(b.samples > 0, "{name}");
    }
    // Nothing else went wrong: every benchmark is ok, oom, or the one unsupported.
    for b in &res.benchmarks {
        assert!(
            matches!(
                b.status,
                BenchStatus::Ok | BenchStatus::Oom | BenchStatus::Unsupported
            ),
            "{}: {:?} {:?}",
            b.name,
            b.status,
            b.message
        );
    }
}
