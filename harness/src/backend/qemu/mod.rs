//! The QEMU backend: `qemu-system-x86_64` built with xshell's `cmd!`, spawned as a
//! `std::process::Command` in its own process group, records streamed from stdout.
//!
//! Channels: COM1 (0x3f8) → `-serial chardev:log` → the guest log file; debugcon (0xe9) →
//! `-chardev stdio` → our stdout pipe (records); `isa-debug-exit` (0xf4) → exit status.
//!
//! This file runs and watches the QEMU process (spawn, record stream, log echo, control
//! socket, vCPU thread sampling, kill); [`args`] builds its command line, [`status`] maps
//! how it ended to a [`BootEnd`], [`cpu_probe`] finds a `-cpu` model KVM accepts.
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
use kmbench_protocol::{CMDLINE_PLAN_KEY, PLAN_MAX};
use xshell::Shell;

mod args;
mod cpu_probe;
mod status;

pub use cpu_probe::{forget_cpu_model, probe_cpu_model, probe_key, KVM_CPU_CANDIDATES};
pub use status::classify;
use status::{kvm_internal_error_message, KVM_INTERNAL_ERROR};

use super::{Backend, BootEnd, BootReport, Event, LaunchSpec};
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

pub(super) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
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
