//! kmbench-mm: the portable memory-management core of the kmbench unikernel.
//!
//! Linux-style allocators written against plain data structures so that the same code
//! runs in the `no_std` kernel and in host unit tests:
//!
//! * [`buddy`] — the buddy page allocator. Its `struct page` array ([`buddy::PageDesc`],
//!   "mem_map") lives outside the managed RAM, so the buddy never touches the pages it
//!   hands out. Works in page frame numbers (pfns).
//! * [`direct_map`] — `virt = phys + offset` (Linux's `PAGE_OFFSET` linear map).
//! * [`page_alloc`] — buddy + direct map: `alloc_pages`/`free_pages` on virtual
//!   addresses, with [`gfp`] flags (`__GFP_ZERO`).
//! * [`slab`] + [`kmalloc`] — a SLUB-like object allocator: one [`slab::KmemCache`] per
//!   size class (kmalloc-8 … kmalloc-8k) carved out of buddy blocks; bigger requests go
//!   straight to `alloc_pages` (kmalloc_large). Optional debug mode (redzones, poison,
//!   double-free and foreign-pointer detection).
//! * [`vmalloc`] — virtually contiguous areas backed by separate frames from
//!   `page_alloc`, mapped through the [`vmalloc::VmallocHw`] trait (the kernel writes
//!   real PTEs; tests use a fake page table), with guard pages, 2 MiB leaves
//!   (`vmalloc_huge`) and three TLB flush policies (per-page, full, lazy purge).
//! * [`percpu`] — per-CPU sheaves in front of the slab caches and per-CPU page lists in
//!   front of the buddy (one [`percpu::Sheaf`] type: a CPU-local array refilled and
//!   flushed in batches under the shared lock), with threaded host tests of the
//!   cross-CPU (remote free) path.
//! * [`error`] — [`MmError`], what every misuse check reports.
//! * `testing` (feature `testing`, host only) — an arena standing in for RAM and a fake
//!   page table, shared by the unit tests, property tests and benches.
//!
//! Layering: `buddy → page_alloc → slab/kmalloc`, and `vmalloc` over
//! `page_alloc + VmallocHw`. Nothing here locks: the caller serialises access to the
//! shared allocators (the kernel holds them in one `static` behind its mm lock), and the
//! per-CPU sheaves of [`percpu`] are each used by one CPU only.
//!
//! Safety model: the allocator methods are safe functions that dereference addresses
//! they derive from the direct map. They rely on one invariant the kernel establishes
//! at init: `PageAllocator::direct_map` maps every pfn described by `mem_map` to RAM
//! that only this crate hands out, and `free_range` is given only such RAM. Pointers
//! passed to `kfree`/`krealloc` are dereferenced only after `mem_map` confirms they lie
//! in a slab or kmalloc_large block, and `kfree` also checks the object boundary and
//! that the object is not free already. The one entry point that trusts its caller is
//! `Kmalloc::kfree_unchecked` (the fast path, an `unsafe fn`: with debug off a double
//! free of an older object would corrupt a freelist). `vmalloc`'s own bookkeeping (area map, frame
//! lists, free ranges) uses the global allocator (`alloc`), so the kernel's
//! `#[global_allocator]` must not be routed through the same locked `Vmalloc`.
#![cfg_attr(not(any(test, feature = "testing")), no_std)]

extern crate alloc;

pub mod buddy;
pub mod direct_map;
pub mod error;
pub mod gfp;
pub mod kmalloc;
pub mod page_alloc;
pub mod percpu;
pub mod slab;
pub mod vmalloc;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use buddy::{
    mem_map_bytes, mem_map_sections, BuddyAllocator, BuddyStats, PageDesc, PageKind, SECTION_PAGES,
};
pub use direct_map::DirectMap;
pub use error::MmError;
pub use gfp::{Gfp, __GFP_ZERO, GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT};
pub use kmalloc::{CacheStats, Kmalloc, ZERO_SIZE_PTR};
pub use page_alloc::PageAllocator;
pub use vmalloc::{
    FlushMode, HugeFallback, LeafSize, NoHook, Phase, PhaseHook, VmAreaInfo, Vmalloc, VmallocHw,
    VmallocStats,
};

/// log2 of the base page size.
pub const PAGE_SHIFT: u32 = 12;
/// The base page size (4 KiB).
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// Largest buddy order, inclusive: orders `0..=18`, order 18 = 1 GiB.
pub const MAX_ORDER: u8 = 18;
/// Number of buddy orders (`MAX_ORDER + 1`).
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;

/// Smallest order whose block holds `size` bytes (Linux `get_order`); `size` 0 gives 0.
#[inline]
pub const fn get_order(size: usize) -> u8 {
    if size <= PAGE_SIZE {
        return 0;
    }
    let pages = (size - 1) >> PAGE_SHIFT; // pages - 1
    (usize::BITS - pages.leading_zeros()) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn get_order_matches_linux() {
        assert_eq!(get_order(0), 0);
        assert_eq!(get_order(1), 0);
        assert_eq!(get_order(4096), 0);
        assert_eq!(get_order(4097), 1);
        assert_eq!(get_order(8192), 1);
        assert_eq!(get_order(8193), 2);
        assert_eq!(get_order(2 << 20), 9);
        assert_eq!(get_order(1 << 30), 18);
    }
}
