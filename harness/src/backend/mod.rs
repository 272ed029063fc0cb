//! VM backends: something that boots the kernel with a plan and streams its records.
//!
//! [`qemu::Qemu`] drives `qemu-system-x86_64`; an embedded KVM VMM can implement
//! [`Backend`] the same way: launch, call `on_event` for every record as it arrives,
//! enforce the timeout, watch the interrupt flag, and say how the guest ended.
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use kmbench_protocol::{GuestExit, Record};

use crate::config::{HostBacking, Machine};
use crate::error::Result;

pub mod control;
pub mod launch;
pub mod log_echo;
pub mod qemu;

pub use control::ControlChannel;
pub use launch::{run_to_end, GuestEvent, RunningGuest};
pub mod select;
pub mod vmm;

/// `kmbench run --backend`: who boots the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendChoice {
    /// The embedded VMM when KVM is the accelerator, /dev/kvm opens read-write and the
    /// machine is microvm; QEMU otherwise (TCG, q35).
    #[default]
    Auto,
    /// The embedded micro-VMM on /dev/kvm (no QEMU process).
    Kvm,
    /// `qemu-system-x86_64`.
    Qemu,
}

/// The accelerator actually used: a host fact, resolved in [`crate::host`].
pub use crate::host::AccelKind;

/// `start + timeout`, saturating: a huge timeout means "practically never", not a panic
/// ("overflow when adding duration to instant").
pub fn deadline_after(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout)
        .or_else(|| start.checked_add(Duration::from_secs(1 << 32)))
        .unwrap_or(start)
}

/// Everything a backend needs for one boot.
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    pub kernel: PathBuf,
    /// Full kernel command line (`kmbench=<GuestPlan JSON>`).
    pub cmdline: String,
    pub memory_mib: u64,
    /// CPUs of the VM (1 = the boot CPU only).
    pub vcpus: u32,
    /// Embedded VMM: pin vCPU thread i to host CPU i mod (online CPUs).
    pub pin_vcpus: bool,
    pub machine: Machine,
    pub accel: AccelKind,
    /// QEMU `-cpu` value.
    pub cpu_model: String,
    pub host_backing: HostBacking,
    /// Where the guest's human-readable log (COM1) goes.
    pub log_path: PathBuf,
    pub timeout: Duration,
    /// Echo the guest log live on stderr.
    pub verbose: bool,
    /// Set by the SIGINT handler: stop the guest and return [`BootEnd::Interrupted`].
    pub interrupt: &'static AtomicBool,
    /// Serve mode: the host → guest request channel on COM2 (None: no COM2).
    pub control: Option<ControlChannel>,
}

/// Something the backend observed while the guest ran.
#[derive(Debug)]
pub enum Event {
    /// The VM process/thread was started (boot time counts from here).
    Launched,
    /// A decoded record from the results channel.
    Record(Record),
    /// A line carried the record prefix but did not decode.
    BadRecord { line: String, error: String },
}

/// How one boot ended.
#[derive(Clone, Debug, PartialEq)]
pub enum BootEnd {
    /// The guest wrote an exit code to the exit port (`raw` = QEMU's process status
    /// `(code << 1) | 1`, or the guest's code itself under the embedded VMM).
    Exited {
        exit: GuestExit,
        raw: i32,
    },
    /// The VM never ran the guest (bad option, missing huge pages, …); `message` names the
    /// backend ("QEMU failed to start: …").
    LaunchFailed {
        message: String,
    },
    /// The VM ended some other way (crash, signal, unknown status).
    Unexpected {
        code: Option<i32>,
        signal: Option<i32>,
        message: String,
    },
    Timeout,
    Interrupted,
}

#[derive(Clone, Debug)]
pub struct BootReport {
    pub end: BootEnd,
    /// What the VM printed on its own stderr.
    pub stderr: String,
}

pub trait Backend {
    /// "qemu" or "kvm".
    fn name(&self) -> &'static str;
    /// The command line (or a description) that [`Backend::boot`] will run, for the record.
    fn describe(&self, spec: &LaunchSpec) -> Vec<String>;
    /// Boot once; call `on_event` for each event as it happens; return how it ended.
    /// Implemented by backends, called only by [`launch`] (the one launch path): callers
    /// use [`RunningGuest::launch`] or [`run_to_end`].
    fn boot(&mut self, spec: &LaunchSpec, on_event: &mut dyn FnMut(Event)) -> Result<BootReport>;
    /// Backend-specific facts about the last boot for `env.extra` (VMM exit counts, RSS, …).
    fn extra(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        std::collections::BTreeMap::new()
    }
    /// Host-side setup of the last boot, in ms: from launch until the guest's first
    /// instruction could run (the embedded VMM: VM creation until the vCPU starts). `None`
    /// when the backend cannot tell (QEMU: its setup is inside its process).
    fn setup_ms(&self) -> Option<f64> {
        None
    }
}
