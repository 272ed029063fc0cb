//! vmalloc: virtually contiguous areas built from physically scattered frames.
//!
//! Each area takes a range of the vmalloc address space (first fit, with alignment),
//! backs it with separately allocated order-0 frames (or order-9 frames mapped as 2 MiB
//! leaves for `vmalloc_huge`) and is followed by one unmapped guard page. Page-table
//! writes and TLB flushes go through [`VmallocHw`], which the kernel implements.
//!
//! # Phases (for benchmarks)
//! `vmalloc_phased` / `vfree_phased` call [`PhaseHook::mark`] at each phase boundary, so
//! a timestamp at the call, one at every mark and one at the return split the whole
//! operation into consecutive intervals that add up to it exactly:
//!
//! ```text
//! vmalloc: call ─ area search ─ AreaReserved ─ frames ─ PagesAllocated ─ PTE writes ─ Mapped
//!          ─ area registered ─ AreaInserted ─ (return: remainder)
//! vfree:   call ─ area lookup + removal ─ AreaRemoved ─ PTE clears ─ Unmapped ─ TLB flush
//!          (lazy: queue the range, purge when over the threshold) ─ Flushed ─ frames back
//!          ─ PagesFreed ─ range released, descriptor dropped ─ Released ─ (return: remainder)
//! ```
//! A failed attempt (vmalloc_huge falling back to 4K) marks again; the last mark of each
//! kind wins, so the failed attempt is counted in the interval that precedes the retry's
//! `AreaReserved`.
//!
//! Like Linux, frames are freed right after unmapping even in lazy mode: stale TLB
//! entries may still point at them until the purge, which only matters to code that
//! keeps using a vfree'd address (a bug anyway).
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use hashbrown::HashMap;

use crate::buddy::PageKind;
use crate::error::MmError;
use crate::gfp::Gfp;
use crate::page_alloc::PageAllocator;
use crate::PAGE_SIZE;

/// Size of one leaf mapping: the plan's [`PageSize`](kmbench_protocol::PageSize), the
/// one page-size type kernel, harness and this crate share. vmalloc maps 4K and 2M
/// leaves only (`vmalloc_huge`); 1G never reaches it.
pub use kmbench_protocol::PageSize as LeafSize;

/// Page-table and TLB operations vmalloc needs; the kernel implements them on its page
/// tables, host tests with `testing::FakePageTable`.
pub trait VmallocHw {
    /// Map one leaf `virt → phys` (both aligned to `size`). A 2 MiB leaf over a page
    /// table whose entries are all clear frees that table first (Linux's
    /// `pmd_free_pte_page` in `vmap_try_huge_pmd`), so ranges once mapped with 4K leaves
    /// can take 2M leaves again; a table with live entries makes the map fail.
    fn map(&mut self, virt: u64, phys: u64, size: LeafSize) -> Result<(), MmError>;
    /// Clear one leaf; returns the physical address it mapped.
    fn unmap(&mut self, virt: u64, size: LeafSize) -> Option<u64>;
    /// Invalidate these pages (INVLPG each).
    fn flush_tlb_range(&mut self, pages: &[u64]);
    /// Invalidate the whole TLB (CR3 reload).
    fn flush_tlb_all(&mut self);
}

/// How `vfree` invalidates the TLB: the one type the plan, the kernel and this crate
/// share (`PerPage`: INVLPG each leaf below [`TLB_SINGLE_PAGE_FLUSH_CEILING`], else a full
/// flush; `Full`; `Lazy`: Linux's lazy vmap purge, see `lazy_max_pages`).
pub use kmbench_protocol::FlushMode;

/// x86 Linux's `tlb_single_page_flush_ceiling`.
pub const TLB_SINGLE_PAGE_FLUSH_CEILING: usize = 33;
/// Default lazy threshold: 32 MiB worth of 4 KiB pages (Linux `lazy_max_pages`, 1 CPU).
pub const LAZY_MAX_PAGES: u64 = (32 << 20) / PAGE_SIZE as u64;
/// The guard after every area.
pub const GUARD_SIZE: u64 = PAGE_SIZE as u64;

