//! The kernel's memory API with Linux names (`alloc_pages`, `kmalloc`, `vmalloc`, …),
//! each one short [`with`] borrow of the memory manager; plus misuse reporting, address
//! classification for fault reports, and the fault injections that need mm.
use super::state::{try_peek, with};
use super::{stacks, PAGE_OFFSET, STACKS_END, STACKS_START, VMALLOC_END, VMALLOC_START};
use crate::fault;
use core::ptr::NonNull;
use kmbench_mm::{Gfp, MmError, __GFP_ZERO};
use kmbench_protocol::GuestExit;

/// Report a misuse the allocators detected and end the run.
pub fn misuse(call: &str, e: MmError) -> ! {
    fault::die(
        GuestExit::MmMisuse,
        format_args!("{call}: {e}"),
        Default::default(),
    )
}

/// Map the xAPIC page (uncached, at its physical address, as the boot tables do) into the
/// kernel page tables, for the SMP suites' IPIs after `mm::init`. Idempotent.
pub fn map_xapic() {
    use x86_64::structures::paging::PageTableFlags as F;
    let base = crate::arch::apic::XAPIC_BASE;
    with(|m| {
        if m.pt.translate(base).is_some() {
            return;
        }
        let flags = m.pt.leaf_flags(true, false) | F::NO_CACHE | F::WRITE_THROUGH;
        let mut frames = super::window::BuddyFrames {
            pages: &mut m.pages,
        };
        m.pt.map_leaf(
            base,
            base,
            kmbench_protocol::PageSize::Size4K,
            flags,
            &mut frames,
        )
        .expect("map the xAPIC page");
    });
}

// ---- the kernel's memory API (Linux names) ----------------------------------------

pub fn alloc_pages(order: u8, gfp: Gfp) -> Option<NonNull<u8>> {
    with(|m| m.pages.alloc_pages(order, gfp))
}

pub fn free_pages(addr: *mut u8, order: u8) {
    if let Err(e) = with(|m| m.pages.free_pages(addr, order)) {
        misuse("free_pages", e)
    }
}

#[inline(always)]
pub fn kmalloc(size: usize, gfp: Gfp) -> *mut u8 {
    with(|m| m.kmalloc.kmalloc(&mut m.pages, size, gfp))
}

pub fn kzalloc(size: usize, gfp: Gfp) -> *mut u8 {
    with(|m| m.kmalloc.kzalloc(&mut m.pages, size, gfp))
}

/// Free a kmalloc object: the fast path the benchmarks time (Linux's `kfree`). Misuse the
/// allocator detects ends the run (`mm_misuse`).
///
/// # Safety
/// `ptr` must be null, `ZERO_SIZE_PTR`, or an object `kmalloc`/`kzalloc`/`kcalloc`/
/// `krealloc` returned that has not been freed since — unless the run has `mm_debug` on
/// (then every misuse is detected): see `Kmalloc::kfree_unchecked`. Use
/// [`kfree_checked`] for pointers not known to be good.
#[inline(always)]
pub unsafe fn kfree(ptr: *mut u8) {
    // SAFETY: forwarded from this function's contract.
    if let Err(e) = with(|m| unsafe { m.kmalloc.kfree_unchecked(&mut m.pages, ptr) }) {
        misuse("kfree", e)
    }
}

/// Free a kmalloc object after checking it is one (object start, not already free):
/// safe for any pointer, slower than [`kfree`] by one freelist walk. Misuse ends the run.
pub fn kfree_checked(ptr: *mut u8) {
    if let Err(e) = with(|m| m.kmalloc.kfree(&mut m.pages, ptr)) {
        misuse("kfree", e)
    }
}

pub fn kcalloc(n: usize, size: usize, gfp: Gfp) -> *mut u8 {
    with(|m| m.kmalloc.kcalloc(&mut m.pages, n, size, gfp))
}

pub fn krealloc(ptr: *mut u8, new_size: usize, gfp: Gfp) -> *mut u8 {
    with(|m| m.kmalloc.krealloc(&mut m.pages, ptr, new_size, gfp))
}

