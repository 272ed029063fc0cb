//! Time-stamp counter: raw and serialised reads, frequency discovery.
//!
//! Frequency comes from CPUID 0x15 (crystal ratio), 0x16 (base MHz) or the KVM timing
//! leaf 0x40000010 when present; otherwise it is calibrated against PIT channel 0
//! (mode 2, latched reads, ~50 ms window), the way Linux's `pit_calibrate_tsc` does.
use super::{cpuid, port};
use core::arch::asm;

#[inline(always)]
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: RDTSC is allowed at CPL3 (CR4.TSD stays clear) and has no memory effects.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    ((hi as u64) << 32) | lo as u64
}

/// Read at the start of a timed region: earlier instructions retire before the read,
/// later ones do not start before it (`lfence; rdtsc; lfence`).
#[inline(always)]
pub fn start() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: as for `rdtsc`; LFENCE only orders instructions.
    unsafe {
        asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    ((hi as u64) << 32) | lo as u64
}

/// Read at the end of a timed region: the first `lfence` waits for the region's
/// instructions to complete, the trailing one keeps later work out. (Not `rdtscp`: KVM's
/// instruction emulator cannot execute it, and a software hypervisor emulates every
/// CPL0 instruction, so a CPL0 run there would die on it.)
#[inline(always)]
pub fn stop() -> u64 {
    start()
}

pub const PIT_HZ: u64 = 1_193_182;

/// TSC frequency and how it was found. `vmm_khz` is the VMM's figure from the run plan,
/// used when CPUID has none (under kvm_pvm the guest sees the outer CPUID, without the
/// KVM timing leaf).
pub fn frequency(vmm_khz: Option<u64>) -> (u64, &'static str) {
    if cpuid::max_leaf() >= 0x15 {
        let r = cpuid::cpuid(0x15, 0);
        if r.eax != 0 && r.ebx != 0 && r.ecx != 0 {
            return (r.ecx as u64 * r.ebx as u64 / r.eax as u64, "cpuid-0x15");
        }
    }
    if cpuid::max_leaf() >= 0x16 {
        let mhz = cpuid::cpuid(0x16, 0).eax & 0xffff;
        if mhz != 0 {
            return (mhz as u64 * 1_000_000, "cpuid-0x16");
        }
    }
    if cpuid::hypervisor_max_leaf() >= 0x4000_0010 {
        let khz = cpuid::cpuid(0x4000_0010, 0).eax;
        if khz != 0 {
            return (khz as u64 * 1000, "kvm-leaf");
        }
    }
    if let Some(khz) = vmm_khz.filter(|&k| k != 0) {
        return (khz * 1000, "vmm");
    }
    (calibrate_pit(50), "pit")
}

fn pit_read_ch0() -> u16 {
    port::outb(0x43, 0x00); // latch channel 0
    let lo = port::inb(0x40) as u16;
    let hi = port::inb(0x40) as u16;
    (hi << 8) | lo
}

/// Count TSC cycles over `ms` milliseconds of PIT channel 0 ticks.
pub fn calibrate_pit(ms: u64) -> u64 {
    port::outb(0x43, 0x34); // channel 0, lobyte/hibyte, mode 2, binary
    port::outb(0x40, 0x00);
    port::outb(0x40, 0x00); // reload 65536
    let want = PIT_HZ * ms / 1000;
    let t_before = rdtsc();
    let mut prev = pit_read_ch0();
    let t_after = rdtsc();
    let t0 = (t_before + t_after) / 2;
    let mut ticks: u64 = 0;
    let mut t1 = t0;
    while ticks < want {
        let a = rdtsc();
        let cur = pit_read_ch0();
        let b = rdtsc();
        // the counter counts down and wraps from 1 to the reload value (65536)
        ticks += prev.wrapping_sub(cur) as u64;
        prev = cur;
        t1 = (a + b) / 2;
    }
    if ticks == 0 {
        return 0;
    }
    ((t1 - t0) as u128 * PIT_HZ as u128 / ticks as u128) as u64
}
