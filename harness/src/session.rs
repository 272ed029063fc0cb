//! A long-lived guest that answers measurement requests: the bridge between the kmbench
//! unikernel and host-side benchmark frameworks (criterion's `iter_custom`, see
//! `harness/benches/guest.rs` and `docs/criterion.md`).
//!
//! [`GuestSession::start`] builds the kernel, boots it under QEMU with a serve-mode plan
//! ([`GuestPlan::serve`]) and waits until the guest says it is ready.
//! [`GuestSession::measure`] sends one [`Request`] (`op`, `arg`, `iters`) on the control
//! channel (COM2 at [`ports::CONTROL`], a Unix socket on the host) and waits for the
//! [`Record::Measurement`] with the same id on the results channel (debugcon → QEMU's
//! stdout). The time returned is the guest's: TSC cycles around all `iters` iterations,
//! converted with the guest's TSC frequency; nothing on the host side (socket, QEMU,
//! port exits) is inside it. Dropping the session sends `quit` and stops QEMU.
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kmbench_protocol::{
    channel::Line, encode_request, ports, EndRecord, FlushMode, GuestExit, GuestPlan, Hello,
    MeasurementRecord, PageSize, Record, Request, CMDLINE_PLAN_KEY,
};

use crate::backend::qemu::{self, Qemu};
use crate::backend::{AccelKind, Backend, LaunchSpec};
use crate::build;
use crate::config::{Accel, CplSetting, HostBacking, Machine};
use crate::error::{HarnessError, Result};
use crate::host::{self, Hypervisor};

/// How to boot the serving guest. [`Default`] matches `kmbench run`'s defaults.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Auto: KVM when /dev/kvm opens read-write, else TCG (emulated numbers).
    pub accel: Accel,
    /// Auto: CPL3 under kvm_pvm (or an unidentified KVM), CPL0 on hardware KVM and TCG.
    pub cpl: CplSetting,
    pub machine: Machine,
    pub memory_mib: u64,
    pub host_backing: HostBacking,
    pub direct_map_page: PageSize,
    pub mm_debug: bool,
    pub flush_mode: FlushMode,
    pub seed: u64,
    /// Boot the existing kernel ELF (or `KMBENCH_KERNEL`) instead of building it.
    pub no_build: bool,
    /// No notes on stderr (fallbacks, CPU probing).
    pub quiet: bool,
    /// Echo QEMU's stderr as it arrives.
    pub verbose: bool,
    /// Boot until the guest reports ready.
    pub boot_timeout: Duration,
    /// One request, from sending it to its answer.
    pub request_timeout: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        let p = GuestPlan::new(0);
        SessionOptions {
            accel: Accel::Auto,
            cpl: CplSetting::Auto,
            machine: Machine::Microvm,
            memory_mib: 2048,
            host_backing: HostBacking::Default,
            direct_map_page: p.direct_map_page,
            mm_debug: p.mm_debug,
            flush_mode: p.flush_mode,
            seed: p.seed,
            no_build: false,
            quiet: false,
            verbose: false,
            boot_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(300),
        }
    }
}

impl SessionOptions {
    /// Defaults, overridden by `KMBENCH_ACCEL` (auto|kvm|tcg), `KMBENCH_CPL` (auto|0|3),
    /// `KMBENCH_MEMORY_MIB`, `KMBENCH_MM_DEBUG` (1|true) and `KMBENCH_NO_BUILD` (1|true).
    pub fn from_env() -> Result<SessionOptions> {
        let mut o = SessionOptions::default();
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let truthy = |v: &str| matches!(v.trim(), "1" | "true" | "yes");
        if let Some(v) = var("KMBENCH_ACCEL") {
            o.accel = match v.trim() {
                "auto" => Accel::Auto,
                "kvm" => Accel::Kvm,
                "tcg" => Accel::Tcg,
                other => {
                    return Err(HarnessError::Other(format!(
                        "KMBENCH_ACCEL={other}: expected auto, kvm or tcg"
                    )))
                }
            };
        }
        if let Some(v) = var("KMBENCH_CPL") {
            o.cpl = CplSetting::parse(&v)
                .map_err(|e| HarnessError::Other(format!("KMBENCH_CPL: {e}")))?;
        }
        if let Some(v) = var("KMBENCH_MEMORY_MIB") {
            o.memory_mib = v.trim().parse().ok().filter(|m| *m >= 64).ok_or_else(|| {
                HarnessError::Other(format!(
                    "KMBENCH_MEMORY_MIB={v}: expected a number of MiB ≥ 64"
                ))
            })?;
        }
        if let Some(v) = var("KMBENCH_MM_DEBUG") {
            o.mm_debug = truthy(&v);
        }
        if let Some(v) = var("KMBENCH_NO_BUILD") {
            o.no_build = truthy(&v);
        }
        Ok(o)
    }
}

