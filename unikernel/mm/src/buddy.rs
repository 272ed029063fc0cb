//! The buddy page allocator: power-of-two blocks of pages, split on allocation and
//! merged with their "buddy" (the block at `pfn ^ (1 << order)`) on free.
//!
//! Like Linux, each page frame has a descriptor ([`PageDesc`], Linux's `struct page`) in
//! an array (`mem_map`) that lives outside the managed memory; free lists are doubly
//! linked through those descriptors by index, so removing a buddy while merging is O(1).
use crate::error::MmError;
use crate::{MAX_ORDER, NR_ORDERS};

/// "No page" in list links.
pub const NONE: u32 = u32::MAX;

// Page kinds (PageDesc::kind).
pub(crate) const KIND_RESERVED: u8 = 0;
pub(crate) const KIND_FREE: u8 = 1;
pub(crate) const KIND_TAIL: u8 = 2;
pub(crate) const KIND_ALLOCATED: u8 = 3;
pub(crate) const KIND_SLAB: u8 = 4;
pub(crate) const KIND_SLAB_TAIL: u8 = 5;
pub(crate) const KIND_LARGE: u8 = 6;
pub(crate) const KIND_VMALLOC: u8 = 7;

/// One page frame's descriptor (Linux `struct page`), 24 bytes.
///
/// Which fields mean what depends on `kind` (see [`PageState`]): free heads use
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
    pub kind: u8,
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
        kind: KIND_RESERVED,
        order: 0,
        cache: 0,
        _pad: 0,
    };

    /// Decoded state.
    pub fn state(&self) -> PageState {
        match self.kind {
            KIND_FREE => PageState::Free { order: self.order },
            KIND_TAIL => PageState::Tail,
            KIND_ALLOCATED => PageState::Allocated { order: self.order },
            KIND_SLAB => PageState::Slab {
                cache: self.cache,
                order: self.order,
            },
            KIND_SLAB_TAIL => PageState::SlabTail { cache: self.cache },
            KIND_LARGE => PageState::Large { order: self.order },
            KIND_VMALLOC => PageState::Vmalloc { order: self.order },
            _ => PageState::Reserved,
        }
    }
}

impl Default for PageDesc {
    fn default() -> Self {
        PageDesc::RESERVED
    }
}

/// What a page is currently used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// Not handed to the buddy (firmware, kernel image, mem_map itself, holes).
    Reserved,
    /// Head of a free block of `order`.
    Free { order: u8 },
    /// Inside a (free or allocated) block, not its head.
    Tail,
    /// Head of a block handed out by `alloc_pages` with `order`.
    Allocated { order: u8 },
    /// Head of a slab of kmalloc cache `cache` (slab block of `order`).
    Slab { cache: u8, order: u8 },
    /// Non-head page of a slab of cache `cache`.
    SlabTail { cache: u8 },
    /// Head of a kmalloc_large block.
    Large { order: u8 },
    /// A frame backing a vmalloc area (block of `order`).
    Vmalloc { order: u8 },
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

/// The buddy allocator over pfns `[base_pfn, base_pfn + mem_map.len())`.
///
/// Blocks are aligned on absolute pfns (a block of order k starts at a pfn that is a
/// multiple of 2^k), so an order-9 block is a 2 MiB-aligned physical range.
pub struct BuddyAllocator {
    mem_map: &'static mut [PageDesc],
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

    /// Take over `mem_map` describing pfns from `base_pfn`; every page starts Reserved.
    /// Hand usable RAM over with [`free_range`](Self::free_range).
    pub fn init(&mut self, base_pfn: u64, mem_map: &'static mut [PageDesc]) {
        assert!(
            mem_map.len() < NONE as usize,
            "mem_map too large for u32 links"
        );
        mem_map.fill(PageDesc::RESERVED);
        *self = BuddyAllocator::empty();
        self.mem_map = mem_map;
        self.base_pfn = base_pfn;
    }

