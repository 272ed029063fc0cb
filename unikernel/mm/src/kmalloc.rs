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
mod tests {
    use super::*;
    use crate::gfp::{GFP_ATOMIC, GFP_KERNEL};
    use crate::testing::HostArena;
    use std::string::ToString;
    use std::vec::Vec;

    fn setup(debug: bool) -> (HostArena, Kmalloc) {
        (HostArena::new(8 << 20), Kmalloc::with_debug(debug))
    }

    #[test]
    fn index_table_matches_linux() {
        let cases = [
            (1, 8),
            (8, 8),
            (9, 16),
            (16, 16),
            (17, 32),
            (32, 32),
            (33, 64),
            (64, 64),
            (65, 96),
            (96, 96),
            (97, 128),
            (128, 128),
            (129, 192),
            (192, 192),
            (193, 256),
            (256, 256),
            (257, 512),
            (1000, 1024),
            (1025, 2048),
            (4096, 4096),
            (4097, 8192),
            (8192, 8192),
        ];
        for (size, class) in cases {
            assert_eq!(
                KMALLOC_SIZES[kmalloc_index(size).unwrap()],
                class,
                "size {size}"
            );
        }
        assert_eq!(kmalloc_index(0), None);
        assert_eq!(kmalloc_index(8193), None);
    }

    #[test]
    fn slab_layouts() {
        let k = Kmalloc::new();
        for s in k.cache_stats() {
            assert!(s.objects_per_slab >= 4, "{}", s.name);
            assert!(s.slab_order <= 3);
        }
        let d = Kmalloc::with_debug(true);
        for s in d.cache_stats() {
            assert_eq!(s.stride, s.object_size + 16);
            assert!(s.objects_per_slab >= 3);
        }
    }

    #[test]
    fn basic_alloc_free_and_reuse() {
        for debug in [false, true] {
            let (mut a, mut k) = setup(debug);
            let initial = a.pa.buddy.nr_free_pages();
            let p = k.kmalloc(&mut a.pa, 64, GFP_KERNEL);
            assert!(!p.is_null() && a.contains(p, 64));
            assert_eq!(p as usize % if debug { 8 } else { 64 }, 0);
            assert_eq!(k.ksize(&a.pa, p), 64);
            assert_eq!(k.nr_allocated(), 1);
            k.kfree(&mut a.pa, p).unwrap();
            let q = k.kmalloc(&mut a.pa, 50, GFP_ATOMIC);
            assert_eq!(p, q, "LIFO reuse of the freed object");
            k.kfree(&mut a.pa, q).unwrap();
            assert_eq!(k.nr_allocated(), 0);
            k.shrink(&mut a.pa);
            assert_eq!(a.pa.buddy.nr_free_pages(), initial);
            assert!(k.take_debug_report().is_none());
        }
    }

    #[test]
    fn zero_size_and_null() {
        let (mut a, mut k) = setup(false);
        let z = k.kmalloc(&mut a.pa, 0, GFP_KERNEL);
        assert_eq!(z, ZERO_SIZE_PTR);
        assert_eq!(k.ksize(&a.pa, z), 0);
        k.kfree(&mut a.pa, z).unwrap();
        k.kfree(&mut a.pa, core::ptr::null_mut()).unwrap();
        assert_eq!(k.nr_allocated(), 0);
    }

    #[test]
    fn kzalloc_kcalloc_krealloc() {
        let (mut a, mut k) = setup(true);
        // Dirty an object, free it, then kzalloc must hand back zeroes.
        let p = k.kmalloc(&mut a.pa, 128, GFP_KERNEL);
        // SAFETY: p is a live 128-byte object.
        unsafe { core::ptr::write_bytes(p, 0x5a, 128) };
        k.kfree(&mut a.pa, p).unwrap();
        let z = k.kzalloc(&mut a.pa, 100, GFP_KERNEL);
        // SAFETY: z is a live 128-byte object.
        assert!(unsafe { core::slice::from_raw_parts(z, 128) }
            .iter()
            .all(|&b| b == 0));
        let c = k.kcalloc(&mut a.pa, 10, 30, GFP_KERNEL);
        assert_eq!(k.ksize(&a.pa, c), 512);
        assert!(k
            .kcalloc(&mut a.pa, usize::MAX / 2, 3, GFP_KERNEL)
            .is_null());
        // krealloc grows and keeps contents.
        // SAFETY: z is live with 128 bytes.
        unsafe { core::ptr::write_bytes(z, 0x11, 100) };
        let same = k.krealloc(&mut a.pa, z, 120, GFP_KERNEL);
        assert_eq!(same, z);
        let g = k.krealloc(&mut a.pa, z, 5000, GFP_KERNEL);
        assert_ne!(g, z);
        assert_eq!(k.ksize(&a.pa, g), 8192);
        // SAFETY: g is live with 8192 bytes.
        assert!(unsafe { core::slice::from_raw_parts(g, 100) }
            .iter()
            .all(|&b| b == 0x11));
        let big = k.krealloc(&mut a.pa, g, 100_000, GFP_KERNEL);
        assert_eq!(k.ksize(&a.pa, big), 32 << 12);
        // SAFETY: big is live with 128 KiB.
        assert!(unsafe { core::slice::from_raw_parts(big, 100) }
            .iter()
            .all(|&b| b == 0x11));
        assert_eq!(k.krealloc(&mut a.pa, big, 0, GFP_KERNEL), ZERO_SIZE_PTR);
        k.kfree(&mut a.pa, c).unwrap();
        assert_eq!(k.nr_allocated(), 0);
        assert!(k.take_debug_report().is_none());
    }

