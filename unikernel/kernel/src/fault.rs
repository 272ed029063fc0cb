//! Fatal paths: the one way a run ends badly ([`die`]), used by CPU exceptions (see
//! `exception`), panics (the panic handler is here), mm misuse and config errors.
//!
//! Each ends the run the same way: a line on the log, a `fault` record on the results
//! channel and a distinct exit status. Nothing here allocates — the fault may have
//! happened inside the allocator — so the record is formatted into a stack buffer.
use crate::arch::{self, port};
use crate::console::LineBuf;
use core::fmt::{self, Write};
use kmbench_protocol::{ports, GuestExit, RECORD_PREFIX};

/// JSON string escaping for the hand-formatted record.
struct Escaped<'a>(&'a str);
impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Fault details beyond the message.
#[derive(Default)]
pub struct FaultInfo {
    pub vector: Option<u8>,
    pub error_code: Option<u64>,
    pub rip: Option<u64>,
    pub cr2: Option<u64>,
    pub cpl: Option<u8>,
}

fn exit_name(e: GuestExit) -> &'static str {
    match e {
        GuestExit::Success => "success",
        GuestExit::Failure => "failure",
        GuestExit::Panic => "panic",
        GuestExit::Exception => "exception",
        GuestExit::MmMisuse => "mm_misuse",
        GuestExit::StackOverflow => "stack_overflow",
        GuestExit::ConfigError => "config_error",
    }
}

/// Report and exit. `message` is one line a user can act on.
pub fn die(exit: GuestExit, message: fmt::Arguments, info: FaultInfo) -> ! {
    let mut msg = LineBuf::new();
    let _ = msg.write_fmt(message);
    let msg = core::str::from_utf8(msg.as_bytes()).unwrap_or("(unprintable message)");

    let mut log = LineBuf::new();
    if crate::arch::smp::smp_active() {
        let cpu = crate::arch::smp::current_cpu();
        let _ = write!(log, "\n[FATAL] CPU {cpu}: {}: {}\n", exit.describe(), msg);
    } else {
        let _ = write!(log, "\n[FATAL] {}: {}\n", exit.describe(), msg);
    }
    port::outsb(ports::SERIAL_LOG, log.as_bytes());

    let mut rec = LineBuf::new();
    let _ = write!(
        rec,
        "{RECORD_PREFIX}{{\"type\":\"fault\",\"exit\":\"{}\",\"message\":\"{}\"",
        exit_name(exit),
        Escaped(msg)
    );
    if let Some(v) = info.vector {
        let _ = write!(rec, ",\"vector\":{v}");
    }
    if let Some(v) = info.error_code {
        let _ = write!(rec, ",\"error_code\":{v}");
    }
    if let Some(v) = info.rip {
        let _ = write!(rec, ",\"rip\":{v}");
    }
    if let Some(v) = info.cr2 {
        let _ = write!(rec, ",\"cr2\":{v}");
    }
    if let Some(v) = info.cpl {
        let _ = write!(rec, ",\"cpl\":{v}");
    }
    if crate::arch::smp::smp_active() {
        let _ = write!(rec, ",\"cpu\":{}", crate::arch::smp::current_cpu());
    }
    let _ = rec.write_str("}\n");
    // One fault record at a time (several CPUs may fail at once); a CPU that faulted while
    // holding the lock itself still gets its record out after a bounded wait.
    let _guard = crate::report::lock_channel_bounded();
    port::outsb(ports::RESULTS, rec.as_bytes());
    arch::exit(exit)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let (file, line) = info
        .location()
        .map(|l| (l.file(), l.line()))
        .unwrap_or(("?", 0));
    die(
        GuestExit::Panic,
        format_args!("kernel panic at {file}:{line}: {}", info.message()),
        FaultInfo {
            cpl: Some(arch::privileged::current_cpl()),
            ..Default::default()
        },
    )
}
