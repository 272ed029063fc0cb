//! Privileged operations, callable from the run's CPL.
//!
//! At CPL0 these are the plain instructions. At CPL3 they go through the `int3` gate
//! (see `idt`): one round trip per call, so callers batch (one `invlpg_batch` for many
//! pages, one CR3 reload for a full flush). The gate's cost is itself a benchmark.
use super::idt::gate_op;
use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};

static RUN_CPL: AtomicU8 = AtomicU8::new(0);

/// Record the privilege level the run executes at (set once before leaving ring 0).
pub fn set_run_cpl(cpl: u8) {
    RUN_CPL.store(cpl, Ordering::Relaxed);
}

#[inline(always)]
pub fn run_cpl() -> u8 {
    RUN_CPL.load(Ordering::Relaxed)
}

/// The current privilege level, read from CS.
pub fn current_cpl() -> u8 {
    let cs: u16;
    // SAFETY: reading CS has no side effects.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    (cs & 3) as u8
}

/// Raw CS value (0x33 at CPL3 under kvm_pvm, whatever the kernel loaded).
pub fn current_cs() -> u16 {
    let cs: u16;
    // SAFETY: reading CS has no side effects.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    cs
}

/// One trip through the gate: `op` (a [`gate_op`] value) with arguments `a`, `b`.
///
/// # Safety
/// The operation runs at CPL0 with the caller's arguments: `WRITE_CR3` needs a PML4 that
/// maps everything in use (as [`write_cr3`]), `WRITE_CR4` a value that keeps paging
/// (and the features in use) on, `WRMSR` an MSR that exists and a value that breaks no
/// memory-safety assumption (as [`wrmsr`]), `INVLPG_BATCH` `a` pointing to `b` readable
/// addresses, `INVPCID` `b` pointing to a 16-byte descriptor. `NOP`, `INVLPG`,
/// `FLUSH_ALL`, `READ_CR3`, `READ_CR4` and `RDMSR` of an existing MSR have no
/// precondition (see [`gate_nop`] and the safe wrappers below).
#[inline(always)]
pub unsafe fn gate(op: u64, a: u64, b: u64) -> u64 {
    let ret: u64;
    // SAFETY: `int3` enters `gate_entry` (DPL 3), which performs `op` and returns with
    // iretq; it may clobber rax (result), rcx, rdx, rdi, rsi — all declared here. What
    // the operation does is covered by this function's contract.
    unsafe {
        asm!("int3", inout("rax") op => ret, inout("rdi") a => _, inout("rsi") b => _,
             out("rdx") _, out("rcx") _);
    }
    ret
}

/// One no-op round trip through the gate (CPL3 → CPL0 → CPL3), for measuring it.
#[inline(always)]
pub fn gate_nop() {
    // SAFETY: NOP has no precondition.
    unsafe { gate(gate_op::NOP, 0, 0) };
}

pub fn invlpg(addr: u64) {
    if run_cpl() == 0 {
        // SAFETY: at CPL0; invalidating a TLB entry is always safe.
        unsafe { asm!("invlpg [{0}]", in(reg) addr, options(nostack, preserves_flags)) };
    } else {
        // SAFETY: INVLPG has no precondition.
        unsafe { gate(gate_op::INVLPG, addr, 0) };
    }
}

/// Invalidate many pages with one gate call (or a loop at CPL0).
pub fn invlpg_batch(addrs: &[u64]) {
    if addrs.is_empty() {
        return;
    }
    if run_cpl() == 0 {
        for &a in addrs {
            // SAFETY: at CPL0; invalidating a TLB entry is always safe.
            unsafe { asm!("invlpg [{0}]", in(reg) a, options(nostack, preserves_flags)) };
        }
    } else {
        // SAFETY: `addrs` is a live slice of `addrs.len()` addresses.
        unsafe {
            gate(
                gate_op::INVLPG_BATCH,
                addrs.as_ptr() as u64,
                addrs.len() as u64,
            )
        };
    }
}

