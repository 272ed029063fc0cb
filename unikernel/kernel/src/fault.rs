//! Fatal paths: CPU exceptions, panics, mm misuse and config errors.
//!
//! Each ends the run the same way: a line on the log, a `fault` record on the results
//! channel and a distinct exit status. Nothing here allocates — the fault may have
//! happened inside the allocator — so the record is formatted into a stack buffer.
use crate::arch::idt::{exception_name, TrapFrame};
use crate::arch::{self, port};
use crate::console::LineBuf;
use core::fmt::{self, Write};
use kmbench_protocol::{ports, GuestExit, RECORD_PREFIX};

/// A guard page (or range) whose access means "stack overflow".
#[derive(Clone, Copy)]
struct Guard {
    start: u64,
    end: u64,
    name: &'static str,
}

const MAX_GUARDS: usize = 16;
static mut GUARDS: [Guard; MAX_GUARDS] = [Guard {
    start: 0,
    end: 0,
    name: "",
}; MAX_GUARDS];
static mut NR_GUARDS: usize = 0;

/// Register an unmapped guard range below a stack.
pub fn register_stack_guard(start: u64, end: u64, name: &'static str) {
    // SAFETY: single CPU, interrupts off; registration happens in mm init before any
    // fault handler can read the table concurrently.
    unsafe {
        if NR_GUARDS < MAX_GUARDS {
            GUARDS[NR_GUARDS] = Guard { start, end, name };
            NR_GUARDS += 1;
        }
    }
}

fn stack_guard_hit(addr: u64, slack: u64) -> Option<&'static str> {
    // SAFETY: read-only access to a table only written during init.
    let guards = unsafe { &*core::ptr::addr_of!(GUARDS) };
    let n = unsafe { NR_GUARDS };
    guards[..n]
        .iter()
        .find(|g| addr + slack >= g.start && addr < g.end + slack)
        .map(|g| g.name)
}

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
    let _ = write!(log, "\n[FATAL] {}: {}\n", exit.describe(), msg);
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
    let _ = rec.write_str("}\n");
    port::outsb(ports::RESULTS, rec.as_bytes());
    arch::exit(exit)
}

fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: exception handlers run at CPL0; reading CR2 has no side effects.
    unsafe {
        core::arch::asm!("mov {0}, cr2", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn fatal_exception(frame: &TrapFrame) -> ! {
    let vector = frame.vector;
    let cpl = (frame.cs & 3) as u8;
    let cr2 = if vector == 14 { Some(read_cr2()) } else { None };
    let info = FaultInfo {
        vector: Some(vector as u8),
        error_code: Some(frame.error_code),
        rip: Some(frame.rip),
        cr2,
        cpl: Some(cpl),
    };
    if let Some(addr) = cr2 {
        if let Some(stack) = stack_guard_hit(addr, 0) {
            die(GuestExit::StackOverflow,
                format_args!("kernel stack overflow: {stack} hit its guard page (page fault at 0x{addr:x}, RIP 0x{:x}, CPL{cpl})", frame.rip), info);
        }
    }
    if vector == 8 {
        if let Some(stack) = stack_guard_hit(frame.rsp, 4096) {
            die(GuestExit::StackOverflow,
                format_args!("kernel stack overflow: {stack} ran into its guard page (double fault, RSP 0x{:x}, RIP 0x{:x}, CPL{cpl})", frame.rsp, frame.rip), info);
        }
    }
    if vector == 3 {
        die(
            GuestExit::Exception,
            format_args!(
                "gate called with unknown operation {} at RIP 0x{:x} (CPL{cpl})",
                frame.rax, frame.rip
            ),
            info,
        );
    }
    match cr2 {
        Some(addr) if addr < 4096 => die(GuestExit::Exception,
            format_args!("NULL pointer dereference: page fault at 0x{addr:x}, RIP 0x{:x}, error 0x{:x}, CPL{cpl}", frame.rip, frame.error_code), info),
        Some(addr) => {
            let what = crate::mm::describe_address(addr);
            die(GuestExit::Exception,
                format_args!("CPU exception: page fault (#PF) at 0x{addr:x} ({what}), RIP 0x{:x}, error 0x{:x}, CPL{cpl}", frame.rip, frame.error_code), info)
        }
        None => die(GuestExit::Exception,
            format_args!("CPU exception: {} (vector {vector}), RIP 0x{:x}, error 0x{:x}, CPL{cpl}", exception_name(vector), frame.rip, frame.error_code), info),
    }
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