    /// Give `mem_map` back (leaving the allocator empty), e.g. to deallocate it in tests.
    pub fn take_mem_map(&mut self) -> &'static mut [PageDesc] {
        let m = core::mem::take(&mut self.mem_map);
        *self = BuddyAllocator::empty();
        m
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
            if self.mem_map[idx].kind != KIND_RESERVED {
                pfn += 1;
                continue;
            }
            let mut order = (pfn.trailing_zeros().min(MAX_ORDER as u32)) as u8;
            while pfn + (1u64 << order) > hi {
                order -= 1;
            }
            let n = 1usize << order;
            // Shrink the block if part of it is not Reserved.
            if let Some(bad) = self.mem_map[idx..idx + n]
                .iter()
                .position(|d| d.kind != KIND_RESERVED)
            {
                // bad >= 1 (the head is Reserved): largest 2^k <= bad, still aligned.
                order = 63 - (bad as u64).leading_zeros() as u8;
            }
            let n = 1usize << order;
            for d in &mut self.mem_map[idx + 1..idx + n] {
                *d = PageDesc {
                    kind: KIND_TAIL,
                    ..PageDesc::RESERVED
                };
            }
            self.free_one(idx, order, false);
            pfn += n as u64;
        }
    }

    #[inline(always)]
    fn list_add(&mut self, order: u8, idx: usize) {
        let head = self.free_area[order as usize];
        {
            let d = &mut self.mem_map[idx];
            d.kind = KIND_FREE;
            d.order = order;
            d.next = head;
            d.prev = NONE;
        }
        if head != NONE {
            self.mem_map[head as usize].prev = idx as u32;
        }
        self.free_area[order as usize] = idx as u32;
        self.nr_free[order as usize] += 1;
        self.nonempty |= 1 << order;
    }

    #[inline(always)]
    fn list_del(&mut self, order: u8, idx: usize) {
        let (next, prev) = {
            let d = &self.mem_map[idx];
            (d.next, d.prev)
        };
        if prev != NONE {
            self.mem_map[prev as usize].next = next;
        } else {
            self.free_area[order as usize] = next;
        }
        if next != NONE {
            self.mem_map[next as usize].prev = prev;
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
        let d = &mut self.mem_map[idx];
        d.kind = KIND_ALLOCATED;
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
        let d = &self.mem_map[idx];
        match d.kind {
            KIND_ALLOCATED if d.order == order => {}
            KIND_ALLOCATED => {
                return Err(MmError::BadOrder {
                    pfn,
                    allocated: d.order,
                    freed: order,
                })
            }
            KIND_FREE => {
                return Err(MmError::PageDoubleFree {
                    pfn,
                    order: d.order,
                })
            }
            KIND_TAIL => {
                return Err(MmError::PageNotAllocated {
                    pfn,
                    reason: "it lies inside a block, not at a block's first page",
                })
            }
            KIND_SLAB | KIND_SLAB_TAIL => {
                return Err(MmError::PageNotAllocated {
                    pfn,
                    reason: "it is a slab page owned by kmalloc; use kfree on its objects",
                })
            }
            KIND_LARGE => {
                return Err(MmError::PageNotAllocated {
                    pfn,
                    reason: "it is a large kmalloc block; use kfree",
                })
            }
            KIND_VMALLOC => {
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
            let bd = &self.mem_map[b];
            if bd.kind != KIND_FREE || bd.order != order {
                break;
            }
            self.list_del(order, b);
            let hi = idx.max(b);
            self.mem_map[hi].kind = KIND_TAIL;
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
        self.pfn_to_idx(pfn).map(|i| &self.mem_map[i])
    }

    pub fn page_mut(&mut self, pfn: u64) -> Option<&mut PageDesc> {
        self.pfn_to_idx(pfn).map(move |i| &mut self.mem_map[i])
    }

    /// Descriptor by mem_map index (panics when out of range).
    #[inline(always)]
    pub fn desc(&self, idx: usize) -> &PageDesc {
        &self.mem_map[idx]
    }
    #[inline(always)]
    pub fn desc_mut(&mut self, idx: usize) -> &mut PageDesc {
        &mut self.mem_map[idx]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn buddy(base: u64, n: usize) -> BuddyAllocator {
        let map: &'static mut [PageDesc] =
            Box::leak(vec![PageDesc::RESERVED; n].into_boxed_slice());
        let mut b = BuddyAllocator::empty();
        b.init(base, map);
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
        let map = Box::leak(vec![PageDesc::RESERVED; 40].into_boxed_slice());
        b.init(0, map);
        b.free_range(3, 37);
        assert_eq!(b.nr_free_pages(), 34);
        let c = b.free_counts();
        assert_eq!(&c[..5], &[2, 0, 2, 1, 1]);
        assert_eq!(b.page(2).unwrap().state(), PageState::Reserved);
        assert_eq!(b.page(16).unwrap().state(), PageState::Free { order: 4 });
        assert_eq!(b.page(17).unwrap().state(), PageState::Tail);
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
