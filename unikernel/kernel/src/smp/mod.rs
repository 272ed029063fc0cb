//! Bringing the application processors online and what they do once there.
//!
//! The boot CPU starts APs one at a time, before `mm::init` (the xAPIC page is mapped only
//! by the boot page tables): INIT, 10 ms, STARTUP, then a second STARTUP if the AP has not
//! checked in after 1 ms (the Intel MP-spec sequence; KVM and TCG take the first one). APIC
//! ID = CPU number, as QEMU's `-smp N` and the embedded VMM number them.
//!
//! Each AP, in [`smp_ap_main`]: its own GDT/TSS, the shared IDT, reads its APIC ID, records
//! itself in the per-CPU table, sends an `info` record `smp/cpu/<n>` ({cpu, apic_id, cpl})
//! on the results channel, marks itself online, runs the plan's fault if `fault_cpu` names
//! it, and parks (`cli; hlt`, or `sti; hlt` when the plan has IPI or SMP suites). Until
//! the SMP suites start workers on them ([`worker`]), APs never touch `mm` (its accessor
//! refuses them); they use only the Rust heap (talc, behind a spin lock) and the results
//! channel (behind a lock). [`shootdown`] is the TLB-shootdown protocol the workers
//! answer.
//!
//! The boot CPU then sends `smp` ({cpus, online, apic_ids, x2apic_cpuid, method,
//! bringup_ms}) and, with `[suites.ipi]`, times `ipi/roundtrip` (param `cpus`): a fixed
//! IPI to CPU 1, whose handler counts it (APs then park with `sti; hlt`). A CPU that does not check in within 2 s ends the run with exit 8
//! (the platform cannot do what the config asks), naming the CPU.
pub mod shootdown;
pub mod worker;

use crate::arch::{apic, privileged, smp as arch_smp, tsc};
use crate::{fault, report, timing};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use kmbench_protocol::limits::MAX_CPUS;
use kmbench_protocol::{FaultInjection, GuestExit, GuestPlan};
use serde_json::json;

/// One CPU's slot in the per-CPU table (indexed by [`arch_smp::current_cpu`]).
pub struct PerCpu {
    pub online: AtomicBool,
    pub apic_id: AtomicU32,
}

#[allow(clippy::declare_interior_mutable_const)]
const PER_CPU_INIT: PerCpu = PerCpu {
    online: AtomicBool::new(false),
    apic_id: AtomicU32::new(0),
};
/// The per-CPU table.
pub static PER_CPU: [PerCpu; MAX_CPUS] = [PER_CPU_INIT; MAX_CPUS];

/// APs park with interrupts on (the plan runs `ipi/roundtrip`).
static PARK_WITH_INTERRUPTS: AtomicBool = AtomicBool::new(false);

/// The fault the plan asks an AP to raise: (cpu, kind as u8 + 1; 0 = none).
static AP_FAULT_CPU: AtomicU32 = AtomicU32::new(0);
static AP_FAULT_KIND: AtomicU32 = AtomicU32::new(0);

/// Whether the plan runs suites that need workers on the APs (`worker::start`).
pub fn wants_workers(plan: &GuestPlan) -> bool {
    plan.cpus > 1 && (plan.suites.smp.is_some() || plan.suites.tlb_shootdown.is_some())
}

/// The CPU the caller runs on.
pub fn current_cpu() -> usize {
    arch_smp::current_cpu()
}

fn fault_code(k: FaultInjection) -> u32 {
    match k {
        FaultInjection::Panic => 1,
        FaultInjection::PageFault => 2,
        FaultInjection::InvalidOpcode => 3,
        FaultInjection::Hang => 5,
        _ => 0,
    }
}

/// Whether `kind` can be raised on an AP (faults that need mm or the suites cannot).
pub fn fault_runs_on_ap(kind: FaultInjection) -> bool {
    fault_code(kind) != 0
}

fn wait_online(cpu: usize, ms: u64) -> bool {
    let hz = timing::tsc_hz().max(1);
    let end = tsc::rdtsc().saturating_add(hz / 1000 * ms);
    while tsc::rdtsc() < end {
        if PER_CPU[cpu].online.load(Ordering::Acquire) {
            return true;
        }
        core::hint::spin_loop();
    }
    PER_CPU[cpu].online.load(Ordering::Acquire)
}

