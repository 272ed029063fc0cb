//! SMP workers: application processors that run jobs for the boot CPU, on the kernel's
//! page tables, at the run's CPL, with interrupts on (they take TLB-flush IPIs).
//!
//! * **Start** ([`start`], boot CPU, after `mm::init`): map the xAPIC page into the kernel
//!   tables, switch mm to SMP mode (its lock), map one guarded 16 KiB worker stack per AP
//!   (`mm::stacks`, so `current_cpu` knows it and an overflow hits a guard), then for each
//!   AP publish its stack top and wake it with the benchmark IPI. The AP, parked in
//!   `sti; hlt`, sees its stack, loads the kernel CR3 and enters [`worker_main`]: at CPL3
//!   with RFLAGS.IF = 1 through `iretq` when the run is at CPL3, else at CPL0 after `sti`.
//! * **Jobs** ([`run_on`]): a job is a plain `fn(cpu, arg) -> u64`. The boot CPU writes it
//!   into each target's mailbox (one cache line per CPU) and bumps the mailbox's
//!   sequence number (release); the worker spins on the sequence (acquire), runs the job,
//!   stores the result and the sequence it finished (release). The boot CPU runs the job
//!   itself as CPU 0 when asked to, then waits for every target.
//! * [`Barrier`]: jobs that must start together (the concurrent benchmarks) meet at one.
use crate::arch::{apic, privileged, smp as arch_smp, tsc, usermode};
use crate::{mm, timing};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use kmbench_protocol::limits::MAX_CPUS;

/// A job: runs on CPU `cpu` with `arg`; its return value goes back to the boot CPU.
pub type Job = fn(cpu: usize, arg: u64) -> u64;

