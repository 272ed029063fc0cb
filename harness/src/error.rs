//! Typed errors of the `kmbench run` path. Every variant renders as one line a user can act on.
use std::path::PathBuf;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "qemu-system-x86_64 not found: install it (Debian/Ubuntu: apt-get install qemu-system-x86)"
    )]
    QemuNotFound,

    #[error("target x86_64-unknown-none is not installed and rustup is not available: run `rustup target add x86_64-unknown-none`")]
    NoRustup,

    #[error("`{command}` failed ({status})")]
    BuildFailed { command: String, status: String },

    #[error("kernel ELF not found at {}: build it with `cargo build --release -p kmbench-kernel --target x86_64-unknown-none` or drop --no-build", .0.display())]
    KernelMissing(PathBuf),

    #[error("KMBENCH_KERNEL={} does not exist", .0.display())]
    KernelOverrideMissing(PathBuf),

    #[error("--accel kvm requested but /dev/kvm cannot be opened read-write ({0}); use --accel tcg or fix /dev/kvm permissions")]
    KvmUnavailable(#[source] std::io::Error),

    #[error("hugetlbfs backing needs {need} free 2 MiB huge pages, host has {have}; reserve them as root: echo {need} > /proc/sys/vm/nr_hugepages")]
    HugePages { need: u64, have: u64 },

    #[error("no working QEMU CPU model under KVM (tried {tried}): last error: {last}")]
    NoCpuModel { tried: String, last: String },

    #[error("QEMU failed to start: {0}")]
    Launch(String),

    #[error("cannot find the kmbench workspace root (a Cargo.toml with [workspace]) above {}", .0.display())]
    NoWorkspace(PathBuf),

    #[error("{} is in use by another kmbench run{}: wait for it to finish or pass another --out", .dir.display(), .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    FolderBusy { dir: PathBuf, pid: Option<u32> },

    #[error("{flag} needs KVM (the embedded VMM cannot emulate): use --backend qemu for TCG")]
    VmmNeedsKvm { flag: &'static str },

    #[error("{flag} boots microvm-style only, not machine = \"{machine}\": use --backend qemu")]
    VmmNeedsMicrovm {
        flag: &'static str,
        machine: &'static str,
    },

    #[error("every variant was skipped (see above)")]
    AllVariantsSkipped,

    #[error("{flag} {value} is out of range: expected {expected}")]
    OutOfRange {
        flag: &'static str,
        value: u64,
        expected: String,
    },

    #[error("serialising {what}: {source}")]
    Serialise {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("{var}={value}: expected {expected}")]
    EnvVar {
        var: &'static str,
        value: String,
        expected: String,
    },

    #[error(transparent)]
    Session(#[from] SessionError),

    #[error("cannot create a shell: {0}")]
    Shell(#[source] xshell::Error),

    /// `run --filter` that is no glob, or selects no suite of the config.
    #[error("--filter {pattern:?}: {reason}")]
    Filter { pattern: String, reason: String },

    #[error("the run plan is {len} bytes; the guest accepts at most {max}")]
    PlanTooLarge { len: usize, max: usize },

    /// `records.jsonl` that cannot be replayed into `results.json` (`report --rebuild`).
    #[error("{}: {reason}", .path.display())]
    Journal { path: PathBuf, reason: String },

    /// The thread booting a guest ended without handing back its report or its backend.
    #[error("the backend thread ended without {what} (it panicked)")]
    BackendLost { what: &'static str },

    /// `kmbench ab`: a side's config has `[[variants]]` (each side is one setting).
    #[error("{}: configs with [[variants]] cannot be an ab side (each side is one setting)", .config.display())]
    AbSideHasVariants { config: PathBuf },

    /// `kmbench ab --{side}-features` with a prebuilt kernel ELF.
    #[error("{}: --{side}-features cannot apply to a prebuilt ELF ({})", .side, .elf.display())]
    AbFeaturesOnElf { side: &'static str, elf: PathBuf },

    /// A path handed to a tool that needs UTF-8 (git, cargo) is not UTF-8.
    #[error("{}: not UTF-8", .0.display())]
    NotUtf8Path(PathBuf),
}

impl HarnessError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Attach a context string to an `io::Result`.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, HarnessError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, HarnessError> {
        self.map_err(|e| HarnessError::io(context(), e))
    }
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// Why a session or one of its requests failed. Guest failures carry the backend's
/// stderr and the guest log's last lines as context.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("guest session is over: {why}")]
    Over { why: String },
    #[error("guest refused {op} (arg {arg}, iters {iters}): {reason}")]
    Refused {
        op: String,
        arg: u64,
        iters: u64,
        reason: String,
    },
    /// The guest faulted, ended, stopped answering or would not exit.
    #[error("{what}{context}")]
    Guest { what: String, context: String },
    /// Refused on the host before sending: an unknown op, or `arg` / `iters` outside
    /// the range of [`kmbench_protocol::request_limits`]. The session goes on.
    #[error("request not sent: {0}")]
    Invalid(kmbench_protocol::request_limits::RequestError),
}
