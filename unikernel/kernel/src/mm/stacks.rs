//! Small fixed kernel stacks (16 KiB) with an unmapped guard below each, like Linux's
//! CONFIG_VMAP_STACK: running off the bottom hits the guard and is reported as a
//! "kernel stack overflow" (via #PF at CPL3, via #DF on its own IST stack at CPL0)
//! instead of silently corrupting whatever lies below.
use super::paging::{KernelPageTable, Leaf};
use super::STACKS_START;
use crate::arch::gdt;
use crate::fault;
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
            Leaf::K4,
            flags,
            frames,
        )
        .expect("map stack");
    }
    base + STACK_SIZE
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
        fault::register_stack_guard(bottom - (SLOT - STACK_SIZE), bottom, name);
    }
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
