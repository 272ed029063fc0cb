//! The control channel of a serving guest (serve mode, `GuestPlan::serve`): host → guest
//! bytes on COM2 ([`ports::CONTROL`]), one JSON request a line.
//!
//! A [`ControlChannel`] is a shared byte queue: the host side [`send`](ControlChannel::send)s
//! request lines; a backend delivers them. The embedded VMM serves COM2 itself (RBR pops a
//! byte, LSR bit 0 says one is waiting); QEMU gets a COM2 `isa-serial` on a Unix socket
//! and a thread pumps the queue into it. Clones share the queue.
//!
//! [`ports::CONTROL`]: kmbench_protocol::ports::CONTROL
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Inner {
    bytes: VecDeque<u8>,
    closed: bool,
}

/// Host → guest bytes for COM2.
#[derive(Clone, Default)]
pub struct ControlChannel {
    inner: Arc<(Mutex<Inner>, Condvar)>,
}

impl std::fmt::Debug for ControlChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlChannel")
    }
}

impl ControlChannel {
    pub fn new() -> ControlChannel {
        ControlChannel::default()
    }

    /// Queue `bytes` for the guest.
    pub fn send(&self, bytes: &[u8]) {
        let (m, cv) = &*self.inner;
        m.lock()
            .unwrap_or_else(|e| e.into_inner())
            .bytes
            .extend(bytes);
        cv.notify_all();
    }

    /// No more bytes will be sent (a waiting [`ControlChannel::take_wait`] returns).
    pub fn close(&self) {
        let (m, cv) = &*self.inner;
        m.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        cv.notify_all();
    }

    /// A byte is waiting (COM2 LSR bit 0).
    pub fn has_data(&self) -> bool {
        !self
            .inner
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bytes
            .is_empty()
    }

    /// The next byte, if one is waiting (COM2 RBR).
    pub fn pop(&self) -> Option<u8> {
        self.inner
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bytes
            .pop_front()
    }

    /// Everything waiting, after up to `timeout` for something to arrive. `None` once the
    /// channel is closed and drained.
    pub fn take_wait(&self, timeout: Duration) -> Option<Vec<u8>> {
        let (m, cv) = &*self.inner;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        if g.bytes.is_empty() && !g.closed {
            g = cv
                .wait_timeout(g, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if g.bytes.is_empty() && g.closed {
            return None;
        }
        Some(g.bytes.drain(..).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_in_order_then_closed() {
        let c = ControlChannel::new();
        assert!(!c.has_data());
        c.send(b"ab");
        let d = c.clone();
        assert!(d.has_data());
        assert_eq!(d.pop(), Some(b'a'));
        assert_eq!(c.take_wait(Duration::from_millis(1)), Some(b"b".to_vec()));
        assert_eq!(c.take_wait(Duration::from_millis(1)), Some(vec![]));
        c.close();
        assert_eq!(c.take_wait(Duration::from_millis(1)), None);
    }
}
