//! kmalloc/kfree: general-purpose allocation by size, on top of one [`KmemCache`] per
//! size class (kmalloc-8 … kmalloc-8k) and, above 8 KiB, whole buddy blocks
//! (`kmalloc_large`).
//!
//! The fast path is a table lookup (size → class) plus a freelist pop; `kfree` goes
//! address → pfn → [`PageDesc`](crate::PageDesc) → owning cache → freelist push. No
//! search, no lock (single CPU; the caller serialises).
use alloc::vec::Vec;

use crate::buddy::PageKind;
use crate::error::MmError;
use crate::gfp::Gfp;
use crate::page_alloc::PageAllocator;
use crate::slab::KmemCache;
use crate::{get_order, MAX_ORDER, PAGE_SIZE};

/// What `kmalloc(0)` returns (Linux `ZERO_SIZE_PTR`): non-null, distinct from every real
/// allocation, faults if dereferenced; `kfree` and `ksize` accept it.
pub const ZERO_SIZE_PTR: *mut u8 = 16 as *mut u8;
/// Largest size served by a slab cache; bigger requests use `alloc_pages`.
pub const KMALLOC_MAX_CACHE_SIZE: usize = 8192;
/// Size classes, as in Linux's `kmalloc_info`.
pub const KMALLOC_SIZES: [usize; NR_KMALLOC_CACHES] = [
    8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
];
pub const KMALLOC_NAMES: [&str; NR_KMALLOC_CACHES] = [
    "kmalloc-8",
    "kmalloc-16",
    "kmalloc-32",
    "kmalloc-64",
    "kmalloc-96",
    "kmalloc-128",
    "kmalloc-192",
    "kmalloc-256",
    "kmalloc-512",
    "kmalloc-1k",
    "kmalloc-2k",
    "kmalloc-4k",
    "kmalloc-8k",
];
pub const NR_KMALLOC_CACHES: usize = 13;

/// Linux `size_index`: class for sizes 1..=192, indexed by `(size - 1) / 8`.
const SIZE_INDEX: [u8; 24] = [
    0, 1, 2, 2, 3, 3, 3, 3, // 8, 16, 32, 64
    4, 4, 4, 4, 5, 5, 5, 5, // 96, 128
    6, 6, 6, 6, 6, 6, 6, 6, // 192
];

/// Cache index for a request of `size` bytes (1..=8192), Linux `kmalloc_index`.
#[inline(always)]
pub fn kmalloc_index(size: usize) -> Option<usize> {
    if size == 0 || size > KMALLOC_MAX_CACHE_SIZE {
        None
    } else if size <= 192 {
        Some(SIZE_INDEX[(size - 1) >> 3] as usize)
    } else {
        // fls(size - 1): 193..=256 -> 8 -> kmalloc-256 (index 7), ...
        Some((usize::BITS - (size - 1).leading_zeros()) as usize - 1)
    }
}

/// One line of `/proc/slabinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheStats {
    pub name: &'static str,
    pub object_size: usize,
    /// Bytes per object including debug metadata.
    pub stride: usize,
    pub slab_order: u8,
    pub objects_per_slab: usize,
    pub slabs: u64,
    pub active_objects: u64,
    pub total_objects: u64,
}

/// All kmalloc caches plus kmalloc_large accounting.
pub struct Kmalloc {
    caches: [KmemCache; NR_KMALLOC_CACHES],
    debug: bool,
    large_live: u64,
    large_pages: u64,
}

impl Default for Kmalloc {
    fn default() -> Self {
        Self::new()
    }
}

const fn caches(debug: bool) -> [KmemCache; NR_KMALLOC_CACHES] {
    macro_rules! c {
        ($i:expr) => {
            KmemCache::new(
                $i,
                KMALLOC_NAMES[$i as usize],
                KMALLOC_SIZES[$i as usize],
                debug,
            )
        };
    }
    [
        c!(0),
        c!(1),
        c!(2),
        c!(3),
        c!(4),
        c!(5),
        c!(6),
        c!(7),
        c!(8),
        c!(9),
        c!(10),
        c!(11),
        c!(12),
    ]
}

impl Kmalloc {
    /// Debug off; usable in a `static`.
    pub const fn new() -> Self {
        Self::with_debug(false)
    }

