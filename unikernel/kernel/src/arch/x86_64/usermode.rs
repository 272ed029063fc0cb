//! Dropping from CPL0 to CPL3 for the rest of the run.
//!
//! The run's code enters ring 3 once, with interrupts off (RFLAGS.IF = 0) and IOPL 0;
//! it comes back to ring 0 only through exceptions and the `int3` gate, whose entries
//! land on the TSS's RSP0 stack. SMP workers enter with interrupts on (the flush IPI).
use super::gdt::{USER_CS, USER_DS};
use core::arch::asm;

/// Continue at `entry(arg)` in ring 3 on the stack whose top is `stack_top`.
///
/// # Safety
/// `entry` and `stack_top` must be mapped user-accessible, and `entry` must never return.
pub unsafe fn enter(entry: extern "C" fn(u64) -> !, stack_top: u64, arg: u64) -> ! {
    // SAFETY: forwarded; RFLAGS = 0x2 (interrupts off).
    unsafe { iret_to_ring3(entry, stack_top, arg, 0x2) }
}

/// Continue at `entry(arg)` in ring 3 on the stack whose top is `stack_top`, with
/// interrupts on (RFLAGS.IF = 1): an SMP worker, which must take TLB-flush IPIs.
///
/// # Safety
/// As [`enter`]; and the IDT must handle every interrupt this CPU can receive.
pub unsafe fn enter_with_interrupts(entry: extern "C" fn(u64) -> !, stack_top: u64, arg: u64) -> ! {
    // SAFETY: forwarded; RFLAGS = 0x202 (IF set).
    unsafe { iret_to_ring3(entry, stack_top, arg, 0x202) }
}

/// # Safety
/// As [`enter`]; `rflags` has IOPL 0 and only IF (and the reserved bit 1) set.
unsafe fn iret_to_ring3(
    entry: extern "C" fn(u64) -> !,
    stack_top: u64,
    arg: u64,
    rflags: u64,
) -> ! {
    // SAFETY: builds an interrupt-return frame (SS, RSP, RFLAGS, CS, RIP) for ring 3;
    // the caller guarantees the target code and stack are user-accessible.
    unsafe {
        asm!(
            "push {uds}",
            "push {rsp}",
            "push {rfl}",
            "push {ucs}",
            "push {rip}",
            "iretq",
            uds = in(reg) USER_DS as u64,
            rsp = in(reg) stack_top & !0xf,
            rfl = in(reg) rflags,
            ucs = in(reg) USER_CS as u64,
            rip = in(reg) entry as usize as u64,
            in("rdi") arg,
            options(noreturn)
        )
    }
}

/// Continue at `entry(arg)` on another stack at the current privilege level.
///
/// # Safety
/// `stack_top` must be a mapped, writable stack; `entry` must never return.
pub unsafe fn switch_stack(entry: extern "C" fn(u64) -> !, stack_top: u64, arg: u64) -> ! {
    // SAFETY: the caller guarantees the new stack is valid; nothing on the old one is used again.
    unsafe {
        asm!("mov rsp, {st}", "xor ebp, ebp", "call {f}", "ud2",
             st = in(reg) stack_top & !0xf, f = in(reg) entry as usize as u64, in("rdi") arg,
             options(noreturn))
    }
}
