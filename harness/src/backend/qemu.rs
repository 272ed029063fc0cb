//! The QEMU backend: `qemu-system-x86_64` built with xshell's `cmd!`, spawned as a
//! `std::process::Command` in its own process group, records streamed from stdout.
//!
//! Channels: COM1 (0x3f8) → `-serial chardev:log` → the guest log file; debugcon (0xe9) →
//! `-chardev stdio` → our stdout pipe (records); `isa-debug-exit` (0xf4) → exit status.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kmbench_protocol::channel::{Line, RecordReader};
use kmbench_protocol::{ports, GuestExit, CMDLINE_PLAN_KEY, PLAN_MAX};
use xshell::{cmd, Shell};

use super::{Backend, BootEnd, BootReport, Event, LaunchSpec};
use crate::config::{HostBacking, Machine};
use crate::error::{HarnessError, Result};

pub struct Qemu {
    pub binary: PathBuf,
    sh: Shell,
    /// Host CPUs each vCPU thread was seen on during the last boot (`vcpu_host_cpus`).
    last_vcpu_cpus: BTreeMap<String, std::collections::BTreeSet<u32>>,
}

/// QEMU's vCPU threads (named `CPU <n>/KVM` or `CPU <n>/TCG` with `debug-threads=on`) and
/// the host CPU each last ran on, added to `seen`.
fn sample_vcpu_threads(pid: u32, seen: &mut BTreeMap<String, std::collections::BTreeSet<u32>>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        let Some(n) = comm.strip_prefix("CPU ").and_then(|r| r.split('/').next()) else {
            continue;
        };
        if let Some(cpu) = crate::topology::last_cpu_of(pid, tid) {
            seen.entry(format!("vcpu{n}")).or_default().insert(cpu);
        }
    }
}

impl Qemu {
    pub fn new(binary: PathBuf) -> Result<Qemu> {
        let sh = Shell::new().map_err(HarnessError::Shell)?;
        Ok(Qemu {
            binary,
            sh,
            last_vcpu_cpus: BTreeMap::new(),
        })
    }

    /// `-M` value.
    fn machine_arg(spec: &LaunchSpec) -> String {
        let mut m = match spec.machine {
            Machine::Microvm => "microvm,x-option-roms=off,rtc=off".to_string(),
            Machine::Q35 => "q35".to_string(),
        };
        if spec.host_backing != HostBacking::Default {
            m.push_str(",memory-backend=mem");
        }
        m
    }

    /// `-object` for the host backing, if any.
    fn backing_args(spec: &LaunchSpec) -> Vec<String> {
        let size = format!("size={}M", spec.memory_mib);
        let obj = match spec.host_backing {
            HostBacking::Default => return vec![],
            // A shared-memory file: shmem THP is off by default, so 4 KiB host pages.
            HostBacking::Small => {
                format!("memory-backend-file,id=mem,{size},mem-path=/dev/shm,share=on,prealloc=off")
            }
            // Anonymous RAM: QEMU madvises it MADV_HUGEPAGE.
            HostBacking::Thp => format!("memory-backend-ram,id=mem,{size}"),
            HostBacking::Hugetlbfs => {
                format!("memory-backend-memfd,id=mem,{size},hugetlb=on,hugetlbsize=2M,prealloc=on")
            }
        };
        vec!["-object".into(), obj]
    }

    /// Serve mode: COM2 on a Unix socket QEMU connects to ([`control_socket`]).
    fn control_args(spec: &LaunchSpec) -> Vec<String> {
        if spec.control.is_none() {
            return vec![];
        }
        vec![
            "-chardev".into(),
            format!(
                "socket,id=ctl,path={}",
                crate::safe_fs::qemu_opt_value(&control_socket(spec).display().to_string())
            ),
            "-device".into(),
            format!("isa-serial,chardev=ctl,iobase={:#x},irq=3", ports::CONTROL),
        ]
    }

