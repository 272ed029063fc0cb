//! The embedded KVM micro-VMM (`backend::kvm`) booting the real kernel. Every test skips
//! (with a printed reason) when /dev/kvm cannot be opened read-write. No timings asserted.
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kmbench::backend::kvm::{self, KvmVmm};
use kmbench::backend::{AccelKind, Backend, BootEnd, BootReport, Event, LaunchSpec};
use kmbench::config::{HostBacking, Machine};
use kmbench_protocol::{FaultInjection, GateSuite, GuestExit, GuestPlan, Record, CMDLINE_PLAN_KEY};

static NO_INTERRUPT: AtomicBool = AtomicBool::new(false);

fn root() -> PathBuf {
    kmbench::build::find_workspace_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn kernel() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL.get_or_init(|| match std::env::var_os("KMBENCH_KERNEL") {
        Some(k) => PathBuf::from(k),
        None => kmbench::build::build_kernel(&root(), true, false).expect("kernel builds"),
    })
}

/// Some(reason) when the VMM cannot run here.
fn skip() -> Option<String> {
    kvm::available()
        .err()
        .map(|e| format!("skipping: /dev/kvm is not usable ({e})"))
}

/// One VM at a time: the tests share the process's RSS and the host's single /dev/kvm.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn small_plan(fault: Option<FaultInjection>) -> GuestPlan {
    let mut plan = GuestPlan::new(3);
    plan.fault = fault;
    plan.suites.gate = Some(GateSuite { samples: 100 });
    plan
}

fn spec(plan: &GuestPlan, dir: &Path, timeout: Duration, backing: HostBacking) -> LaunchSpec {
    LaunchSpec {
        kernel: kernel().to_path_buf(),
        cmdline: format!("{CMDLINE_PLAN_KEY}{}", serde_json::to_string(plan).unwrap()),
        memory_mib: 256,
        machine: Machine::Microvm,
        accel: AccelKind::Kvm,
        cpu_model: "host".into(),
        host_backing: backing,
        log_path: dir.join("guest.log"),
        timeout,
        verbose: false,
        interrupt: &NO_INTERRUPT,
    }
}

struct Booted {
    report: BootReport,
    records: Vec<Record>,
    bad: Vec<String>,
    launched: bool,
    extra: std::collections::BTreeMap<String, serde_json::Value>,
    wall: Duration,
    _dir: tempfile::TempDir,
    log: String,
}

fn boot(plan: &GuestPlan, timeout: Duration, backing: HostBacking) -> Booted {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(plan, dir.path(), timeout, backing);
    let mut vmm = KvmVmm::new();
    let mut records = Vec::new();
    let mut bad = Vec::new();
    let mut launched = false;
    let t = Instant::now();
    let report = vmm
        .boot(&s, &mut |ev| match ev {
            Event::Launched => launched = true,
            Event::Record(r) => records.push(r),
            Event::BadRecord { line, error } => bad.push(format!("{error}: {line}")),
        })
        .expect("boot returns");
    let wall = t.elapsed();
    let log = std::fs::read_to_string(&s.log_path).unwrap_or_default();
    Booted {
        report,
        records,
        bad,
        launched,
        extra: vmm.extra(),
        wall,
        _dir: dir,
        log,
    }
}

#[test]
fn boots_and_reports_success() {
    if let Some(r) = skip() {
        eprintln!("{r}");
        return;
    }
    let _g = serial();
    let b = boot(
        &small_plan(None),
        Duration::from_secs(60),
        HostBacking::Default,
    );
    assert_eq!(
        b.report.end,
        BootEnd::Exited {
            exit: GuestExit::Success,
            raw: 0
        },
        "stderr: {}\nlog:\n{}",
        b.report.stderr,
        b.log
    );
    assert!(b.launched);
    assert!(b.bad.is_empty(), "{:?}", b.bad);
    let hello = b
        .records
        .iter()
        .find_map(|r| match r {
            Record::Hello(h) => Some(h),
            _ => None,
        })
        .expect("hello record");
    assert_eq!(hello.cpl, 3);
    assert!(hello.tsc_hz > 0);
    assert!(b.records.iter().any(|r| matches!(r, Record::Bench(_))));
    assert!(matches!(b.records.last(), Some(Record::End(_))));
    assert!(!b.log.is_empty(), "guest log written");
    assert!(b.extra.contains_key("vmm_exits"));
    assert!(b.extra["vmm_rss_kib"].as_u64().unwrap() > 0);
    eprintln!(
        "vmm boot: wall {:?}, tsc_source {}, extra {}",
        b.wall,
        hello.tsc_source,
        serde_json::to_string(&b.extra).unwrap()
    );
}

#[test]
fn panic_exits_with_panic_and_a_fault_record() {
    if let Some(r) = skip() {
        eprintln!("{r}");
        return;
    }
    let _g = serial();
    let b = boot(
        &small_plan(Some(FaultInjection::Panic)),
        Duration::from_secs(60),
        HostBacking::Default,
    );
    assert!(
        matches!(
            b.report.end,
            BootEnd::Exited {
                exit: GuestExit::Panic,
                ..
            }
        ),
        "{:?}\n{}",
        b.report.end,
        b.log
    );
    assert!(b
        .records
        .iter()
        .any(|r| matches!(r, Record::Fault(f) if f.exit == GuestExit::Panic)));
}