/// What the session booted on.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub accel: AccelKind,
    pub hypervisor: Hypervisor,
    /// Privilege level the measured code runs at.
    pub cpl: u8,
    pub cpu_model: String,
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    /// The guest's first record.
    pub hello: Hello,
    /// Cycles of an empty `tsc::start()/stop()` pair, subtracted once per request.
    pub timer_overhead: u64,
    /// QEMU's command line (the control-channel options included).
    pub command: Vec<String>,
}

#[allow(clippy::large_enum_variant)] // one in flight at a time
enum Msg {
    Record(Record),
    Bad(String),
}

/// One serving guest. Not `Sync`: requests are sequential.
pub struct GuestSession {
    child: Option<Child>,
    ctl: Option<UnixStream>,
    rx: Receiver<Msg>,
    stderr: Arc<Mutex<String>>,
    dir: PathBuf,
    log_path: PathBuf,
    next_id: u64,
    request_timeout: Duration,
    info: SessionInfo,
    end: Option<EndRecord>,
    /// Set once the guest can no longer answer (fault, exit, timeout).
    dead: Option<String>,
}

static NEVER_INTERRUPTED: AtomicBool = AtomicBool::new(false);
static SESSION_SEQ: AtomicU64 = AtomicU64::new(0);

fn other(msg: impl Into<String>) -> HarnessError {
    HarnessError::Other(msg.into())
}