    #[test]
    fn large_kmalloc() {
        let (mut a, mut k) = setup(false);
        let before = a.pa.buddy.nr_free_pages();
        let p = k.kmalloc(&mut a.pa, 16384, GFP_KERNEL);
        assert_eq!(p as usize % PAGE_SIZE, 0);
        assert_eq!(k.ksize(&a.pa, p), 16384);
        assert_eq!(k.large_stats(), (1, 4));
        // SAFETY: pointer arithmetic inside the allocation.
        let mid = unsafe { p.add(4096) };
        assert!(matches!(
            k.kfree(&mut a.pa, mid),
            Err(MmError::ForeignPointer { .. })
        ));
        // SAFETY: as above.
        let mid = unsafe { p.add(8) };
        assert!(matches!(
            k.kfree(&mut a.pa, mid),
            Err(MmError::ForeignPointer { .. })
        ));
        k.kfree(&mut a.pa, p).unwrap();
        assert_eq!(a.pa.buddy.nr_free_pages(), before);
        assert!(k.kmalloc(&mut a.pa, 1 << 40, GFP_KERNEL).is_null());
    }

    #[test]
    fn double_free_detected() {
        let (mut a, mut k) = setup(true);
        let p = k.kmalloc(&mut a.pa, 64, GFP_KERNEL);
        let q = k.kmalloc(&mut a.pa, 64, GFP_KERNEL);
        k.kfree(&mut a.pa, p).unwrap();
        k.kfree(&mut a.pa, q).unwrap();
        let e = k.kfree(&mut a.pa, p).unwrap_err(); // not the freelist head: needs debug
        assert_eq!(
            e,
            MmError::DoubleFree {
                addr: p as u64,
                cache: "kmalloc-64"
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("double kfree") && msg.contains("kmalloc-64"),
            "{msg}"
        );
        assert!(msg.contains(&std::format!("{:#x}", p as u64)));
        // Non-debug mode still catches the immediate double free.
        let (mut a, mut k) = setup(false);
        let p = k.kmalloc(&mut a.pa, 32, GFP_KERNEL);
        k.kfree(&mut a.pa, p).unwrap();
        assert!(matches!(
            k.kfree(&mut a.pa, p),
            Err(MmError::DoubleFree {
                cache: "kmalloc-32",
                ..
            })
        ));
    }

    #[test]
    fn foreign_pointers_detected() {
        let (mut a, mut k) = setup(true);
        let stack = 0u64;
        let e = k
            .kfree(&mut a.pa, &stack as *const u64 as *mut u8)
            .unwrap_err();
        assert!(matches!(e, MmError::ForeignPointer { .. }));
        assert!(e.to_string().contains("not in the direct map"), "{e}");
        let p = k.kmalloc(&mut a.pa, 96, GFP_KERNEL);
        // SAFETY: pointer arithmetic inside the object.
        let mid = unsafe { p.add(8) };
        let e = k.kfree(&mut a.pa, mid).unwrap_err();
        assert!(e.to_string().contains("inside a slab object"), "{e}");
        let page = a.pa.alloc_pages(0, GFP_KERNEL).unwrap().as_ptr();
        let e = k.kfree(&mut a.pa, page).unwrap_err();
        assert!(e.to_string().contains("alloc_pages"), "{e}");
        a.pa.free_pages(page, 0).unwrap();
        let e = k.kfree(&mut a.pa, page).unwrap_err();
        assert!(e.to_string().contains("free in the buddy"), "{e}");
        // Slab pages refuse free_pages.
        let e =
            a.pa.free_pages(((p as usize) & !(PAGE_SIZE - 1)) as *mut u8, 0)
                .unwrap_err();
        assert!(matches!(e, MmError::PageNotAllocated { .. }));
        k.kfree(&mut a.pa, p).unwrap();
        assert_eq!(k.nr_allocated(), 0);
    }

    #[test]
    fn foreign_pointer_non_debug_power_of_two() {
        let (mut a, mut k) = setup(false);
        let p = k.kmalloc(&mut a.pa, 64, GFP_KERNEL);
        // SAFETY: pointer arithmetic inside the object.
        let mid = unsafe { p.add(16) };
        assert!(matches!(
            k.kfree(&mut a.pa, mid),
            Err(MmError::ForeignPointer { .. })
        ));
        k.kfree(&mut a.pa, p).unwrap();
    }

    #[test]
    fn redzone_overrun_detected() {
        let (mut a, mut k) = setup(true);
        let p = k.kmalloc(&mut a.pa, 30, GFP_KERNEL); // kmalloc-32
                                                      // SAFETY: deliberately writes one byte past the 32-byte object into its redzone,
                                                      // which is memory of the same slab (debug layout).
        unsafe { p.add(32).write(0) };
        let e = k.kfree(&mut a.pa, p).unwrap_err();
        assert_eq!(
            e,
            MmError::Redzone {
                addr: p as u64,
                cache: "kmalloc-32",
                offset: 32
            }
        );
        assert!(e.to_string().contains("past the end"), "{e}");
        assert_eq!(k.ksize(&a.pa, p), 32);
    }

    #[test]
    fn use_after_free_write_detected() {
        let (mut a, mut k) = setup(true);
        let p = k.kmalloc(&mut a.pa, 16, GFP_KERNEL);
        k.kfree(&mut a.pa, p).unwrap();
        // SAFETY: deliberately writes into a freed object (still slab memory).
        unsafe { p.add(3).write(1) };
        let q = k.kmalloc(&mut a.pa, 16, GFP_KERNEL);
        assert_eq!(p, q);
        let e = k.take_debug_report().unwrap();
        assert_eq!(
            e,
            MmError::UseAfterFree {
                addr: p as u64,
                cache: "kmalloc-16",
                offset: 3
            }
        );
        assert!(e.to_string().contains("use after free"));
    }

    #[test]
    fn set_debug_rules() {
        let (mut a, mut k) = setup(false);
        let p = k.kmalloc(&mut a.pa, 8, GFP_KERNEL);
        assert_eq!(
            k.set_debug(&mut a.pa, true),
            Err(MmError::DebugModeBusy { live_objects: 1 })
        );
        k.kfree(&mut a.pa, p).unwrap();
        k.set_debug(&mut a.pa, true).unwrap();
        assert!(k.debug());
        assert_eq!(k.cache_for(8).unwrap().stride, 24);
        let p = k.kmalloc(&mut a.pa, 8, GFP_KERNEL);
        k.kfree(&mut a.pa, p).unwrap();
        assert!(k.take_debug_report().is_none());
    }

    #[test]
    fn spare_slab_policy_and_stats() {
        let (mut a, mut k) = setup(false);
        let initial = a.pa.buddy.nr_free_pages();
        let v: Vec<*mut u8> = (0..2000)
            .map(|_| k.kmalloc(&mut a.pa, 64, GFP_KERNEL))
            .collect();
        let st = &k.cache_stats()[3];
        assert_eq!(st.name, "kmalloc-64");
        assert_eq!(st.active_objects, 2000);
        assert_eq!(st.slabs, 2000u64.div_ceil(64));
        for p in v {
            k.kfree(&mut a.pa, p).unwrap();
        }
        let st = &k.cache_stats()[3];
        assert_eq!((st.active_objects, st.slabs), (0, 1), "one spare slab kept");
        k.shrink(&mut a.pa);
        assert_eq!(k.cache_stats()[3].slabs, 0);
        assert_eq!(a.pa.buddy.nr_free_pages(), initial);
    }

    #[test]
    fn oom_returns_null() {
        for debug in [false, true] {
            let mut a = HostArena::new(2 << 20);
            let mut k = Kmalloc::with_debug(debug);
            let initial = a.pa.buddy.nr_free_pages();
            let mut v = Vec::new();
            loop {
                let p = k.kmalloc(&mut a.pa, 1024, GFP_KERNEL);
                if p.is_null() {
                    break;
                }
                v.push(p);
            }
            assert!(v.len() >= 1500);
            assert!(k.kmalloc(&mut a.pa, 20000, GFP_KERNEL).is_null());
            assert!(k.kmalloc(&mut a.pa, 4096, GFP_KERNEL).is_null());
            for p in v {
                k.kfree(&mut a.pa, p).unwrap();
            }
            k.shrink(&mut a.pa);
            assert_eq!(k.nr_allocated(), 0);
            assert_eq!(a.pa.buddy.nr_free_pages(), initial);
        }
    }
}
