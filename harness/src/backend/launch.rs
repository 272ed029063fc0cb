//! One launch pipeline: [`RunningGuest::launch`] boots a guest on any [`Backend`] (QEMU or
//! the embedded VMM) on a thread of its own and returns at once with a running guest:
//!
//! * an event stream ([`RunningGuest::next_event`]): every [`Event`] (launched, records,
//!   undecodable lines) as it happens, then [`GuestEvent::Ended`] with the
//!   [`BootReport`] (how it ended and what that means, see [`BootEnd`]);
//! * a control channel for serving guests ([`RunningGuest::send`], COM2);
//! * [`RunningGuest::kill`] (stops the guest: the boot ends `Interrupted`) and
//!   [`RunningGuest::wait`] (the report and the backend back, for its `extra()` facts).
//!
//! Every boot goes through here: `kmbench run` and `kmbench ab` (via [`run_to_end`], with
//! the run's Ctrl-C flag), criterion sessions (the guest and its control channel held
//! open), and the integration tests. [`Backend::boot`] is what a backend implements; only
//! this module calls it.
use std::sync::atomic::{AtomicBool, Ordering};

/// How often [`run_to_end`] looks at the caller's interrupt flag while no event arrives.
const INTERRUPT_POLL: Duration = Duration::from_millis(20);
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{Backend, BootReport, ControlChannel, Event, LaunchSpec};
use crate::error::{HarnessError, Result};

/// What a running guest reports.
#[derive(Debug)]
pub enum GuestEvent {
    Event(Event),
    /// The boot is over (the last event). `Err`: the backend itself failed.
    Ended(Result<BootReport>),
}

/// A guest booting or running on its backend's thread.
pub struct RunningGuest {
    events: Receiver<GuestEvent>,
    control: Option<ControlChannel>,
    stop: &'static AtomicBool,
    thread: Option<JoinHandle<Box<dyn Backend + Send>>>,
    ended: bool,
    /// The backend's description of the launch (QEMU's command line, the VMM's summary).
    pub command: Vec<String>,
    pub backend_name: &'static str,
}

impl RunningGuest {
    /// Boot `spec` on `backend`. `spec.interrupt` is replaced by this guest's own stop
    /// flag ([`RunningGuest::kill`]); `spec.control` is kept (serve mode).
    pub fn launch(mut backend: Box<dyn Backend + Send>, mut spec: LaunchSpec) -> RunningGuest {
        // One flag per guest, for the guest's lifetime and the backend thread's: a few
        // bytes per launch, leaked so the backends' `&'static` interrupt contract holds.
        let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        spec.interrupt = stop;
        let command = backend.describe(&spec);
        let backend_name = backend.name();
        let control = spec.control.clone();
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let events = tx.clone();
            let report = backend.boot(&spec, &mut |ev| {
                let _ = events.send(GuestEvent::Event(ev));
            });
            let _ = tx.send(GuestEvent::Ended(report));
            backend
        });
        RunningGuest {
            events: rx,
            control,
            stop,
            thread: Some(thread),
            ended: false,
            command,
            backend_name,
        }
    }

    /// The next event, waiting up to `timeout`. `None` on timeout, or after `Ended` was
    /// returned.
    pub fn next_event(&mut self, timeout: Duration) -> Option<GuestEvent> {
        if self.ended {
            return None;
        }
        match self.events.recv_timeout(timeout) {
            Ok(ev) => {
                if matches!(ev, GuestEvent::Ended(_)) {
                    self.ended = true;
                }
                Some(ev)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                Some(GuestEvent::Ended(Err(HarnessError::BackendLost {
                    what: "a report",
                })))
            }
        }
    }

    /// Whether `Ended` has been returned.
    pub fn has_ended(&self) -> bool {
        self.ended
    }

    /// Send bytes on the control channel (serve mode).
    pub fn send(&self, bytes: &[u8]) -> Result<()> {
        match &self.control {
            Some(c) => {
                c.send(bytes);
                Ok(())
            }
            None => Err(HarnessError::Launch(
                "this guest has no control channel (not launched in serve mode)".into(),
            )),
        }
    }

    /// Stop the guest (its boot ends `Interrupted`).
    pub fn kill(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Wait for the backend thread; the backend comes back for its `extra()` facts.
    /// Events not yet read are dropped.
    pub fn wait(mut self) -> Option<Box<dyn Backend + Send>> {
        if let Some(c) = &self.control {
            c.close();
        }
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.kill();
            if let Some(c) = &self.control {
                c.close();
            }
            let _ = t.join();
        }
    }
}

/// Boot `spec` on `backend` to its end through [`RunningGuest::launch`], calling `on_event`
/// on this thread for every event as it arrives; the report and the backend (for its
/// `extra()` and `setup_ms()`) come back. `spec.interrupt` keeps its meaning: once the
/// caller's flag is set the guest is killed and the boot ends `Interrupted`.
pub fn run_to_end(
    backend: Box<dyn Backend + Send>,
    spec: LaunchSpec,
    mut on_event: impl FnMut(Event),
) -> Result<(BootReport, Box<dyn Backend + Send>)> {
    let outside = spec.interrupt;
    let mut guest = RunningGuest::launch(backend, spec);
    let report = loop {
        if outside.load(Ordering::SeqCst) {
            guest.kill();
        }
        match guest.next_event(INTERRUPT_POLL) {
            Some(GuestEvent::Event(ev)) => on_event(ev),
            Some(GuestEvent::Ended(r)) => break r,
            None => {}
        }
    };
    let backend = guest.wait().ok_or(HarnessError::BackendLost {
        what: "its backend",
    })?;
    Ok((report?, backend))
}