fn delay_us(us: u64) {
    let hz = timing::tsc_hz().max(1);
    let end = tsc::rdtsc().saturating_add(hz / 1_000_000 * us);
    while tsc::rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Bring CPUs `1..plan.cpus` online (nothing when `cpus` is 1). Runs on the boot CPU
/// with the boot page tables live, at the run's CPL.
pub fn start(plan: &GuestPlan) {
    let cpus = plan.cpus as usize;
    if cpus <= 1 {
        if plan.suites.ipi.is_some() {
            report::Bench::new("ipi", "ipi/roundtrip".into())
                .param("cpus", cpus)
                .emit_status(
                    kmbench_protocol::BenchStatus::Unsupported,
                    "needs vcpus >= 2",
                );
        }
        return;
    }
    let t0 = tsc::rdtsc();
    // A stack overflow on an AP needs its guarded worker stack: `fault_on_worker` raises
    // it after mm::init; the other kinds fire right at bring-up.
    if let Some(kind) = plan
        .fault
        .filter(|&k| plan.fault_cpu != 0 && fault_code(k) != 0)
    {
        AP_FAULT_KIND.store(fault_code(kind), Ordering::Relaxed);
        AP_FAULT_CPU.store(plan.fault_cpu, Ordering::Relaxed);
    }
    PARK_WITH_INTERRUPTS.store(
        plan.suites.ipi.is_some() || wants_workers(plan),
        Ordering::Relaxed,
    );
    PER_CPU[0].apic_id.store(apic::id(), Ordering::Relaxed);
    PER_CPU[0].online.store(true, Ordering::Relaxed);
    apic::enable();
    // SAFETY: called before mm::init, so the boot page tables are live and nothing uses
    // the trampoline page (mm reserves the first MiB).
    unsafe { arch_smp::install_trampoline(crate::arch::boot::boot_pml4_addr()) };
    let vector = (arch_smp::TRAMPOLINE_ADDR >> 12) as u8;
    for cpu in 1..cpus {
        let dest = cpu as u32;
        // SAFETY: the previous AP has checked in (it read its slots before that), so no
        // AP is between STARTUP and reading them.
        unsafe { arch_smp::prepare_ap(cpu) };
        let mut ok = apic::send_init(dest);
        delay_us(10_000);
        ok &= apic::send_startup(dest, vector);
        if !wait_online(cpu, 1) {
            ok &= apic::send_startup(dest, vector);
            if !wait_online(cpu, 2000) {
                fault::die(
                    GuestExit::ConfigError,
                    format_args!(
                        "CPU {cpu} (APIC ID {dest}) did not come online within 2 s of \
                         INIT-SIPI-SIPI (IPIs {}; CPL{} boot CPU): this platform cannot \
                         start {cpus} vCPUs this way",
                        if ok { "accepted" } else { "stuck pending" },
                        privileged::current_cpl()
                    ),
                    Default::default(),
                );
            }
        }
    }
    let ms = (tsc::rdtsc() - t0) as f64 * 1e3 / timing::tsc_hz().max(1) as f64;
    let apic_ids: alloc::vec::Vec<u32> = (0..cpus)
        .map(|c| PER_CPU[c].apic_id.load(Ordering::Relaxed))
        .collect();
    log::info!("smp: {cpus} CPUs online (APIC IDs {apic_ids:?}) in {ms:.1} ms");
    report::info(
        "smp",
        json!({
            "cpus": cpus,
            "online": (0..cpus).filter(|&c| PER_CPU[c].online.load(Ordering::Acquire)).count(),
            "apic_ids": apic_ids,
            "apic_mode": "xapic",
            "x2apic_cpuid": apic::x2apic_supported(),
            "method": "init-sipi-sipi",
            "bsp_cpl": privileged::current_cpl(),
            "bringup_ms": ms,
        }),
    );
    if let Some(s) = &plan.suites.ipi {
        ipi_roundtrip(s, cpus);
    }
    if AP_FAULT_CPU.load(Ordering::Relaxed) != 0 {
        // The AP named by fault_cpu ends the run; the boot CPU must not finish first.
        log::warn!(
            "waiting for the fault on CPU {}",
            AP_FAULT_CPU.load(Ordering::Relaxed)
        );
        loop {
            core::hint::spin_loop();
        }
    }
}

/// `ipi/roundtrip`: boot CPU → fixed IPI → CPU 1's handler counts it → the boot CPU sees
/// the count change. Each sample is one round trip in TSC cycles (timer overhead not
/// subtracted: the round trip is thousands of cycles on every platform seen).
fn ipi_roundtrip(s: &kmbench_protocol::IpiSuite, cpus: usize) {
    const TARGET: u32 = 1;
    let hz = timing::tsc_hz().max(1);
    let mut samples = alloc::vec::Vec::with_capacity(s.samples as usize);
    let mut lost = 0u32;
    for i in 0..(s.warmup + s.samples) {
        let before = arch_smp::ipi_acks();
        let t0 = tsc::start();
        apic::send_fixed(TARGET, apic::IPI_VECTOR);
        let give_up = tsc::rdtsc().saturating_add(hz / 10);
        let mut seen = true;
        while arch_smp::ipi_acks() == before {
            if tsc::rdtsc() > give_up {
                seen = false;
                break;
            }
            core::hint::spin_loop();
        }
        let t1 = tsc::stop();
        if !seen {
            lost += 1;
            if lost >= 3 {
                return report::Bench::new("ipi", "ipi/roundtrip".into())
                    .param("cpus", cpus)
                    .param("target", TARGET)
                    .emit_status(
                        kmbench_protocol::BenchStatus::Error,
                        "CPU 1 did not acknowledge the IPI within 100 ms (3 times)",
                    );
            }
            continue;
        }
        if i >= s.warmup {
            samples.push(t1.saturating_sub(t0));
        }
    }
    report::Bench::new("ipi", "ipi/roundtrip".into())
        .param("cpus", cpus)
        .param("target", TARGET)
        .extra("apic_mode", "xapic")
        .extra("sender_cpl", privileged::current_cpl())
        .extra("lost", lost)
        .extra(
            "note",
            "fixed IPI (vector 0xf0) from the boot CPU's ICR write until it sees CPU 1's \
             handler count it; CPU 1 waits in sti;hlt at CPL0; timer overhead not subtracted",
        )
        .emit_cycles(&mut samples);
}

fn ap_fault(cpu: usize, code: u32) {
    match code {
        1 => panic!("injected panic on CPU {cpu} (fault = \"panic\", fault_cpu = {cpu})"),
        2 => {
            // SAFETY: deliberately reads an unmapped address to raise #PF.
            unsafe { core::ptr::read_volatile(0x0000_7fff_dead_0000 as *const u64) };
        }
        3 => {
            // SAFETY: deliberately raises #UD.
            unsafe { core::arch::asm!("ud2") };
        }
        _ => loop {
            core::hint::spin_loop();
        },
    }
}

/// `[guest] fault = "stack_overflow"` with `fault_cpu = n ≠ 0`: start the workers and
/// have CPU n recurse into its worker stack's guard page; the run ends there (the boot
/// CPU waits). Returns without doing anything for every other plan.
pub fn fault_on_worker(plan: &GuestPlan) {
    if plan.fault != Some(FaultInjection::StackOverflow) || plan.fault_cpu == 0 {
        return;
    }
    if let Err(e) = worker::start(plan.cpus as usize, plan.mm_debug) {
        fault::die(
            GuestExit::ConfigError,
            format_args!("{e}"),
            Default::default(),
        );
    }
    log::warn!("injecting fault: stack overflow on CPU {}", plan.fault_cpu);
    worker::post_async(
        plan.fault_cpu as usize,
        |_, _| crate::mm::stacks::overflow_now(),
        0,
    );
    loop {
        core::hint::spin_loop();
    }
}

/// Rust entry of an AP (from `arch::smp`'s trampoline), at CPL0 on its own stack.
#[no_mangle]
extern "C" fn smp_ap_main(cpu: u64) -> ! {
    let cpu = cpu as usize;
    // SAFETY: first thing on this AP, at CPL0, once.
    unsafe { arch_smp::init_ap_tables(cpu) };
    // Software-enable the APIC: after INIT it accepts only INIT/SIPI/NMI, not fixed IPIs.
    apic::enable();
    let apic_id = apic::id();
    PER_CPU[cpu].apic_id.store(apic_id, Ordering::Relaxed);
    report::info(
        &alloc::format!("smp/cpu/{cpu}"),
        json!({ "cpu": cpu, "apic_id": apic_id, "cpl": privileged::current_cpl(),
                "current_cpu": current_cpu() }),
    );
    PER_CPU[cpu].online.store(true, Ordering::Release);
    if AP_FAULT_CPU.load(Ordering::Relaxed) as usize == cpu {
        ap_fault(cpu, AP_FAULT_KIND.load(Ordering::Relaxed));
    }
    worker::park(cpu, PARK_WITH_INTERRUPTS.load(Ordering::Relaxed))
}
