//! Ctrl-C / SIGTERM during a run: a flag the backends poll, so an interrupted run stops
//! its guest and still writes what arrived (`complete = false`, exit status 130).
//!
//! The handlers are signal-hook's, registered once per process. Outside a
//! [`SignalGuard`] they act as the default disposition (the process is terminated by the
//! signal), as before a run started.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::low_level;

/// Set by SIGINT/SIGTERM while a run is in progress; backends watch it.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// A [`SignalGuard`] is alive: signals set [`INTERRUPTED`] instead of terminating.
static GUARDED: AtomicBool = AtomicBool::new(false);

static REGISTERED: OnceLock<()> = OnceLock::new();

fn on_signal(sig: libc::c_int) {
    if GUARDED.load(Ordering::SeqCst) {
        INTERRUPTED.store(true, Ordering::SeqCst);
    } else {
        // Restores the default disposition and re-raises: terminated by the signal.
        let _ = low_level::emulate_default_handler(sig);
    }
}

/// SIGINT/SIGTERM set [`INTERRUPTED`] while this guard lives; dropping it restores the
/// default behaviour (termination by the signal).
pub struct SignalGuard;

impl SignalGuard {
    pub fn install() -> SignalGuard {
        INTERRUPTED.store(false, Ordering::SeqCst);
        GUARDED.store(true, Ordering::SeqCst);
        REGISTERED.get_or_init(|| {
            for sig in [SIGINT, SIGTERM] {
                // SAFETY: the action only loads and stores atomics and calls
                // signal-hook's emulate_default_handler, all async-signal-safe; it
                // allocates nothing and takes no lock.
                let r = unsafe { low_level::register(sig, move || on_signal(sig)) };
                if let Err(e) = r {
                    eprintln!("kmbench: cannot handle signal {sig}: {e}");
                }
            }
        });
        SignalGuard
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        GUARDED.store(false, Ordering::SeqCst);
    }
}
