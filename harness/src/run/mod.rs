//! `kmbench run [CONFIG]`: build the kernel, boot it (N times), collect records, write results.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kmbench_protocol::{
    BenchRecord, EndRecord, FaultRecord, GuestExit, Hello, Record, SelftestRecord,
    CMDLINE_PLAN_KEY, RESULTS_SCHEMA,
};

use crate::backend::kvm::{self as kvm_vmm, KvmVmm};
use crate::backend::qemu::{self, Qemu};
use crate::backend::{AccelKind, Backend, BackendChoice, BootEnd, Event, LaunchSpec};
use crate::build;
use crate::config::{self, Accel, CplSetting, HostBacking};
use crate::error::{HarnessError, IoContext, Result};
use crate::host;
use crate::report::table;
use crate::results::{Env, ExitInfo, RunResults};

pub mod pool;
pub mod variants;

use variants::VariantRun;

/// Process exit statuses of `kmbench run`.
pub mod status {
    pub const SUCCESS: u8 = 0;
    /// The guest reported a benchmark or self-test failure.
    pub const FAILURE: u8 = 1;
    /// Harness or config error (nothing ran, or QEMU could not start).
    pub const HARNESS: u8 = 2;
    /// The guest did not finish within the timeout.
    pub const TIMEOUT: u8 = 3;
    pub const PANIC: u8 = 4;
    pub const EXCEPTION: u8 = 5;
    pub const MM_MISUSE: u8 = 6;
    pub const STACK_OVERFLOW: u8 = 7;
    /// The guest rejected the plan (e.g. 1G pages without CPU support).
    pub const GUEST_CONFIG: u8 = 8;
    /// The VM ended some other way (crash, KVM internal error, unknown exit code, no end record).
    pub const UNEXPECTED: u8 = 9;
    /// Ctrl-C / SIGTERM.
    pub const INTERRUPTED: u8 = 130;
}

const AFTER_HELP: &str = "\
Exit status:
  0    success
  1    the guest reported a benchmark or self-test failure
  2    harness or config error (bad config, missing QEMU, build failure, QEMU did not start)
  3    guest timed out (results kept with complete=false)
  4    guest kernel panic
  5    guest CPU exception (vector, RIP, CR2 in results.json `faults`)
  6    guest memory misuse detected
  7    guest stack overflow
  8    the guest rejected the configuration
  9    the VM ended unexpectedly (QEMU crash, KVM internal error, triple fault)
  130  interrupted (Ctrl-C); results kept with complete=false

With --boots N, each benchmark keeps one median per boot (`boot_medians`); the reported
median is the median of boot medians, min = min of mins, max = max of maxes,
p99 = median of p99s, mean = mean of means, samples = sum.

Environment: KMBENCH_KERNEL=<elf> boots that kernel (no build); KMBENCH_QEMU=<path>
uses another QEMU binary.";

#[derive(clap::Args, Debug, Clone, Default)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Config file [default: configs/default.toml in the workspace root].
    pub config: Option<PathBuf>,
    /// Accelerator: auto = KVM when /dev/kvm opens read-write, else TCG (emulated: not hardware numbers).
    #[arg(long, value_enum)]
    pub accel: Option<Accel>,
    /// Run directory [default: results/<run-id>/ in the workspace root].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Show the guest log (and QEMU's stderr) live.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print only errors and the results path.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Kill a guest that runs longer than SECS per boot (overrides [run] timeout_s).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64)
        .range(crate::config::TIMEOUT_S.min..=crate::config::TIMEOUT_S.max))]
    pub timeout: Option<u64>,
    /// Privilege level of the measured code: auto (3 on pvm, 0 on hardware KVM and TCG), 0 or 3.
    #[arg(long, value_parser = CplSetting::parse, value_name = "auto|0|3")]
    pub cpl: Option<CplSetting>,
    /// Boot N fresh guests and pool their statistics (overrides [run] boots).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32)
        .range(crate::config::BOOTS.min as i64..=crate::config::BOOTS.max as i64))]
    pub boots: Option<u32>,
    /// Do not build the kernel; boot the existing ELF.
    #[arg(long)]
    pub no_build: bool,
    /// Who boots the guest: auto = the embedded KVM VMM when accel is KVM (microvm), else QEMU.
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub results: RunResults,
    pub dir: PathBuf,
    /// Process exit status (see [`status`]).
    pub status: u8,
    /// One line saying why the run failed (None on success).
    pub reason: Option<String>,
}

