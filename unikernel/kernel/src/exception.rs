//! Classifying a fatal CPU exception: stack overflow (a registered guard page), NULL
//! dereference, a page fault elsewhere (named by the area it hit), a bad gate operation,
//! or any other exception; then [`fault::die`] with the matching exit status.
//!
//! It reads only what it needs without aliasing mm: the stack-guard registry
//! (`mm::stacks::guard_hit`) and `mm::describe_address`, which peeks at vmalloc only when
//! mm is not borrowed by the code that faulted.
use crate::arch::idt::{exception_name, TrapFrame};
use crate::arch::privileged;
use crate::fault::{die, FaultInfo};
use crate::mm;
use kmbench_protocol::GuestExit;

/// Report the exception described by `frame` and end the run.
pub fn fatal_exception(frame: &TrapFrame) -> ! {
    let vector = frame.vector;
    let cpl = (frame.cs & 3) as u8;
    let cr2 = if vector == 14 {
        Some(privileged::read_cr2())
    } else {
        None
    };
    let info = FaultInfo {
        vector: Some(vector as u8),
        error_code: Some(frame.error_code),
        rip: Some(frame.rip),
        cr2,
        cpl: Some(cpl),
    };
    let on_ap = crate::arch::smp::current_cpu() != 0;
    if let Some(addr) = cr2 {
        if let Some(stack) = mm::stacks::guard_hit(addr, 0) {
            die(GuestExit::StackOverflow,
                format_args!("kernel stack overflow: {stack} hit its guard page (page fault at 0x{addr:x}, RIP 0x{:x}, CPL{cpl})", frame.rip), info);
        }
    }
    if let Some(addr) = cr2.filter(|_| on_ap) {
        let cpu = crate::arch::smp::current_cpu();
        die(
            GuestExit::Exception,
            format_args!(
                "page fault (#PF) on CPU {cpu} at 0x{addr:x}, RIP 0x{:x}, error 0x{:x}, CPL{cpl}",
                frame.rip, frame.error_code
            ),
            info,
        );
    }
    if vector == 8 {
        if let Some(stack) = mm::stacks::guard_hit(frame.rsp, 4096) {
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
            let what = mm::describe_address(addr);
            die(GuestExit::Exception,
                format_args!("CPU exception: page fault (#PF) at 0x{addr:x} ({what}), RIP 0x{:x}, error 0x{:x}, CPL{cpl}", frame.rip, frame.error_code), info)
        }
        None => die(GuestExit::Exception,
            format_args!("CPU exception: {} (vector {vector}), RIP 0x{:x}, error 0x{:x}, CPL{cpl}", exception_name(vector), frame.rip, frame.error_code), info),
    }
}