/// Turn interrupts on for the rest of the run (`sti`, or at CPL3 the gate returning with
/// RFLAGS.IF set). Only once every vector that can arrive has a handler: the SMP boot CPU
/// after `smp::worker::start` (the PIC is masked at boot, the LVT entries stay masked).
pub fn enable_interrupts() {
    if run_cpl() == 0 {
        // SAFETY: the caller guarantees every deliverable vector is handled.
        unsafe { asm!("sti", options(nomem, nostack)) };
    } else {
        // SAFETY: as above; the gate only sets IF in the frame it returns through.
        unsafe { gate(gate_op::STI, 0, 0) };
    }
}

/// Flush all non-global TLB entries (CR3 reload).
pub fn flush_tlb_all() {
    if run_cpl() == 0 {
        // SAFETY: at CPL0; reloading CR3 with its own value only flushes the TLB.
        unsafe {
            asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack, preserves_flags))
        };
    } else {
        // SAFETY: FLUSH_ALL (CR3 reload with its own value) has no precondition.
        unsafe { gate(gate_op::FLUSH_ALL, 0, 0) };
    }
}

pub fn read_cr3() -> u64 {
    if run_cpl() == 0 {
        let v: u64;
        // SAFETY: reading CR3 at CPL0 has no side effects.
        unsafe { asm!("mov {0}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    } else {
        // SAFETY: READ_CR3 has no precondition.
        unsafe { gate(gate_op::READ_CR3, 0, 0) }
    }
}

/// Switch address spaces.
///
/// # Safety
/// `pml4` must be the physical address of a PML4 that maps the running code, its stack
/// and everything the caller touches next.
pub unsafe fn write_cr3(pml4: u64) {
    if run_cpl() == 0 {
        // SAFETY: the caller guarantees the new tables map everything in use.
        unsafe { asm!("mov cr3, {0}", in(reg) pml4, options(nostack, preserves_flags)) };
    } else {
        // SAFETY: the caller guarantees the new tables map everything in use.
        unsafe { gate(gate_op::WRITE_CR3, pml4, 0) };
    }
}

/// INVPCID (only when CPUID reports it): `kind` 0..=3 as in the SDM.
pub fn invpcid(kind: u64, pcid: u64, addr: u64) {
    let desc: [u64; 2] = [pcid, addr];
    if run_cpl() == 0 {
        // SAFETY: at CPL0 with INVPCID supported (checked by the caller); the descriptor is
        // a valid 16-byte memory operand.
        unsafe {
            asm!("invpcid {0}, [{1}]", in(reg) kind, in(reg) desc.as_ptr(), options(nostack, preserves_flags))
        };
    } else {
        // SAFETY: `desc` is a live 16-byte descriptor; invalidation only drops TLB entries.
        unsafe { gate(gate_op::INVPCID, kind, desc.as_ptr() as u64) };
    }
}

pub fn rdmsr(msr: u32) -> u64 {
    if run_cpl() == 0 {
        let (lo, hi): (u32, u32);
        // SAFETY: at CPL0; callers only read MSRs CPUID says exist (PMU counters).
        unsafe {
            asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
        };
        ((hi as u64) << 32) | lo as u64
    } else {
        // SAFETY: reading an MSR changes nothing (callers read MSRs CPUID says exist).
        unsafe { gate(gate_op::RDMSR, msr as u64, 0) }
    }
}

/// Write an MSR.
///
/// # Safety
/// The MSR must exist (CPUID says so; else #GP ends the run) and the value must break no
/// assumption the kernel relies on for memory safety: EFER (paging, NX), PAT, the
/// syscall and FS/GS base MSRs are off limits; performance-counter event selects and
/// counters are fine.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    if run_cpl() == 0 {
        // SAFETY: at CPL0; the caller guarantees the MSR exists and the value is harmless.
        unsafe {
            asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
                 options(nomem, nostack, preserves_flags))
        };
    } else {
        // SAFETY: as above, through the gate.
        unsafe { gate(gate_op::WRMSR, msr as u64, value) };
    }
}

/// The faulting address of the last #PF. Only meaningful at CPL0, in an exception handler.
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: exception handlers run at CPL0; reading CR2 has no side effects.
    unsafe { asm!("mov {0}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn read_cr4() -> u64 {
    if run_cpl() == 0 {
        let v: u64;
        // SAFETY: reading CR4 at CPL0 has no side effects.
        unsafe { asm!("mov {0}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    } else {
        // SAFETY: READ_CR4 has no precondition.
        unsafe { gate(gate_op::READ_CR4, 0, 0) }
    }
}