    /// `debug` = mm_debug: redzones, poisoning, double-free/foreign-pointer checks.
    pub const fn with_debug(debug: bool) -> Self {
        Kmalloc {
            caches: caches(debug),
            debug,
            large_live: 0,
            large_pages: 0,
        }
    }

    pub fn debug(&self) -> bool {
        self.debug
    }

    /// Switch debug mode. Rule: only while nothing is allocated (the object layout
    /// changes); empty slabs are given back first. Otherwise `Err(DebugModeBusy)`.
    pub fn set_debug(&mut self, pa: &mut PageAllocator, on: bool) -> Result<(), MmError> {
        let live = self.nr_allocated();
        if live != 0 {
            return Err(MmError::DebugModeBusy { live_objects: live });
        }
        self.shrink(pa);
        for c in &mut self.caches {
            c.relayout(on);
        }
        self.debug = on;
        Ok(())
    }

    /// Allocate `size` bytes. Null when out of memory; `size == 0` gives
    /// [`ZERO_SIZE_PTR`] like Linux. `__GFP_ZERO` zeroes the whole object (`ksize` bytes).
    #[inline(always)]
    pub fn kmalloc(&mut self, pa: &mut PageAllocator, size: usize, gfp: Gfp) -> *mut u8 {
        let idx = if size <= 192 {
            if size == 0 {
                return ZERO_SIZE_PTR;
            }
            SIZE_INDEX[(size - 1) >> 3] as usize
        } else if size <= KMALLOC_MAX_CACHE_SIZE {
            (usize::BITS - (size - 1).leading_zeros()) as usize - 1
        } else {
            return self.kmalloc_large(pa, size, gfp);
        };
        let c = &mut self.caches[idx];
        let p = c.alloc(pa);
        if gfp.zero() && !p.is_null() {
            // SAFETY: p is a freshly allocated object of object_size bytes.
            unsafe { core::ptr::write_bytes(p, 0, c.object_size as usize) };
        }
        p
    }

    #[cold]
    fn kmalloc_large(&mut self, pa: &mut PageAllocator, size: usize, gfp: Gfp) -> *mut u8 {
        let order = get_order(size);
        if order > MAX_ORDER {
            return core::ptr::null_mut();
        }
        let Some(p) = pa.alloc_pages(order, gfp) else {
            return core::ptr::null_mut();
        };
        let pfn = pa.direct_map.virt_to_pfn(p.as_ptr());
        if let Some(d) = pa.buddy.page_mut(pfn) {
            d.kind = PageKind::Large;
        }
        self.large_live += 1;
        self.large_pages += 1 << order;
        p.as_ptr()
    }

    /// `kmalloc(size, gfp | __GFP_ZERO)`.
    pub fn kzalloc(&mut self, pa: &mut PageAllocator, size: usize, gfp: Gfp) -> *mut u8 {
        self.kmalloc(pa, size, gfp | crate::gfp::__GFP_ZERO)
    }

    /// An array of `n` elements of `size` bytes, zeroed; null if `n * size` overflows.
    pub fn kcalloc(&mut self, pa: &mut PageAllocator, n: usize, size: usize, gfp: Gfp) -> *mut u8 {
        match n.checked_mul(size) {
            Some(total) => self.kzalloc(pa, total, gfp),
            None => core::ptr::null_mut(),
        }
    }

    /// Resize: returns `ptr` itself if it is already big enough (`ksize`), else a new
    /// object holding the old contents, freeing `ptr`. Null on OOM (then `ptr` is left
    /// untouched) or when `ptr` is not a kmalloc pointer. `new_size == 0` frees and
    /// returns `ZERO_SIZE_PTR`; a null/ZERO_SIZE_PTR `ptr` behaves like `kmalloc`.
    // Safe: `ptr` is checked like `kfree` checks it before it is read or freed (not a live
    // object → null), and then only read within its object (see the crate-level invariant).
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn krealloc(
        &mut self,
        pa: &mut PageAllocator,
        ptr: *mut u8,
        new_size: usize,
        gfp: Gfp,
    ) -> *mut u8 {
        if (ptr as usize) <= ZERO_SIZE_PTR as usize {
            return self.kmalloc(pa, new_size, gfp);
        }
        if new_size == 0 {
            let _ = self.kfree(pa, ptr);
            return ZERO_SIZE_PTR;
        }
        let old = self.ksize(pa, ptr);
        if old == 0 || self.check_live(pa, ptr).is_err() {
            return core::ptr::null_mut();
        }
        if new_size <= old {
            return ptr;
        }
        let n = self.kmalloc(pa, new_size, gfp);
        if n.is_null() {
            return n;
        }
        // SAFETY: ptr holds `old` bytes (ksize) and n at least new_size > old; they are
        // distinct live allocations, so they do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(ptr, n, old) };
        let _ = self.kfree(pa, ptr);
        n
    }

