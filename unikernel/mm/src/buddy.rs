//! The buddy page allocator: power-of-two blocks of pages, split on allocation and
//! merged with their "buddy" (the block at `pfn ^ (1 << order)`) on free.
//!
//! Like Linux, each page frame has a descriptor ([`PageDesc`], Linux's `struct page`) in
//! an array (`mem_map`) that lives outside the managed memory; free lists are doubly
//! linked through those descriptors by index, so removing a buddy while merging is O(1).
//!
//! `mem_map` is materialised lazily, in sections of [`SECTION_PAGES`] descriptors (like
//! Linux's deferred struct-page init): [`BuddyAllocator::init`] writes only one state byte
//! per section, and [`BuddyAllocator::free_range`] marks whole sections inside a free
//! block as "all tails" without writing them. A section's descriptors are written the
//! first time one of them is written (a block split or freed there); until then reads
//! return the section's default (Reserved or Tail). So boot touches a few KiB of
//! `mem_map` instead of 24 bytes per page of RAM — under a shadow-paging hypervisor every
//! first touch of a page costs an exit, which made boot time grow with guest memory.
use crate::error::MmError;
use crate::{MAX_ORDER, NR_ORDERS};
use core::mem::MaybeUninit;

/// "No page" in list links.
pub const NONE: u32 = u32::MAX;

/// What a page frame is currently used for (`PageDesc::kind`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// Not handed to the buddy (firmware, kernel image, mem_map itself, holes).
    Reserved = 0,
    /// Head of a free block of `order`.
    Free,
    /// Inside a (free or allocated) block, not its head.
    Tail,
    /// Head of a block handed out by `alloc_pages` with `order`.
    Allocated,
    /// Head of a slab of kmalloc cache `cache` (slab block of `order`).
    Slab,
    /// Non-head page of a slab of cache `cache`.
    SlabTail,
    /// Head of a kmalloc_large block of `order`.
    Large,
    /// A frame backing a vmalloc area (block of `order`).
    Vmalloc,
}

/// Descriptors per lazily materialised `mem_map` section (12 KiB of descriptors for
/// 2 MiB of RAM).
pub const SECTION_PAGES: usize = 512;
const SECTION_SHIFT: u32 = SECTION_PAGES.trailing_zeros();

/// Section states (one byte per section).
const SECTION_LAZY_RESERVED: u8 = 0;
const SECTION_LAZY_TAIL: u8 = 1;
const SECTION_LIVE: u8 = 2;

/// One page frame's descriptor (Linux `struct page`), 24 bytes.
///
/// Which fields mean what depends on `kind` (see [`PageKind`]): free heads use
/// `next`/`prev` for the buddy free list; slab heads use `next`/`prev` for the cache's
/// partial list, `freelist` (virtual address of the first free object, 0 = none),
/// `inuse` and `objects`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageDesc {
    pub freelist: u64,
    pub next: u32,
    pub prev: u32,
    pub inuse: u16,
    pub objects: u16,
    pub kind: PageKind,
    pub order: u8,
    pub cache: u8,
    pub(crate) _pad: u8,
}

const _: () = assert!(core::mem::size_of::<PageDesc>() <= 32);

impl PageDesc {
    /// A reserved page (not managed by the buddy); the initial state of every page.
    pub const RESERVED: PageDesc = PageDesc {
        freelist: 0,
        next: NONE,
        prev: NONE,
        inuse: 0,
        objects: 0,
        kind: PageKind::Reserved,
        order: 0,
        cache: 0,
        _pad: 0,
    };

    /// A page inside a block, not its head.
    pub const TAIL: PageDesc = PageDesc {
        kind: PageKind::Tail,
        ..PageDesc::RESERVED
    };
}

impl Default for PageDesc {
    fn default() -> Self {
        PageDesc::RESERVED
    }
}

/// Cumulative counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuddyStats {
    pub allocs: u64,
    pub frees: u64,
    pub splits: u64,
    pub merges: u64,
    /// `alloc_pages` calls that found no block.
    pub failures: u64,
}

/// Bytes of `mem_map` the kernel must reserve to manage `nr_pages` page frames.
pub const fn mem_map_bytes(nr_pages: u64) -> usize {
    nr_pages as usize * core::mem::size_of::<PageDesc>()
}