/// Phase boundaries reported to a [`PhaseHook`], in the order they occur (see the
/// module docs for what lies between two marks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// vmalloc: the virtual range (and its guard) is taken from the free ranges.
    AreaReserved,
    /// vmalloc: every frame is allocated.
    PagesAllocated,
    /// vmalloc: every leaf is written into the page tables.
    Mapped,
    /// vmalloc: the area is registered for lookup (hash + ordered map).
    AreaInserted,
    /// vfree: the area is looked up and removed from the hash and the ordered map.
    AreaRemoved,
    /// vfree: every leaf is cleared.
    Unmapped,
    /// vfree: TLB invalidation done (INVLPG batch or CR3 reload), or in lazy mode the range
    /// queued, with the purge (one full flush + return of every pending range) when the
    /// queue went over the threshold.
    Flushed,
    /// vfree: every frame is back in the buddy.
    PagesFreed,
    /// vfree: range back in the free pool (non-lazy), counters updated, descriptor dropped.
    Released,
}

impl Phase {
    /// Every phase, in order: index `i` is the `i`-th mark of a vmalloc+vfree pair.
    pub const ALL: [Phase; 9] = [
        Phase::AreaReserved,
        Phase::PagesAllocated,
        Phase::Mapped,
        Phase::AreaInserted,
        Phase::AreaRemoved,
        Phase::Unmapped,
        Phase::Flushed,
        Phase::PagesFreed,
        Phase::Released,
    ];
    /// Position in [`Phase::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Receives phase boundaries; [`NoHook`] compiles to nothing, closures `FnMut(Phase)` work.
pub trait PhaseHook {
    fn mark(&mut self, phase: Phase);
}
/// The do-nothing hook.
pub struct NoHook;
impl PhaseHook for NoHook {
    #[inline(always)]
    fn mark(&mut self, _phase: Phase) {}
}
impl<F: FnMut(Phase)> PhaseHook for F {
    #[inline(always)]
    fn mark(&mut self, phase: Phase) {
        self(phase)
    }
}

struct VmArea {
    /// Mapped bytes (multiple of the leaf size); the guard follows.
    size: u64,
    requested: usize,
    leaf: LeafSize,
    /// Physical address of each leaf's frame.
    frames: Vec<u64>,
}

/// Public description of an area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmAreaInfo {
    pub start: u64,
    /// Mapped bytes.
    pub size: u64,
    pub requested: usize,
    pub leaf: LeafSize,
    pub nr_leaves: usize,
    /// Address of the unmapped guard page.
    pub guard: u64,
}

/// Counters (cumulative except `areas`, `mapped_*`, `lazy_pages_pending`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmallocStats {
    pub areas: u64,
    pub mapped_4k: u64,
    pub mapped_2m: u64,
    pub lazy_pages_pending: u64,
    pub lazy_ranges_pending: u64,
    pub allocs: u64,
    pub frees: u64,
    pub failures: u64,
    pub huge_fallbacks: u64,
    /// Why the last `vmalloc_huge` fell back to 4K leaves (None: it never did).
    pub last_huge_fallback: Option<HugeFallback>,
    pub full_flushes: u64,
    pub range_flushes: u64,
    pub pages_invlpg: u64,
    pub purges: u64,
}

/// Why a `vmalloc_huge` request ended up with 4K leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugeFallback {
    /// No free 2 MiB-aligned virtual range of that size.
    NoAlignedRange,
    /// No free order-9 block in the buddy.
    NoOrder9Block,
    /// No memory for the area's frame list.
    NoMemory,
    /// A 2 MiB leaf could not be written (e.g. 4K mappings remain in the range).
    MapFailed(&'static str),
}

