//! TLB shootdown: the boot CPU asks other CPUs to drop kernel TLB entries for a range,
//! with Linux's protocol shape (`arch/x86/mm/tlb.c`, `flush_tlb_kernel_range`):
//!
//! 1. the initiator writes one shared flush request (start, pages, stride, generation);
//! 2. flushes its own TLB for the range (at CPL3 through the gate);
//! 3. sends the flush IPI ([`apic::FLUSH_VECTOR`]) to each target, one ICR write each
//!    (xAPIC: no multicast by mask without logical mode);
//! 4. each target's handler ([`smp_flush_ipi`], CPL0) invalidates the range page by page
//!    (`invlpg`, one per 4K page or one per 2M leaf), or reloads CR3 when the range is
//!    more than [`FLUSH_CEILING`] pages (Linux's `tlb_single_page_flush_ceiling` = 33),
//!    stamps its TSC on entry and exit, acknowledges with the generation (release) and
//!    EOIs;
//! 5. the initiator waits until every target has acknowledged the generation.
//!
//! [`Breakdown`] times each step: `local`, `send` (all ICR writes), `ack_wait` (from the
//! last ICR write until the last ack), per target `remote` (handler entry → ack, on the
//! target's TSC) and `delivery` (ICR write → handler entry, across CPUs: KVM keeps one
//! VM's TSCs in step, so the difference is meaningful to within a few hundred cycles).
use crate::arch::{apic, privileged, smp as arch_smp, tsc};
use core::sync::atomic::{AtomicU64, Ordering};
use kmbench_protocol::limits::MAX_CPUS;

/// Above this many pages a target flushes everything (Linux: 33).
pub const FLUSH_CEILING: u64 = 33;