#[repr(align(64))]
struct Mailbox {
    /// The worker runs: set by the worker itself.
    online: AtomicBool,
    /// Stack top the AP is to enter its worker on (0: stay parked).
    stack_top: AtomicU64,
    seq: AtomicU64,
    done: AtomicU64,
    job: AtomicUsize,
    arg: AtomicU64,
    result: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const MAILBOX_INIT: Mailbox = Mailbox {
    online: AtomicBool::new(false),
    stack_top: AtomicU64::new(0),
    seq: AtomicU64::new(0),
    done: AtomicU64::new(0),
    job: AtomicUsize::new(0),
    arg: AtomicU64::new(0),
    result: AtomicU64::new(0),
};
static MAILBOX: [Mailbox; MAX_CPUS] = [MAILBOX_INIT; MAX_CPUS];
/// The kernel page tables' root, for APs entering their worker.
static KERNEL_CR3: AtomicU64 = AtomicU64::new(0);
/// CPUs with a running worker, plus the boot CPU (0 before [`start`]).
static ONLINE: AtomicUsize = AtomicUsize::new(0);

/// How many CPUs can run jobs (the boot CPU and every started worker).
pub fn cpus() -> usize {
    ONLINE.load(Ordering::Acquire).max(1)
}

/// Start a worker on every AP of the `cpus` online. Boot CPU, after `mm::init`, once.
/// Returns an error naming the CPU that did not start within 2 s.
pub fn start(cpus: usize, mm_debug: bool) -> Result<(), alloc::string::String> {
    if cpus <= 1 || ONLINE.load(Ordering::Acquire) != 0 {
        ONLINE.store(cpus.max(1), Ordering::Release);
        return Ok(());
    }
    mm::map_xapic();
    mm::percpu::set_bypass(mm_debug);
    mm::enable_smp();
    if crate::arch::kvm_steal::pv_flush_offered() {
        crate::arch::kvm_steal::register(0, privileged::run_cpl() == 0);
    }
    let (base, slot) = mm::stacks::worker_stack_layout();
    arch_smp::set_worker_stacks(base, slot);
    KERNEL_CR3.store(mm::with(|m| m.pt.pml4_phys), Ordering::Release);
    let hz = timing::tsc_hz().max(1);
    for cpu in 1..cpus {
        let name: &'static str =
            alloc::boxed::Box::leak(alloc::format!("CPU {cpu}'s worker stack").into_boxed_str());
        let top = mm::stacks::map_worker_stack(cpu, name);
        MAILBOX[cpu].stack_top.store(top, Ordering::Release);
        let deadline = tsc::rdtsc() + 2 * hz;
        while !MAILBOX[cpu].online.load(Ordering::Acquire) {
            apic::send_fixed(cpu as u32, apic::IPI_VECTOR);
            let resend = tsc::rdtsc() + hz / 1000;
            while tsc::rdtsc() < resend && !MAILBOX[cpu].online.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
            if tsc::rdtsc() > deadline {
                return Err(alloc::format!(
                    "CPU {cpu} did not start its worker within 2 s of the wake-up IPI"
                ));
            }
        }
    }
    ONLINE.store(cpus, Ordering::Release);
    // The boot CPU takes flush IPIs from now on (a purge on another CPU shoots it down).
    privileged::enable_interrupts();
    log::info!(
        "smp: workers on CPUs 1..{cpus} (kernel page tables, CPL{})",
        privileged::run_cpl()
    );
    Ok(())
}

/// On an AP (CPL0, parked): wait for interrupts; once [`start`] gave this CPU a stack,
/// enter the worker. With `interrupts` false the CPU parks for good (`cli; hlt`).
pub fn park(cpu: usize, interrupts: bool) -> ! {
    if !interrupts {
        arch_smp::park(false)
    }
    loop {
        arch_smp::wait_for_interrupt();
        let top = MAILBOX[cpu].stack_top.load(Ordering::Acquire);
        if top != 0 {
            enter(cpu, top)
        }
    }
}

fn enter(cpu: usize, top: u64) -> ! {
    let cr3 = KERNEL_CR3.load(Ordering::Acquire);
    // SAFETY: at CPL0 on this AP (parked there). The kernel page tables map this code,
    // every static, the worker stack `start` mapped and the xAPIC page; this AP's own
    // static stack (RSP now) lies in the kernel image, which they map too.
    unsafe { core::arch::asm!("mov cr3, {0}", in(reg) cr3, options(nostack, preserves_flags)) };
    if crate::arch::kvm_steal::pv_flush_offered() {
        crate::arch::kvm_steal::register(cpu, true);
    }
    if privileged::run_cpl() == 3 {
        // SAFETY: the worker stack and all kernel code are user-accessible when the run
        // is at CPL3 (the kernel tables map them so); the IDT handles every vector an
        // AP can receive (the two IPIs, spurious); worker_main never returns.
        unsafe { usermode::enter_with_interrupts(worker_main, top, cpu as u64) }
    } else {
        // SAFETY: as above; interrupts on at CPL0 before moving to the worker stack.
        unsafe {
            core::arch::asm!("sti", options(nomem, nostack));
            usermode::switch_stack(worker_main, top, cpu as u64)
        }
    }
}

extern "C" fn worker_main(cpu: u64) -> ! {
    let cpu = cpu as usize;
    let mb = &MAILBOX[cpu];
    mb.online.store(true, Ordering::Release);
    let mut seen = 0u64;
    loop {
        let s = mb.seq.load(Ordering::Acquire);
        if s != seen {
            seen = s;
            let addr = mb.job.load(Ordering::Relaxed);
            // SAFETY: `post` stores only `Job` function pointers (cast to usize) before
            // publishing the sequence number this load synchronises with.
            let job: Job = unsafe { core::mem::transmute::<usize, Job>(addr) };
            let r = job(cpu, mb.arg.load(Ordering::Relaxed));
            mb.result.store(r, Ordering::Relaxed);
            mb.done.store(s, Ordering::Release);
        }
        core::hint::spin_loop();
    }
}

fn post(cpu: usize, job: Job, arg: u64) -> u64 {
    let mb = &MAILBOX[cpu];
    mb.job.store(job as usize, Ordering::Relaxed);
    mb.arg.store(arg, Ordering::Relaxed);
    let s = mb.seq.load(Ordering::Relaxed) + 1;
    mb.seq.store(s, Ordering::Release);
    s
}

fn wait(cpu: usize, s: u64) -> u64 {
    let mb = &MAILBOX[cpu];
    while mb.done.load(Ordering::Acquire) != s {
        core::hint::spin_loop();
    }
    mb.result.load(Ordering::Relaxed)
}

/// Start `job(cpu, arg)` on AP `cpu` without waiting; [`wait_async`] collects it.
pub fn post_async(cpu: usize, job: Job, arg: u64) -> (usize, u64) {
    (cpu, post(cpu, job, arg))
}

/// Wait for a job [`post_async`] started; its result.
pub fn wait_async(h: (usize, u64)) -> u64 {
    wait(h.0, h.1)
}

/// Run `job(cpu, arg)` on every CPU in `on` (CPU 0: the caller itself, last), and return
/// the results in `on`'s order. Boot CPU only; every listed AP must have a worker.
pub fn run_on(on: &[usize], job: Job, arg: u64) -> alloc::vec::Vec<u64> {
    let posted: alloc::vec::Vec<(usize, u64)> = on
        .iter()
        .filter(|&&c| c != 0)
        .map(|&c| (c, post(c, job, arg)))
        .collect();
    let own = on.contains(&0).then(|| job(0, arg));
    on.iter()
        .map(|&c| {
            if c == 0 {
                own.unwrap_or(0)
            } else {
                let s = posted.iter().find(|p| p.0 == c).map(|p| p.1).unwrap_or(0);
                wait(c, s)
            }
        })
        .collect()
}

/// A one-shot meeting point for `n` CPUs (reset by [`Barrier::reset`] between uses).
#[repr(align(64))]
pub struct Barrier {
    arrived: AtomicUsize,
}

impl Barrier {
    pub const fn new() -> Self {
        Barrier {
            arrived: AtomicUsize::new(0),
        }
    }

    pub fn reset(&self) {
        self.arrived.store(0, Ordering::SeqCst);
    }

    /// Wait until `n` CPUs have arrived.
    pub fn wait(&self, n: usize) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        while self.arrived.load(Ordering::Acquire) < n {
            core::hint::spin_loop();
        }
    }
}

impl Default for Barrier {
    fn default() -> Self {
        Self::new()
    }
}