    fn command(&self, spec: &LaunchSpec) -> xshell::Cmd<'_> {
        let qemu = &self.binary;
        let machine = Self::machine_arg(spec);
        // Several vCPUs under TCG: one host thread per vCPU (MTTCG), not round-robin.
        let accel = match (spec.accel, spec.vcpus) {
            (super::AccelKind::Tcg, n) if n > 1 => "tcg,thread=multi".to_string(),
            (a, _) => a.label().to_string(),
        };
        let cpu = &spec.cpu_model;
        let mem = spec.memory_mib.to_string();
        let smp = spec.vcpus.to_string();
        // Named vCPU threads, so the host CPUs they ran on can be recorded.
        let names: Vec<&str> = if spec.vcpus > 1 {
            vec!["-name", "kmbench,debug-threads=on"]
        } else {
            vec![]
        };
        let kernel = &spec.kernel;
        // The plan travels as boot module 0 (`-initrd`, see [`write_plan_file`]), so its
        // size is not bounded by QEMU's 4 KiB command line.
        let (plan, cmdline): (Vec<String>, String) = match plan_file(spec) {
            Some(f) => (
                vec!["-initrd".into(), f.display().to_string()],
                kmbench_protocol::module_cmdline(&spec.cmdline[CMDLINE_PLAN_KEY.len()..]),
            ),
            None => (vec![], spec.cmdline.clone()),
        };
        let backing = Self::backing_args(spec);
        let exit_dev = format!("isa-debug-exit,iobase={:#x},iosize=0x04", ports::EXIT);
        let log = format!(
            "file,id=log,path={}",
            crate::safe_fs::qemu_opt_value(&spec.log_path.display().to_string())
        );
        let debugcon = format!("isa-debugcon,iobase={:#x},chardev=res", ports::RESULTS);
        let control = Self::control_args(spec);
        cmd!(
            self.sh,
            "{qemu} -M {machine} -accel {accel} -cpu {cpu} -m {mem} -smp {smp} {names...} {backing...}
             -nodefaults -no-user-config -display none -no-reboot
             -kernel {kernel} {plan...} -append {cmdline}
             -device {exit_dev}
             -chardev {log} -serial chardev:log
             -chardev stdio,id=res -device {debugcon} {control...}"
        )
        .quiet()
    }
}

/// Where the plan file of a `kmbench=<plan>` launch goes: beside the guest log
/// (`guest.log` → `guest.plan.json`).
pub fn plan_file(spec: &LaunchSpec) -> Option<std::path::PathBuf> {
    spec.cmdline
        .starts_with(CMDLINE_PLAN_KEY)
        .then(|| spec.log_path.with_extension("plan.json"))
}

/// Write the plan file [`plan_file`] names (without following symlinks); refuses a plan
/// larger than [`PLAN_MAX`], naming both sizes.
pub fn write_plan_file(spec: &LaunchSpec) -> Result<()> {
    let Some(path) = plan_file(spec) else {
        return Ok(());
    };
    let plan = &spec.cmdline[CMDLINE_PLAN_KEY.len()..];
    if plan.len() > PLAN_MAX {
        return Err(HarnessError::PlanTooLarge {
            len: plan.len(),
            max: PLAN_MAX,
        });
    }
    let mut f = crate::safe_fs::create_fresh(&path)
        .map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))?;
    std::io::Write::write_all(&mut f, plan.as_bytes())
        .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))
}