#[test]
fn page_fault_exits_with_exception() {
    if let Some(r) = skip() {
        eprintln!("{r}");
        return;
    }
    let _g = serial();
    let b = boot(
        &small_plan(Some(FaultInjection::PageFault)),
        Duration::from_secs(60),
        HostBacking::Default,
    );
    assert!(
        matches!(
            b.report.end,
            BootEnd::Exited {
                exit: GuestExit::Exception,
                ..
            }
        ),
        "{:?}\n{}",
        b.report.end,
        b.log
    );
    let f = b
        .records
        .iter()
        .find_map(|r| match r {
            Record::Fault(f) => Some(f),
            _ => None,
        })
        .expect("fault record");
    assert_eq!(f.vector, Some(14));
    assert!(f.cr2.is_some());
}

#[test]
fn hang_times_out_and_the_vcpu_stops() {
    if let Some(r) = skip() {
        eprintln!("{r}");
        return;
    }
    let _g = serial();
    let t = Instant::now();
    let b = boot(
        &small_plan(Some(FaultInjection::Hang)),
        Duration::from_secs(3),
        HostBacking::Default,
    );
    assert_eq!(b.report.end, BootEnd::Timeout, "{}", b.log);
    // The vCPU really stopped: boot() returned, well before a generous bound.
    assert!(t.elapsed() < Duration::from_secs(30));
    // And the backend can boot again in the same process afterwards.
    let again = boot(
        &small_plan(None),
        Duration::from_secs(60),
        HostBacking::Default,
    );
    assert!(matches!(
        again.report.end,
        BootEnd::Exited {
            exit: GuestExit::Success,
            ..
        }
    ));
}

#[test]
fn hugetlbfs_without_a_pool_is_a_launch_failure() {
    if let Some(r) = skip() {
        eprintln!("{r}");
        return;
    }
    let need = 256u64.div_ceil(2);
    let have = kvm::free_huge_pages_2m();
    if have >= need {
        eprintln!("skipping: the host has {have} free 2 MiB huge pages (the error path needs fewer than {need})");
        return;
    }
    let _g = serial();
    let b = boot(
        &small_plan(None),
        Duration::from_secs(10),
        HostBacking::Hugetlbfs,
    );
    match &b.report.end {
        BootEnd::LaunchFailed { message } => {
            assert!(
                message.contains(&format!("needs {need} free 2 MiB huge pages")),
                "{message}"
            );
            assert!(message.contains("/proc/sys/vm/nr_hugepages"), "{message}");
        }
        other => panic!("expected LaunchFailed, got {other:?}"),
    }
    assert!(!b.launched, "nothing launched");
}

#[test]
fn small_host_pages_boot_too() {
    if let Some(r) = skip() {
        eprintln!("{r}");
        return;
    }
    let _g = serial();
    let b = boot(
        &small_plan(None),
        Duration::from_secs(60),
        HostBacking::Small,
    );
    assert!(
        matches!(
            b.report.end,
            BootEnd::Exited {
                exit: GuestExit::Success,
                ..
            }
        ),
        "{:?}\n{}",
        b.report.end,
        b.log
    );
    assert!(b.extra["vmm_memory"]
        .as_str()
        .unwrap()
        .contains("MADV_NOHUGEPAGE"));
}

#[test]
fn interrupt_flag_stops_a_hung_guest() {
    if let Some(r) = skip() {
        eprintln!("{r}");
        return;
    }
    static STOP: AtomicBool = AtomicBool::new(false);
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(
        &small_plan(Some(FaultInjection::Hang)),
        dir.path(),
        Duration::from_secs(60),
        HostBacking::Default,
    );
    s.interrupt = &STOP;
    let setter = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(500));
        STOP.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let t = Instant::now();
    let report = KvmVmm::new().boot(&s, &mut |_| {}).unwrap();
    setter.join().unwrap();
    assert_eq!(report.end, BootEnd::Interrupted);
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn cli_runs_on_the_embedded_vmm() {
    if let Some(r) = skip() {
        eprintln!("{r}");
        return;
    }
    let _g = serial();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kmbench"))
        .current_dir(root())
        .args([
            "run",
            "configs/ci.toml",
            "--backend",
            "kvm",
            "--quiet",
            "--out",
        ])
        .arg(&out)
        .env("KMBENCH_KERNEL", kernel())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let r: kmbench::results::RunResults =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r.env.backend, "kvm");
    assert_eq!(r.env.accel, "kvm");
    assert!(r.complete);
    assert!(!r.benchmarks.is_empty());
    assert!(r.env.extra.contains_key("vmm_exits"));
    assert!(r.env.extra.contains_key("vmm_rss_kib"));
    assert!(r.env.extra.contains_key("vmm_command"));
    assert!(!r.env.extra.contains_key("qemu_command"));
    assert_eq!(r.exit.unwrap().code, Some(0));
}
