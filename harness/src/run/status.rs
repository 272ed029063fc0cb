//! Process exit statuses of `kmbench run` (the table in `kmbench run --help`), and the
//! status each guest exit code maps to.
use kmbench_protocol::GuestExit;

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

/// The process status for a guest that exited with `e`.
pub fn guest_exit_status(e: GuestExit) -> u8 {
    match e {
        GuestExit::Success => SUCCESS,
        GuestExit::Failure => FAILURE,
        GuestExit::Panic => PANIC,
        GuestExit::Exception => EXCEPTION,
        GuestExit::MmMisuse => MM_MISUSE,
        GuestExit::StackOverflow => STACK_OVERFLOW,
        GuestExit::ConfigError => GUEST_CONFIG,
    }
}

/// The serialised name of a guest exit (`"mm_misuse"`), for `results.json` `exit.status`.
pub fn guest_exit_name(e: GuestExit) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{e:?}"))
}