impl HugeFallback {
    pub fn describe(self) -> &'static str {
        match self {
            HugeFallback::NoAlignedRange => "no free 2 MiB-aligned virtual range",
            HugeFallback::NoOrder9Block => "no free order-9 (2 MiB) block in the buddy",
            HugeFallback::NoMemory => "out of memory for the area's frame list",
            HugeFallback::MapFailed(why) => why,
        }
    }
}

/// The vmalloc space `[start, end)`.
pub struct Vmalloc {
    start: u64,
    end: u64,
    mode: FlushMode,
    lazy_max_pages: u64,
    /// start → area, for O(1) vfree.
    areas: HashMap<u64, VmArea>,
    /// start → end of mapped part (ordered: "which area holds addr").
    by_addr: BTreeMap<u64, u64>,
    /// Free virtual ranges start → end (coalesced).
    free: BTreeMap<u64, u64>,
    /// Ranges (guard included) waiting for the lazy purge.
    lazy: Vec<(u64, u64)>,
    lazy_pages: u64,
    scratch: Vec<u64>,
    stats: VmallocStats,
}

#[inline]
const fn align_up(x: u64, a: u64) -> u64 {
    (x + a - 1) & !(a - 1)
}

impl Vmalloc {
    /// A vmalloc space over `[start, end)` (page aligned), flush mode `Lazy`.
    pub fn new(start: u64, end: u64) -> Self {
        assert!(
            start.is_multiple_of(PAGE_SIZE as u64)
                && end.is_multiple_of(PAGE_SIZE as u64)
                && start < end
        );
        let mut free = BTreeMap::new();
        free.insert(start, end);
        Vmalloc {
            start,
            end,
            mode: FlushMode::Lazy,
            lazy_max_pages: LAZY_MAX_PAGES,
            areas: HashMap::new(),
            by_addr: BTreeMap::new(),
            free,
            lazy: Vec::new(),
            lazy_pages: 0,
            scratch: Vec::new(),
            stats: VmallocStats::default(),
        }
    }

    pub fn range(&self) -> (u64, u64) {
        (self.start, self.end)
    }
    pub fn set_flush_mode(&mut self, m: FlushMode) {
        self.mode = m;
    }
    pub fn flush_mode(&self) -> FlushMode {
        self.mode
    }
    /// Lazy purge threshold in 4 KiB pages.
    pub fn set_lazy_max_pages(&mut self, pages: u64) {
        self.lazy_max_pages = pages;
    }
    /// Lazy purge threshold in 4 KiB pages: a vfree that takes the pending count above
    /// it purges.
    pub fn lazy_max_pages(&self) -> u64 {
        self.lazy_max_pages
    }

    pub fn stats(&self) -> VmallocStats {
        let mut s = self.stats;
        s.areas = self.areas.len() as u64;
        s.lazy_pages_pending = self.lazy_pages;
        s.lazy_ranges_pending = self.lazy.len() as u64;
        s
    }