pub fn main(args: Args) -> std::result::Result<ExitCode, Box<dyn std::error::Error>> {
    let outcome = execute(&args)?;
    if let Some(reason) = &outcome.reason {
        eprintln!("kmbench: {reason}");
    }
    Ok(ExitCode::from(outcome.status))
}

// ---------------------------------------------------------------------------------------
// Interrupts.

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

struct SignalGuard;

impl SignalGuard {
    fn install() -> SignalGuard {
        INTERRUPTED.store(false, Ordering::SeqCst);
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        }
        SignalGuard
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        // SAFETY: restoring the default disposition.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
        }
    }
}

// ---------------------------------------------------------------------------------------
// One boot's records.

#[derive(Debug, Default, Clone)]
pub struct BootData {
    pub hello: Option<Hello>,
    pub benches: Vec<BenchRecord>,
    pub selftests: Vec<SelftestRecord>,
    pub info: BTreeMap<String, serde_json::Value>,
    pub faults: Vec<FaultRecord>,
    pub end: Option<EndRecord>,
    pub bad_records: Vec<String>,
    pub boot_ms: Option<f64>,
    pub records: usize,
}

impl BootData {
    pub fn push(&mut self, r: Record) {
        self.records += 1;
        match r {
            Record::Hello(h) => self.hello = Some(h),
            Record::Bench(b) => self.benches.push(b),
            Record::Selftest(s) => self.selftests.push(s),
            Record::Info(i) => {
                self.info.insert(i.key, i.value);
            }
            Record::Fault(f) => self.faults.push(f),
            Record::End(e) => self.end = Some(e),
            // Serve mode only (`kmbench::session`); a normal run never sees one.
            Record::Measurement(_) => {}
        }
    }
}

/// How a boot is judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub ok: bool,
    /// Process exit status of `kmbench run`.
    pub status: u8,
    pub info: ExitInfoParts,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExitInfoParts {
    pub status: String,
    pub code: Option<i32>,
    pub message: String,
}

fn guest_exit_status(e: GuestExit) -> u8 {
    match e {
        GuestExit::Success => status::SUCCESS,
        GuestExit::Failure => status::FAILURE,
        GuestExit::Panic => status::PANIC,
        GuestExit::Exception => status::EXCEPTION,
        GuestExit::MmMisuse => status::MM_MISUSE,
        GuestExit::StackOverflow => status::STACK_OVERFLOW,
        GuestExit::ConfigError => status::GUEST_CONFIG,
    }
}