pub fn ksize(ptr: *const u8) -> usize {
    with(|m| m.kmalloc.ksize(&m.pages, ptr))
}

/// Top up the page-table frame cache so mapping `size` bytes cannot run out mid-way.
/// A request larger than free memory fails here, before taking anything.
pub fn prepare_vmalloc(size: usize) -> bool {
    with(|m| prepare_vmalloc_in(m, size))
}

/// [`prepare_vmalloc`] for a caller already inside [`with`].
pub fn prepare_vmalloc_in(m: &mut super::KernelMm, size: usize) -> bool {
    if (size as u64).div_ceil(4096) > m.pages.buddy.nr_free_pages() {
        return false;
    }
    let need = size / (2 << 20) + 4;
    let pages = &mut m.pages;
    m.pt.refill_frame_cache(need, || {
        pages
            .alloc_pages(0, Gfp(0))
            .map(|p| p.as_ptr() as u64 - PAGE_OFFSET)
    })
}

/// Give page-table frames the last vmalloc did not need back to the buddy (for a caller
/// already inside [`with`]).
pub fn trim_frame_cache_in(m: &mut super::KernelMm) {
    const KEEP: usize = 8;
    while m.pt.frame_cache.len() > KEEP {
        let f = m.pt.frame_cache.pop().expect("non-empty");
        if let Err(e) = m.pages.free_pages(phys_to_virt(f), 0) {
            misuse("page-table frame cache", e)
        }
    }
}

pub fn vmalloc(size: usize, gfp: Gfp) -> *mut u8 {
    with(|m| {
        if !prepare_vmalloc_in(m, size) {
            return core::ptr::null_mut();
        }
        let p = m.vmalloc.vmalloc(&mut m.pages, &mut m.pt, size, gfp);
        trim_frame_cache_in(m);
        p
    })
}

pub fn vzalloc(size: usize) -> *mut u8 {
    vmalloc(size, __GFP_ZERO)
}

pub fn vmalloc_huge(size: usize, gfp: Gfp) -> *mut u8 {
    with(|m| {
        if !prepare_vmalloc_in(m, size) {
            return core::ptr::null_mut();
        }
        let p = m.vmalloc.vmalloc_huge(&mut m.pages, &mut m.pt, size, gfp);
        trim_frame_cache_in(m);
        p
    })
}

pub fn vfree(ptr: *mut u8) {
    if let Err(e) = with(|m| m.vmalloc.vfree(&mut m.pages, &mut m.pt, ptr)) {
        misuse("vfree", e)
    }
}

pub fn virt_to_phys(addr: u64) -> u64 {
    addr - PAGE_OFFSET
}

pub fn phys_to_virt(phys: u64) -> *mut u8 {
    (phys + PAGE_OFFSET) as *mut u8
}

/// What an address is, for fault reports (no allocation, no locks).
pub fn describe_address(addr: u64) -> &'static str {
    if (VMALLOC_START..VMALLOC_END).contains(&addr) {
        // The fault may have hit while mm is borrowed (inside an allocator call or a
        // benchmark): then say only which area it is.
        match try_peek(|m| m.vmalloc.find_area(addr).is_none()) {
            Some(true) => "vmalloc area, not inside any allocation: a guard page or a freed area",
            _ => "vmalloc area",
        }
    } else if (STACKS_START..STACKS_END).contains(&addr) {
        "kernel stack area"
    } else if (PAGE_OFFSET..VMALLOC_START).contains(&addr) {
        "direct map"
    } else {
        "not mapped by the kernel"
    }
}

