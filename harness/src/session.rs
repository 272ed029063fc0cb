//! A long-lived guest that answers measurement requests: the bridge between the kmbench
//! unikernel and host-side benchmark frameworks (criterion's `iter_custom`, see
//! `harness/benches/guest.rs` and `docs/criterion.md`).
//!
//! [`GuestSession::start`] builds the kernel, launches it with a serve-mode plan
//! ([`GuestPlan::serve`]) through the one launch pipeline ([`RunningGuest`]) — on the
//! embedded VMM when KVM is usable and the machine is microvm, on QEMU otherwise
//! (`KMBENCH_BACKEND` = auto|kvm|qemu overrides) — and waits until the guest says it is
//! ready. [`GuestSession::measure`] sends one [`Request`] (`op`, `arg`, `iters`) on the
//! control channel (COM2 at [`kmbench_protocol::ports::CONTROL`]) and waits for the [`Record::Measurement`]
//! with the same id on the results channel. The time returned is the guest's: TSC cycles
//! around all `iters` iterations, converted with the guest's TSC frequency; nothing on
//! the host side (channel, VMM, port exits) is inside it. Dropping the session sends
//! `quit` and stops the guest.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kmbench_protocol::{
    encode_request, EndRecord, FlushMode, GuestExit, GuestPlan, Hello, MeasurementRecord, PageSize,
    Record, Request, CMDLINE_PLAN_KEY,
};

use crate::backend::select::{self, Selection};
use crate::backend::{
    AccelKind, BackendChoice, BootEnd, ControlChannel, Event, GuestEvent, LaunchSpec, RunningGuest,
};
use crate::build;
use crate::config::{Accel, CplSetting, HostBacking, Machine};
pub use crate::error::SessionError;
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
    /// Who boots the guest: auto = the embedded VMM when KVM and microvm allow, else QEMU.
    pub backend: BackendChoice,
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
            backend: BackendChoice::Auto,
        }
    }
}

impl SessionOptions {
    /// Defaults, overridden by `KMBENCH_ACCEL` (auto|kvm|tcg), `KMBENCH_CPL` (auto|0|3),
    /// `KMBENCH_MEMORY_MIB`, `KMBENCH_MM_DEBUG` (1|true), `KMBENCH_NO_BUILD` (1|true) and
    /// `KMBENCH_BACKEND` (auto|kvm|qemu).
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
                    return Err(HarnessError::EnvVar {
                        var: "KMBENCH_ACCEL",
                        value: other.to_string(),
                        expected: "auto, kvm or tcg".into(),
                    })
                }
            };
        }
        if let Some(v) = var("KMBENCH_CPL") {
            o.cpl = CplSetting::parse(&v).map_err(|e| HarnessError::EnvVar {
                var: "KMBENCH_CPL",
                value: v.clone(),
                expected: e,
            })?;
        }
        if let Some(v) = var("KMBENCH_MEMORY_MIB") {
            o.memory_mib =
                v.trim()
                    .parse()
                    .ok()
                    .filter(|m| *m >= 64)
                    .ok_or_else(|| HarnessError::EnvVar {
                        var: "KMBENCH_MEMORY_MIB",
                        value: v.clone(),
                        expected: "a number of MiB ≥ 64".into(),
                    })?;
        }
        if let Some(v) = var("KMBENCH_MM_DEBUG") {
            o.mm_debug = truthy(&v);
        }
        if let Some(v) = var("KMBENCH_BACKEND") {
            o.backend = match v.trim() {
                "auto" => BackendChoice::Auto,
                "kvm" => BackendChoice::Kvm,
                "qemu" => BackendChoice::Qemu,
                other => {
                    return Err(HarnessError::EnvVar {
                        var: "KMBENCH_BACKEND",
                        value: other.to_string(),
                        expected: "auto, kvm or qemu".into(),
                    })
                }
            };
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
    /// The QEMU binary (`none (embedded VMM)` when the VMM boots the guest).
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    /// The guest's first record.
    pub hello: Hello,
    /// Cycles of an empty `tsc::start()/stop()` pair, subtracted once per request.
    pub timer_overhead: u64,
    /// The backend's command line or description (the control channel included).
    pub command: Vec<String>,
    /// "kvm" (the embedded VMM) or "qemu".
    pub backend: &'static str,
}

