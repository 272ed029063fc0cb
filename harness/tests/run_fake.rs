//! `kmbench run` against a fake QEMU (tests/fixtures/fake-qemu.sh via KMBENCH_QEMU): the
//! harness's handling of records, exit codes, timeouts, interrupts and bad configs,
//! independent of the real kernel and fast.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kmbench::results::RunResults;

fn fake_qemu() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-qemu.sh")
}

fn kmbench(out: &Path, config: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kmbench"));
    c.arg("run")
        .arg(config)
        .args(["--accel", "tcg", "--out"])
        .arg(out)
        .args(extra);
    c.env("KMBENCH_QEMU", fake_qemu());
    // Any existing file will do: the fake QEMU never reads the kernel.
    c.env("KMBENCH_KERNEL", fake_qemu());
    c.env_remove("FAKE_QEMU_MODE");
    c.stdin(Stdio::null());
    c
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A temporary folder holding the config `name` (`text`), and the run folder to use in it.
fn setup(name: &str, text: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let cfg = write_config(t.path(), name, text);
    let out = t.path().join("run");
    (t, cfg, out)
}

fn results(dir: &Path) -> RunResults {
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json written");
    serde_json::from_str(&text).expect("results.json parses")
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

const TIMER: &str = "[suites.timer]\nsamples = 100\n";

#[test]
fn success_parses_records_and_writes_results() {
    let (_t, cfg, out) = setup("ok.toml", TIMER);
    let (code, stdout, stderr) = run(&mut kmbench(&out, &cfg, &[]));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let r = results(&out);
    assert_eq!(r.schema, "kmbench.results/1");
    assert!(r.complete);
    assert_eq!(r.exit.as_ref().unwrap().status, "success");
    assert_eq!(r.benchmarks.len(), 2);
    assert_eq!(r.benchmarks[0].name, "timer/rdtsc");
    assert_eq!(r.benchmarks[0].boot_medians, vec![25.0]);
    assert_eq!(r.selftests.len(), 1);
    assert_eq!(r.info["free_pages"], 1234);
    assert_eq!(r.env.accel, "tcg");
    assert_eq!(r.env.hypervisor, "tcg");
    assert_eq!(r.env.cpl, 0);
    assert_eq!(r.env.cpl_source, "auto");
    assert_eq!(r.env.cpu_model, "max");
    assert_eq!(r.env.tsc_hz, 2_000_000_000);
    assert_eq!(r.env.qemu_version, "QEMU emulator version 7.2.99 (fake)");
    assert_eq!(r.env.config_hash.len(), 64);
    assert!(r.env.guest.is_some());
    assert!(r.rejected_records.is_empty());
    let records = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    // Header, six records, one boot end.
    assert_eq!(records.lines().count(), 8);
    assert!(std::fs::read_to_string(out.join("guest.log"))
        .unwrap()
        .contains("fake guest booting"));
    assert!(
        stdout.contains("timer/rdtscp"),
        "summary table printed:\n{stdout}"
    );
}

#[test]
fn boots_are_pooled() {
    let (_t, cfg, out) = setup("ok.toml", TIMER);
    let (code, _, stderr) = run(&mut kmbench(&out, &cfg, &["--boots", "3", "--quiet"]));
    assert_eq!(code, 0, "{stderr}");
    let r = results(&out);
    assert_eq!(r.env.boots, 3);
    assert_eq!(r.benchmarks[0].boot_medians, vec![25.0, 25.0, 25.0]);
    assert_eq!(r.benchmarks[0].samples, 300);
    for i in 1..=3 {
        assert!(out.join(format!("guest-{i}.log")).exists());
    }
    assert_eq!(
        std::fs::read_to_string(out.join("records.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1 + 18 + 3
    );
}

#[test]
fn panic_is_a_distinct_failure_with_its_message() {
    let (_t, cfg, out) = setup("p.toml", "[guest]\nfault = \"panic\"\n");
    let (code, _, stderr) = run(&mut kmbench(&out, &cfg, &[]));
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("injected panic"), "{stderr}");
    let r = results(&out);
    assert!(!r.complete);
    assert_eq!(r.exit.as_ref().unwrap().status, "panic");
    assert_eq!(r.faults.len(), 1);
    assert!(r.faults[0].message.contains("injected panic"));
}

#[test]
fn page_fault_reports_vector_rip_cr2() {
    let (_t, cfg, out) = setup("pf.toml", "[guest]\nfault = \"page_fault\"\n");
    let (code, stdout, stderr) = run(&mut kmbench(&out, &cfg, &[]));
    assert_eq!(code, 5, "{stderr}");
    let r = results(&out);
    let f = &r.faults[0];
    assert_eq!(f.vector, Some(14));
    assert_eq!(f.cr2, Some(140737216118784));
    assert_eq!(f.rip, Some(1118931));
    assert_eq!(r.exit.as_ref().unwrap().status, "exception");
    assert!(
        stdout.contains("vector 14") && stdout.contains("CR2"),
        "{stdout}"
    );
}

#[test]
fn hang_is_killed_by_the_timeout_and_partial_results_kept() {
    let (_t, cfg, out) = setup(
        "h.toml",
        &format!("[guest]\nfault = \"hang_after_record\"\n{TIMER}"),
    );
    let t0 = Instant::now();
    let (code, _, stderr) = run(&mut kmbench(&out, &cfg, &["--timeout", "1"]));
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("guest timed out after 1s"), "{stderr}");
    let r = results(&out);
    assert!(!r.complete);
    assert_eq!(r.exit.as_ref().unwrap().status, "timeout");
    assert_eq!(r.benchmarks.len(), 1);
    assert_eq!(r.benchmarks[0].name, "timer/rdtsc");
}

#[test]
fn sigint_kills_the_guest_and_keeps_results() {
    signal_kills_the_guest_and_keeps_results(libc::SIGINT);
}

#[test]
fn sigterm_kills_the_guest_and_keeps_results() {
    signal_kills_the_guest_and_keeps_results(libc::SIGTERM);
}

/// `sig` mid-run: exit 130, results.json written with complete = false.
fn signal_kills_the_guest_and_keeps_results(sig: libc::c_int) {
    let (_t, cfg, out) = setup(
        "h.toml",
        &format!("[guest]\nfault = \"hang_after_record\"\n{TIMER}"),
    );
    let mut child = kmbench(&out, &cfg, &["--timeout", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let records = out.join("records.jsonl");
    while std::fs::read_to_string(&records)
        .map(|s| s.lines().count() < 3)
        .unwrap_or(true)
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "no records arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child process; no memory is touched.
    unsafe { libc::kill(child.id() as i32, sig) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let r = results(&out);
    assert!(!r.complete);
    assert_eq!(r.exit.as_ref().unwrap().status, "interrupted");
    assert_eq!(r.benchmarks.len(), 1);
}

#[test]
fn qemu_start_failure_is_a_harness_error() {
    let (_t, cfg, out) = setup("ok.toml", TIMER);
    let (code, _, stderr) = run(kmbench(&out, &cfg, &[]).env("FAKE_QEMU_MODE", "launch_fail"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("QEMU failed to start") && stderr.contains("fake launch failure"),
        "{stderr}"
    );
    assert_eq!(results(&out).exit.unwrap().status, "launch_error");
}

#[test]
fn missing_qemu_names_the_package() {
    let (_t, cfg, out) = setup("ok.toml", TIMER);
    let (code, _, stderr) = run(kmbench(&out, &cfg, &[]).env("KMBENCH_QEMU", "/nonexistent/qemu"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("qemu-system-x86_64 not found")
            && stderr.contains("apt-get install qemu-system-x86"),
        "{stderr}"
    );
}

#[test]
fn unknown_config_key_is_rejected_with_its_name() {
    let (_t, cfg, out) = setup("bad.toml", "[suites.timer]\nsampels = 100\n");
    let (code, _, stderr) = run(&mut kmbench(&out, &cfg, &[]));
    assert_eq!(code, 2);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(
        stderr.contains("unknown field `sampels`") && stderr.contains("[suites.timer]"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing runs for a bad config");
}

#[test]
fn missing_config_file_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&mut kmbench(
        &t.path().join("run"),
        &t.path().join("nope.toml"),
        &[],
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("nope.toml") && stderr.contains("not found"),
        "{stderr}"
    );
}

#[test]
fn cpl_override_reaches_the_plan() {
    let (_t, cfg, out) = setup("ok.toml", TIMER);
    let (code, _, stderr) = run(&mut kmbench(&out, &cfg, &["--cpl", "3", "--quiet"]));
    assert_eq!(code, 0, "{stderr}");
    let r = results(&out);
    assert_eq!((r.env.cpl, r.env.cpl_source.as_str()), (3, "cli"));
    assert_eq!(r.env.extra["plan"]["cpl"], 3);
    assert_eq!(
        r.env.guest.unwrap().cpl,
        3,
        "the fake guest echoes the plan's cpl"
    );
}

#[test]
fn hugetlbfs_without_reserved_pages_fails_clearly() {
    let free: u64 =
        std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
    if free >= 1024 {
        return; // this host has the pages reserved
    }
    let (_t, cfg, out) = setup(
        "h.toml",
        "[run]\nhost_backing = \"hugetlbfs\"\nmemory_mib = 2048\n",
    );
    let (code, _, stderr) = run(&mut kmbench(&out, &cfg, &[]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("needs 1024 free 2 MiB huge pages") && stderr.contains("nr_hugepages"),
        "{stderr}"
    );
}

/// Hostile results-channel content: a malformed line and an over-long line are stated in
/// results.json (`rejected_records`), make the run incomplete and exit 1 with a word;
/// escape sequences in guest-supplied names never reach the terminal or results.json raw.
#[test]
fn rejected_and_hostile_records_are_stated() {
    for (mode, error) in [
        ("bad_record", "undecodable record"),
        ("long_line", "exceeds the 262144-byte cap"),
        ("raw_escapes", "control character"),
    ] {
        let (_t, cfg, out) = setup("ok.toml", TIMER);
        let (code, stdout, stderr) = run(kmbench(&out, &cfg, &[]).env("FAKE_QEMU_MODE", mode));
        assert_eq!(code, 1, "{mode}: stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stderr.contains("rejected"), "{mode}: {stderr}");
        let r = results(&out);
        assert!(!r.complete, "{mode}");
        assert_eq!(r.exit.as_ref().unwrap().status, "rejected_records");
        assert_eq!(r.rejected_records.len(), 1, "{mode}");
        assert!(
            r.rejected_records[0].error.contains(error),
            "{mode}: {:?}",
            r.rejected_records
        );
        assert!(r.rejected_records[0].line.len() < 1000);
        assert!(
            !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
            "{mode}"
        );
        assert!(!r.rejected_records[0].line.contains('\u{1b}'), "{mode}");
        // The good records around it are all kept.
        assert_eq!(r.benchmarks.len(), 2, "{mode}");
    }
    let (_t, cfg, out) = setup("ok.toml", TIMER);
    let (code, stdout, stderr) = run(kmbench(&out, &cfg, &[]).env("FAKE_QEMU_MODE", "escapes"));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
        "{stdout}"
    );
    assert!(!stdout.contains('\u{7}'), "{stdout}");
    let r = results(&out);
    assert_eq!(r.benchmarks.len(), 3);
    assert!(r
        .benchmarks
        .iter()
        .any(|b| b.name.starts_with("timer/\\u{1b}[2J")));
}

/// Output folders: one run per folder (the second is refused, exit 2, naming the folder);
/// symlinks planted under kmbench's file names are replaced, never written through; a
/// comma in --out reaches QEMU escaped; a reused folder keeps no file of the earlier run.
#[test]
fn output_folders_are_locked_private_and_fresh() {
    let (t, cfg, out) = setup(
        "hang.toml",
        "[run]\ntimeout_s = 4\n[guest]\nfault = \"hang\"\n[suites.timer]\nsamples = 10\n",
    );
    let mut first = kmbench(&out, &cfg, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = out.join(".kmbench.lock");
    let t0 = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|s| !s.trim().is_empty()) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "first run never locked its folder"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_t2, ok, _) = setup("ok.toml", TIMER);
    let (code, _, stderr) = run(&mut kmbench(&out, &ok, &[]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("in use by another kmbench run")
            && stderr.contains(&format!("pid {}", first.id())),
        "{stderr}"
    );
    assert_eq!(
        first.wait().unwrap().code(),
        Some(3),
        "the first run is unharmed (timeout)"
    );
    assert_eq!(results(&out).exit.unwrap().status, "timeout");

    // Planted symlinks, an earlier run's files and a user's own file.
    let victim = t.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    for name in [
        "guest.log",
        "records.jsonl",
        ".results.json.tmp",
        "results.json",
    ] {
        let p = out.join(name);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(&victim, &p).unwrap();
    }
    std::fs::write(out.join("guest-old@x-1.log"), "stale").unwrap();
    std::fs::write(out.join("latency-old.svg"), "stale").unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let (code, stdout, stderr) = run(&mut kmbench(&out, &ok, &[]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(
        stderr.contains("removed") && stderr.contains("guest-old@x-1.log"),
        "{stderr}"
    );
    assert!(!out.join("guest-old@x-1.log").exists() && !out.join("latency-old.svg").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    for name in ["guest.log", "records.jsonl", "results.json"] {
        assert!(
            !std::fs::symlink_metadata(out.join(name))
                .unwrap()
                .is_symlink(),
            "{name}"
        );
    }
    assert!(results(&out).complete);

    // A comma (and a space) in --out.
    let odd = t.path().join("a,b c");
    let (code, stdout, stderr) = run(&mut kmbench(&odd, &ok, &[]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(std::fs::read_to_string(odd.join("guest.log"))
        .unwrap()
        .contains("fake guest booting"));
    assert!(!t.path().join("a").exists());
}

fn report(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    run(Command::new(env!("CARGO_BIN_EXE_kmbench"))
        .arg("report")
        .arg(dir)
        .arg("--no-plots")
        .args(extra)
        .stdin(Stdio::null()))
}

/// records.jsonl is the source of truth: `report --rebuild` gives back the results.json
/// the run wrote (one boot, several boots, variants), and a torn last line is skipped.
#[test]
fn results_rebuild_from_the_journal_exactly() {
    let variants = format!(
        "{TIMER}[[variants]]\nname = \"a\"\n[[variants]]\nname = \"b\"\nflush_mode = \"full\"\n"
    );
    for (text, flags) in [
        (TIMER.to_string(), vec![]),
        (TIMER.to_string(), vec!["--boots", "3"]),
        (variants, vec!["--boots", "2"]),
    ] {
        let (_t, cfg, out) = setup("ok.toml", &text);
        let (code, stdout, stderr) = run(&mut kmbench(&out, &cfg, &flags));
        assert_eq!(code, 0, "{stdout}{stderr}");
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap())
                .unwrap();
        std::fs::remove_file(out.join("results.json")).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(out.join("records.jsonl"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"boot\":1,\"ms\":3.5,\"rec").unwrap();
        let (code, _, stderr) = report(&out, &["--rebuild"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains("rebuilt"), "{stderr}");
        let rebuilt: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap())
                .unwrap();
        assert_eq!(rebuilt, written, "{text} {flags:?}");
    }
}

/// SIGKILL of the harness mid-boot (with and without variants): the next report,
/// compare or export finds results.json behind records.jsonl and rebuilds it, the hung
/// boot judged `killed`, and nothing that reached the journal is lost.
#[test]
fn sigkill_loses_nothing_that_reached_the_journal() {
    let hang = format!("[guest]\nfault = \"hang_after_record\"\n{TIMER}");
    let with_variants = format!("{hang}[[variants]]\nname = \"a\"\n[[variants]]\nname = \"b\"\n");
    for (text, name) in [(hang, "timer/rdtsc"), (with_variants, "timer/rdtsc@a")] {
        let (_t, cfg, out) = setup("h.toml", &text);
        let mut child = kmbench(&out, &cfg, &["--timeout", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let records = out.join("records.jsonl");
        let t0 = Instant::now();
        while !std::fs::read_to_string(&records).is_ok_and(|s| s.contains("timer/rdtsc")) {
            assert!(t0.elapsed() < Duration::from_secs(30), "no records arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let (code, stdout, stderr) = report(&out, &[]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains("rebuilt"), "{stderr}");
        assert!(stdout.contains(name), "{stdout}");
        let r = results(&out);
        assert!(!r.complete);
        assert_eq!(r.exit.as_ref().unwrap().status, "killed");
        assert!(
            r.benchmarks.iter().any(|b| b.name == name),
            "{:?}",
            r.benchmarks
        );
        // Up to date now: no second rebuild.
        let (_, _, stderr) = report(&out, &[]);
        assert!(!stderr.contains("rebuilt"), "{stderr}");
    }
}