/// Section state bytes [`BuddyAllocator::init`] needs besides `mem_map` for `nr_pages`.
pub const fn mem_map_sections(nr_pages: u64) -> usize {
    (nr_pages as usize).div_ceil(SECTION_PAGES)
}

/// The buddy allocator over pfns `[base_pfn, base_pfn + mem_map.len())`.
///
/// Blocks are aligned on absolute pfns (a block of order k starts at a pfn that is a
/// multiple of 2^k), so an order-9 block is a 2 MiB-aligned physical range.
pub struct BuddyAllocator {
    /// Descriptors; those of sections not `SECTION_LIVE` are never read (may be garbage).
    mem_map: &'static mut [MaybeUninit<PageDesc>],
    /// One state byte per `SECTION_PAGES` descriptors.
    sections: &'static mut [u8],
    base_pfn: u64,
    free_area: [u32; NR_ORDERS],
    nr_free: [u64; NR_ORDERS],
    /// Bit k set ⇔ free_area[k] is non-empty (finds the smallest usable order in O(1)).
    nonempty: u32,
    stats: BuddyStats,
}

impl BuddyAllocator {
    /// An allocator managing nothing; usable in a `static`.
    pub const fn empty() -> Self {
        BuddyAllocator {
            mem_map: &mut [],
            sections: &mut [],
            base_pfn: 0,
            free_area: [NONE; NR_ORDERS],
            nr_free: [0; NR_ORDERS],
            nonempty: 0,
            stats: BuddyStats {
                allocs: 0,
                frees: 0,
                splits: 0,
                merges: 0,
                failures: 0,
            },
        }
    }

    /// Take over `mem_map` describing pfns from `base_pfn`, with `sections`
    /// ([`mem_map_sections`] bytes) for its lazy sections; every page starts Reserved.
    /// `mem_map` may hold any bytes: nothing is read before it is written. Hand usable
    /// RAM over with [`free_range`](Self::free_range).
    pub fn init(
        &mut self,
        base_pfn: u64,
        mem_map: &'static mut [MaybeUninit<PageDesc>],
        sections: &'static mut [u8],
    ) {
        assert!(
            mem_map.len() < NONE as usize,
            "mem_map too large for u32 links"
        );
        assert!(
            sections.len() >= mem_map_sections(mem_map.len() as u64),
            "too few mem_map section bytes"
        );
        sections.fill(SECTION_LAZY_RESERVED);
        *self = BuddyAllocator::empty();
        self.mem_map = mem_map;
        self.sections = sections;
        self.base_pfn = base_pfn;
    }

    /// Give `mem_map` and its section bytes back (leaving the allocator empty), e.g. to
    /// deallocate them in tests.
    #[allow(clippy::type_complexity)]
    pub fn take_mem_map(&mut self) -> (&'static mut [MaybeUninit<PageDesc>], &'static mut [u8]) {
        let m = core::mem::take(&mut self.mem_map);
        let s = core::mem::take(&mut self.sections);
        *self = BuddyAllocator::empty();
        (m, s)
    }

    /// Sections whose descriptors have been written so far (for reports and tests).
    pub fn live_sections(&self) -> usize {
        self.sections.iter().filter(|&&s| s == SECTION_LIVE).count()
    }

    /// Write every descriptor of section `sec` with its default and mark it live.
    #[cold]
    #[inline(never)]
    fn materialise(&mut self, sec: usize) {
        let default = if self.sections[sec] == SECTION_LAZY_TAIL {
            PageDesc::TAIL
        } else {
            PageDesc::RESERVED
        };
        let lo = sec << SECTION_SHIFT;
        let hi = (lo + SECTION_PAGES).min(self.mem_map.len());
        for d in &mut self.mem_map[lo..hi] {
            d.write(default);
        }
        self.sections[sec] = SECTION_LIVE;
    }

    pub fn base_pfn(&self) -> u64 {
        self.base_pfn
    }
    /// Number of page frames described by mem_map.
    pub fn nr_pages(&self) -> u64 {
        self.mem_map.len() as u64
    }

    /// mem_map index of `pfn`, if managed.
    #[inline(always)]
    pub fn pfn_to_idx(&self, pfn: u64) -> Option<usize> {
        let i = pfn.wrapping_sub(self.base_pfn);
        if i < self.mem_map.len() as u64 {
            Some(i as usize)
        } else {
            None
        }
    }