/// One serving guest. Not `Sync`: requests are sequential.
pub struct GuestSession {
    guest: Option<RunningGuest>,
    /// How the guest ended, once it has (its report's end and the backend's stderr).
    ended: Option<(Result<BootEnd, String>, String)>,
    dir: PathBuf,
    log_path: PathBuf,
    next_id: u64,
    request_timeout: Duration,
    info: SessionInfo,
    end: Option<EndRecord>,
    /// Set once the guest can no longer answer (fault, exit, timeout).
    dead: Option<String>,
}

static SESSION_SEQ: AtomicU64 = AtomicU64::new(0);

/// How a boot ended, in a few words.
fn describe_end(end: &BootEnd) -> String {
    match end {
        BootEnd::Exited { exit, .. } => format!("exit: {}", exit.describe()),
        BootEnd::LaunchFailed { message } => format!("launch failed: {message}"),
        BootEnd::Unexpected { message, .. } => message.clone(),
        BootEnd::Timeout => "timed out".into(),
        BootEnd::Interrupted => "killed".into(),
    }
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
        let sel = Selection::resolve(
            &select::Request {
                accel: opts.accel,
                cpl: opts.cpl,
                cpl_from: "session",
                backend: opts.backend,
                backend_flag: "KMBENCH_BACKEND=kvm",
                machine: opts.machine,
                root: &root,
            },
            &mut |m| note(m.to_string()),
        )?;
        let (accel, hv, cpl) = (sel.accel, sel.hv, sel.cpl);
        if opts.host_backing == HostBacking::Hugetlbfs {
            host::check_huge_pages(opts.memory_mib)?;
        }
        let kernel = build::kernel(&root, opts.no_build, opts.quiet, opts.verbose)?;
        let cpu_model = sel.cpu_model(opts.quiet)?;

        let mut plan = GuestPlan::new(cpl);
        plan.direct_map_page = opts.direct_map_page;
        plan.mm_debug = opts.mm_debug;
        plan.flush_mode = opts.flush_mode;
        plan.seed = opts.seed;
        plan.serve = true;
        let plan_json = serde_json::to_string(&plan).map_err(|source| HarnessError::Serialise {
            what: "plan",
            source,
        })?;

        // A fresh private folder (mode 0700, unique name): nothing planted in the shared
        // temp folder can stand in for the log or the control socket.
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

        let spec = LaunchSpec {
            kernel: kernel.clone(),
            cmdline: format!("{CMDLINE_PLAN_KEY}{plan_json}"),
            memory_mib: opts.memory_mib,
            vcpus: 1,
            pin_vcpus: false,
            machine: opts.machine,
            accel,
            cpu_model: cpu_model.clone(),
            host_backing: opts.host_backing,
            log_path: log_path.clone(),
            // The session keeps its own deadlines (boot, each request) and kills the guest.
            timeout: Duration::MAX,
            verbose: opts.verbose,
            // Replaced by the guest's own stop flag in `RunningGuest::launch`.
            interrupt: &NEVER,
            control: Some(ControlChannel::new()),
        };
        let backend = sel.backend()?;
        let guest = RunningGuest::launch(backend, spec);
        let started = Instant::now();

        let info = SessionInfo {
            accel,
            hypervisor: hv,
            cpl,
            cpu_model,
            qemu: if sel.use_vmm {
                PathBuf::from("none (embedded VMM)")
            } else {
                sel.qemu_bin.clone()
            },
            kernel,
            hello: placeholder_hello(),
            timer_overhead: 0,
            command: guest.command.clone(),
            backend: guest.backend_name,
        };
        let mut session = GuestSession {
            guest: Some(guest),
            ended: None,
            dir,
            log_path,
            next_id: 1,
            request_timeout: opts.request_timeout,
            info,
            end: None,
            dead: None,
        };
        let deadline = crate::backend::deadline_after(started, opts.boot_timeout);
        if let Err(e) = session.wait_ready(deadline) {
            // A cached CPU model QEMU now refuses: re-probe next time.
            if session.end.is_none() && session.info.hello.tsc_hz == 0 {
                sel.forget_cpu_model();
            }
            session.kill();
            // A launch failure is the backend's own message.
            if let Some((Ok(BootEnd::LaunchFailed { message }), _)) = &session.ended {
                return Err(HarnessError::Launch(message.clone()));
            }
            return Err(e);
        }
        Ok(session)
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

    /// Note how the guest ended (the last event of its stream).
    fn record_end(&mut self, report: Result<crate::backend::BootReport>) {
        self.ended = Some(match report {
            Ok(r) => (Ok(r.end), r.stderr),
            Err(e) => (Err(e.to_string()), String::new()),
        });
    }

    fn end_text(&self) -> String {
        match &self.ended {
            Some((Ok(end), _)) => describe_end(end),
            Some((Err(e), _)) => e.clone(),
            None => "still running".into(),
        }
    }

    /// The next record, or an error when the guest faulted, exited, or `deadline` passed.
    fn next_msg(&mut self, deadline: Instant) -> Result<Record> {
        if let Some(why) = &self.dead {
            return Err(SessionError::Over { why: why.clone() }.into());
        }
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Some(guest) = self.guest.as_mut() else {
                return Err(SessionError::Over {
                    why: "stopped".into(),
                }
                .into());
            };
            let ev = guest.next_event(wait);
            match ev {
                Some(GuestEvent::Event(Event::Record(Record::Fault(f)))) => {
                    let msg = format!("guest fault ({}): {}", f.exit.describe(), f.message);
                    self.kill_soon();
                    let err = self.guest_error(&msg);
                    self.dead = Some(msg);
                    return Err(err);
                }
                Some(GuestEvent::Event(Event::Record(Record::End(e)))) => {
                    self.end = Some(e.clone());
                    return Ok(Record::End(e));
                }
                Some(GuestEvent::Event(Event::Record(r))) => return Ok(r),
                Some(GuestEvent::Event(Event::BadRecord { line, error })) => {
                    eprintln!("kmbench session: undecodable record: {error}: {line}")
                }
                Some(GuestEvent::Event(Event::Launched)) => {}
                Some(GuestEvent::Ended(report)) => {
                    self.record_end(report);
                    let msg = format!("the guest ended ({})", self.end_text());
                    let err = self.guest_error(&msg);
                    self.dead = Some(msg);
                    return Err(err);
                }
                None => {
                    let msg = "the guest did not answer in time (killed)".to_string();
                    self.kill();
                    let err = self.guest_error(&msg);
                    self.dead = Some(msg);
                    return Err(err);
                }
            }
        }
    }

    /// Send one request and wait for its measurement. An `error` answer (unknown op, bad
    /// argument, out of memory) is an `Err`; the guest keeps serving after it.
    /// A request outside [`kmbench_protocol::request_limits`] is refused here with
    /// [`SessionError::Invalid`] and never sent.
    pub fn request(&mut self, op: &str, arg: u64, iters: u64) -> Result<MeasurementRecord> {
        kmbench_protocol::request_limits::check_request(op, arg, iters)
            .map_err(SessionError::Invalid)?;
        self.request_unchecked(op, arg, iters)
    }

    /// [`request`](Self::request) without the host's range check: what a client that
    /// is not this harness could send. For tests of the guest's own refusal.
    pub fn request_unchecked(
        &mut self,
        op: &str,
        arg: u64,
        iters: u64,
    ) -> Result<MeasurementRecord> {
        if let Some(why) = &self.dead {
            return Err(SessionError::Over { why: why.clone() }.into());
        }
        let id = self.next_id;
        self.next_id += 1;
        let line = encode_request(&Request {
            id,
            op: op.to_string(),
            arg,
            iters,
        });
        let guest = self.guest.as_ref().ok_or_else(|| SessionError::Over {
            why: "control channel closed".into(),
        })?;
        guest.send(line.as_bytes())?;
        let deadline = crate::backend::deadline_after(Instant::now(), self.request_timeout);
        loop {
            match self.next_msg(deadline)? {
                Record::Measurement(m) if m.id == id => {
                    return match m.error {
                        Some(e) => Err(SessionError::Refused {
                            op: op.to_string(),
                            arg,
                            iters,
                            reason: e,
                        }
                        .into()),
                        None => Ok(m),
                    };
                }
                Record::End(_) => {
                    self.wait_end(Duration::from_secs(5));
                    let msg = format!("the guest ended before answering ({})", self.end_text());
                    self.dead = Some(msg.clone());
                    return Err(self.guest_error(&msg));
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
        if self.guest.is_none() {
            return Err(SessionError::Over {
                why: "already stopped".into(),
            }
            .into());
        }
        if self.dead.is_none() {
            let line = encode_request(&Request {
                id: 0,
                op: "quit".into(),
                arg: 0,
                iters: 0,
            });
            if let Some(g) = &self.guest {
                let _ = g.send(line.as_bytes());
            }
            let deadline = crate::backend::deadline_after(Instant::now(), timeout);
            while self.end.is_none() {
                if self.next_msg(deadline).is_err() {
                    break;
                }
            }
        }
        self.wait_end(timeout);
        match &self.ended {
            Some((Ok(BootEnd::Exited { exit, .. }), _)) => {
                let exit = *exit;
                self.reap();
                Ok(exit)
            }
            Some(_) => {
                let msg = format!(
                    "the guest ended with {}, not a guest exit code",
                    self.end_text()
                );
                self.reap();
                Err(self.guest_error(&msg))
            }
            None => {
                self.kill();
                Err(self.guest_error("the guest did not exit after quit"))
            }
        }
    }

    /// Wait up to `timeout` for the guest's stream to end (records after `End` dropped).
    fn wait_end(&mut self, timeout: Duration) {
        let deadline = crate::backend::deadline_after(Instant::now(), timeout);
        while self.ended.is_none() {
            let Some(g) = self.guest.as_mut() else { return };
            let wait = deadline.saturating_duration_since(Instant::now());
            match g.next_event(wait) {
                Some(GuestEvent::Ended(r)) => self.record_end(r),
                Some(GuestEvent::Event(_)) => {}
                None => return,
            }
        }
    }

    /// A guest failure: `what` plus the backend's stderr and the guest log's last lines.
    fn guest_error(&self, what: &str) -> HarnessError {
        SessionError::Guest {
            what: what.to_string(),
            context: self.context(),
        }
        .into()
    }

    /// The backend's stderr and the guest log's last lines (each on lines of its own).
    fn context(&self) -> String {
        let mut s = String::new();
        if let Some((_, err)) = &self.ended {
            if !err.trim().is_empty() {
                s.push_str(&format!("\n{} stderr:\n", self.info.backend));
                s.push_str(err.trim_end());
            }
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
        self.wait_end(Duration::from_secs(2));
        self.kill();
    }

    /// Join the backend's thread once the guest has ended.
    fn reap(&mut self) {
        if let Some(g) = self.guest.take() {
            let _ = g.wait();
        }
    }

    fn kill(&mut self) {
        if let Some(g) = self.guest.as_ref() {
            g.kill();
        }
        self.wait_end(Duration::from_secs(10));
        self.reap();
    }
}

static NEVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Drop for GuestSession {
    fn drop(&mut self) {
        if self.guest.is_some() && self.ended.is_none() {
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
        tsc_ring0_done: None,
    }
}
