//! The embedded KVM micro-VMM (`backend::vmm`) booting the real kernel. Every test skips
//! (with a printed reason) when /dev/kvm cannot be opened read-write. No timings asserted.
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kmbench::backend::vmm::{self as kvm, KvmVmm};
use kmbench::backend::{run_to_end, AccelKind, BootEnd, BootReport, Event, LaunchSpec};
use kmbench::config::{HostBacking, Machine};
use kmbench_protocol::{
    FaultInjection, FaultRecord, GateSuite, GuestExit, GuestPlan, Hello, Record, CMDLINE_PLAN_KEY,
};

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

/// The serial lock, or None (with the reason printed) when the VMM cannot run here.
fn vmm_lock() -> Option<std::sync::MutexGuard<'static, ()>> {
    if let Some(r) = skip() {
        eprintln!("{r}");
        return None;
    }
    Some(serial())
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
        vcpus: plan.cpus,
        pin_vcpus: false,
        machine: Machine::Microvm,
        accel: AccelKind::Kvm,
        cpu_model: "host".into(),
        host_backing: backing,
        log_path: dir.join("guest.log"),
        timeout,
        verbose: false,
        interrupt: &NO_INTERRUPT,
        control: None,
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

impl Booted {
    /// The guest exited through isa-debug-exit with `exit` (any raw code).
    fn assert_exited(&self, exit: GuestExit) {
        assert!(
            matches!(&self.report.end, BootEnd::Exited { exit: e, .. } if *e == exit),
            "{:?}\n{}",
            self.report.end,
            self.log
        );
    }

    fn hello(&self) -> Option<&Hello> {
        self.records.iter().find_map(|r| match r {
            Record::Hello(h) => Some(h),
            _ => None,
        })
    }

    fn fault(&self) -> Option<&FaultRecord> {
        self.records.iter().find_map(|r| match r {
            Record::Fault(f) => Some(f),
            _ => None,
        })
    }
}

/// [`small_plan`] with `fault`, on default host backing.
fn boot_small(fault: Option<FaultInjection>, timeout_s: u64) -> Booted {
    boot(
        &small_plan(fault),
        Duration::from_secs(timeout_s),
        HostBacking::Default,
    )
}

fn boot(plan: &GuestPlan, timeout: Duration, backing: HostBacking) -> Booted {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(plan, dir.path(), timeout, backing);
    let log_path = s.log_path.clone();
    let mut records = Vec::new();
    let mut bad = Vec::new();
    let mut launched = false;
    let t = Instant::now();
    // The one launch path (`RunningGuest`), as `kmbench run` and sessions use it.
    let (report, vmm) = run_to_end(Box::new(KvmVmm::new()), s, |ev| match ev {
        Event::Launched => launched = true,
        Event::Record(r) => records.push(r),
        Event::BadRecord { line, error } => bad.push(format!("{error}: {line}")),
    })
    .expect("boot returns");
    let wall = t.elapsed();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
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
    let Some(_g) = vmm_lock() else { return };
    let b = boot_small(None, 60);
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
    let hello = b.hello().expect("hello record");
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
    let Some(_g) = vmm_lock() else { return };
    let b = boot_small(Some(FaultInjection::Panic), 60);
    b.assert_exited(GuestExit::Panic);
    assert!(b
        .records
        .iter()
        .any(|r| matches!(r, Record::Fault(f) if f.exit == GuestExit::Panic)));
}

#[test]
fn page_fault_exits_with_exception() {
    let Some(_g) = vmm_lock() else { return };
    let b = boot_small(Some(FaultInjection::PageFault), 60);
    b.assert_exited(GuestExit::Exception);
    let f = b.fault().expect("fault record");
    assert_eq!(f.vector, Some(14));
    assert!(f.cr2.is_some());
}

#[test]
fn hang_times_out_and_the_vcpu_stops() {
    let Some(_g) = vmm_lock() else { return };
    let t = Instant::now();
    let b = boot_small(Some(FaultInjection::Hang), 3);
    assert_eq!(b.report.end, BootEnd::Timeout, "{}", b.log);
    // The vCPU really stopped: boot() returned, well before a generous bound.
    assert!(t.elapsed() < Duration::from_secs(30));
    // And the backend can boot again in the same process afterwards.
    let again = boot_small(None, 60);
    again.assert_exited(GuestExit::Success);
}

#[test]
fn hugetlbfs_without_a_pool_is_a_launch_failure() {
    let Some(_g) = vmm_lock() else { return };
    let need = 256u64.div_ceil(2);
    let have = kmbench::host::free_huge_pages_2m();
    if have >= need {
        eprintln!("skipping: the host has {have} free 2 MiB huge pages (the error path needs fewer than {need})");
        return;
    }
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
    let Some(_g) = vmm_lock() else { return };
    let b = boot(
        &small_plan(None),
        Duration::from_secs(60),
        HostBacking::Small,
    );
    b.assert_exited(GuestExit::Success);
    assert!(b.extra["vmm_memory"]
        .as_str()
        .unwrap()
        .contains("MADV_NOHUGEPAGE"));
}

#[test]
fn interrupt_flag_stops_a_hung_guest() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let Some(_g) = vmm_lock() else { return };
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
    let (report, _) = run_to_end(Box::new(KvmVmm::new()), s, |_| {}).unwrap();
    setter.join().unwrap();
    assert_eq!(report.end, BootEnd::Interrupted);
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn cli_runs_on_the_embedded_vmm() {
    let Some(_g) = vmm_lock() else { return };
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
