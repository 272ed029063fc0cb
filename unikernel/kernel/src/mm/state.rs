//! The one memory-management state ([`KernelMm`]) and its scoped accessor.
//!
//! There is no `&'static mut` to it: code reaches it through [`with`], which lends a
//! `&mut KernelMm` for the duration of a closure and marks it borrowed meanwhile. A
//! nested [`with`] (a path that re-enters mm while already inside it) panics instead of
//! aliasing. Exception paths, which may run while a benchmark is inside [`with`] (a #PF in
//! the middle of a timed loop), use [`try_peek`]: it yields nothing while the state is lent
//! out, so a fault report never reads half-updated allocator state.
//!
//! Two modes, like Linux's SMP alternatives (which patch the `lock` prefixes out while one
//! CPU is online):
//! * **One CPU** (the default): the borrow flag is a plain load and two stores (no
//!   locked instruction), so the per-call `kmalloc`/`kfree` wrappers stay within a cycle
//!   or two of a direct call. Sound because only the boot CPU runs mm, with interrupts
//!   off: the only code that can interleave with a borrow is a synchronous exception
//!   handler, and those only peek. Application processors are refused ([`with`] panics,
//!   [`try_peek`] yields nothing).
//! * **SMP** ([`enable_smp`], once, by the boot CPU before it hands work to other CPUs;
//!   never switched back): [`with`] takes a spin lock (`lock cmpxchg` on the owner word,
//!   owner = CPU + 1) on every CPU. A nested `with` on the CPU that holds the lock still
//!   panics instead of deadlocking. Interrupt handlers (the TLB-flush IPI) never use mm.
use super::paging::KernelPageTable;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use kmbench_mm::{Kmalloc, PageAllocator, Vmalloc};
use kmbench_protocol::PageSize;

/// All memory-management state.
pub struct KernelMm {
    pub pages: PageAllocator,
    pub kmalloc: Kmalloc,
    pub vmalloc: Vmalloc,
    pub pt: KernelPageTable,
    pub direct_map_leaf: PageSize,
    /// Leaves the direct map used: 4K, 2M, 1G.
    pub direct_map_leaves: [u64; 3],
    pub mm_debug: bool,
}

struct MmCell {
    value: UnsafeCell<Option<KernelMm>>,
    /// True while a `with` closure holds the `&mut`.
    borrowed: AtomicBool,
    /// SMP mode: 0 when free, else the holding CPU + 1.
    owner: AtomicU32,
    /// SMP mode is on (see the module doc).
    smp: AtomicBool,
    /// Set once by `install`; never cleared.
    ready: AtomicBool,
}

// SAFETY: one-CPU mode: one CPU, interrupts off (see the module doc), so accesses never
// run concurrently, and the borrow flag keeps them from overlapping through re-entry.
// SMP mode: every `with` holds the owner lock, which serialises CPUs.
unsafe impl Sync for MmCell {}

static MM: MmCell = MmCell {
    value: UnsafeCell::new(None),
    borrowed: AtomicBool::new(false),
    owner: AtomicU32::new(0),
    smp: AtomicBool::new(false),
    ready: AtomicBool::new(false),
};

/// Switch to SMP mode: from now on every [`with`] takes the lock. Called by the boot CPU,
/// outside any `with`, before other CPUs may use mm.
pub fn enable_smp() {
    assert!(
        !MM.borrowed.load(Ordering::Acquire),
        "mm::enable_smp inside mm::with"
    );
    MM.smp.store(true, Ordering::SeqCst);
}

/// Whether mm is in SMP mode.
pub fn smp_enabled() -> bool {
    MM.smp.load(Ordering::Relaxed)
}

/// [`with`] in SMP mode: spin for the owner word, then lend the value.
#[inline(never)]
fn with_locked<R>(f: impl FnOnce(&mut KernelMm) -> R) -> R {
    let me = crate::arch::smp::current_cpu() as u32 + 1;
    loop {
        match MM
            .owner
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(o) if o == me => reentered(),
            Err(_) => core::hint::spin_loop(),
        }
    }
    // SAFETY: this CPU holds the owner lock, so no other `&mut` to the value exists on
    // any CPU; a nested `with` on this CPU stops at the owner check.
    let r = unsafe { lend(f) };
    MM.owner.store(0, Ordering::Release);
    r
}

/// Mark the state borrowed, run `f` on it, unmark it.
///
/// # Safety
/// The caller has exclusive access (one-CPU mode: the borrow flag was clear; SMP mode:
/// it holds the owner lock), so the `&mut` lent to `f` is the only reference.
#[inline(always)]
unsafe fn lend<R>(f: impl FnOnce(&mut KernelMm) -> R) -> R {
    MM.borrowed.store(true, Ordering::Release);
    // SAFETY: exclusive by the caller's contract; `ready` is only set after the value
    // was written, and checked here.
    let m = unsafe { (*MM.value.get()).as_mut() };
    let m = match m {
        Some(m) if MM.ready.load(Ordering::Relaxed) => m,
        _ => not_ready(),
    };
    let r = f(m);
    MM.borrowed.store(false, Ordering::Release);
    r
}

/// Install the state built by `mm::init`. Panics if called twice.
pub(super) fn install(mm: KernelMm) {
    assert!(!MM.ready.load(Ordering::Acquire), "mm::init ran twice");
    // SAFETY: not ready yet, so no `with` or `try_peek` can be looking at the value.
    unsafe { *MM.value.get() = Some(mm) };
    MM.ready.store(true, Ordering::Release);
}

/// Whether `mm::init` has run.
pub fn is_initialized() -> bool {
    MM.ready.load(Ordering::Acquire)
}

/// Run `f` with exclusive access to the memory manager.
///
/// Panics if mm is not initialised yet, or if called from inside another `with` (which
/// would alias the state): call the allocator API (`mm::kmalloc`, …) outside, or use the
/// `&mut KernelMm` you already hold.
#[inline(always)]
pub fn with<R>(f: impl FnOnce(&mut KernelMm) -> R) -> R {
    if MM.smp.load(Ordering::Relaxed) {
        return with_locked(f);
    }
    if MM.borrowed.load(Ordering::Acquire) {
        reentered();
    }
    if crate::arch::smp::current_cpu() != 0 {
        not_boot_cpu();
    }
    // SAFETY: the flag was clear, so no other `&mut` to the value exists (one CPU; a
    // nested `with` stops at the check above; exception paths only `try_peek`, which
    // refuses while the flag is set).
    unsafe { lend(f) }
}

/// Shared access for exception and fault paths: `None` before init and while the state is
/// lent out by [`with`] (the fault may have interrupted it mid-update).
pub fn try_peek<R>(f: impl FnOnce(&KernelMm) -> R) -> Option<R> {
    if !is_initialized()
        || MM.borrowed.load(Ordering::Acquire)
        || MM.owner.load(Ordering::Acquire) != 0
        || crate::arch::smp::current_cpu() != 0
    {
        return None;
    }
    // SAFETY: initialised and not lent out; this is a synchronous exception path on the one
    // CPU, so no `&mut` exists while the shared reference lives.
    let m = unsafe { (*MM.value.get()).as_ref() }?;
    Some(f(m))
}

#[cold]
#[inline(never)]
fn reentered() -> ! {
    panic!("mm::with re-entered: the memory manager is already borrowed")
}

#[cold]
#[inline(never)]
fn not_boot_cpu() -> ! {
    panic!("mm used on an application processor: mm belongs to the boot CPU until it has a lock")
}

#[cold]
#[inline(never)]
fn not_ready() -> ! {
    panic!("mm used before mm::init")
}