impl GuestSession {
    /// Build the kernel, boot it in serve mode and wait until it is ready for requests.
    pub fn start(opts: &SessionOptions) -> Result<GuestSession> {
        let note = |m: String| {
            if !opts.quiet {
                eprintln!("kmbench session: {m}");
            }
        };
        let root = build::workspace_root()?;
        let qemu_bin = host::find_qemu().ok_or(HarnessError::QemuNotFound)?;
        let cpuinfo = host::cpuinfo();
        let (accel, hv) = host::resolve_accel(opts.accel, &cpuinfo, &mut |m| note(m.to_string()))?;
        let (cpl, _) = host::resolve_cpl(opts.cpl, "session", hv);
        if let Some(w) = host::emulated_cpl0_warning(hv, cpl) {
            note(w.to_string());
        }
        if opts.host_backing == HostBacking::Hugetlbfs {
            let (free, size_kib) = host::huge_pages_free();
            let need = opts.memory_mib.div_ceil(2);
            if size_kib != 2048 || free < need {
                return Err(HarnessError::HugePages { need, have: free });
            }
        }
        let kernel = build::kernel(&root, opts.no_build, opts.quiet, opts.verbose)?;

        let (cpu_model, probe) = match accel {
            AccelKind::Tcg => ("max".to_string(), None),
            AccelKind::Kvm => {
                let cache = build::kernel_path(&root)
                    .ancestors()
                    .nth(3)
                    .map(|t| t.join("kmbench-cpu-probe.json"))
                    .unwrap_or_else(|| root.join("target/kmbench-cpu-probe.json"));
                let key = qemu::probe_key(
                    &host::qemu_version(&qemu_bin),
                    &host::host_kernel(),
                    &host::cpu_model_name(&cpuinfo),
                    opts.machine,
                );
                let model =
                    qemu::probe_cpu_model(&qemu_bin, opts.machine, &cache, &key, opts.quiet)?.0;
                (model, Some((cache, key)))
            }
        };

        let mut plan = GuestPlan::new(cpl);
        plan.direct_map_page = opts.direct_map_page;
        plan.mm_debug = opts.mm_debug;
        plan.flush_mode = opts.flush_mode;
        plan.seed = opts.seed;
        plan.serve = true;
        let plan_json =
            serde_json::to_string(&plan).map_err(|e| other(format!("serialising plan: {e}")))?;

        // A fresh private folder (mode 0700, unique name): nothing planted in the shared
        // temp folder can stand in for the log or the socket.
        let dir = tempfile::Builder::new()
            .prefix(&format!(
                "kmbench-session-{}-{}-",
                std::process::id(),
                SESSION_SEQ.fetch_add(1, Ordering::Relaxed)
            ))
            .tempdir()
            .map_err(|e| HarnessError::io("creating the session folder", e))?
            .keep();
        let log_path = dir.join("guest.log");
        crate::safe_fs::create_fresh(&log_path)
            .map_err(|e| HarnessError::io(format!("creating {}", log_path.display()), e))?;
        let sock = dir.join("ctl.sock");
        let listener = UnixListener::bind(&sock)
            .map_err(|e| HarnessError::io(format!("binding {}", sock.display()), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| HarnessError::io("control socket", e))?;

        let spec = LaunchSpec {
            kernel: kernel.clone(),
            cmdline: format!("{CMDLINE_PLAN_KEY}{plan_json}"),
            memory_mib: opts.memory_mib,
            machine: opts.machine,
            accel,
            cpu_model: cpu_model.clone(),
            host_backing: opts.host_backing,
            log_path: log_path.clone(),
            timeout: opts.boot_timeout,
            verbose: opts.verbose,
            interrupt: &NEVER_INTERRUPTED,
        };
        // The `kmbench run` command line plus the control channel: COM2, whose chardev
        // connects to our listening socket.
        let mut command = Qemu::new(qemu_bin.clone())?.describe(&spec);
        command.extend([
            "-chardev".to_string(),
            format!(
                "socket,id=ctl,path={}",
                crate::safe_fs::qemu_opt_value(&sock.display().to_string())
            ),
            "-device".to_string(),
            format!("isa-serial,chardev=ctl,iobase={:#x},irq=3", ports::CONTROL),
        ]);

        let mut child = qemu::spawn(Command::new(&command[0]).args(&command[1..]), &qemu_bin)?;
        let started = Instant::now();

        let (tx, rx) = mpsc::channel::<Msg>();
        let stdout = child.stdout.take().expect("piped stdout");
        qemu::read_records(stdout, move |line| {
            let msg = match line {
                Line::Record(rec) => Msg::Record(rec),
                Line::Rejected(r) => Msg::Bad(format!("{}: {}", r.reason, r.head)),
            };
            tx.send(msg).is_ok()
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let buf = stderr.clone();
            let mut err = child.stderr.take().expect("piped stderr");
            let verbose = opts.verbose;
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = err.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&chunk[..n]);
                    if verbose {
                        eprint!("{text}");
                    }
                    buf.lock().unwrap().push_str(&text);
                }
            });
        }

        let info = SessionInfo {
            accel,
            hypervisor: hv,
            cpl,
            cpu_model,
            qemu: qemu_bin,
            kernel,
            hello: placeholder_hello(),
            timer_overhead: 0,
            command,
        };
        let mut session = GuestSession {
            child: Some(child),
            ctl: None,
            rx,
            stderr,
            dir,
            log_path,
            next_id: 1,
            request_timeout: opts.request_timeout,
            info,
            end: None,
            dead: None,
        };
        let deadline = started + opts.boot_timeout;
        let result = session
            .connect(&listener, deadline)
            .and_then(|()| session.wait_ready(deadline));
        if let Err(e) = result {
            // A cached CPU model QEMU now refuses: re-probe next time.
            if let Some((cache, key)) = probe {
                if session.end.is_none() && session.info.hello.tsc_hz == 0 {
                    qemu::forget_cpu_model(&cache, &key);
                }
            }
            session.kill();
            return Err(e);
        }
        Ok(session)
    }

    /// Accept QEMU's connection to the control socket.
    fn connect(&mut self, listener: &UnixListener, deadline: Instant) -> Result<()> {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream
                        .set_nonblocking(false)
                        .map_err(|e| HarnessError::io("control socket", e))?;
                    self.ctl = Some(stream);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(HarnessError::io("accepting QEMU's control connection", e)),
            }
            if let Some(msg) = self.exited_message() {
                return Err(HarnessError::Launch(msg));
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Launch(
                    "QEMU did not connect to the control socket".into(),
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait for `hello` and the `serve/ready` info record.
    fn wait_ready(&mut self, deadline: Instant) -> Result<()> {
        loop {
            match self.next_msg(deadline)? {
                Record::Hello(h) => self.info.hello = h,
                Record::Info(i) if i.key == "serve/ready" => {
                    self.info.timer_overhead = i
                        .value
                        .get("timer_overhead")
                        .and_then(|v| v.as_f64())
                        .map_or(0, |c| c.round() as u64);
                    return Ok(());
                }
                _ => {}
            }
        }
    }

    /// The next record, or an error when the guest faulted, exited, or `deadline` passed.
    fn next_msg(&mut self, deadline: Instant) -> Result<Record> {
        if let Some(why) = &self.dead {
            return Err(other(format!("guest session is over: {why}")));
        }
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Record(Record::Fault(f))) => {
                    let msg = format!("guest fault ({}): {}", f.exit.describe(), f.message);
                    let full = self.with_context(&msg);
                    self.dead = Some(msg);
                    self.kill_soon();
                    return Err(other(full));
                }
                Ok(Msg::Record(Record::End(e))) => {
                    self.end = Some(e.clone());
                    return Ok(Record::End(e));
                }
                Ok(Msg::Record(r)) => return Ok(r),
                Ok(Msg::Bad(line)) => eprintln!("kmbench session: undecodable record: {line}"),
                Err(RecvTimeoutError::Timeout) => {
                    let msg = "the guest did not answer in time (killed)".to_string();
                    let full = self.with_context(&msg);
                    self.dead = Some(msg);
                    self.kill();
                    return Err(other(full));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(Duration::from_secs(5));
                    let msg = format!("the guest ended ({status})");
                    let full = self.with_context(&msg);
                    self.dead = Some(msg);
                    return Err(other(full));
                }
            }
        }
    }

    /// Send one request and wait for its measurement. An `error` answer (unknown op, bad
    /// argument, out of memory) is an `Err`; the guest keeps serving after it.
    pub fn request(&mut self, op: &str, arg: u64, iters: u64) -> Result<MeasurementRecord> {
        if let Some(why) = &self.dead {
            return Err(other(format!("guest session is over: {why}")));
        }
        let id = self.next_id;
        self.next_id += 1;
        let line = encode_request(&Request {
            id,
            op: op.to_string(),
            arg,
            iters,
        });
        let ctl = self
            .ctl
            .as_mut()
            .ok_or_else(|| other("control channel closed"))?;
        if let Err(e) = ctl.write_all(line.as_bytes()).and_then(|()| ctl.flush()) {
            let msg = format!("writing to the control channel: {e}");
            self.dead = Some(msg.clone());
            return Err(other(self.with_context(&msg)));
        }
        let deadline = crate::backend::deadline_after(Instant::now(), self.request_timeout);
        loop {
            match self.next_msg(deadline)? {
                Record::Measurement(m) if m.id == id => {
                    return match m.error {
                        Some(e) => Err(other(format!(
                            "guest refused {op} (arg {arg}, iters {iters}): {e}"
                        ))),
                        None => Ok(m),
                    };
                }
                Record::End(_) => {
                    let status = self.wait_exit(Duration::from_secs(5));
                    let msg = format!("the guest ended before answering ({status})");
                    self.dead = Some(msg.clone());
                    return Err(other(self.with_context(&msg)));
                }
                _ => {}
            }
        }
    }

    /// Guest time for `iters` iterations of `op` (TSC, converted with the guest's TSC
    /// frequency): what criterion's `iter_custom` wants.
    pub fn measure(&mut self, op: &str, arg: u64, iters: u64) -> Result<Duration> {
        let m = self.request(op, arg, iters)?;
        Ok(Duration::from_nanos(m.ns.max(0.0).round() as u64))
    }

    /// What this session booted on.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The guest's human-readable log (COM1); removed when the session drops.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Send `quit` and wait for the guest's `End` record and exit. Returns how it exited.
    pub fn quit(mut self) -> Result<GuestExit> {
        self.shutdown(Duration::from_secs(30))
    }

    fn shutdown(&mut self, timeout: Duration) -> Result<GuestExit> {
        if self.child.is_none() {
            return Err(other("guest already stopped"));
        }
        if self.dead.is_none() {
            if let Some(ctl) = self.ctl.as_mut() {
                let line = encode_request(&Request {
                    id: 0,
                    op: "quit".into(),
                    arg: 0,
                    iters: 0,
                });
                let _ = ctl.write_all(line.as_bytes()).and_then(|()| ctl.flush());
            }
            let deadline = crate::backend::deadline_after(Instant::now(), timeout);
            while self.end.is_none() {
                match self.next_msg(deadline) {
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        let child = self.child.as_mut().expect("checked above");
        let deadline = crate::backend::deadline_after(Instant::now(), timeout);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => break None,
            }
        };
        self.ctl = None;
        match status {
            Some(s) => {
                self.child = None;
                match s.code().and_then(GuestExit::from_qemu_status) {
                    Some(exit) => Ok(exit),
                    None => Err(other(self.with_context(&format!(
                        "QEMU ended with {s}, not a guest exit code"
                    )))),
                }
            }
            None => {
                self.kill();
                Err(other(
                    self.with_context("the guest did not exit after quit"),
                ))
            }
        }
    }

    fn exited_message(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(s)) => {
                thread::sleep(Duration::from_millis(20)); // let the stderr thread catch up
                let err = self.stderr.lock().unwrap().clone();
                let first = err
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("")
                    .trim_start_matches("qemu-system-x86_64: ")
                    .to_string();
                Some(if first.is_empty() {
                    format!("QEMU exited ({s})")
                } else {
                    first
                })
            }
            _ => None,
        }
    }

    /// Wait for QEMU to exit; describe its status.
    fn wait_exit(&mut self, timeout: Duration) -> String {
        let Some(child) = self.child.as_mut() else {
            return "already stopped".into();
        };
        let deadline = crate::backend::deadline_after(Instant::now(), timeout);
        loop {
            match child.try_wait() {
                Ok(Some(s)) => {
                    self.child = None;
                    return match (
                        s.code().and_then(GuestExit::from_qemu_status),
                        s.code(),
                        s.signal(),
                    ) {
                        (Some(e), _, _) => format!("exit: {}", e.describe()),
                        (None, Some(c), _) => format!("QEMU status {c}"),
                        (None, None, Some(sig)) => format!("QEMU killed by signal {sig}"),
                        _ => s.to_string(),
                    };
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => {
                    self.kill();
                    return "killed: did not exit".into();
                }
            }
        }
    }

    /// `msg` plus QEMU's stderr and the guest log's last lines.
    fn with_context(&self, msg: &str) -> String {
        let mut s = msg.to_string();
        let err = self.stderr.lock().unwrap().clone();
        if !err.trim().is_empty() {
            s.push_str("\nQEMU stderr:\n");
            s.push_str(err.trim_end());
        }
        if let Ok(log) = std::fs::read_to_string(&self.log_path) {
            let lines: Vec<&str> = log.lines().collect();
            if !lines.is_empty() {
                s.push_str("\nguest log (last lines):\n");
                s.push_str(&lines[lines.len().saturating_sub(15)..].join("\n"));
            }
        }
        s
    }

    /// Give a faulting guest a moment to exit on its own, then kill it.
    fn kill_soon(&mut self) {
        let _ = self.wait_exit(Duration::from_secs(2));
    }

    fn kill(&mut self) {
        self.ctl = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for GuestSession {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.shutdown(Duration::from_secs(5));
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn placeholder_hello() -> Hello {
    Hello {
        protocol: 0,
        kernel: String::new(),
        cpl: 0,
        guest_hypervisor: String::new(),
        cpu_vendor: String::new(),
        cpu_brand: String::new(),
        tsc_hz: 0,
        tsc_source: String::new(),
        invariant_tsc: false,
        mem_bytes: 0,
        features: Default::default(),
        tsc_at_entry: 0,
        tsc_at_hello: 0,
    }
}
