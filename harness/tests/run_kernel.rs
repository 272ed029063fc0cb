//! `kmbench run` booting the real kernel under TCG (works on any x86_64 Linux host with
//! QEMU; no KVM needed). The kernel is built once per test binary. No timings asserted.
mod common;

use common::run;

#[test]
fn ci_config_runs_and_writes_results() {
    let (code, stderr, r, t) = run("configs/ci.toml", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(r.complete);
    assert!(!r.benchmarks.is_empty());
    assert!(r
        .benchmarks
        .iter()
        .all(|b| b.samples > 0 && b.min <= b.median && b.median <= b.max));
    let hello = r.env.guest.as_ref().expect("hello record");
    assert_eq!(hello.cpl, r.env.cpl);
    assert!(r.env.tsc_hz > 0);
    assert!(r.env.boot_ms > 0.0);
    assert_eq!(r.exit.unwrap().status, "success");
    assert!(t.path().join("run/records.jsonl").exists());
    assert!(t.path().join("run/guest.log").exists());
}

#[test]
fn panic_is_reported_with_its_message() {
    let (code, stderr, r, _t) = run("configs/faults/panic.toml", &[]);
    assert_eq!(code, 4, "{stderr}");
    assert!(!r.complete);
    assert_eq!(r.exit.as_ref().unwrap().status, "panic");
    let f = r.faults.first().expect("fault record");
    assert!(f.message.contains("panic"), "{}", f.message);
}

#[test]
fn page_fault_reports_vector_rip_and_cr2() {
    let (code, stderr, r, _t) = run("configs/faults/page_fault.toml", &[]);
    assert_eq!(code, 5, "{stderr}");
    let f = r.faults.first().expect("fault record");
    assert_eq!(f.vector, Some(14));
    assert!(f.rip.is_some() && f.cr2.is_some(), "{f:?}");
    assert_eq!(r.exit.unwrap().status, "exception");
}

#[test]
fn invalid_opcode_reports_vector_6() {
    let (code, stderr, r, _t) = run("configs/faults/invalid_opcode.toml", &[]);
    assert_eq!(code, 5, "{stderr}");
    assert_eq!(r.faults.first().expect("fault record").vector, Some(6));
}

#[test]
fn hang_after_record_is_killed_with_partial_results() {
    let (code, stderr, r, _t) = run("configs/faults/hang_after_record.toml", &["--timeout", "3"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("guest timed out after 3s"), "{stderr}");
    assert!(!r.complete);
    assert_eq!(r.exit.as_ref().unwrap().status, "timeout");
    assert!(
        !r.benchmarks.is_empty(),
        "the record sent before the hang is kept"
    );
}