fn guest_exit_name(e: GuestExit) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Judge one boot from how it ended and what it sent.
pub fn verdict(end: &BootEnd, data: &BootData, timeout_s: u64) -> Verdict {
    let mk = |ok, st, status: &str, code, message: String| Verdict {
        ok,
        status: st,
        info: ExitInfoParts {
            status: status.to_string(),
            code,
            message,
        },
    };
    match end {
        BootEnd::Exited {
            exit: GuestExit::Success,
            raw,
        } => {
            if data.end.is_none() {
                return mk(
                    false,
                    status::UNEXPECTED,
                    "unknown",
                    Some(*raw),
                    "guest exited without its end record".into(),
                );
            }
            let failed: Vec<&str> = data
                .selftests
                .iter()
                .filter(|s| !s.passed)
                .map(|s| s.name.as_str())
                .collect();
            if !failed.is_empty() {
                return mk(
                    false,
                    status::FAILURE,
                    "failure",
                    Some(*raw),
                    format!(
                        "{} self-test(s) failed: {}",
                        failed.len(),
                        failed.join(", ")
                    ),
                );
            }
            mk(
                true,
                status::SUCCESS,
                "success",
                Some(*raw),
                "success".into(),
            )
        }
        BootEnd::Exited { exit, raw } => {
            let message = match data.faults.last() {
                Some(f) => format!("guest {}", table::with_exit_kind(*exit, &f.message)),
                None => format!("guest {} (exit code {})", exit.describe(), exit.code()),
            };
            mk(
                false,
                guest_exit_status(*exit),
                &guest_exit_name(*exit),
                Some(*raw),
                message,
            )
        }
        BootEnd::LaunchFailed { message } => mk(
            false,
            status::HARNESS,
            "launch_error",
            None,
            message.clone(),
        ),
        BootEnd::Unexpected { code, message, .. } => {
            let message = match data.faults.last() {
                Some(f) => format!("{message}; last fault: {}", table::describe_fault(f)),
                None => message.clone(),
            };
            mk(false, status::UNEXPECTED, "unknown", *code, message)
        }
        BootEnd::Timeout => mk(
            false,
            status::TIMEOUT,
            "timeout",
            None,
            format!("guest timed out after {timeout_s}s"),
        ),
        BootEnd::Interrupted => mk(
            false,
            status::INTERRUPTED,
            "interrupted",
            None,
            "interrupted".into(),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Results assembly and writing.

/// How often `results.json` is refreshed while a boot streams records.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(500);

/// Combine the boots into `results.json` content.
pub fn assemble(
    mut base: RunResults,
    boots: &[BootData],
    verdict: Option<&Verdict>,
    planned_boots: u32,
) -> RunResults {
    if let Some(h) = boots.iter().find_map(|b| b.hello.clone()) {
        base.env.tsc_hz = h.tsc_hz;
        base.env.tsc_source = h.tsc_source.clone();
        base.env.guest = Some(h);
    }
    base.env.boot_ms = boots.first().and_then(|b| b.boot_ms).unwrap_or(0.0);
    if boots.len() > 1 {
        base.env.extra.insert(
            "boot_ms_per_boot".into(),
            serde_json::json!(boots.iter().map(|b| b.boot_ms).collect::<Vec<_>>()),
        );
    }
    let bench_sets: Vec<Vec<BenchRecord>> = boots.iter().map(|b| b.benches.clone()).collect();
    base.benchmarks = pool::pool_boots(&bench_sets);
    base.selftests.clear();
    for b in boots {
        for s in &b.selftests {
            if !base.selftests.contains(s) {
                base.selftests.push(s.clone());
            }
        }
    }
    base.info.clear();
    for b in boots {
        for (k, v) in &b.info {
            base.info.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    base.faults = boots.iter().flat_map(|b| b.faults.clone()).collect();
    let bad: Vec<String> = boots.iter().flat_map(|b| b.bad_records.clone()).collect();
    if !bad.is_empty() {
        base.env
            .extra
            .insert("bad_records".into(), serde_json::json!(bad));
    }
    match verdict {
        Some(v) => {
            // Complete = every planned boot finished reporting (sent its end record).
            base.complete =
                boots.len() as u32 == planned_boots && boots.iter().all(|b| b.end.is_some());
            base.exit = Some(ExitInfo {
                status: v.info.status.clone(),
                code: v.info.code,
                message: v.info.message.clone(),
            });
        }
        None => {
            base.complete = false;
            base.exit = None;
        }
    }
    base
}

/// Write `path` atomically: a temporary file in the same directory, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out")
    ));
    {
        let mut f = std::fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .ctx(|| format!("writing {}", tmp.display()))?;
        f.sync_all().ctx(|| format!("syncing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).ctx(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

pub fn write_results(dir: &Path, results: &RunResults) -> Result<PathBuf> {
    let path = dir.join("results.json");
    let mut json = serde_json::to_vec_pretty(results)
        .map_err(|e| HarnessError::Other(format!("serialising results: {e}")))?;
    json.push(b'\n');
    write_atomic(&path, &json)?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------
// Time and ids.

/// (year, month, day, hour, minute, second) in UTC.
fn utc_parts(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

pub fn run_id(t: SystemTime, config: &Path) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(t);
    let stem: String = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("run")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{stem}")
}

// ---------------------------------------------------------------------------------------
// The run.

fn note(quiet: bool, msg: impl AsRef<str>) {
    if !quiet {
        eprintln!("kmbench: {}", msg.as_ref());
    }
}

/// Check that hugetlbfs backing can be satisfied before QEMU tries (and aborts).
fn check_huge_pages(memory_mib: u64) -> Result<()> {
    let need = memory_mib.div_ceil(2);
    let sys = Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
    let have = match std::fs::read_to_string(sys) {
        Ok(s) => s.trim().parse().unwrap_or(0),
        Err(_) => {
            let (free, size_kb) = host::huge_pages_free();
            if size_kb == 2048 {
                free
            } else {
                0
            }
        }
    };
    if have < need {
        return Err(HarnessError::HugePages { need, have });
    }
    Ok(())
}

/// Run a config end to end. Harness errors (nothing could run) are `Err`; guest failures,
/// timeouts and interrupts are an `Ok` outcome with a non-zero status and results written.
pub fn execute(args: &Args) -> Result<RunOutcome> {
    let quiet = args.quiet;
    let root = build::workspace_root()?;
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| root.join("configs/default.toml"));
    let loaded = config::load(&config_path)?;
    let cfg = &loaded.config;

    // Accelerator and hypervisor kind.
    let cpuinfo = host::cpuinfo();
    let (accel, hv) =
        host::resolve_accel(args.accel.unwrap_or(cfg.run.accel), &cpuinfo, &mut |m| {
            note(quiet, m)
        })?;
    let (cpl_setting, cpl_from) = match args.cpl {
        Some(c) => (c, "cli"),
        None => (cfg.guest.cpl, "config"),
    };
    let (cpl, cpl_source) = host::resolve_cpl(cpl_setting, cpl_from, hv);
    if let Some(w) = host::emulated_cpl0_warning(hv, cpl) {
        note(quiet, w);
    }

    // Backend: the embedded VMM needs KVM and boots microvm-style only.
    let use_vmm = match args.backend.unwrap_or_default() {
        BackendChoice::Qemu => false,
        BackendChoice::Kvm => {
            if accel != AccelKind::Kvm {
                return Err(HarnessError::Other(
                    "--backend kvm needs KVM (the embedded VMM cannot emulate): use --backend qemu for TCG".into(),
                ));
            }
            if cfg.run.machine != config::Machine::Microvm {
                return Err(HarnessError::Other(format!(
                    "--backend kvm boots microvm-style only, not machine = \"{}\": use --backend qemu",
                    cfg.run.machine.label()
                )));
            }
            kvm_vmm::available().map_err(HarnessError::KvmUnavailable)?;
            true
        }
        BackendChoice::Auto => {
            accel == AccelKind::Kvm
                && cfg.run.machine == config::Machine::Microvm
                && kvm_vmm::available().is_ok()
        }
    };
    let qemu_bin = match host::find_qemu() {
        Some(q) => q,
        None if use_vmm => PathBuf::from("qemu-system-x86_64"),
        None => return Err(HarnessError::QemuNotFound),
    };
    let qemu_version = if use_vmm {
        "none (embedded VMM)".to_string()
    } else {
        host::qemu_version(&qemu_bin)
    };
    let host_cpu = host::cpu_model_name(&cpuinfo);
    let host_kernel = host::host_kernel();

    let backing = cfg.run.host_backing;
    if backing == HostBacking::Hugetlbfs && cfg.variants.is_empty() {
        check_huge_pages(cfg.run.memory_mib)?;
    }
    let thp = host::thp_mode("enabled");
    let wants_thp = backing == HostBacking::Thp
        || cfg
            .variants
            .iter()
            .any(|v| v.host_backing == Some(HostBacking::Thp));
    if wants_thp && thp == "never" {
        note(quiet, "warning: host_backing = \"thp\" but host THP is disabled (transparent_hugepage/enabled = never)");
    }

    let kernel = build::kernel(&root, args.no_build, quiet, args.verbose)?;

    let probe_cache = build::kernel_path(&root)
        .ancestors()
        .nth(3)
        .map(|t| t.join("kmbench-cpu-probe.json"))
        .unwrap_or_else(|| root.join("target/kmbench-cpu-probe.json"));
    let probe_key = qemu::probe_key(&qemu_version, &host_kernel, &host_cpu, cfg.run.machine);
    let cpu_model = match accel {
        _ if use_vmm => "host,-arch-capabilities (KVM_GET_SUPPORTED_CPUID)".to_string(),
        AccelKind::Tcg => "max".to_string(),
        AccelKind::Kvm => {
            qemu::probe_cpu_model(&qemu_bin, cfg.run.machine, &probe_cache, &probe_key, quiet)?.0
        }
    };

    let timeout_s = args.timeout.unwrap_or(cfg.run.timeout_s);
    let boots = args.boots.unwrap_or(cfg.run.boots);
    // clap checks the flags; this also covers callers that build `Args` themselves.
    if !crate::config::TIMEOUT_S.contains(timeout_s) {
        return Err(HarnessError::Other(format!(
            "--timeout {timeout_s} is out of range: expected {}",
            crate::config::TIMEOUT_S
        )));
    }
    if !crate::config::BOOTS.contains(boots.into()) {
        return Err(HarnessError::Other(format!(
            "--boots {boots} is out of range: expected {}",
            crate::config::BOOTS
        )));
    }
    let started = SystemTime::now();
    let mut id = run_id(started, &config_path);
    let dir = match &args.out {
        Some(d) => d.clone(),
        None => {
            let base = root.join("results");
            let mut dir = base.join(&id);
            let mut n = 2;
            while dir.exists() {
                id = format!("{}-{n}", run_id(started, &config_path));
                dir = base.join(&id);
                n += 1;
            }
            dir
        }
    };
    std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;

    // One VariantRun per [[variants]] entry (or one unnamed run without variants).
    let make_run = |name: Option<String>, vcfg: config::Config| -> Result<VariantRun> {
        let (vcpl, vsrc) = match args.cpl {
            Some(c) => host::resolve_cpl(c, "cli", hv),
            None => host::resolve_cpl(vcfg.guest.cpl, "config", hv),
        };
        let plan = vcfg.plan(vcpl);
        let plan_json = serde_json::to_string(&plan)
            .map_err(|e| HarnessError::Other(format!("serialising plan: {e}")))?;
        let skipped = (name.is_some() && vcfg.run.host_backing == HostBacking::Hugetlbfs)
            .then(|| {
                check_huge_pages(vcfg.run.memory_mib)
                    .err()
                    .map(|e| e.to_string())
            })
            .flatten();
        Ok(VariantRun {
            name,
            cpl: vcpl,
            cpl_source: vsrc,
            cmdline: format!("{CMDLINE_PLAN_KEY}{plan_json}"),
            backing: vcfg.run.host_backing,
            plan,
            cfg: vcfg,
            skipped,
            boots: vec![],
            verdict: None,
            command_line: vec![],
            stderr: String::new(),
        })
    };
    let mut runs: Vec<VariantRun> = if cfg.variants.is_empty() {
        vec![make_run(None, cfg.clone())?]
    } else {
        cfg.variants
            .iter()
            .map(|v| make_run(Some(v.name.clone()), cfg.with_variant(v)))
            .collect::<Result<Vec<_>>>()?
    };
    for r in &runs {
        if let Some(why) = &r.skipped {
            // Printed even with --quiet: the run is missing part of what was asked.
            eprintln!("kmbench: variant {} skipped: {why}", r.label());
        }
    }
    if runs.iter().all(|r| r.skipped.is_some()) {
        return Err(HarnessError::Other(
            "every variant was skipped (see above)".into(),
        ));
    }
    let plan = runs[0].plan.clone();

    let mut backend: Box<dyn Backend> = if use_vmm {
        Box::new(KvmVmm::new())
    } else {
        Box::new(Qemu::new(qemu_bin.clone())?)
    };
    let config_file = config_path
        .canonicalize()
        .ok()
        .and_then(|p| p.strip_prefix(&root).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| config_path.clone());

    let mut env = Env {
        accel: accel.label().into(),
        hypervisor: hv.label().into(),
        backend: backend.name().into(),
        cpl,
        cpl_source,
        cpu_model: cpu_model.clone(),
        machine: cfg.run.machine.label().into(),
        host_cpu,
        host_kernel,
        qemu_version,
        guest_memory_mib: cfg.run.memory_mib,
        kmbench_commit: host::git_commit(&root),
        config_file: config_file.display().to_string(),
        config_hash: loaded.hash.clone(),
        direct_map_page: cfg.guest.direct_map_page.label().into(),
        host_backing: backing.label().into(),
        mm_debug: cfg.guest.mm_debug,
        flush_mode: cfg.guest.flush_mode.label().into(),
        boots,
        ..Env::default()
    };
    env.extra.insert("host_thp".into(), serde_json::json!(thp));
    env.extra.insert(
        "host_shmem_thp".into(),
        serde_json::json!(host::thp_mode("shmem_enabled")),
    );
    env.extra
        .insert("timeout_s".into(), serde_json::json!(timeout_s));
    env.extra.insert(
        "kernel".into(),
        serde_json::json!(kernel.display().to_string()),
    );
    env.extra.insert(
        "plan".into(),
        serde_json::to_value(&plan).unwrap_or_default(),
    );

    let mut base = RunResults {
        schema: RESULTS_SCHEMA.into(),
        complete: false,
        run_id: id.clone(),
        started_at: rfc3339(started),
        env,
        exit: None,
        benchmarks: vec![],
        selftests: vec![],
        info: BTreeMap::new(),
        faults: vec![],
    };

    let _signals = SignalGuard::install();
    let records_path = dir.join("records.jsonl");
    let mut records_file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&records_path)
        .ctx(|| format!("opening {}", records_path.display()))?;

    note(
        quiet,
        format!(
            "run {id}: {} accel={} hypervisor={} cpl={} cpu={} boots={boots} → {}",
            config_file.display(),
            accel.label(),
            hv.label(),
            cpl,
            cpu_model,
            dir.display()
        ),
    );

    let progress = if quiet || args.verbose {
        indicatif::ProgressBar::hidden()
    } else {
        let p =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        p.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").unwrap());
        p.enable_steady_tick(Duration::from_millis(120));
        p
    };

    let named = runs.iter().any(|r| r.name.is_some());
    let results_of = |base: &RunResults, runs: &[VariantRun]| -> RunResults {
        let one = |r: &VariantRun| {
            with_qemu(
                assemble(base.clone(), &r.boots, r.verdict.as_ref(), boots),
                &r.command_line,
                &r.stderr,
            )
        };
        if !named {
            return one(&runs[0]);
        }
        let parts: Vec<(&VariantRun, Option<RunResults>)> = runs
            .iter()
            .map(|r| (r, (!r.boots.is_empty()).then(|| one(r))))
            .collect();
        variants::merge(base.clone(), &parts)
    };
    // A readable results.json from the start (complete = false, no exit yet), refreshed
    // while records arrive (below) and after every boot, so even a SIGKILL of the harness
    // leaves what had arrived.
    write_results(&dir, &results_of(&base, &runs))?;
    for (vi, boot) in variants::schedule(runs.len(), boots) {
        if !runs[vi].active() {
            continue;
        }
        let earlier_boots = runs[vi].boots.clone();
        let run = &mut runs[vi];
        let log_path = dir.join(run.log_name(boot, boots));
        let spec = LaunchSpec {
            kernel: kernel.clone(),
            cmdline: run.cmdline.clone(),
            memory_mib: cfg.run.memory_mib,
            machine: cfg.run.machine,
            accel,
            cpu_model: cpu_model.clone(),
            host_backing: run.backing,
            log_path: log_path.clone(),
            timeout: Duration::from_secs(timeout_s),
            verbose: args.verbose,
            interrupt: &INTERRUPTED,
        };
        if run.boots.is_empty() {
            run.command_line = backend.describe(&spec);
        }
        let tag = match &run.name {
            Some(n) => format!("[{n}] "),
            None => String::new(),
        };
        let variant_name = run.name.clone();
        // The boot's records, shared with a snapshot thread that refreshes results.json
        // (at most twice a second, only when something new arrived) for runs without
        // variants — so a hang or a SIGKILL of the harness still leaves what had arrived.
        let shared = std::sync::Mutex::new((0u64, BootData::default()));
        let boot_done = std::sync::atomic::AtomicBool::new(false);
        let mut write_err: Option<std::io::Error> = None;
        let mut launched = Instant::now();
        let report = std::thread::scope(|scope| {
            let snapshotter = (!named).then(|| {
                let (shared, boot_done, earlier_boots, dir, base) =
                    (&shared, &boot_done, &earlier_boots, &dir, &base);
                scope.spawn(move || {
                    let mut seen = 0;
                    loop {
                        // Woken early (unpark) when the boot ends.
                        std::thread::park_timeout(SNAPSHOT_EVERY);
                        if boot_done.load(Ordering::Relaxed) {
                            break;
                        }
                        let mut so_far = earlier_boots.clone();
                        {
                            let g = shared.lock().unwrap_or_else(|e| e.into_inner());
                            if g.0 == seen {
                                continue;
                            }
                            seen = g.0;
                            so_far.push(g.1.clone());
                        }
                        let _ = write_results(dir, &assemble(base.clone(), &so_far, None, boots));
                    }
                })
            });
            let records_file = &mut records_file;
            let write_err = &mut write_err;
            let launched = &mut launched;
            let progress = &progress;
            let tag = &tag;
            let shared = &shared;
            let r = backend.boot(&spec, &mut |ev| {
                let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
                g.0 += 1;
                let data = &mut g.1;
                match ev {
                    Event::Launched => *launched = Instant::now(),
                    Event::Record(r) => {
                        if data.boot_ms.is_none() {
                            data.boot_ms = Some(launched.elapsed().as_secs_f64() * 1e3);
                        }
                        let mut line = serde_json::json!({
                            "boot": boot,
                            "ms": (launched.elapsed().as_secs_f64() * 1e3 * 1000.0).round() / 1000.0,
                            "record": &r,
                        });
                        if let Some(n) = &variant_name {
                            line["variant"] = serde_json::json!(n);
                        }
                        if write_err.is_none() {
                            let res = writeln!(records_file, "{line}").and_then(|_| records_file.flush());
                            if let Err(e) = res {
                                *write_err = Some(e);
                            }
                        }
                        if let Record::Bench(b) = &r {
                            progress.set_message(format!("{tag}boot {boot}/{boots}: {}", b.name));
                        }
                        data.push(r);
                    }
                    Event::BadRecord { line, error } => data.bad_records.push(format!("{error}: {line}")),
                }
            });
            boot_done.store(true, Ordering::Relaxed);
            if let Some(h) = &snapshotter {
                h.thread().unpark();
            }
            r
        })?;
        let data = shared.into_inner().unwrap_or_else(|e| e.into_inner()).1;
        if let Some(e) = write_err {
            note(
                quiet,
                format!("warning: could not write {}: {e}", records_path.display()),
            );
        }
        let v = verdict(&report.end, &data, timeout_s);
        for (k, v) in backend.extra() {
            base.env.extra.insert(k, v);
        }
        if !use_vmm && accel == AccelKind::Kvm && matches!(report.end, BootEnd::LaunchFailed { .. })
        {
            // A stale probe result must not stick: the next run probes again.
            qemu::forget_cpu_model(&probe_cache, &probe_key);
        }
        if !v.ok && !quiet && !args.verbose {
            progress.suspend(|| print_log_tail(&log_path, 15));
        }
        if !v.ok && named {
            note(
                quiet,
                format!(
                    "variant {}: {} (its remaining boots are skipped)",
                    run.label(),
                    v.info.message
                ),
            );
        }
        run.boots.push(data);
        let interrupted = v.status == status::INTERRUPTED;
        run.verdict = Some(v);
        if !report.stderr.trim().is_empty() {
            run.stderr.push_str(&report.stderr);
        }
        // Keep results.json current after every boot.
        write_results(&dir, &results_of(&base, &runs))?;
        if interrupted {
            break;
        }
    }
    progress.finish_and_clear();

    // The run's verdict: the first failing variant's, else a success.
    let verdict = runs
        .iter()
        .filter_map(|r| r.verdict.clone())
        .find(|v| !v.ok)
        .or_else(|| runs.iter().find_map(|r| r.verdict.clone()))
        .expect("at least one boot");
    let results = results_of(&base, &runs);
    let path = write_results(&dir, &results)?;

    // TLB sweeps: their report and plots (tlb-<pattern>.svg) come with the run.
    let has_tlb = crate::report::tlb::has_tlb(&results);
    let plots = if has_tlb {
        crate::report::plot::write_plots(&results, &dir).unwrap_or_else(|e| {
            note(quiet, format!("warning: plots not written: {e}"));
            vec![]
        })
    } else {
        vec![]
    };
    if !quiet {
        let mut out = std::io::stdout().lock();
        let _ = table::print(&results, &mut out);
        if has_tlb {
            let _ = crate::report::tlb::print_report(&results, &mut out);
            for f in &plots {
                let _ = writeln!(out, "plot: {}", f.display());
            }
        }
    }
    println!("results: {}", path.display());

    let reason = (!verdict.ok).then(|| {
        if results.benchmarks.is_empty() {
            verdict.info.message.clone()
        } else {
            format!("{} (partial results kept)", verdict.info.message)
        }
    });
    Ok(RunOutcome {
        results,
        dir,
        status: verdict.status,
        reason,
    })
}

fn with_qemu(mut r: RunResults, command: &[String], stderr: &str) -> RunResults {
    // The embedded VMM records its description and diagnostics under its own keys.
    let (cmd_key, err_key) = if r.env.backend == "kvm" {
        ("vmm_command", "vmm_stderr")
    } else {
        ("qemu_command", "qemu_stderr")
    };
    r.env
        .extra
        .insert(cmd_key.into(), serde_json::json!(command));
    if !stderr.trim().is_empty() {
        r.env
            .extra
            .insert(err_key.into(), serde_json::json!(stderr));
    }
    r
}

fn print_log_tail(path: &Path, lines: usize) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return;
    }
    let from = all.len().saturating_sub(lines);
    eprintln!("kmbench: last lines of {}:", path.display());
    for l in &all[from..] {
        eprintln!("  | {l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_mapping() {
        let mut d = BootData::default();
        // Clean exit without End record is not success.
        let v = verdict(
            &BootEnd::Exited {
                exit: GuestExit::Success,
                raw: 1,
            },
            &d,
            5,
        );
        assert!(!v.ok);
        assert_eq!(v.status, status::UNEXPECTED);
        d.end = Some(EndRecord {
            exit: GuestExit::Success,
            benchmarks: 0,
            selftests_failed: 0,
        });
        let v = verdict(
            &BootEnd::Exited {
                exit: GuestExit::Success,
                raw: 1,
            },
            &d,
            5,
        );
        assert!(v.ok);
        assert_eq!(v.status, status::SUCCESS);
        d.selftests.push(SelftestRecord {
            name: "buddy/merge".into(),
            passed: false,
            detail: "x".into(),
        });
        let v = verdict(
            &BootEnd::Exited {
                exit: GuestExit::Success,
                raw: 1,
            },
            &d,
            5,
        );
        assert_eq!(v.status, status::FAILURE);
        assert!(v.info.message.contains("buddy/merge"));

        let mut d = BootData::default();
        d.faults.push(FaultRecord {
            exit: GuestExit::Exception,
            message: "page fault".into(),
            vector: Some(14),
            error_code: Some(2),
            rip: Some(0x1234),
            cr2: Some(0xdead000),
            cpl: Some(0),
        });
        let v = verdict(
            &BootEnd::Exited {
                exit: GuestExit::Exception,
                raw: 7,
            },
            &d,
            5,
        );
        assert_eq!(v.status, status::EXCEPTION);
        assert_eq!(v.info.status, "exception");
        assert_eq!(v.info.code, Some(7));
        assert_eq!(v.info.message, "guest CPU exception: page fault");
        let v = verdict(
            &BootEnd::Exited {
                exit: GuestExit::Panic,
                raw: 5,
            },
            &BootData::default(),
            5,
        );
        assert_eq!((v.status, v.info.status.as_str()), (status::PANIC, "panic"));
        let v = verdict(
            &BootEnd::Exited {
                exit: GuestExit::MmMisuse,
                raw: 9,
            },
            &BootData::default(),
            5,
        );
        assert_eq!(
            (v.status, v.info.status.as_str()),
            (status::MM_MISUSE, "mm_misuse")
        );
        let v = verdict(&BootEnd::Timeout, &BootData::default(), 7);
        assert_eq!(
            (v.status, v.info.message.as_str()),
            (status::TIMEOUT, "guest timed out after 7s")
        );
        let v = verdict(&BootEnd::Interrupted, &BootData::default(), 7);
        assert_eq!(
            (v.status, v.info.status.as_str()),
            (status::INTERRUPTED, "interrupted")
        );
        let v = verdict(
            &BootEnd::LaunchFailed {
                message: "bad".into(),
            },
            &BootData::default(),
            7,
        );
        assert_eq!(
            (v.status, v.info.status.as_str()),
            (status::HARNESS, "launch_error")
        );
        // Every guest exit code maps to a distinct process status.
        let mut seen: Vec<u8> = GuestExit::ALL
            .iter()
            .map(|e| guest_exit_status(*e))
            .collect();
        seen.extend([
            status::HARNESS,
            status::TIMEOUT,
            status::UNEXPECTED,
            status::INTERRUPTED,
        ]);
        let n = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), n);
    }

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_764_072_000); // 2025-11-25T12:00:00Z
        assert_eq!(rfc3339(t), "2025-11-25T12:00:00Z");
        assert_eq!(
            run_id(t, Path::new("configs/faults/page fault.toml")),
            "20251125-120000-page_fault"
        );
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339(leap)[..10], "2000-02-29");
    }

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("results.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