    /// Usable size of an allocation (its class size, or the block size for large ones);
    /// 0 for null, `ZERO_SIZE_PTR` and pointers kmalloc did not return.
    pub fn ksize(&self, pa: &PageAllocator, ptr: *const u8) -> usize {
        if (ptr as usize) <= ZERO_SIZE_PTR as usize {
            return 0;
        }
        match pa.virt_to_page(ptr) {
            Some(d) if d.kind == PageKind::Slab || d.kind == PageKind::SlabTail => {
                self.caches[d.cache as usize].object_size as usize
            }
            Some(d) if d.kind == PageKind::Large && (ptr as usize).is_multiple_of(PAGE_SIZE) => {
                PAGE_SIZE << d.order
            }
            _ => 0,
        }
    }

    /// Free a kmalloc allocation, checking everything that can be checked first: the
    /// page's owner, the object boundary, and (with debug off) that the object is not on
    /// its slab's freelist already, i.e. not a double free. `kfree(null)` and
    /// `kfree(ZERO_SIZE_PTR)` do nothing. On error nothing is freed. The checks cost a
    /// walk of one slab's freelist; [`kfree_unchecked`](Self::kfree_unchecked) is the
    /// fast path (Linux's `kfree`).
    // Safe: `ptr` is validated against mem_map and the slab's freelist before any write.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn kfree(&mut self, pa: &mut PageAllocator, ptr: *mut u8) -> Result<(), MmError> {
        self.check_live(pa, ptr)?;
        // SAFETY: `check_live` verified that `ptr` is null/ZERO_SIZE_PTR, not in a slab
        // page (those paths never write through it), or the start of an allocated object
        // of its slab (or the slab runs in debug mode, which verifies that itself).
        unsafe { self.kfree_unchecked(pa, ptr) }
    }

    /// For a slab pointer with debug off: is it an object start, and not free already?
    fn check_live(&self, pa: &PageAllocator, ptr: *mut u8) -> Result<(), MmError> {
        if (ptr as usize) <= ZERO_SIZE_PTR as usize {
            return Ok(());
        }
        let pfn = pa.direct_map.virt_to_pfn(ptr);
        let Some(idx) = pa.buddy.pfn_to_idx(pfn) else {
            return Ok(()); // rejected by kfree_unchecked without a write
        };
        let d = pa.buddy.desc(idx);
        let hidx = match d.kind {
            PageKind::Slab => idx,
            PageKind::SlabTail => {
                let order = self.caches[d.cache as usize].order;
                idx - (pfn & ((1u64 << order) - 1)) as usize
            }
            _ => return Ok(()),
        };
        let c = &self.caches[d.cache as usize];
        if c.debug() {
            return Ok(());
        }
        c.check_live(pa, hidx, ptr as u64)
    }

    /// Free a kmalloc allocation (the fast path). `kfree(null)` and `kfree(ZERO_SIZE_PTR)`
    /// do nothing. Pointers that are not kmalloc objects are always rejected when their
    /// page is not a slab/large page; double frees, mid-object pointers, and redzone
    /// overruns are caught in debug mode (with debug off, only the cheap cases: a double
    /// free of the most recently freed object, a misaligned pointer). On error nothing is
    /// freed.
    ///
    /// # Safety
    /// With debug off, `ptr` must be null, `ZERO_SIZE_PTR`, or an object this allocator
    /// returned and that has not been freed since: a double free of an older object, or
    /// a pointer into the middle of an object of a non-power-of-two cache, corrupts the
    /// slab's freelist (two later allocations would return the same memory). With debug
    /// on, those are detected and reported instead. Use [`kfree`](Self::kfree) when the
    /// pointer is not known to be good.
    #[inline(always)]
    pub unsafe fn kfree_unchecked(
        &mut self,
        pa: &mut PageAllocator,
        ptr: *mut u8,
    ) -> Result<(), MmError> {
        if (ptr as usize) <= ZERO_SIZE_PTR as usize {
            return Ok(());
        }
        let addr = ptr as u64;
        let pfn = pa.direct_map.virt_to_pfn(ptr);
        let Some(idx) = pa.buddy.pfn_to_idx(pfn) else {
            return Err(MmError::ForeignPointer {
                addr,
                reason: "it is not in the direct map of managed RAM (stack, static, vmalloc or wild pointer?)",
            });
        };
        let d = *pa.buddy.desc(idx);
        match d.kind {
            PageKind::Slab => self.caches[d.cache as usize].free(pa, idx, addr),
            PageKind::SlabTail => {
                let c = &mut self.caches[d.cache as usize];
                let head = pfn & !((1u64 << c.order) - 1);
                let hidx = idx - (pfn - head) as usize;
                c.free(pa, hidx, addr)
            }
            _ => self.kfree_other(pa, addr, pfn, d.kind, d.order),
        }
    }

    #[cold]
    fn kfree_other(
        &mut self,
        pa: &mut PageAllocator,
        addr: u64,
        pfn: u64,
        kind: PageKind,
        order: u8,
    ) -> Result<(), MmError> {
        let reason = match kind {
            PageKind::Large if addr.is_multiple_of(PAGE_SIZE as u64) => {
                if let Some(d) = pa.buddy.page_mut(pfn) {
                    d.kind = PageKind::Allocated;
                }
                pa.buddy.free_pages(pfn, order)?;
                self.large_live -= 1;
                self.large_pages -= 1 << order;
                return Ok(());
            }
            PageKind::Large => "it points inside a large kmalloc block, not at its start",
            PageKind::Free => {
                "its page is free in the buddy allocator (already freed, or never allocated)"
            }
            PageKind::Tail => {
                "it points into a multi-page block that is not a kmalloc slab (or a free block)"
            }
            PageKind::Allocated => "its page came from alloc_pages, not kmalloc; use free_pages",
            PageKind::Vmalloc => "its page backs a vmalloc area; use vfree",
            _ => "its page is reserved memory (kernel image, firmware, mem_map)",
        };
        Err(MmError::ForeignPointer { addr, reason })
    }

    /// Give every empty slab back to the buddy (all caches' `kmem_cache_shrink`).
    pub fn shrink(&mut self, pa: &mut PageAllocator) {
        for c in &mut self.caches {
            c.shrink(pa);
        }
    }

    /// Live allocations (slab objects + large blocks); 0 once everything is freed.
    pub fn nr_allocated(&self) -> u64 {
        self.caches.iter().map(|c| c.active).sum::<u64>() + self.large_live
    }

    /// Live large (page-allocator) allocations and their pages.
    pub fn large_stats(&self) -> (u64, u64) {
        (self.large_live, self.large_pages)
    }

    /// Per-cache statistics (`/proc/slabinfo`).
    pub fn cache_stats(&self) -> Vec<CacheStats> {
        self.caches
            .iter()
            .map(|c| CacheStats {
                name: c.name,
                object_size: c.object_size as usize,
                stride: c.stride as usize,
                slab_order: c.order,
                objects_per_slab: c.objects as usize,
                slabs: c.nr_slabs,
                active_objects: c.active,
                total_objects: c.nr_slabs * c.objects as u64,
            })
            .collect()
    }

    /// The cache serving `size`, if any.
    pub fn cache_for(&self, size: usize) -> Option<&KmemCache> {
        kmalloc_index(size).map(|i| &self.caches[i])
    }

    /// Take the first use-after-free report found by the debug poison check.
    pub fn take_debug_report(&mut self) -> Option<MmError> {
        self.caches.iter_mut().find_map(|c| c.debug_report.take())
    }
}

#[cfg(test)]
mod tests;
