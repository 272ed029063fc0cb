//! `kmbench::session`: one serve-mode guest under TCG (no KVM needed) answering
//! measurement requests on the control channel. No timings asserted.
use std::time::Duration;

use kmbench::config::Accel;
use kmbench::error::HarnessError;
use kmbench::session::{GuestSession, SessionError, SessionOptions};
use kmbench_protocol::request_limits::{check_request, RequestError};
use kmbench_protocol::GuestExit;

#[test]
fn serve_mode_measures_errors_and_quits() {
    if kmbench::host::find_qemu().is_none() {
        eprintln!("skipping: qemu-system-x86_64 not found");
        return;
    }
    let opts = SessionOptions {
        accel: Accel::Tcg,
        memory_mib: 256,
        quiet: true,
        ..SessionOptions::default()
    };
    let mut s = GuestSession::start(&opts).expect("session starts");
    assert_eq!(s.info().hello.cpl, s.info().cpl);
    assert!(s.info().hello.tsc_hz > 0);

    let d = s.measure("kmalloc_pair", 64, 1000).expect("kmalloc_pair");
    assert!(d > Duration::ZERO, "{d:?}");
    let d = s.measure("vmalloc_pair", 4096, 10).expect("vmalloc_pair");
    assert!(d > Duration::ZERO, "{d:?}");
    let m = s
        .request("alloc_pages_pair", 0, 100)
        .expect("alloc_pages_pair");
    assert_eq!(
        (m.op.as_str(), m.arg, m.iters),
        ("alloc_pages_pair", 0, 100)
    );
    assert!(m.cycles > 0 && m.ns > 0.0, "{m:?}");

    // Out-of-range requests: the host refuses them with a typed error before sending;
    // sent anyway, the guest refuses them with the same check, without running them
    // (iters = u64::MAX would loop for centuries) and without panicking.
    let bad: &[(&str, u64, u64, &str)] = &[
        ("no_such_op", 0, 1, ""),
        ("alloc_pages_pair", 99, 1, "arg"),
        ("kmalloc_pair", 0, 1, "arg"),
        ("kmalloc_pair", u64::MAX, 1, "arg"),
        ("kzalloc_pair", 1 << 40, 1, "arg"),
        ("vmalloc_pair", u64::MAX, 1, "arg"),
        ("alu", u64::MAX, 1, "arg"),
        ("nop", 0, u64::MAX, "iters"),
        ("gate_roundtrip", 0, 0, "iters"),
    ];
    for &(op, arg, iters, key) in bad {
        let want = check_request(op, arg, iters).unwrap_err();
        match (&want, key) {
            (RequestError::UnknownOp { .. }, "") => {}
            (RequestError::OutOfRange { key: k, .. }, key) if *k == key => {}
            other => panic!("{op} {arg} {iters}: {other:?}"),
        }
        match s.request(op, arg, iters) {
            Err(HarnessError::Session(SessionError::Invalid(e))) => assert_eq!(e, want),
            other => panic!("{op} {arg} {iters}: host sent it: {other:?}"),
        }
        match s.request_unchecked(op, arg, iters) {
            Err(HarnessError::Session(SessionError::Refused { reason, .. })) => {
                assert_eq!(reason, want.to_string(), "{op} {arg} {iters}")
            }
            other => panic!("{op} {arg} {iters}: guest did not refuse: {other:?}"),
        }
    }
    assert!(s.measure("gate_roundtrip", 0, 100).unwrap() > Duration::ZERO);

    assert_eq!(s.quit().expect("guest exits"), GuestExit::Success);
}

/// CPL3 under TCG: the control port (COM2) must be open in the TSS I/O bitmap.
#[test]
fn serve_mode_works_at_cpl3() {
    if kmbench::host::find_qemu().is_none() {
        eprintln!("skipping: qemu-system-x86_64 not found");
        return;
    }
    let opts = SessionOptions {
        accel: Accel::Tcg,
        cpl: kmbench::config::CplSetting::Fixed(3),
        memory_mib: 256,
        quiet: true,
        ..SessionOptions::default()
    };
    let mut s = GuestSession::start(&opts).expect("session starts");
    assert_eq!(s.info().hello.cpl, 3);
    assert!(s.measure("kzalloc_pair", 4096, 100).unwrap() > Duration::ZERO);
    assert!(s.measure("alu", 10, 100).unwrap() > Duration::ZERO);
    // Dropping the session sends quit and reaps QEMU.
    drop(s);
}

/// The same serve-mode guest on the embedded VMM (the default under KVM): requests arrive
/// on its COM2 through the launch pipeline's control channel.
#[test]
fn serve_mode_on_the_embedded_vmm() {
    if let Err(e) = kmbench::backend::vmm::available() {
        eprintln!("skipping: /dev/kvm is not usable ({e})");
        return;
    }
    let opts = SessionOptions {
        accel: Accel::Kvm,
        backend: kmbench::backend::BackendChoice::Kvm,
        memory_mib: 256,
        quiet: true,
        ..SessionOptions::default()
    };
    let mut s = GuestSession::start(&opts).expect("session starts");
    assert_eq!(s.info().backend, "kvm");
    assert!(s.info().hello.tsc_hz > 0);
    assert!(s.measure("kmalloc_pair", 64, 100).unwrap() > Duration::ZERO);
    let e = s.measure("no_such_op", 0, 1).unwrap_err().to_string();
    assert!(e.contains("unknown op"), "{e}");
    assert!(s.measure("alu", 10, 100).unwrap() > Duration::ZERO);
    assert_eq!(s.quit().expect("guest exits"), GuestExit::Success);
}
