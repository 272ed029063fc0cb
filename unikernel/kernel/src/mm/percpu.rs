//! The per-CPU front ends of the allocators: each CPU's kmalloc sheaves and its order-0
//! page list (`kmbench_mm::percpu`), used without the mm lock by the CPU that owns them.
//!
//! * `kmalloc_pcpu(size)` / `kfree_pcpu(ptr, size)`: Linux's `kmem_cache_alloc` /
//!   `kmem_cache_free` on the kmalloc cache for `size` (the caller names the cache, as
//!   `kmem_cache_free` does; no `virt_to_slab` lookup). Empty sheaf: one `mm::with` takes
//!   a batch from the slab; full: one `mm::with` gives a batch back.
//! * `alloc_page_pcpu()` / `free_page_pcpu(p)`: order-0 pages through the CPU's page list
//!   (Linux's `per_cpu_pages`), refilled and drained in batches from the buddy.
//! * With `mm_debug` on, both go straight to the shared allocators (as Linux turns
//!   sheaves off for debugged caches): a cached object would escape the debug checks.
//!
//! Which CPU: [`crate::arch::smp::current_cpu`], by stack pointer. A slot is touched only
//! by its own CPU, never from an interrupt handler (the TLB-flush IPI does not allocate),
//! so no two `&mut` to one slot exist at a time.
use super::state::with;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use kmbench_mm::kmalloc::{kmalloc_index, KMALLOC_SIZES};
use kmbench_mm::percpu::{CpuSheaves, Sheaf, SheafStats, SHEAF_BATCH};
use kmbench_mm::GFP_KERNEL;
use kmbench_protocol::limits::MAX_CPUS;

struct Slot {
    sheaves: CpuSheaves,
    pages: Sheaf,
    page_stats: SheafStats,
}

#[repr(align(64))]
struct PerCpuSlot(UnsafeCell<Slot>);

// SAFETY: slot `i` is only ever accessed by CPU `i` (module doc), one access at a time.
unsafe impl Sync for PerCpuSlot {}

#[allow(clippy::declare_interior_mutable_const)]
const SLOT_INIT: PerCpuSlot = PerCpuSlot(UnsafeCell::new(Slot {
    sheaves: CpuSheaves::new(),
    pages: Sheaf::new(),
    page_stats: SheafStats {
        alloc_fast: 0,
        refills: 0,
        free_fast: 0,
        flushes: 0,
    },
}));

/// One cache line (at least) per CPU: no false sharing between the slots.
static SLOTS: [PerCpuSlot; MAX_CPUS] = [SLOT_INIT; MAX_CPUS];

/// Run `f` on this CPU's slot.
#[inline(always)]
fn this_cpu<R>(f: impl FnOnce(&mut Slot) -> R) -> R {
    let cpu = crate::arch::smp::current_cpu();
    // SAFETY: slot `cpu` belongs to the CPU running this code; `f` does not re-enter
    // `this_cpu` (the refill/flush closures only take the mm lock), and interrupt
    // handlers never call it, so this is the only reference to the slot.
    f(unsafe { &mut *SLOTS[cpu].0.get() })
}

/// Set once by [`set_bypass`] (mm_debug): every call goes to the shared allocators.
static BYPASS: AtomicBool = AtomicBool::new(false);

/// Turn the per-CPU front ends off (mm_debug), before any CPU uses them.
pub fn set_bypass(on: bool) {
    BYPASS.store(on, Ordering::Relaxed);
}

/// An object of the kmalloc cache for `size` (≤ 8 KiB) through this CPU's sheaf; null when
/// out of memory or `size` has no slab cache.
#[inline(always)]
pub fn kmalloc_pcpu(size: usize) -> *mut u8 {
    let Some(idx) = kmalloc_index(size).filter(|&i| i < KMALLOC_SIZES.len()) else {
        return core::ptr::null_mut();
    };
    if BYPASS.load(Ordering::Relaxed) {
        return super::kmalloc(size, GFP_KERNEL);
    }
    this_cpu(|s| {
        s.sheaves
            .alloc(idx, |sheaf| {
                with(|m| {
                    sheaf.refill(|| {
                        let p = m
                            .kmalloc
                            .kmalloc(&mut m.pages, KMALLOC_SIZES[idx], GFP_KERNEL);
                        (!p.is_null()).then_some(p)
                    });
                })
            })
            .unwrap_or(core::ptr::null_mut())
    })
}