    /// Hand pfns `[start_pfn, end_pfn)` (clamped to mem_map) to the allocator as the
    /// largest aligned blocks that fit, merging with free neighbours. Each pfn must be
    /// handed over once; pages that are not Reserved are skipped.
    pub fn free_range(&mut self, start_pfn: u64, end_pfn: u64) {
        let lo = start_pfn.max(self.base_pfn);
        let hi = end_pfn.min(self.base_pfn + self.mem_map.len() as u64);
        let mut pfn = lo;
        while pfn < hi {
            let idx = (pfn - self.base_pfn) as usize;
            if self.desc(idx).kind != PageKind::Reserved {
                pfn += 1;
                continue;
            }
            let mut order = (pfn.trailing_zeros().min(MAX_ORDER as u32)) as u8;
            while pfn + (1u64 << order) > hi {
                order -= 1;
            }
            let n = 1usize << order;
            // Shrink the block if part of it is not Reserved.
            if let Some(bad) = self.first_not_reserved(idx, idx + n).map(|k| k - idx) {
                // bad >= 1 (the head is Reserved): largest 2^k <= bad, still aligned.
                order = 63 - (bad as u64).leading_zeros() as u8;
            }
            let n = 1usize << order;
            self.mark_tails(idx + 1, idx + n);
            self.free_one(idx, order, false);
            pfn += n as u64;
        }
    }

    #[inline(always)]
    fn list_add(&mut self, order: u8, idx: usize) {
        let head = self.free_area[order as usize];
        {
            let d = self.desc_mut(idx);
            d.kind = PageKind::Free;
            d.order = order;
            d.next = head;
            d.prev = NONE;
        }
        if head != NONE {
            self.desc_mut(head as usize).prev = idx as u32;
        }
        self.free_area[order as usize] = idx as u32;
        self.nr_free[order as usize] += 1;
        self.nonempty |= 1 << order;
    }

    #[inline(always)]
    fn list_del(&mut self, order: u8, idx: usize) {
        let (next, prev) = {
            let d = self.desc(idx);
            (d.next, d.prev)
        };
        if prev != NONE {
            self.desc_mut(prev as usize).next = next;
        } else {
            self.free_area[order as usize] = next;
        }
        if next != NONE {
            self.desc_mut(next as usize).prev = prev;
        }
        self.nr_free[order as usize] -= 1;
        if self.free_area[order as usize] == NONE {
            self.nonempty &= !(1 << order);
        }
    }

    /// Allocate a block of 2^order pages; returns its first pfn (`None` when no block of
    /// at least `order` is free, or `order > MAX_ORDER`).
    pub fn alloc_pages(&mut self, order: u8) -> Option<u64> {
        if order > MAX_ORDER {
            return None;
        }
        let avail = self.nonempty >> order;
        if avail == 0 {
            self.stats.failures += 1;
            return None;
        }
        let mut k = order + avail.trailing_zeros() as u8;
        let idx = self.free_area[k as usize] as usize;
        self.list_del(k, idx);
        // Split: keep the low half, free the high half (Linux expand()).
        while k > order {
            k -= 1;
            self.list_add(k, idx + (1usize << k));
            self.stats.splits += 1;
        }
        let d = self.desc_mut(idx);
        d.kind = PageKind::Allocated;
        d.order = order;
        self.stats.allocs += 1;
        Some(self.base_pfn + idx as u64)
    }

