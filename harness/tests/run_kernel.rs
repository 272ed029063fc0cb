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
    for b in &r.benchmarks {
        if b.name == "gate/roundtrip" && r.env.cpl == 0 {
            // No CPL3→CPL0 crossing exists when the run itself is at CPL0.
            assert_eq!(
                b.status,
                kmbench_protocol::BenchStatus::Unsupported,
                "{b:?}"
            );
            continue;
        }
        assert!(
            b.samples > 0 && b.min <= b.median && b.median <= b.max,
            "{b:?}"
        );
    }
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

/// SIGKILL of the harness mid-run: results.json is already there (complete = false, with
/// the benchmarks that had arrived), and QEMU does not outlive the harness.
#[test]
fn sigkill_of_the_harness_leaves_results_and_no_qemu() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmbench"))
        .current_dir(common::root())
        .args([
            "run",
            "configs/faults/hang_after_record.toml",
            "--accel",
            "tcg",
            "--backend",
            "qemu",
            "--quiet",
            "--timeout",
            "60",
            "--out",
        ])
        .arg(&out)
        .env("KMBENCH_KERNEL", common::kernel())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let results = out.join("results.json");
    let has_bench = || {
        std::fs::read_to_string(&results)
            .ok()
            .and_then(|t| serde_json::from_str::<kmbench::results::RunResults>(&t).ok())
            .is_some_and(|r| !r.benchmarks.is_empty())
    };
    while !has_bench() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "results.json never showed a benchmark"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let qemu_pids = || {
        let me = child.id().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // field 4 of /proc/<pid>/stat is the parent pid
                stat.split_whitespace().nth(3) == Some(me.as_str()) && stat.contains("qemu")
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    let qemu = qemu_pids();
    assert!(
        !qemu.is_empty(),
        "expected a QEMU child while the guest hangs"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let r: kmbench::results::RunResults =
        serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    assert!(!r.complete);
    assert!(
        r.benchmarks.iter().any(|b| b.name == "timer/rdtsc"),
        "{:?}",
        r.benchmarks
    );
    let t1 = Instant::now();
    while qemu.iter().any(|p| {
        std::path::Path::new(&format!("/proc/{p}/stat")).exists()
            && !std::fs::read_to_string(format!("/proc/{p}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    }) {
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "QEMU {qemu:?} outlived the killed harness"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
