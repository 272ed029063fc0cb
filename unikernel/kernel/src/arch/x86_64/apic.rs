//! The local APIC in xAPIC mode (MMIO at 0xfee0_0000): the APIC ID, the spurious-vector
//! register (software enable) and the interrupt command register that sends INIT and
//! STARTUP IPIs.
//!
//! xAPIC is used on every platform because it needs no mode switch and no privileged
//! instruction: after reset every local APIC is enabled in xAPIC mode at the architectural
//! base, KVM's in-kernel APIC, kvm_pvm's and QEMU TCG's all emulate it, and the boot page
//! tables map 0xfee0_0000 (user-accessible, like the rest of the low 4 GiB), so the boot
//! CPU can send IPIs from CPL3 too: each register access is a trapped MMIO access. x2APIC
//! (MSRs 0x800+, CPUID.1:ECX bit 21) is reported ([`x2apic_supported`]) but not switched
//! on: its `wrmsr` would need the gate at CPL3.
//!
//! The boot page tables map the APIC page; the kernel's own tables map it (uncached, at
//! the same address) only when the SMP suites run (`crate::smp::worker::start` through
//! `mm::map_xapic`).
use super::cpuid;

/// The architectural xAPIC base (IA32_APIC_BASE after reset).
pub const XAPIC_BASE: u64 = 0xfee0_0000;
const REG_ID: u64 = 0x20;
const REG_SVR: u64 = 0xf0;
const REG_ICR_LOW: u64 = 0x300;
const REG_ICR_HIGH: u64 = 0x310;
const REG_EOI: u64 = 0xb0;
/// The vector of the benchmark IPI (`ipi/roundtrip`), handled by `smp_ipi_stub`.
pub const IPI_VECTOR: u8 = 0xf0;
/// The TLB-shootdown IPI (`crate::smp::shootdown`), handled by `smp_flush_stub`.
pub const FLUSH_VECTOR: u8 = 0xf1;
/// The spurious-interrupt vector programmed into the SVR.
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// ICR delivery status: 1 while the IPI is being sent.
const ICR_PENDING: u32 = 1 << 12;
/// ICR level assert (INIT and STARTUP are sent asserted).
const ICR_ASSERT: u32 = 1 << 14;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
/// SVR: APIC software enable, spurious vector 0xff (never delivered: interrupts stay off).
const SVR_ENABLE: u32 = (1 << 8) | 0xff;

fn read(reg: u64) -> u32 {
    // SAFETY: the xAPIC page is mapped by the boot page tables (module doc) and its
    // registers are 32-bit, 16-byte aligned; reads have no side effects on these registers.
    unsafe { core::ptr::read_volatile((XAPIC_BASE + reg) as *const u32) }
}

fn write(reg: u64, value: u32) {
    // SAFETY: as for `read`; writing ID/SVR/ICR only has the architectural effects asked for.
    unsafe { core::ptr::write_volatile((XAPIC_BASE + reg) as *mut u32, value) }
}

/// This CPU's APIC ID (bits 31:24 of the ID register).
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// CPUID says the CPU could run its APIC in x2APIC mode.
pub fn x2apic_supported() -> bool {
    cpuid::cpuid(1, 0).ecx & (1 << 21) != 0
}

/// Software-enable this CPU's APIC (needed before it sends IPIs on some implementations).
pub fn enable() {
    write(REG_SVR, read(REG_SVR) | SVR_ENABLE);
}

/// Send an IPI with `icr_low` to APIC ID `dest`; false if it stayed pending for
/// `spins` polls.
fn send(dest: u32, icr_low: u32, spins: u32) -> bool {
    write(REG_ICR_HIGH, dest << 24);
    write(REG_ICR_LOW, icr_low);
    for _ in 0..spins {
        if read(REG_ICR_LOW) & ICR_PENDING == 0 {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// INIT to `dest` (the AP resets and waits for a STARTUP IPI).
pub fn send_init(dest: u32) -> bool {
    send(dest, ICR_INIT | ICR_ASSERT, 100_000)
}

/// A fixed-delivery IPI with `vector` to `dest` (edge-triggered).
pub fn send_fixed(dest: u32, vector: u8) -> bool {
    send(dest, vector as u32, 100_000)
}

/// End of interrupt (the handler stubs write it in assembly; this is for Rust callers).
pub fn eoi() {
    write(REG_EOI, 0);
}

/// STARTUP to `dest`: the AP starts in real mode at `vector << 12` (CS = vector << 8, IP 0).
pub fn send_startup(dest: u32, vector: u8) -> bool {
    send(dest, ICR_STARTUP | ICR_ASSERT | vector as u32, 100_000)
}