/// Fault injections that need memory management.
pub fn inject_fault(kind: kmbench_protocol::FaultInjection) {
    use kmbench_protocol::FaultInjection as F;
    let gfp = kmbench_mm::GFP_KERNEL;
    match kind {
        F::DoubleFree => {
            let p = kmalloc(64, gfp);
            kfree_checked(p);
            kfree_checked(p);
        }
        F::ForeignFree => {
            let local = [0u8; 64];
            kfree_checked(local.as_ptr() as *mut u8);
        }
        F::Redzone => {
            let p = kmalloc(64, gfp);
            // SAFETY: deliberately writes one byte past a 64-byte object (into its redzone
            // in debug mode; into the next object otherwise) to test overrun detection.
            unsafe { p.add(64).write_volatile(0x41) };
            kfree_checked(p);
            if !with(|m| m.mm_debug) {
                log::warn!("redzone overrun went undetected: mm_debug is off");
            }
        }
        F::VfreeForeign => {
            let p = vmalloc(3 * 4096, gfp);
            // SAFETY: pointer arithmetic only; the interior pointer is passed to vfree on purpose.
            vfree(unsafe { p.add(4096) });
        }
        F::StackOverflow => {
            stacks::overflow_now();
        }
        F::VmallocGuard => {
            let p = vmalloc(2 * 4096, gfp);
            // SAFETY: deliberately reads the guard page after a 2-page area.
            unsafe { core::ptr::read_volatile(p.add(2 * 4096)) };
        }
        F::NullDeref => {
            // SAFETY: deliberately dereferences a near-NULL pointer.
            unsafe { core::ptr::read_volatile(core::ptr::null::<u64>().wrapping_add(1)) };
        }
        other => panic!("fault injection {other:?} is handled elsewhere"),
    }
}

// ---- small queries ------------------------------------------------------------------

/// Free pages in the buddy.
pub fn nr_free_pages() -> u64 {
    with(|m| m.pages.buddy.nr_free_pages())
}

/// Whether the run enabled the allocators' debug checks.
pub fn mm_debug() -> bool {
    with(|m| m.mm_debug)
}

/// Walk the kernel page tables: physical address, leaf size and flags behind `virt`.
pub fn translate(
    virt: u64,
) -> Option<(
    u64,
    kmbench_protocol::PageSize,
    x86_64::structures::paging::PageTableFlags,
)> {
    with(|m| m.pt.translate(virt))
}

/// Test-only (cargo features `ab-test-cost` / `ab-test-nop`, both off in normal builds):
/// a fixed cost on every page vfree unmaps (the `VmallocHw::unmap` of the kernel page
/// table, inside the timed vfree), so `kmbench ab` can be shown to detect a real slowdown
/// of one path (`scripts/ci-eval.sh` prints the change it measured). The cost is a TSC
/// wait of [`AB_TEST_COST_NS`] (28 ns with `ab-test-cost`; measured +3.0–4.3% on
/// `vmalloc/pair/4096/lazy` over 10 ab jobs, 32 ns gave +4.3–8.5%: the wait ends on an
/// `rdtsc` of ~10 ns, so the visible cost moves in steps), a wall-clock cost out-of-order execution cannot hide, unlike the one dependent
/// add per kmalloc this used to be (+5% on `kmalloc/alloc_n/8` in one build, +2% after
/// unrelated kernel changes moved the code around it). `ab-test-nop` runs the same wait
/// for 0 ns (the same two `rdtsc`, the same code): compare
/// `--base-features ab-test-nop --new-features ab-test-cost`, because adding the call at
/// all changes the code layout, which is not the cost under test. (Even nop vs cost builds
/// differ in layout: features change the crate's symbol hashes and so the linker's section
/// order; ab reports a few percent on some benchmarks the cost never touches, e.g.
/// `alloc_pages/pair/0` -5.5% in every job of one evaluation.)
#[cfg(any(feature = "ab-test-cost", feature = "ab-test-nop"))]
#[inline(never)]
pub(super) fn ab_test_cost() {
    let wait = crate::timing::tsc_hz() * core::hint::black_box(AB_TEST_COST_NS) / 1_000_000_000;
    let t0 = crate::arch::tsc::rdtsc();
    while crate::arch::tsc::rdtsc().wrapping_sub(t0) < wait {
        core::hint::spin_loop();
    }
}

#[cfg(feature = "ab-test-cost")]
const AB_TEST_COST_NS: u64 = 28;
#[cfg(all(feature = "ab-test-nop", not(feature = "ab-test-cost")))]
const AB_TEST_COST_NS: u64 = 0;
