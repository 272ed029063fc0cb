//! Human-readable log on COM1, as a `log` crate backend.
//!
//! Each line is formatted into a stack buffer and sent with one `rep outsb`, so a log
//! line costs one exit to the VMM, not one per byte. No log output happens inside timed
//! regions.
use crate::arch::port;
use core::fmt::{self, Write};
use kmbench_protocol::ports;

/// A fixed-size line buffer; overlong lines are truncated.
pub struct LineBuf {
    buf: [u8; 512],
    len: usize,
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuf {
    pub const fn new() -> Self {
        LineBuf {
            buf: [0; 512],
            len: 0,
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Write raw text to the serial log.
pub fn write_raw(s: &str) {
    port::outsb(ports::SERIAL_LOG, s.as_bytes());
}

struct SerialLogger;

impl log::Log for SerialLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let mut line = LineBuf::new();
        let _ = writeln!(line, "[{:5}] {}", record.level(), record.args());
        port::outsb(ports::SERIAL_LOG, line.as_bytes());
    }
    fn flush(&self) {}
}

static LOGGER: SerialLogger = SerialLogger;

pub fn init() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}