#[repr(align(64))]
struct FlushInfo {
    start: AtomicU64,
    pages: AtomicU64,
    stride: AtomicU64,
    gen: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const INFO_INIT: FlushInfo = FlushInfo {
    start: AtomicU64::new(0),
    pages: AtomicU64::new(0),
    stride: AtomicU64::new(4096),
    gen: AtomicU64::new(0),
};
/// One request per initiating CPU (Linux: the `flush_tlb_info` each initiator passes in
/// its call-function data), so CPUs may shoot down concurrently.
static INFO: [FlushInfo; MAX_CPUS] = [INFO_INIT; MAX_CPUS];

#[repr(align(64))]
struct Ack {
    /// Per initiator: the last generation this CPU flushed.
    gen: [AtomicU64; MAX_CPUS],
    entered: AtomicU64,
    done: AtomicU64,
    full_flushes: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const ACK_INIT: Ack = Ack {
    gen: [const { AtomicU64::new(0) }; MAX_CPUS],
    entered: AtomicU64::new(0),
    done: AtomicU64::new(0),
    full_flushes: AtomicU64::new(0),
};
static ACKS: [Ack; MAX_CPUS] = [ACK_INIT; MAX_CPUS];

/// The flush IPI's handler (from `smp_flush_stub`, CPL0, interrupts off): serve every
/// initiator whose request this CPU has not acknowledged yet.
#[no_mangle]
extern "C" fn smp_flush_ipi() {
    let t0 = tsc::rdtsc();
    let cpu = arch_smp::current_cpu();
    let a = &ACKS[cpu];
    for (from, info) in INFO.iter().enumerate().take(crate::smp::worker::cpus()) {
        let gen = info.gen.load(Ordering::Acquire);
        if from == cpu || a.gen[from].load(Ordering::Relaxed) == gen {
            continue;
        }
        let (start, pages, stride) = (
            info.start.load(Ordering::Relaxed),
            info.pages.load(Ordering::Relaxed),
            info.stride.load(Ordering::Relaxed),
        );
        if pages > FLUSH_CEILING {
            arch_smp::flush_all_cpl0();
            a.full_flushes.fetch_add(1, Ordering::Relaxed);
        } else {
            for i in 0..pages {
                arch_smp::invlpg_cpl0(start + i * stride);
            }
        }
        let t1 = tsc::rdtsc();
        a.entered.store(t0, Ordering::Relaxed);
        a.done.store(t1, Ordering::Relaxed);
        a.gen[from].store(gen, Ordering::Release);
    }
    apic::eoi();
}

/// One shootdown's timing, TSC cycles.
#[derive(Clone, Copy, Debug, Default)]
pub struct Breakdown {
    pub local: u64,
    pub send: u64,
    pub ack_wait: u64,
    /// The slowest target's handler (entry → ack).
    pub remote: u64,
    /// The latest handler entry after its ICR write.
    pub delivery: u64,
    /// local + send + ack_wait: what the initiator spends.
    pub total: u64,
    /// Targets whose flush was handed to the host (PV TLB flush: they were preempted).
    pub deferred: u64,
}

/// Flush `[start, start + pages·stride)` on this CPU and on every CPU in `targets`, and
/// wait for them. `stride` is 4096 (4K leaves) or 2 MiB (2M leaves). Any CPU with a
/// worker (or the boot CPU once it takes interrupts), with workers running on the
/// targets; never from an interrupt handler. Err: a target did not acknowledge within
/// 100 ms.
pub fn flush_tlb_kernel_range(
    targets: &[usize],
    start: u64,
    pages: u64,
    stride: u64,
) -> Result<Breakdown, usize> {
    flush_range(targets, start, pages, stride, false)
}

/// [`flush_tlb_kernel_range`], optionally with KVM's PV TLB flush: a target the host has
/// preempted gets the flush from the host at its next entry (no IPI, no ack to wait for),
/// as Linux's `kvm_flush_tlb_multi`. Only when `arch::kvm_steal::pv_flush_offered()`.
pub fn flush_range(
    targets: &[usize],
    start: u64,
    pages: u64,
    stride: u64,
    pv: bool,
) -> Result<Breakdown, usize> {
    let me = arch_smp::current_cpu();
    let info = &INFO[me];
    let gen = info.gen.load(Ordering::Relaxed) + 1;
    info.start.store(start, Ordering::Relaxed);
    info.pages.store(pages, Ordering::Relaxed);
    info.stride.store(stride, Ordering::Relaxed);
    info.gen.store(gen, Ordering::Release);
    let t0 = tsc::start();
    if pages > FLUSH_CEILING {
        privileged::flush_tlb_all();
    } else if pages == 1 {
        privileged::invlpg(start);
    } else {
        let addrs: alloc::vec::Vec<u64> = (0..pages).map(|i| start + i * stride).collect();
        privileged::invlpg_batch(&addrs);
    }
    let t1 = tsc::rdtsc();
    let mut sent = [0u64; MAX_CPUS];
    let mut ipi = [false; MAX_CPUS];
    let mut deferred = 0;
    for &t in targets {
        if pv && crate::arch::kvm_steal::try_defer_flush(t) {
            deferred += 1;
            continue;
        }
        ipi[t] = true;
        sent[t] = tsc::rdtsc();
        apic::send_fixed(t as u32, apic::FLUSH_VECTOR);
    }
    let t2 = tsc::rdtsc();
    let give_up = t2 + crate::timing::tsc_hz().max(1) / 10;
    for &t in targets.iter().filter(|&&t| ipi[t]) {
        while ACKS[t].gen[me].load(Ordering::Acquire) != gen {
            if tsc::rdtsc() > give_up {
                return Err(t);
            }
            core::hint::spin_loop();
        }
    }
    let t3 = tsc::stop();
    let mut b = Breakdown {
        local: t1 - t0,
        send: t2 - t1,
        ack_wait: t3 - t2,
        total: t3 - t0,
        deferred,
        ..Default::default()
    };
    for &t in targets.iter().filter(|&&t| ipi[t]) {
        let a = &ACKS[t];
        let (e, d) = (
            a.entered.load(Ordering::Relaxed),
            a.done.load(Ordering::Relaxed),
        );
        b.remote = b.remote.max(d.saturating_sub(e));
        b.delivery = b.delivery.max(e.saturating_sub(sent[t]));
    }
    Ok(b)
}

/// Flush `[start, start + pages·stride)` on every online CPU (this one included): the
/// global shootdown a lazy vmalloc purge needs. Panics if a CPU does not answer.
pub fn flush_tlb_all_cpus(start: u64, pages: u64, stride: u64) {
    let me = arch_smp::current_cpu();
    let others: alloc::vec::Vec<usize> = (0..crate::smp::worker::cpus())
        .filter(|&c| c != me)
        .collect();
    if let Err(cpu) = flush_tlb_kernel_range(&others, start, pages, stride) {
        panic!("TLB shootdown: CPU {cpu} did not acknowledge within 100 ms");
    }
}

/// Full flushes CPU `cpu`'s handler has done (ranges above the ceiling).
pub fn full_flushes(cpu: usize) -> u64 {
    ACKS[cpu].full_flushes.load(Ordering::Relaxed)
}