impl Backend for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn describe(&self, spec: &LaunchSpec) -> Vec<String> {
        let c: Command = self.command(spec).into();
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn boot(&mut self, spec: &LaunchSpec, on_event: &mut dyn FnMut(Event)) -> Result<BootReport> {
        crate::safe_fs::create_fresh(&spec.log_path)
            .map_err(|e| HarnessError::io(format!("creating {}", spec.log_path.display()), e))?;
        // Serve mode: listen before QEMU starts (it connects as a client at startup).
        let pump_stop = Arc::new(AtomicBool::new(false));
        let pump = match &spec.control {
            Some(ch) => Some(control_pump(
                &control_socket(spec),
                ch.clone(),
                pump_stop.clone(),
            )?),
            None => None,
        };
        write_plan_file(spec)?;
        let mut child = spawn(&mut self.command(spec).into(), &self.binary)?;
        let started = Instant::now();
        on_event(Event::Launched);
        self.last_vcpu_cpus.clear();
        let sample_threads = spec.vcpus > 1;
        let mut last_sample: Option<Instant> = None;

        // stdout → records over a channel.
        let (tx, rx) = mpsc::channel::<Line>();
        let stdout = child.stdout.take().expect("piped stdout");
        let out_thread = read_records(stdout, move |line| tx.send(line).is_ok());
        // stderr → collected (and echoed when verbose).
        let stderr_buf = Arc::new(Mutex::new(String::new()));
        let err_thread = {
            let stderr = child.stderr.take().expect("piped stderr");
            let buf = stderr_buf.clone();
            let verbose = spec.verbose;
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                    if verbose {
                        eprintln!("[qemu] {line}");
                    }
                    let mut b = buf.lock().unwrap();
                    b.push_str(&line);
                    b.push('\n');
                }
            })
        };
        // Guest log tail when verbose.
        let tail_stop = Arc::new(AtomicBool::new(false));
        let tail_thread = spec.verbose.then(|| {
            let stop = tail_stop.clone();
            let path = spec.log_path.clone();
            thread::spawn(move || tail_log(&path, &stop))
        });

        enum Stop {
            Exited(Option<i32>, Option<i32>),
            Timeout,
            Interrupted,
            /// QEMU hit a KVM internal error: it pauses the VM instead of exiting.
            VmFailed,
        }
        let mut records = 0usize;
        let mut stdout_open = true;
        let stop = loop {
            if spec.interrupt.load(Ordering::SeqCst) {
                kill(&mut child);
                break Stop::Interrupted;
            }
            let now = Instant::now();
            let deadline = super::deadline_after(started, spec.timeout);
            if now >= deadline {
                kill(&mut child);
                break Stop::Timeout;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            if sample_threads
                && last_sample.is_none_or(|t| t.elapsed() >= Duration::from_millis(20))
            {
                sample_vcpu_threads(child.id(), &mut self.last_vcpu_cpus);
                last_sample = Some(Instant::now());
            }
            if stderr_buf.lock().unwrap().contains(KVM_INTERNAL_ERROR) {
                // Let QEMU finish printing its register dump, then stop the paused VM.
                thread::sleep(Duration::from_millis(200));
                kill(&mut child);
                break Stop::VmFailed;
            }
            if stdout_open {
                match rx.recv_timeout(wait) {
                    Ok(line) => {
                        if matches!(line, Line::Record(_)) {
                            records += 1;
                        }
                        on_event(line_event(line));
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => stdout_open = false,
                }
            }
            match child.try_wait() {
                Ok(Some(status)) => break Stop::Exited(status.code(), status.signal()),
                Ok(None) => thread::sleep(wait.min(Duration::from_millis(10))),
                Err(e) => {
                    kill(&mut child);
                    return Err(HarnessError::io("waiting for QEMU", e));
                }
            }
        };
        let _ = out_thread.join();
        let _ = err_thread.join();
        pump_stop.store(true, Ordering::SeqCst);
        if let Some(p) = pump {
            let _ = p.join();
        }
        tail_stop.store(true, Ordering::SeqCst);
        if let Some(t) = tail_thread {
            let _ = t.join();
        }
        let stderr = stderr_buf.lock().unwrap().clone();
        let end = match stop {
            Stop::Exited(code, signal) => classify(code, signal, records, &stderr),
            Stop::Timeout => BootEnd::Timeout,
            Stop::Interrupted => BootEnd::Interrupted,
            Stop::VmFailed => BootEnd::Unexpected {
                code: None,
                signal: None,
                message: kvm_internal_error_message(&stderr),
            },
        };
        Ok(BootReport { end, stderr })
    }

    fn extra(&self) -> BTreeMap<String, serde_json::Value> {
        let mut m = BTreeMap::new();
        if !self.last_vcpu_cpus.is_empty() {
            m.insert(
                "vcpu_host_cpus".into(),
                serde_json::json!(self.last_vcpu_cpus),
            );
        }
        m
    }
}

/// Where QEMU's COM2 socket is for a serving guest: beside its log.
pub fn control_socket(spec: &LaunchSpec) -> PathBuf {
    spec.log_path.with_extension("ctl.sock")
}