    /// Free virtual bytes available now (not counting lazily held ranges).
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|(s, e)| e - s).sum()
    }

    /// `vmalloc(size)`: 4 KiB leaves, page alignment. Null on failure (nothing leaks).
    pub fn vmalloc(
        &mut self,
        pa: &mut PageAllocator,
        hw: &mut impl VmallocHw,
        size: usize,
        gfp: Gfp,
    ) -> *mut u8 {
        self.vmalloc_phased(pa, hw, size, PAGE_SIZE as u64, gfp, false, &mut NoHook)
    }

    /// `vzalloc(size)`: zeroed (each frame zeroed through the direct map).
    pub fn vzalloc(
        &mut self,
        pa: &mut PageAllocator,
        hw: &mut impl VmallocHw,
        size: usize,
        gfp: Gfp,
    ) -> *mut u8 {
        self.vmalloc(pa, hw, size, gfp | crate::gfp::__GFP_ZERO)
    }

    /// `vmalloc_huge(size)`: 2 MiB leaves (order-9 frames, 2 MiB-aligned start) when
    /// `size >= 2 MiB`; the size is rounded up to 2 MiB. Falls back to 4 KiB leaves when
    /// that fails (no order-9 block, no aligned range), like Linux.
    pub fn vmalloc_huge(
        &mut self,
        pa: &mut PageAllocator,
        hw: &mut impl VmallocHw,
        size: usize,
        gfp: Gfp,
    ) -> *mut u8 {
        self.vmalloc_phased(pa, hw, size, PAGE_SIZE as u64, gfp, true, &mut NoHook)
    }

    /// `__vmalloc_node(size, align)`: start aligned to `align` (a power of two; values
    /// below 4 KiB mean 4 KiB). Null on failure or bad alignment.
    pub fn vmalloc_align(
        &mut self,
        pa: &mut PageAllocator,
        hw: &mut impl VmallocHw,
        size: usize,
        align: u64,
        gfp: Gfp,
    ) -> *mut u8 {
        self.vmalloc_phased(pa, hw, size, align, gfp, false, &mut NoHook)
    }

    /// The general entry point, reporting phase boundaries to `hook`.
    #[allow(clippy::too_many_arguments)]
    pub fn vmalloc_phased<H: PhaseHook>(
        &mut self,
        pa: &mut PageAllocator,
        hw: &mut impl VmallocHw,
        size: usize,
        align: u64,
        gfp: Gfp,
        huge: bool,
        hook: &mut H,
    ) -> *mut u8 {
        if size == 0 || !align.is_power_of_two() || size as u64 > self.end - self.start {
            self.stats.failures += 1;
            return core::ptr::null_mut();
        }
        let align = align.max(PAGE_SIZE as u64);
        if huge && size as u64 >= LeafSize::Size2M.bytes() {
            let sz = align_up(size as u64, LeafSize::Size2M.bytes());
            let a = align.max(LeafSize::Size2M.bytes());
            match self.try_alloc(pa, hw, sz, size, a, gfp, LeafSize::Size2M, hook) {
                Ok(p) => return p,
                Err(why) => {
                    self.stats.huge_fallbacks += 1;
                    self.stats.last_huge_fallback = Some(why);
                }
            }
        }
        let sz = align_up(size as u64, PAGE_SIZE as u64);
        match self.try_alloc(pa, hw, sz, size, align, gfp, LeafSize::Size4K, hook) {
            Ok(p) => p,
            Err(_) => {
                self.stats.failures += 1;
                core::ptr::null_mut()
            }
        }
    }

    /// One attempt at an area of `size` bytes in `leaf`-sized leaves; on failure nothing
    /// is left allocated and the reason is returned.
    #[allow(clippy::too_many_arguments)]
    fn try_alloc<H: PhaseHook>(
        &mut self,
        pa: &mut PageAllocator,
        hw: &mut impl VmallocHw,
        size: u64,
        requested: usize,
        align: u64,
        gfp: Gfp,
        leaf: LeafSize,
        hook: &mut H,
    ) -> Result<*mut u8, HugeFallback> {
        let total = size + GUARD_SIZE;
        let start = match self.reserve(total, align) {
            Some(s) => s,
            None if !self.lazy.is_empty() => {
                // Like Linux: on address-space exhaustion, purge lazy areas and retry.
                self.purge_lazy(hw);
                self.reserve(total, align)
                    .ok_or(HugeFallback::NoAlignedRange)?
            }
            None => return Err(HugeFallback::NoAlignedRange),
        };
        hook.mark(Phase::AreaReserved);
        let n = (size / leaf.bytes()) as usize;
        let mut frames = Vec::new();
        if frames.try_reserve_exact(n).is_err() {
            self.release(start, start + total);
            return Err(HugeFallback::NoMemory);
        }
        for _ in 0..n {
            match pa.alloc_pages(leaf.order(), gfp) {
                Some(p) => {
                    let phys = pa.direct_map.virt_to_phys(p.as_ptr());
                    if let Some(d) = pa.buddy.page_mut(phys >> crate::PAGE_SHIFT) {
                        d.kind = PageKind::Vmalloc;
                    }
                    frames.push(phys);
                }
                None => {
                    Self::free_frames(pa, &frames, leaf);
                    self.release(start, start + total);
                    return Err(HugeFallback::NoOrder9Block);
                }
            }
        }
        hook.mark(Phase::PagesAllocated);
        for (i, &phys) in frames.iter().enumerate() {
            let v = start + i as u64 * leaf.bytes();
            if let Err(e) = hw.map(v, phys, leaf) {
                for j in 0..i {
                    hw.unmap(start + j as u64 * leaf.bytes(), leaf);
                }
                if i > 0 {
                    hw.flush_tlb_all();
                    self.stats.full_flushes += 1;
                }
                Self::free_frames(pa, &frames, leaf);
                self.release(start, start + total);
                return Err(HugeFallback::MapFailed(match e {
                    MmError::MapFailed { reason, .. } => reason,
                    _ => "page-table write failed",
                }));
            }
        }
        hook.mark(Phase::Mapped);
        match leaf {
            LeafSize::Size4K => self.stats.mapped_4k += n as u64,
            LeafSize::Size2M => self.stats.mapped_2m += n as u64,
            LeafSize::Size1G => unreachable!("vmalloc maps no 1 GiB leaves"),
        }
        self.stats.allocs += 1;
        self.by_addr.insert(start, start + size);
        self.areas.insert(
            start,
            VmArea {
                size,
                requested,
                leaf,
                frames,
            },
        );
        hook.mark(Phase::AreaInserted);
        Ok(start as usize as *mut u8)
    }

    fn free_frames(pa: &mut PageAllocator, frames: &[u64], leaf: LeafSize) {
        for &phys in frames {
            let pfn = phys >> crate::PAGE_SHIFT;
            if let Some(d) = pa.buddy.page_mut(pfn) {
                d.kind = PageKind::Allocated;
            }
            let r = pa.buddy.free_pages(pfn, leaf.order());
            debug_assert!(r.is_ok());
        }
    }

    /// First fit of `total` bytes at `align` in the free ranges.
    fn reserve(&mut self, total: u64, align: u64) -> Option<u64> {
        let (s, e, a) = self.free.iter().find_map(|(&s, &e)| {
            // Checked: a huge alignment (align_shift_alloc_test asks for up to 2^63) must
            // fail cleanly instead of wrapping around the address space.
            let a = s.checked_add(align - 1)? & !(align - 1);
            (a.checked_add(total)? <= e).then_some((s, e, a))
        })?;
        self.free.remove(&s);
        if s < a {
            self.free.insert(s, a);
        }
        if a + total < e {
            self.free.insert(a + total, e);
        }
        Some(a)
    }

    /// Return `[s, e)` to the free ranges, merging with neighbours.
    fn release(&mut self, mut s: u64, mut e: u64) {
        if let Some((&ps, &pe)) = self.free.range(..s).next_back() {
            if pe == s {
                self.free.remove(&ps);
                s = ps;
            }
        }
        if let Some(ne) = self.free.remove(&e) {
            e = ne;
        }
        self.free.insert(s, e);
    }

    /// `vfree(ptr)`. Null is a no-op; anything but an area's start is an error and
    /// changes nothing.
    pub fn vfree(
        &mut self,
        pa: &mut PageAllocator,
        hw: &mut impl VmallocHw,
        ptr: *mut u8,
    ) -> Result<(), MmError> {
        self.vfree_phased(pa, hw, ptr, &mut NoHook)
    }

    /// `vfree` reporting phase boundaries to `hook`.
    pub fn vfree_phased<H: PhaseHook>(
        &mut self,
        pa: &mut PageAllocator,
        hw: &mut impl VmallocHw,
        ptr: *mut u8,
        hook: &mut H,
    ) -> Result<(), MmError> {
        if ptr.is_null() {
            return Ok(());
        }
        let start = ptr as usize as u64;
        let Some(area) = self.areas.remove(&start) else {
            return Err(match self.find_area(start) {
                Some(info) => MmError::VfreeInterior {
                    addr: start,
                    area_start: info.start,
                },
                None => MmError::NotVmallocArea { addr: start },
            });
        };
        self.by_addr.remove(&start);
        hook.mark(Phase::AreaRemoved);
        let lb = area.leaf.bytes();
        self.scratch.clear();
        for (i, &_phys) in area.frames.iter().enumerate() {
            let v = start + i as u64 * lb;
            let got = hw.unmap(v, area.leaf);
            debug_assert_eq!(got, Some(_phys));
            self.scratch.push(v);
        }
        hook.mark(Phase::Unmapped);
        let n = area.frames.len();
        let total = area.size + GUARD_SIZE;
        match self.mode {
            FlushMode::Full => {
                hw.flush_tlb_all();
                self.stats.full_flushes += 1;
            }
            FlushMode::PerPage if n < TLB_SINGLE_PAGE_FLUSH_CEILING => {
                hw.flush_tlb_range(&self.scratch);
                self.stats.range_flushes += 1;
                self.stats.pages_invlpg += n as u64;
            }
            FlushMode::PerPage => {
                hw.flush_tlb_all();
                self.stats.full_flushes += 1;
            }
            FlushMode::Lazy => {
                self.lazy.push((start, start + total));
                self.lazy_pages += area.size / PAGE_SIZE as u64;
                if self.lazy_pages > self.lazy_max_pages {
                    self.purge_lazy(hw);
                }
            }
        }
        hook.mark(Phase::Flushed);
        Self::free_frames(pa, &area.frames, area.leaf);
        hook.mark(Phase::PagesFreed);
        if self.mode != FlushMode::Lazy {
            self.release(start, start + total);
        }
        match area.leaf {
            LeafSize::Size4K => self.stats.mapped_4k -= n as u64,
            LeafSize::Size2M => self.stats.mapped_2m -= n as u64,
            LeafSize::Size1G => unreachable!("vmalloc maps no 1 GiB leaves"),
        }
        self.stats.frees += 1;
        drop(area);
        hook.mark(Phase::Released);
        Ok(())
    }

    /// Flush the whole TLB once and return every lazily freed range to the free pool
    /// (Linux `purge_vmap_area_lazy`). Nothing to do when none is pending.
    pub fn purge_lazy(&mut self, hw: &mut impl VmallocHw) {
        if self.lazy.is_empty() {
            return;
        }
        hw.flush_tlb_all();
        self.stats.full_flushes += 1;
        self.stats.purges += 1;
        let lazy = core::mem::take(&mut self.lazy);
        for &(s, e) in &lazy {
            self.release(s, e);
        }
        self.lazy = lazy;
        self.lazy.clear();
        self.lazy_pages = 0;
    }

    /// The area containing `addr` (mapped part only; the guard page is not included).
    pub fn find_area(&self, addr: u64) -> Option<VmAreaInfo> {
        let (&s, &e) = self.by_addr.range(..=addr).next_back()?;
        if addr >= e {
            return None;
        }
        let a = self.areas.get(&s)?;
        Some(VmAreaInfo {
            start: s,
            size: a.size,
            requested: a.requested,
            leaf: a.leaf,
            nr_leaves: a.frames.len(),
            guard: s + a.size,
        })
    }

    /// `vmalloc_to_page` + offset: the physical address backing `addr`.
    pub fn vmalloc_to_page(&self, addr: u64) -> Option<u64> {
        let (&s, &e) = self.by_addr.range(..=addr).next_back()?;
        if addr >= e {
            return None;
        }
        let a = self.areas.get(&s)?;
        let off = addr - s;
        let lb = a.leaf.bytes();
        Some(a.frames[(off / lb) as usize] + off % lb)
    }

    /// Starts of all live areas (ascending).
    pub fn area_starts(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_addr.keys().copied()
    }
}

pub mod zone;

#[cfg(test)]
mod tests;