    /// Free a block obtained from [`alloc_pages`](Self::alloc_pages) with the same order.
    /// Detects double frees, wrong orders, pages never allocated and pages owned by slab,
    /// kmalloc_large or vmalloc; on error nothing changes.
    pub fn free_pages(&mut self, pfn: u64, order: u8) -> Result<(), MmError> {
        if order > MAX_ORDER || pfn & ((1u64 << order) - 1) != 0 {
            return Err(MmError::InvalidOrder { pfn, order });
        }
        let idx = self.pfn_to_idx(pfn).ok_or(MmError::PfnOutOfRange { pfn })?;
        let d = self.desc(idx);
        match d.kind {
            PageKind::Allocated if d.order == order => {}
            PageKind::Allocated => {
                return Err(MmError::BadOrder {
                    pfn,
                    allocated: d.order,
                    freed: order,
                })
            }
            PageKind::Free => {
                return Err(MmError::PageDoubleFree {
                    pfn,
                    order: d.order,
                })
            }
            PageKind::Tail => {
                return Err(MmError::PageNotAllocated {
                    pfn,
                    reason: "it lies inside a block, not at a block's first page",
                })
            }
            PageKind::Slab | PageKind::SlabTail => {
                return Err(MmError::PageNotAllocated {
                    pfn,
                    reason: "it is a slab page owned by kmalloc; use kfree on its objects",
                })
            }
            PageKind::Large => {
                return Err(MmError::PageNotAllocated {
                    pfn,
                    reason: "it is a large kmalloc block; use kfree",
                })
            }
            PageKind::Vmalloc => {
                return Err(MmError::PageNotAllocated {
                    pfn,
                    reason: "it backs a vmalloc area; use vfree",
                })
            }
            _ => {
                return Err(MmError::PageNotAllocated {
                    pfn,
                    reason: "the page is reserved (never given to the buddy allocator)",
                })
            }
        }
        self.stats.frees += 1;
        self.free_one(idx, order, true);
        Ok(())
    }

    /// Linux `__free_one_page`: merge with free buddies as far as possible.
    #[inline]
    fn free_one(&mut self, mut idx: usize, mut order: u8, count: bool) {
        let len = self.mem_map.len();
        while order < MAX_ORDER {
            let pfn = self.base_pfn + idx as u64;
            let buddy_idx = (pfn ^ (1u64 << order)).wrapping_sub(self.base_pfn);
            if buddy_idx >= len as u64 {
                break;
            }
            let b = buddy_idx as usize;
            let bd = self.desc(b);
            if bd.kind != PageKind::Free || bd.order != order {
                break;
            }
            self.list_del(order, b);
            let hi = idx.max(b);
            self.desc_mut(hi).kind = PageKind::Tail;
            idx = idx.min(b);
            order += 1;
            if count {
                self.stats.merges += 1;
            }
        }
        self.list_add(order, idx);
    }

    /// Free blocks per order (Linux `/proc/buddyinfo`).
    pub fn free_counts(&self) -> [u64; NR_ORDERS] {
        self.nr_free
    }

    /// Free pages in total.
    pub fn nr_free_pages(&self) -> u64 {
        self.nr_free.iter().enumerate().map(|(k, n)| n << k).sum()
    }

    pub fn stats(&self) -> BuddyStats {
        self.stats
    }

    pub fn page(&self, pfn: u64) -> Option<&PageDesc> {
        self.pfn_to_idx(pfn).map(|i| self.desc(i))
    }

    pub fn page_mut(&mut self, pfn: u64) -> Option<&mut PageDesc> {
        self.pfn_to_idx(pfn).map(move |i| self.desc_mut(i))
    }

    /// Descriptor by mem_map index (panics when out of range). A section not written yet
    /// reads as its default.
    #[inline(always)]
    pub fn desc(&self, idx: usize) -> &PageDesc {
        let d = &self.mem_map[idx];
        match self.sections[idx >> SECTION_SHIFT] {
            // SAFETY: every descriptor of a live section was written by `materialise`.
            SECTION_LIVE => unsafe { d.assume_init_ref() },
            SECTION_LAZY_TAIL => &PageDesc::TAIL,
            _ => &PageDesc::RESERVED,
        }
    }

    /// Descriptor by mem_map index for writing (panics when out of range); writes the
    /// section's descriptors first if they were still lazy.
    #[inline(always)]
    pub fn desc_mut(&mut self, idx: usize) -> &mut PageDesc {
        let sec = idx >> SECTION_SHIFT;
        if self.sections[sec] != SECTION_LIVE {
            self.materialise(sec);
        }
        // SAFETY: the section is live, so its descriptors were written by `materialise`.
        unsafe { self.mem_map[idx].assume_init_mut() }
    }