/// Bind `sock` and pump `ch` into the connection QEMU makes, until `stop`.
fn control_pump(
    sock: &Path,
    ch: super::ControlChannel,
    stop: Arc<AtomicBool>,
) -> Result<thread::JoinHandle<()>> {
    let _ = std::fs::remove_file(sock);
    let listener = std::os::unix::net::UnixListener::bind(sock)
        .map_err(|e| HarnessError::io(format!("binding {}", sock.display()), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| HarnessError::io("control socket", e))?;
    let path = sock.to_path_buf();
    Ok(thread::spawn(move || {
        let mut conn = loop {
            if stop.load(Ordering::SeqCst) {
                let _ = std::fs::remove_file(&path);
                return;
            }
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        };
        let _ = conn.set_nonblocking(false);
        while !stop.load(Ordering::SeqCst) {
            match ch.take_wait(Duration::from_millis(50)) {
                Some(bytes) if !bytes.is_empty() => {
                    if conn.write_all(&bytes).and_then(|()| conn.flush()).is_err() {
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

/// Spawn QEMU with piped stdout and stderr, in its own process group: a terminal Ctrl-C
/// reaches only us; we stop QEMU ourselves.
pub(crate) fn spawn(command: &mut Command, binary: &Path) -> Result<Child> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and only affects the child:
    // QEMU is killed if the harness dies (even by SIGKILL), so no guest outlives a run.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                HarnessError::QemuNotFound
            } else {
                HarnessError::io(format!("spawning {}", binary.display()), e)
            }
        })
}

/// On a new thread, read the results channel from `stdout` through a
/// [`RecordReader`] (line and record caps, sanitized strings) and hand each record or
/// rejected line to `line` until EOF, a read error, or `line` returning false.
pub(crate) fn read_records(
    mut stdout: impl Read + Send + 'static,
    mut line: impl FnMut(Line) -> bool + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = RecordReader::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut open = true;
        while open {
            match stdout.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => reader.push(&chunk[..n], &mut |l| open &= line(l)),
            }
        }
        if open {
            reader.finish(&mut |l| {
                line(l);
            });
        }
    })
}

/// A results-channel line as a backend event.
pub(crate) fn line_event(l: Line) -> Event {
    match l {
        Line::Record(r) => Event::Record(r),
        Line::Rejected(r) => Event::BadRecord {
            line: r.head,
            error: r.reason.to_string(),
        },
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

const KVM_INTERNAL_ERROR: &str = "KVM internal error";

/// One line for a KVM internal error (usually an instruction KVM could not emulate: under
/// a software hypervisor everything at CPL0 is emulated), with the guest RIP and code.
fn kvm_internal_error_message(stderr: &str) -> String {
    let first = stderr
        .lines()
        .find(|l| l.contains(KVM_INTERNAL_ERROR))
        .unwrap_or(KVM_INTERNAL_ERROR);
    let rip = stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix("RIP="))
        .map(|r| format!(", guest RIP {r}"))
        .unwrap_or_default();
    let code = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Code="))
        .and_then(|c| c.split('<').nth(1))
        .and_then(|c| c.split('>').next())
        .map(|b| format!(", instruction starts with byte {b}"))
        .unwrap_or_default();
    format!(
        "{first} (KVM could not run or emulate a guest instruction; QEMU paused the VM){rip}{code}"
    )
}

fn first_error_line(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.trim_start_matches("qemu-system-x86_64: ").to_string())
        .unwrap_or_default()
}

fn launch_failed(stderr: &str) -> BootEnd {
    BootEnd::LaunchFailed {
        message: format!("QEMU failed to start: {}", first_error_line(stderr)),
    }
}

/// Map a QEMU process status to how the boot ended.
pub fn classify(code: Option<i32>, signal: Option<i32>, records: usize, stderr: &str) -> BootEnd {
    if let Some(c) = code {
        if let Some(exit) = GuestExit::from_qemu_status(c) {
            // QEMU's own startup errors also exit 1 (= guest code 0): no record means no guest.
            if !(records == 0 && c == 1 && !stderr.trim().is_empty()) {
                return BootEnd::Exited { exit, raw: c };
            }
            return launch_failed(stderr);
        }
        if records == 0 && !stderr.trim().is_empty() {
            return launch_failed(stderr);
        }
        let detail = first_error_line(stderr);
        return BootEnd::Unexpected {
            code: Some(c),
            signal: None,
            message: if detail.is_empty() {
                format!("QEMU exited with status {c}, which is not a guest exit code")
            } else {
                format!("QEMU exited with status {c}: {detail}")
            },
        };
    }
    let detail = first_error_line(stderr);
    let sig = signal.unwrap_or(0);
    if records == 0 && !detail.is_empty() {
        return launch_failed(stderr);
    }
    BootEnd::Unexpected {
        code: None,
        signal,
        message: if detail.is_empty() {
            format!("QEMU killed by signal {sig}")
        } else {
            format!("QEMU killed by signal {sig}: {detail}")
        },
    }
}

/// Follow a growing log file, echoing it on stderr, until `stop` (then drain).
fn tail_log(path: &Path, stop: &AtomicBool) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    let mut pos = 0u64;
    let mut buf = Vec::new();
    let mut echo = super::log_echo::LogEcho::stderr();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        buf.clear();
        if f.seek(SeekFrom::Start(pos)).is_ok() {
            if let Ok(n) = f.read_to_end(&mut buf) {
                pos += n as u64;
                echo.push(&buf);
            }
        }
        if stopping {
            echo.finish();
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// CPU model probing under KVM.

/// Models tried in order under KVM. `host` aborts on some hosts ("failed to set MSR 0x10a").
pub const KVM_CPU_CANDIDATES: [&str; 4] = [
    "host",
    "host,-arch-capabilities",
    "max",
    "max,-arch-capabilities",
];

/// Find a `-cpu` model KVM accepts, cached in `cache_file` keyed by QEMU version, host
/// kernel and host CPU. Returns (model, came_from_cache).
pub fn probe_cpu_model(
    qemu: &Path,
    machine: Machine,
    cache_file: &Path,
    key: &str,
    quiet: bool,
) -> Result<(String, bool)> {
    let mut cache: BTreeMap<String, String> = std::fs::read_to_string(cache_file)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    if let Some(m) = cache.get(key) {
        return Ok((m.clone(), true));
    }
    let mut last = String::new();
    for cpu in KVM_CPU_CANDIDATES {
        match try_cpu(qemu, machine, cpu) {
            Ok(()) => {
                cache.insert(key.to_string(), cpu.to_string());
                if let Some(dir) = cache_file.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = std::fs::write(
                    cache_file,
                    serde_json::to_string_pretty(&cache).unwrap_or_default(),
                );
                return Ok((cpu.to_string(), false));
            }
            Err(e) => {
                if !quiet {
                    eprintln!(
                        "kmbench: -cpu {cpu} does not start under KVM ({e}); trying the next model"
                    );
                }
                last = e;
            }
        }
    }
    Err(HarnessError::NoCpuModel {
        tried: KVM_CPU_CANDIDATES.join(", "),
        last,
    })
}

/// Drop a cached model (after QEMU refused to start with it).
pub fn forget_cpu_model(cache_file: &Path, key: &str) {
    let Ok(text) = std::fs::read_to_string(cache_file) else {
        return;
    };
    let Ok(mut cache) = serde_json::from_str::<BTreeMap<String, String>>(&text) else {
        return;
    };
    if cache.remove(key).is_some() {
        let _ = std::fs::write(
            cache_file,
            serde_json::to_string_pretty(&cache).unwrap_or_default(),
        );
    }
}

/// Start QEMU paused (`-S`) with `-cpu cpu`: a model KVM rejects aborts within milliseconds.
fn try_cpu(qemu: &Path, machine: Machine, cpu: &str) -> std::result::Result<(), String> {
    let sh = Shell::new().map_err(|e| e.to_string())?;
    let m = machine.label();
    let mut c: Command = cmd!(
        sh,
        "{qemu} -M {m} -accel kvm -cpu {cpu} -m 64 -nodefaults -no-user-config -display none -S"
    )
    .quiet()
    .into();
    c.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(700) {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            let line = first_error_line(&err);
            return Err(if line.is_empty() {
                format!("exited: {status}")
            } else {
                line
            });
        }
        thread::sleep(Duration::from_millis(10));
    }
    kill(&mut child);
    Ok(())
}

/// Everything that keys the CPU probe cache.
pub fn probe_key(
    qemu_version: &str,
    host_kernel: &str,
    host_cpu: &str,
    machine: Machine,
) -> String {
    format!(
        "{qemu_version} | {host_kernel} | {host_cpu} | {}",
        machine.label()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_mapping() {
        assert_eq!(
            classify(Some(1), None, 3, ""),
            BootEnd::Exited {
                exit: GuestExit::Success,
                raw: 1
            }
        );
        assert_eq!(
            classify(Some(5), None, 3, ""),
            BootEnd::Exited {
                exit: GuestExit::Panic,
                raw: 5
            }
        );
        assert_eq!(
            classify(Some(7), None, 1, ""),
            BootEnd::Exited {
                exit: GuestExit::Exception,
                raw: 7
            }
        );
        // QEMU startup failure: status 1, no records, an error on stderr.
        match classify(
            Some(1),
            None,
            0,
            "qemu-system-x86_64: -object memory-backend-memfd: failed\n",
        ) {
            BootEnd::LaunchFailed { message } => assert!(
                message.starts_with("QEMU failed to start: -object"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        // Abort (SIGABRT) before any record: launch failure with QEMU's message.
        match classify(
            None,
            Some(6),
            0,
            "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n",
        ) {
            BootEnd::LaunchFailed { message } => assert!(message.contains("MSR 0x10a")),
            other => panic!("{other:?}"),
        }
        // Even status: not a debug-exit code.
        assert!(matches!(
            classify(Some(0), None, 2, ""),
            BootEnd::Unexpected { code: Some(0), .. }
        ));
        assert!(matches!(
            classify(None, Some(9), 2, ""),
            BootEnd::Unexpected {
                signal: Some(9),
                ..
            }
        ));
        // Odd status with an unknown guest code.
        assert!(matches!(
            classify(Some(41), None, 2, ""),
            BootEnd::Unexpected { .. }
        ));
    }
}