/// Free `ptr`, an object [`kmalloc_pcpu`] returned for `size` (on any CPU).
///
/// # Safety
/// `ptr` must come from `kmalloc_pcpu(size)` with the same size class and not have been
/// freed since.
#[inline(always)]
pub unsafe fn kfree_pcpu(ptr: *mut u8, size: usize) {
    let idx = kmalloc_index(size).expect("kfree_pcpu: size without a cache");
    if BYPASS.load(Ordering::Relaxed) {
        // SAFETY: forwarded from this function's contract (a live kmalloc object).
        return unsafe { super::kfree(ptr) };
    }
    this_cpu(|s| {
        s.sheaves.free(idx, ptr, |sheaf| {
            with(|m| {
                sheaf.flush(SHEAF_BATCH, |p| {
                    // SAFETY: every object in a sheaf is a live kmalloc object of this
                    // cache that its user freed (the caller contract).
                    if let Err(e) = unsafe { m.kmalloc.kfree_unchecked(&mut m.pages, p) } {
                        super::misuse("kfree_pcpu", e)
                    }
                });
            })
        })
    })
}

/// Whether the per-CPU front ends are bypassed (mm_debug).
pub fn bypassed() -> bool {
    BYPASS.load(Ordering::Relaxed)
}

/// An order-0 page through this CPU's page list.
#[inline(always)]
pub fn alloc_page_pcpu() -> *mut u8 {
    if BYPASS.load(Ordering::Relaxed) {
        return super::alloc_pages(0, GFP_KERNEL).map_or(core::ptr::null_mut(), |p| p.as_ptr());
    }
    this_cpu(|s| {
        if let Some(p) = s.pages.pop() {
            s.page_stats.alloc_fast += 1;
            return p;
        }
        s.page_stats.refills += 1;
        with(|m| {
            s.pages
                .refill(|| m.pages.alloc_pages(0, GFP_KERNEL).map(|p| p.as_ptr()));
        });
        s.pages.pop().unwrap_or(core::ptr::null_mut())
    })
}

/// Free an order-0 page [`alloc_page_pcpu`] returned (on any CPU).
pub fn free_page_pcpu(p: *mut u8) {
    if BYPASS.load(Ordering::Relaxed) {
        return super::free_pages(p, 0);
    }
    this_cpu(|s| {
        if s.pages.push(p).is_ok() {
            s.page_stats.free_fast += 1;
            return;
        }
        s.page_stats.flushes += 1;
        with(|m| {
            s.pages.flush(SHEAF_BATCH, |q| {
                if let Err(e) = m.pages.free_pages(q, 0) {
                    super::misuse("free_page_pcpu", e)
                }
            });
        });
        s.pages.push(p).expect("a flushed page list has room");
    })
}

/// This CPU's counters: (sheaves, page list).
pub fn stats() -> (SheafStats, SheafStats) {
    this_cpu(|s| (s.sheaves.stats, s.page_stats))
}

/// Give everything this CPU caches back to the shared allocators.
pub fn drain_this_cpu() {
    this_cpu(|s| {
        with(|m| {
            s.sheaves.drain(|_, p| {
                // SAFETY: cached objects are live kmalloc objects their users freed.
                if let Err(e) = unsafe { m.kmalloc.kfree_unchecked(&mut m.pages, p) } {
                    super::misuse("drain", e)
                }
            });
            s.pages.flush(0, |q| {
                if let Err(e) = m.pages.free_pages(q, 0) {
                    super::misuse("drain", e)
                }
            });
        })
    })
}