    /// First index in `[lo, hi)` whose page is not Reserved, skipping lazy sections whole.
    fn first_not_reserved(&self, lo: usize, hi: usize) -> Option<usize> {
        let mut i = lo;
        while i < hi {
            let sec = i >> SECTION_SHIFT;
            let sec_end = ((sec + 1) << SECTION_SHIFT).min(hi);
            match self.sections[sec] {
                SECTION_LAZY_RESERVED => {}
                SECTION_LAZY_TAIL => return Some(i),
                _ => {
                    if let Some(k) = (i..sec_end).find(|&k| self.desc(k).kind != PageKind::Reserved)
                    {
                        return Some(k);
                    }
                }
            }
            i = sec_end;
        }
        None
    }

    /// Make `[lo, hi)` tails: whole lazy sections just change their default.
    fn mark_tails(&mut self, lo: usize, hi: usize) {
        let mut i = lo;
        while i < hi {
            let sec = i >> SECTION_SHIFT;
            let sec_lo = sec << SECTION_SHIFT;
            let sec_end = (sec_lo + SECTION_PAGES).min(self.mem_map.len());
            let end = sec_end.min(hi);
            if i == sec_lo && end == sec_end && self.sections[sec] != SECTION_LIVE {
                self.sections[sec] = SECTION_LAZY_TAIL;
            } else {
                for k in i..end {
                    *self.desc_mut(k) = PageDesc::TAIL;
                }
            }
            i = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    /// A leaked mem_map of `n` descriptors holding garbage (as RAM would), and its sections.
    fn leaked_map(n: usize) -> (&'static mut [MaybeUninit<PageDesc>], &'static mut [u8]) {
        let garbage = PageDesc {
            freelist: 0xdead_beef,
            next: 7,
            prev: 7,
            kind: PageKind::Free,
            order: 3,
            ..PageDesc::RESERVED
        };
        let map = Box::leak(vec![MaybeUninit::new(garbage); n].into_boxed_slice());
        let sections = Box::leak(vec![0xffu8; mem_map_sections(n as u64)].into_boxed_slice());
        (map, sections)
    }

    fn buddy(base: u64, n: usize) -> BuddyAllocator {
        let (map, sections) = leaked_map(n);
        let mut b = BuddyAllocator::empty();
        b.init(base, map, sections);
        b.free_range(base, base + n as u64);
        b
    }

    #[test]
    fn desc_is_small() {
        assert!(core::mem::size_of::<PageDesc>() <= 32);
        assert_eq!(mem_map_bytes(10), 10 * core::mem::size_of::<PageDesc>());
    }

    #[test]
    fn free_range_uses_aligned_blocks() {
        // pfns 3..37: blocks 3(0) 4..8(2) 8..16(3) 16..32(4) 32..36(2) 36(0)
        let mut b = BuddyAllocator::empty();
        let (map, sections) = leaked_map(40);
        b.init(0, map, sections);
        b.free_range(3, 37);
        assert_eq!(b.nr_free_pages(), 34);
        let c = b.free_counts();
        assert_eq!(&c[..5], &[2, 0, 2, 1, 1]);
        assert_eq!(b.page(2).unwrap().kind, PageKind::Reserved);
        let head = b.page(16).unwrap();
        assert_eq!((head.kind, head.order), (PageKind::Free, 4));
        assert_eq!(b.page(17).unwrap().kind, PageKind::Tail);
    }

    #[test]
    fn free_range_leaves_mem_map_lazy() {
        // 1 GiB of pages from pfn 0 minus the first MiB: one section per block head and
        // the partial sections at the edges are written; the rest stays lazy.
        let n = 1 << 18;
        let (map, sections) = leaked_map(n);
        let mut b = BuddyAllocator::empty();
        b.init(0, map, sections);
        b.free_range(256, n as u64);
        assert_eq!(b.nr_free_pages(), n as u64 - 256);
        assert!(
            b.live_sections() <= 12,
            "{} sections written",
            b.live_sections()
        );
        assert_eq!(b.page(255).unwrap().kind, PageKind::Reserved);
        assert_eq!(b.page(300).unwrap().kind, PageKind::Tail);
        assert_eq!(b.page(200_000).unwrap().kind, PageKind::Tail);
        // Lazy tails behave like written ones: freeing one is refused, splitting works.
        assert!(matches!(
            b.free_pages(200_000, 0),
            Err(MmError::PageNotAllocated { .. })
        ));
        let p = b.alloc_pages(0).unwrap();
        b.free_pages(p, 0).unwrap();
        let all: Vec<u64> = core::iter::from_fn(|| b.alloc_pages(0)).collect();
        assert_eq!(all.len(), n - 256);
        for p in all {
            b.free_pages(p, 0).unwrap();
        }
        assert_eq!(b.nr_free_pages(), n as u64 - 256);
    }

    #[test]
    fn split_and_merge() {
        let mut b = buddy(1024, 1024);
        assert_eq!(b.free_counts()[10], 1);
        let p = b.alloc_pages(0).unwrap();
        assert_eq!(p, 1024);
        assert_eq!(b.stats().splits, 10);
        assert_eq!(b.nr_free_pages(), 1023);
        b.free_pages(p, 0).unwrap();
        assert_eq!(b.stats().merges, 10);
        assert_eq!(b.free_counts()[10], 1);
    }

    #[test]
    fn misuse_is_detected() {
        let mut b = buddy(0, 64);
        let p = b.alloc_pages(2).unwrap();
        assert!(matches!(
            b.free_pages(p, 3),
            Err(MmError::BadOrder {
                allocated: 2,
                freed: 3,
                ..
            })
        ));
        assert!(matches!(
            b.free_pages(p, 1),
            Err(MmError::BadOrder {
                allocated: 2,
                freed: 1,
                ..
            })
        ));
        assert!(matches!(
            b.free_pages(p + 1, 0),
            Err(MmError::PageNotAllocated { .. })
        ));
        assert!(matches!(
            b.free_pages(1000, 0),
            Err(MmError::PfnOutOfRange { pfn: 1000 })
        ));
        assert!(matches!(
            b.free_pages(p + 1, 1),
            Err(MmError::InvalidOrder { .. })
        ));
        b.free_pages(p, 2).unwrap();
        let e = b.free_pages(p, 2).unwrap_err();
        assert!(matches!(e, MmError::PageDoubleFree { .. }));
        assert!(e.to_string().contains("double free_pages"));
        assert!(matches!(
            b.free_pages(p, 19),
            Err(MmError::InvalidOrder { .. })
        ));
        assert_eq!(b.nr_free_pages(), 64);
    }

    #[test]
    fn exhaustion() {
        let mut b = buddy(0, 16);
        assert!(b.alloc_pages(5).is_none());
        let v: Vec<u64> = (0..16).map(|_| b.alloc_pages(0).unwrap()).collect();
        assert!(b.alloc_pages(0).is_none());
        assert!(b.alloc_pages(MAX_ORDER + 1).is_none());
        for p in v {
            b.free_pages(p, 0).unwrap();
        }
        assert_eq!(b.free_counts()[4], 1);
    }

    proptest! {
        #[test]
        fn random_alloc_free(ops in proptest::collection::vec((0u8..6, any::<bool>(), any::<u16>()), 1..300),
                             base in 0u64..3, ) {
            let base = base * 512 + 7; // unaligned base on purpose
            let n = 2048usize;
            let mut b = buddy(base, n);
            let initial = b.free_counts();
            let total = b.nr_free_pages();
            let mut live: Vec<(u64, u8)> = Vec::new();
            for (order, alloc, pick) in ops {
                if alloc || live.is_empty() {
                    if let Some(p) = b.alloc_pages(order) {
                        prop_assert_eq!(p % (1 << order), 0, "block aligned to its order");
                        prop_assert!(p >= base && p + (1 << order) <= base + n as u64);
                        for &(q, o) in &live {
                            prop_assert!(p + (1 << order) <= q || q + (1 << o) <= p, "overlap");
                        }
                        live.push((p, order));
                    }
                } else {
                    let (p, o) = live.swap_remove(pick as usize % live.len());
                    b.free_pages(p, o).unwrap();
                }
                let used: u64 = live.iter().map(|&(_, o)| 1u64 << o).sum();
                prop_assert_eq!(b.nr_free_pages() + used, total);
            }
            for (p, o) in live.drain(..) {
                b.free_pages(p, o).unwrap();
            }
            prop_assert_eq!(b.free_counts(), initial, "coalescing restores the initial blocks");
            let s = b.stats();
            prop_assert_eq!(s.allocs, s.frees);
        }
    }
}
