//! Ctrl-C / SIGTERM during a run: a flag the backends poll, so an interrupted run stops
//! its guest and still writes what arrived (`complete = false`, exit status 130).
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT/SIGTERM while a run is in progress; backends watch it.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM set [`INTERRUPTED`] while this guard lives; dropping it restores the
/// default disposition.
pub struct SignalGuard;

impl SignalGuard {
    pub fn install() -> SignalGuard {
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
