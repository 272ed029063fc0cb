//! Everything instruction-level about x86_64: boot, descriptor tables, exceptions, the
//! CPL3→CPL0 gate, port I/O, CPUID and the TSC. Nothing outside `arch` writes assembly.
pub mod apic;
pub mod boot;
pub mod cpuid;
pub mod cpuid_tlb;
pub mod gdt;
pub mod idt;
pub mod kvm_steal;
pub mod loops;
pub mod pmu;
pub mod port;
pub mod privileged;
pub mod pvh;
pub mod smp;
pub mod tsc;
pub mod usermode;

/// The current stack pointer.
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let sp: u64;
    // SAFETY: reads RSP; no side effects.
    unsafe {
        core::arch::asm!("mov {0}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}

/// Execute `ud2` (raises #UD, which ends the run): the `invalid_opcode` fault injection.
pub fn invalid_opcode() -> ! {
    // SAFETY: raises #UD deliberately; the exception handler reports it and exits.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

/// End the VM through `isa-debug-exit` (QEMU) or the VMM's exit port.
pub fn exit(code: kmbench_protocol::GuestExit) -> ! {
    port::outl(kmbench_protocol::ports::EXIT, code.code() as u32);
    // If no exit device exists, stop here.
    loop {
        core::hint::spin_loop();
    }
}
