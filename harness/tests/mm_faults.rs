//! mm fault injection (`configs/faults/*.toml`) booted through `kmbench run`: each
//! misuse must end the run with its own exit status, a fault record whose message says
//! what went wrong, and the same diagnosis as the last line of the harness's stderr.
//! Under TCG at CPL0 and CPL3, and under KVM (cpl auto) when /dev/kvm is usable.
//! No timings asserted.
mod common;

use common::{kmbench_run, kvm_usable, Opts};
use kmbench_protocol::GuestExit;

struct Expect {
    /// `kmbench run` exit status.
    code: i32,
    /// results.json `exit.status` and the fault record's `exit`.
    status: &'static str,
    exit: GuestExit,
    /// Substrings the fault message and the last stderr line must both contain.
    diagnosis: &'static [&'static str],
    /// CPU exception vector(s) the fault record may carry (None: a software check).
    vectors: Option<&'static [u8]>,
}

const MISUSE: (i32, &str, GuestExit) = (6, "mm_misuse", GuestExit::MmMisuse);

fn misuse(diagnosis: &'static [&'static str]) -> Expect {
    Expect {
        code: MISUSE.0,
        status: MISUSE.1,
        exit: MISUSE.2,
        diagnosis,
        vectors: None,
    }
}

fn fault_case(name: &str, accel: &str, cpl: Option<u8>, e: &Expect) {
    let config = format!("configs/faults/{name}.toml");
    let r = kmbench_run(
        &config,
        Opts {
            accel: Some(accel),
            cpl,
            ..Opts::default()
        },
    );
    let ctx = r.context(&format!("{name} accel={accel} cpl={cpl:?}"));
    let res = &r.results;
    assert_eq!(r.code, e.code, "{ctx}");
    // A fault ends the run without an End record: results are kept, marked incomplete.
    assert!(!res.complete, "{ctx}");
    assert_eq!(
        res.exit.as_ref().expect("exit info").status,
        e.status,
        "{ctx}"
    );
    assert_eq!(res.env.accel, accel, "{ctx}");
    if let Some(cpl) = cpl {
        assert_eq!(res.env.cpl, cpl, "{ctx}");
    }
    let hello = res.env.guest.as_ref().expect("hello record");
    assert_eq!(hello.cpl, res.env.cpl, "{ctx}");

    let f = res
        .faults
        .last()
        .unwrap_or_else(|| panic!("no fault record; {ctx}"));
    assert_eq!(f.exit, e.exit, "{f:?}; {ctx}");
    let last = r.last_stderr_line();
    for d in e.diagnosis {
        assert!(
            f.message.contains(d),
            "fault message lacks `{d}`: {f:?}; {ctx}"
        );
        assert!(
            last.contains(d),
            "last stderr line lacks `{d}`: {last:?}; {ctx}"
        );
    }
    if let Some(vectors) = e.vectors {
        let v = f
            .vector
            .unwrap_or_else(|| panic!("no vector: {f:?}; {ctx}"));
        assert!(vectors.contains(&v), "vector {v} not in {vectors:?}: {f:?}");
        assert!(f.rip.is_some(), "{f:?}");
        if v == 14 {
            assert!(f.cr2.is_some(), "#PF without CR2: {f:?}");
        }
    }
    if let Some(fault_cpl) = f.cpl {
        assert_eq!(fault_cpl, res.env.cpl, "{f:?}; {ctx}");
    }
}

fn check(name: &str, e: Expect) {
    for cpl in [0, 3] {
        fault_case(name, "tcg", Some(cpl), &e);
    }
    if kvm_usable() {
        fault_case(name, "kvm", None, &e);
    }
}

#[test]
fn double_free() {
    check("double_free", misuse(&["double kfree"]));
}

#[test]
fn foreign_free() {
    check("foreign_free", misuse(&["kmalloc never returned"]));
}

#[test]
fn redzone() {
    check("redzone", misuse(&["redzone"]));
}

#[test]
fn vfree_foreign() {
    check("vfree_foreign", misuse(&["inside the vmalloc area"]));
}

#[test]
fn stack_overflow() {
    check(
        "stack_overflow",
        Expect {
            code: 7,
            status: "stack_overflow",
            exit: GuestExit::StackOverflow,
            diagnosis: &["stack overflow", "guard page"],
            // #DF at CPL0 (no stack left to push the #PF frame on), #PF at CPL3.
            vectors: Some(&[8, 14]),
        },
    );
}

#[test]
fn vmalloc_guard() {
    check(
        "vmalloc_guard",
        Expect {
            code: 5,
            status: "exception",
            exit: GuestExit::Exception,
            diagnosis: &[
                "vmalloc area, not inside any allocation",
                "guard page or a freed area",
            ],
            vectors: Some(&[14]),
        },
    );
}

#[test]
fn null_deref() {
    check(
        "null_deref",
        Expect {
            code: 5,
            status: "exception",
            exit: GuestExit::Exception,
            diagnosis: &["NULL pointer dereference"],
            vectors: Some(&[14]),
        },
    );
}
