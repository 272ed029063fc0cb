//! The watchdog: on timeout or Ctrl-C, kick the vCPU threads out of `KVM_RUN`.
//!
//! vCPUs run on their own threads; the watchdog thread signals each one (a no-op
//! real-time signal handler installed without SA_RESTART), so `KVM_RUN` returns `EINTR`
//! and the run loop sees [`Watchdog::reason`]. The signal is re-sent every millisecond
//! until the loop notices, which closes the race with a signal landing just before
//! `KVM_RUN`.
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Once};
use std::thread;
use std::time::{Duration, Instant};

/// Why the watchdog stopped the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The boot ran past its deadline.
    Timeout,
    /// The run's interrupt flag (SIGINT/SIGTERM) was set.
    Interrupted,
}

impl StopReason {
    const NONE: u8 = 0;

    fn to_u8(self) -> u8 {
        match self {
            StopReason::Timeout => 1,
            StopReason::Interrupted => 2,
        }
    }

    fn from_u8(v: u8) -> Option<StopReason> {
        match v {
            1 => Some(StopReason::Timeout),
            2 => Some(StopReason::Interrupted),
            _ => None,
        }
    }
}

/// Signal used to kick a vCPU thread out of `KVM_RUN`.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

extern "C" fn noop_handler(_: libc::c_int) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a handler that does nothing is a valid
        // disposition; no SA_RESTART, so KVM_RUN returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = noop_handler as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// The calling thread, as a kick target (call on each vCPU thread before it runs).
pub fn this_thread() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() }
}

/// Kick `thread` out of `KVM_RUN` once (it must be alive: a vCPU thread of this boot).
pub fn kick(thread: libc::pthread_t) {
    install_kick_handler();
    // SAFETY: the caller guarantees `thread` has not exited; the signal's handler is a no-op.
    unsafe {
        libc::pthread_kill(thread, kick_signal());
    }
}

pub struct Watchdog {
    done: Arc<AtomicBool>,
    reason: Arc<AtomicU8>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Watch `deadline` and `interrupt`; kick `targets` (the vCPU threads) when either
    /// fires. The targets must stay alive until [`Watchdog::finish`] returns.
    pub fn start(
        deadline: Instant,
        interrupt: &'static AtomicBool,
        targets: Vec<libc::pthread_t>,
    ) -> Watchdog {
        install_kick_handler();
        let done = Arc::new(AtomicBool::new(false));
        let reason = Arc::new(AtomicU8::new(StopReason::NONE));
        let handle = {
            let done = done.clone();
            let reason = reason.clone();
            thread::spawn(move || loop {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                if reason.load(Ordering::SeqCst) == StopReason::NONE {
                    if interrupt.load(Ordering::SeqCst) {
                        reason.store(StopReason::Interrupted.to_u8(), Ordering::SeqCst);
                    } else if Instant::now() >= deadline {
                        reason.store(StopReason::Timeout.to_u8(), Ordering::SeqCst);
                    }
                }
                if reason.load(Ordering::SeqCst) != StopReason::NONE {
                    for t in &targets {
                        // SAFETY: every target is alive: Watchdog::finish joins this
                        // thread before the vCPU threads leave the boot.
                        unsafe {
                            libc::pthread_kill(*t, kick_signal());
                        }
                    }
                    thread::park_timeout(Duration::from_millis(1));
                } else {
                    let left = deadline.saturating_duration_since(Instant::now());
                    thread::park_timeout(left.min(Duration::from_millis(5)));
                }
            })
        };
        Watchdog {
            done,
            reason,
            handle: Some(handle),
        }
    }

    /// Why the guest must stop, once it must.
    pub fn reason(&self) -> Option<StopReason> {
        StopReason::from_u8(self.reason.load(Ordering::SeqCst))
    }

    /// Stop watching (joins the watchdog thread).
    pub fn finish(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip() {
        for r in [StopReason::Timeout, StopReason::Interrupted] {
            assert_eq!(StopReason::from_u8(r.to_u8()), Some(r));
        }
        assert_eq!(StopReason::from_u8(StopReason::NONE), None);
    }

    #[test]
    fn interrupt_flag_becomes_a_reason() {
        static FLAG: AtomicBool = AtomicBool::new(true);
        let far = Instant::now() + Duration::from_secs(3600);
        let mut w = Watchdog::start(far, &FLAG, vec![]);
        let t = Instant::now();
        while w.reason().is_none() && t.elapsed() < Duration::from_secs(30) {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(w.reason(), Some(StopReason::Interrupted));
        w.finish();
    }
}
