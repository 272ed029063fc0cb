//! Small fixed kernel stacks (16 KiB) with an unmapped guard below each, like Linux's
//! CONFIG_VMAP_STACK: running off the bottom hits the guard and is reported as a
//! "kernel stack overflow" (via #PF at CPL3, via #DF on its own IST stack at CPL0)
//! instead of silently corrupting whatever lies below.
//!
//! The guard registry lives here too: the exception path asks [`guard_hit`] whether a
//! faulting address (or a double fault's RSP) lies in a guard, without touching the rest
//! of mm (it may be borrowed by whatever overflowed).
use super::paging::KernelPageTable;
use super::STACKS_START;
use crate::arch::gdt;
use kmbench_protocol::PageSize;
use spinning_top::Spinlock;
use x86_64::structures::paging::{FrameAllocator, Size4KiB};

pub const STACK_SIZE: u64 = 16 << 10;
/// Each slot: 16 KiB unmapped guard, then the 16 KiB stack.
const SLOT: u64 = 32 << 10;

#[derive(Clone, Copy)]
pub struct StackSet {
    /// RSP0: where CPL3→CPL0 transitions (exceptions, the gate) land.
    pub kernel_top: u64,
    /// IST1: double faults.
    pub double_fault_top: u64,
    /// The run's own stack (CPL3 stack when the run is at CPL3).
    pub run_top: u64,
}

fn map_stack<A: FrameAllocator<Size4KiB>>(
    pt: &mut KernelPageTable,
    frames: &mut A,
    slot: u64,
) -> u64 {
    let base = STACKS_START + slot * SLOT + (SLOT - STACK_SIZE);
    let flags = pt.leaf_flags(true, false);
    for i in 0..STACK_SIZE / 4096 {
        let f = frames.allocate_frame().expect("frames for a kernel stack");
        pt.map_leaf(
            base + i * 4096,
            f.start_address().as_u64(),
            PageSize::Size4K,
            flags,
            frames,
        )
        .expect("map stack");
    }
    base + STACK_SIZE
}

/// The first worker-stack slot: CPU `c`'s SMP worker stack is slot `WORKER_SLOT0 + c`
/// (slots 0–2 are the boot CPU's; CPU 0 has no worker stack, its slot stays empty).
const WORKER_SLOT0: u64 = 3;

/// Where worker stacks live, for `arch::smp::set_worker_stacks`: (base, bytes per CPU).
pub fn worker_stack_layout() -> (u64, u64) {
    (STACKS_START + WORKER_SLOT0 * SLOT, SLOT)
}

/// Map CPU `cpu`'s worker stack (16 KiB, guard below) and register its guard; returns its
/// top. Boot CPU only, once per CPU.
pub fn map_worker_stack(cpu: usize, name: &'static str) -> u64 {
    let top = super::with(|m| {
        let mut frames = super::window::BuddyFrames {
            pages: &mut m.pages,
        };
        map_stack(&mut m.pt, &mut frames, WORKER_SLOT0 + cpu as u64)
    });
    let bottom = top - STACK_SIZE;
    register_guard(bottom - (SLOT - STACK_SIZE), bottom, name);
    top
}

pub fn build<A: FrameAllocator<Size4KiB>>(pt: &mut KernelPageTable, frames: &mut A) -> StackSet {
    StackSet {
        kernel_top: map_stack(pt, frames, 0),
        double_fault_top: map_stack(pt, frames, 1),
        run_top: map_stack(pt, frames, 2),
    }
}

/// Install the stacks in the TSS and register their guards for fault diagnosis.
pub fn activate(s: &StackSet) {
    gdt::set_kernel_stack(s.kernel_top);
    gdt::set_double_fault_stack(s.double_fault_top);
    for (top, name) in [
        (s.kernel_top, "the kernel entry stack (RSP0)"),
        (s.double_fault_top, "the double-fault stack"),
        (s.run_top, "the run stack"),
    ] {
        let bottom = top - STACK_SIZE;
        register_guard(bottom - (SLOT - STACK_SIZE), bottom, name);
    }
}

// ---- guard registry ----------------------------------------------------------------

/// A guard page (or range) whose access means "stack overflow".
#[derive(Clone, Copy)]
struct Guard {
    start: u64,
    end: u64,
    name: &'static str,
}

const MAX_GUARDS: usize = 16;

struct Guards {
    list: [Guard; MAX_GUARDS],
    len: usize,
}

static GUARDS: Spinlock<Guards> = Spinlock::new(Guards {
    list: [Guard {
        start: 0,
        end: 0,
        name: "",
    }; MAX_GUARDS],
    len: 0,
});

/// Register an unmapped guard range below a stack (ignored beyond 16 guards).
pub fn register_guard(start: u64, end: u64, name: &'static str) {
    let mut g = GUARDS.lock();
    if g.len < MAX_GUARDS {
        let n = g.len;
        g.list[n] = Guard { start, end, name };
        g.len += 1;
    }
}

/// The stack whose guard contains `addr` (widened by `slack` bytes on both sides). For
/// exception paths: never waits (a fault during registration itself finds nothing).
pub fn guard_hit(addr: u64, slack: u64) -> Option<&'static str> {
    let g = GUARDS.try_lock()?;
    g.list[..g.len]
        .iter()
        .find(|g| addr + slack >= g.start && addr < g.end + slack)
        .map(|g| g.name)
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let buf = core::hint::black_box([depth as u8; 512]);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + buf[7] as u64
}

/// Recurse until the guard page stops it.
pub fn overflow_now() -> ! {
    let r = recurse(0);
    panic!("stack overflow was not caught ({r})");
}
