//! KVM's steal-time records (`MSR_KVM_STEAL_TIME`), the part of them PV TLB flush uses.
//!
//! Each CPU registers one 64-byte `struct kvm_steal_time` (the host writes it on every
//! vCPU schedule-out / entry). Byte 16, `preempted`, has bit 0 `KVM_VCPU_PREEMPTED` while
//! the host has descheduled the vCPU against its will; a guest that wants that vCPU's TLB
//! flushed may instead set bit 1 `KVM_VCPU_FLUSH_TLB` with a compare-exchange, and the
//! host flushes before the vCPU runs again (Linux `kvm_flush_tlb_multi`), saving an IPI
//! and the exit it would cost. Only with CPUID 0x4000_0001 EAX bits 5 (steal time) and
//! 9 (PV TLB flush).
use core::sync::atomic::{AtomicU8, Ordering};
use kmbench_protocol::limits::MAX_CPUS;

/// `MSR_KVM_STEAL_TIME`.
pub const MSR_KVM_STEAL_TIME: u32 = 0x4b56_4d03;
pub const KVM_VCPU_PREEMPTED: u8 = 1;
pub const KVM_VCPU_FLUSH_TLB: u8 = 2;
const FEATURE_STEAL_TIME: u32 = 1 << 5;
const FEATURE_PV_TLB_FLUSH: u32 = 1 << 9;

/// `struct kvm_steal_time` (64 bytes, 64-aligned as the MSR requires).
#[repr(C, align(64))]
pub struct StealTime {
    pub steal: core::sync::atomic::AtomicU64,
    pub version: core::sync::atomic::AtomicU32,
    pub flags: core::sync::atomic::AtomicU32,
    pub preempted: AtomicU8,
    _pad: [u8; 47],
}
const _: () = assert!(core::mem::size_of::<StealTime>() == 64);

#[allow(clippy::declare_interior_mutable_const)]
const ST_INIT: StealTime = StealTime {
    steal: core::sync::atomic::AtomicU64::new(0),
    version: core::sync::atomic::AtomicU32::new(0),
    flags: core::sync::atomic::AtomicU32::new(0),
    preempted: AtomicU8::new(0),
    _pad: [0; 47],
};
/// One record per CPU, in the kernel image (identity-placed: virtual = physical).
static RECORDS: [StealTime; MAX_CPUS] = [ST_INIT; MAX_CPUS];

/// Whether the hypervisor offers PV TLB flush (and the steal time it rides on).
pub fn pv_flush_offered() -> bool {
    super::cpuid::kvm_features()
        .is_some_and(|f| f & FEATURE_STEAL_TIME != 0 && f & FEATURE_PV_TLB_FLUSH != 0)
}

/// Register CPU `cpu`'s record with the host. Call on that CPU, only when
/// [`pv_flush_offered`]; at CPL0 directly, else through the gate.
pub fn register(cpu: usize, at_cpl0: bool) {
    let addr = core::ptr::addr_of!(RECORDS[cpu]) as u64;
    let value = addr | 1; // KVM_MSR_ENABLED
    if at_cpl0 {
        // SAFETY: CPUID offers steal time, so the MSR exists; the record is a static in
        // the identity-placed kernel image (its address is its physical address), 64-byte
        // aligned, and only the host and the atomics below write it.
        unsafe {
            core::arch::asm!("wrmsr", in("ecx") MSR_KVM_STEAL_TIME, in("eax") value as u32,
                             in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
        };
    } else {
        // SAFETY: as above; the steal-time MSR is none of those `wrmsr` rules out.
        unsafe { super::privileged::wrmsr(MSR_KVM_STEAL_TIME, value) };
    }
}

/// Try to hand CPU `cpu`'s TLB flush to the host: succeeds only while the host has that
/// vCPU preempted (then no IPI is needed).
pub fn try_defer_flush(cpu: usize) -> bool {
    let p = &RECORDS[cpu].preempted;
    let cur = p.load(Ordering::Acquire);
    cur & KVM_VCPU_PREEMPTED != 0
        && p.compare_exchange(
            cur,
            cur | KVM_VCPU_FLUSH_TLB,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok()
}
