//! vmalloc: virtually contiguous areas built from physically scattered frames.
//!
//! Each area takes a range of the vmalloc address space (first fit, with alignment),
//! backs it with separately allocated order-0 frames (or order-9 frames mapped as 2 MiB
//! leaves for `vmalloc_huge`) and is followed by one unmapped guard page. Page-table
//! writes and TLB flushes go through [`VmallocHw`], which the kernel implements.
//!
//! # Phases (for benchmarks)
//! `vmalloc_phased` / `vfree_phased` call [`PhaseHook::mark`] at each phase boundary;
//! record a timestamp at the call and at every mark:
//! * alloc: … `Reserved` (virtual range + frames obtained) … `Mapped` (PTEs written).
//! * free:  … `Unmapped` (area looked up, PTEs cleared) … `Flushed` (TLB flush, or lazy
//!   deferral; a lazy purge triggered here is counted in this phase) … `Released`
//!   (frames back to the buddy, range back to the free pool unless lazy).
//!
//! Like Linux, frames are freed right after unmapping even in lazy mode: stale TLB
//! entries may still point at them until the purge, which only matters to code that
//! keeps using a vfree'd address (a bug anyway).
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use hashbrown::HashMap;

use crate::buddy::{KIND_ALLOCATED, KIND_VMALLOC};
use crate::error::MmError;
use crate::gfp::Gfp;
use crate::page_alloc::PageAllocator;
use crate::PAGE_SIZE;

/// Size of one leaf mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeafSize {
    Size4K,
    Size2M,
}

impl LeafSize {
    pub const fn bytes(self) -> u64 {
        match self {
            LeafSize::Size4K => 4096,
            LeafSize::Size2M => 2 << 20,
        }
    }
    /// Buddy order of the frame behind one leaf.
    pub const fn order(self) -> u8 {
        match self {
            LeafSize::Size4K => 0,
            LeafSize::Size2M => 9,
        }
    }
}

/// Page-table and TLB operations vmalloc needs; the kernel implements them on its page
/// tables, host tests with `testing::FakePageTable`.
pub trait VmallocHw {
    /// Map one leaf `virt → phys` (both aligned to `size`).
    fn map(&mut self, virt: u64, phys: u64, size: LeafSize) -> Result<(), MmError>;
    /// Clear one leaf; returns the physical address it mapped.
    fn unmap(&mut self, virt: u64, size: LeafSize) -> Option<u64>;
    /// Invalidate these pages (INVLPG each).
    fn flush_tlb_range(&mut self, pages: &[u64]);
    /// Invalidate the whole TLB (CR3 reload).
    fn flush_tlb_all(&mut self);
}

/// How `vfree` invalidates the TLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlushMode {
    /// INVLPG each leaf when fewer than [`TLB_SINGLE_PAGE_FLUSH_CEILING`], else a full flush.
    PerPage,
    /// Always a full flush.
    Full,
    /// Linux's lazy vmap purge: unmap now, but keep the virtual range out of use and skip
    /// the flush until more than `lazy_max_pages` pages are pending; then one full flush
    /// and all pending ranges return to the free pool.
    Lazy,
}

/// x86 Linux's `tlb_single_page_flush_ceiling`.
pub const TLB_SINGLE_PAGE_FLUSH_CEILING: usize = 33;
/// Default lazy threshold: 32 MiB worth of 4 KiB pages (Linux `lazy_max_pages`, 1 CPU).
pub const LAZY_MAX_PAGES: u64 = (32 << 20) / PAGE_SIZE as u64;
/// The guard after every area.
pub const GUARD_SIZE: u64 = PAGE_SIZE as u64;

/// Phase boundaries reported to a [`PhaseHook`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Reserved,
    Mapped,
    Unmapped,
    Flushed,
    Released,
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
    pub full_flushes: u64,
    pub range_flushes: u64,
    pub pages_invlpg: u64,
    pub purges: u64,
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
            if let Some(p) = self.try_alloc(pa, hw, sz, size, a, gfp, LeafSize::Size2M, hook) {
                return p;
            }
            self.stats.huge_fallbacks += 1;
        }
        let sz = align_up(size as u64, PAGE_SIZE as u64);
        match self.try_alloc(pa, hw, sz, size, align, gfp, LeafSize::Size4K, hook) {
            Some(p) => p,
            None => {
                self.stats.failures += 1;
                core::ptr::null_mut()
            }
        }
    }

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
    ) -> Option<*mut u8> {
        let total = size + GUARD_SIZE;
        let start = match self.reserve(total, align) {
            Some(s) => s,
            None if !self.lazy.is_empty() => {
                // Like Linux: on address-space exhaustion, purge lazy areas and retry.
                self.purge_lazy(hw);
                self.reserve(total, align)?
            }
            None => return None,
        };
        let n = (size / leaf.bytes()) as usize;
        let mut frames = Vec::new();
        if frames.try_reserve_exact(n).is_err() {
            self.release(start, start + total);
            return None;
        }
        for _ in 0..n {
            match pa.alloc_pages(leaf.order(), gfp) {
                Some(p) => {
                    let phys = pa.direct_map.virt_to_phys(p.as_ptr());
                    if let Some(d) = pa.buddy.page_mut(phys >> crate::PAGE_SHIFT) {
                        d.kind = KIND_VMALLOC;
                    }
                    frames.push(phys);
                }
                None => {
                    Self::free_frames(pa, &frames, leaf);
                    self.release(start, start + total);
                    return None;
                }
            }
        }
        hook.mark(Phase::Reserved);
        for (i, &phys) in frames.iter().enumerate() {
            let v = start + i as u64 * leaf.bytes();
            if hw.map(v, phys, leaf).is_err() {
                for j in 0..i {
                    hw.unmap(start + j as u64 * leaf.bytes(), leaf);
                }
                if i > 0 {
                    hw.flush_tlb_all();
                    self.stats.full_flushes += 1;
                }
                Self::free_frames(pa, &frames, leaf);
                self.release(start, start + total);
                return None;
            }
        }
        hook.mark(Phase::Mapped);
        match leaf {
            LeafSize::Size4K => self.stats.mapped_4k += n as u64,
            LeafSize::Size2M => self.stats.mapped_2m += n as u64,
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
        Some(start as usize as *mut u8)
    }

    fn free_frames(pa: &mut PageAllocator, frames: &[u64], leaf: LeafSize) {
        for &phys in frames {
            let pfn = phys >> crate::PAGE_SHIFT;
            if let Some(d) = pa.buddy.page_mut(pfn) {
                d.kind = KIND_ALLOCATED;
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
        if self.mode != FlushMode::Lazy {
            self.release(start, start + total);
        }
        match area.leaf {
            LeafSize::Size4K => self.stats.mapped_4k -= n as u64,
            LeafSize::Size2M => self.stats.mapped_2m -= n as u64,
        }
        self.stats.frees += 1;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gfp::GFP_KERNEL;
    use crate::testing::{FakePageTable, HostArena};
    use std::string::ToString;
    use std::vec::Vec;

    const VSTART: u64 = 0xffff_c900_0000_0000;
    const VEND: u64 = VSTART + (1 << 32);

    fn setup() -> (HostArena, FakePageTable, Vmalloc) {
        (
            HostArena::new(16 << 20),
            FakePageTable::new(),
            Vmalloc::new(VSTART, VEND),
        )
    }

    #[test]
    fn alloc_maps_distinct_frames_with_guard() {
        let (mut a, mut hw, mut vm) = setup();
        vm.set_flush_mode(FlushMode::PerPage);
        let free0 = a.pa.buddy.nr_free_pages();
        let p = vm.vmalloc(&mut a.pa, &mut hw, 3 * 4096 + 1, GFP_KERNEL) as u64;
        assert_eq!(p, VSTART);
        let info = vm.find_area(p + 5000).unwrap();
        assert_eq!(
            (info.start, info.size, info.nr_leaves, info.guard),
            (p, 16384, 4, p + 16384)
        );
        assert!(hw.translate(info.guard).is_none(), "guard page unmapped");
        assert!(vm.find_area(info.guard).is_none());
        let mut frames: Vec<u64> = (0..4)
            .map(|i| hw.translate(p + i * 4096).unwrap())
            .collect();
        assert_eq!(vm.vmalloc_to_page(p + 4096 + 7), Some(frames[1] + 7));
        frames.sort();
        frames.dedup();
        assert_eq!(frames.len(), 4);
        assert_eq!(a.pa.buddy.nr_free_pages(), free0 - 4);
        // The next area starts after the guard.
        let q = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL) as u64;
        assert_eq!(q, p + 16384 + 4096);
        vm.vfree(&mut a.pa, &mut hw, p as *mut u8).unwrap();
        assert_eq!(hw.range_flushes, 1);
        assert_eq!(hw.invlpg_pages, 4);
        vm.vfree(&mut a.pa, &mut hw, q as *mut u8).unwrap();
        assert_eq!(hw.nr_mapped(), 0);
        assert_eq!(a.pa.buddy.nr_free_pages(), free0);
        assert_eq!(vm.free_bytes(), VEND - VSTART, "ranges coalesced");
    }

    #[test]
    fn vzalloc_zeroes_frames() {
        let (mut a, mut hw, mut vm) = setup();
        // Dirty the whole arena first.
        let mut pages = Vec::new();
        while let Some(p) = a.pa.alloc_pages(0, GFP_KERNEL) {
            // SAFETY: p is a page of the host arena owned by this test.
            unsafe { core::ptr::write_bytes(p.as_ptr(), 0xee, 4096) };
            pages.push(p);
        }
        for p in pages {
            a.pa.free_pages(p.as_ptr(), 0).unwrap();
        }
        let v = vm.vzalloc(&mut a.pa, &mut hw, 8192, GFP_KERNEL) as u64;
        for i in 0..2 {
            let phys = vm.vmalloc_to_page(v + i * 4096).unwrap();
            let virt = a.pa.direct_map.phys_to_virt(phys);
            // SAFETY: the frame is a page of the arena, owned by the vmalloc area.
            assert!(unsafe { core::slice::from_raw_parts(virt, 4096) }
                .iter()
                .all(|&b| b == 0));
        }
        vm.vfree(&mut a.pa, &mut hw, v as *mut u8).unwrap();
    }

    #[test]
    fn flush_modes() {
        let (mut a, mut hw, mut vm) = setup();
        vm.set_flush_mode(FlushMode::PerPage);
        let p = vm.vmalloc(&mut a.pa, &mut hw, 33 * 4096, GFP_KERNEL);
        vm.vfree(&mut a.pa, &mut hw, p).unwrap();
        assert_eq!(
            (hw.full_flushes, hw.range_flushes),
            (1, 0),
            "33 pages -> full flush"
        );
        let p = vm.vmalloc(&mut a.pa, &mut hw, 32 * 4096, GFP_KERNEL);
        vm.vfree(&mut a.pa, &mut hw, p).unwrap();
        assert_eq!(
            (hw.full_flushes, hw.range_flushes, hw.invlpg_pages),
            (1, 1, 32)
        );
        vm.set_flush_mode(FlushMode::Full);
        let p = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL);
        vm.vfree(&mut a.pa, &mut hw, p).unwrap();
        assert_eq!(hw.full_flushes, 2);
    }

    #[test]
    fn lazy_defers_flush_and_reuse() {
        let (mut a, mut hw, mut vm) = setup();
        vm.set_flush_mode(FlushMode::Lazy);
        vm.set_lazy_max_pages(8);
        let free0 = a.pa.buddy.nr_free_pages();
        let p = vm.vmalloc(&mut a.pa, &mut hw, 4 * 4096, GFP_KERNEL);
        vm.vfree(&mut a.pa, &mut hw, p).unwrap();
        assert_eq!(hw.full_flushes + hw.range_flushes, 0, "no flush yet");
        assert_eq!(a.pa.buddy.nr_free_pages(), free0, "frames freed at once");
        assert_eq!(vm.stats().lazy_pages_pending, 4);
        let q = vm.vmalloc(&mut a.pa, &mut hw, 4 * 4096, GFP_KERNEL);
        assert_ne!(p, q, "lazily freed range not reused before the purge");
        vm.vfree(&mut a.pa, &mut hw, q).unwrap();
        assert_eq!(
            hw.full_flushes, 0,
            "8 pages pending is not above the threshold"
        );
        let r = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL);
        vm.vfree(&mut a.pa, &mut hw, r).unwrap();
        assert_eq!(hw.full_flushes, 1);
        let s = vm.stats();
        assert_eq!((s.purges, s.lazy_pages_pending), (1, 0));
        assert_eq!(vm.free_bytes(), VEND - VSTART);
        let t = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL);
        assert_eq!(t, p, "range reused after the purge");
        vm.vfree(&mut a.pa, &mut hw, t).unwrap();
        vm.purge_lazy(&mut hw);
        assert_eq!(hw.full_flushes, 2);
        vm.purge_lazy(&mut hw);
        assert_eq!(hw.full_flushes, 2, "nothing pending: no flush");
    }

    #[test]
    fn lazy_purges_on_address_space_exhaustion() {
        let mut a = HostArena::new(4 << 20);
        let mut hw = FakePageTable::new();
        let mut vm = Vmalloc::new(VSTART, VSTART + 4 * 8192);
        let p = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL);
        vm.vfree(&mut a.pa, &mut hw, p).unwrap();
        let ps: Vec<*mut u8> = (0..4)
            .map(|_| vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL))
            .collect();
        assert!(ps.iter().all(|p| !p.is_null()));
        assert_eq!(vm.stats().purges, 1);
        assert!(vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL).is_null());
    }

    #[test]
    fn huge_and_fallback() {
        let (mut a, mut hw, mut vm) = setup();
        let free0 = a.pa.buddy.nr_free_pages();
        let p = vm.vmalloc_huge(&mut a.pa, &mut hw, (4 << 20) + 1, GFP_KERNEL) as u64;
        assert_eq!(p % (2 << 20), 0);
        let info = vm.find_area(p).unwrap();
        assert_eq!(
            (info.leaf, info.nr_leaves, info.size),
            (LeafSize::Size2M, 3, 6 << 20)
        );
        for (v, ph, s) in hw.leaves() {
            assert_eq!(s, LeafSize::Size2M);
            assert_eq!((v % (2 << 20), ph % (2 << 20)), (0, 0));
        }
        assert_eq!(vm.stats().mapped_2m, 3);
        // Small request: 4K leaves even via vmalloc_huge.
        let q = vm.vmalloc_huge(&mut a.pa, &mut hw, 8192, GFP_KERNEL) as u64;
        assert_eq!(vm.find_area(q).unwrap().leaf, LeafSize::Size4K);
        // Fragment memory so no order-9 block exists: fallback to 4K leaves.
        let mut held = Vec::new();
        while let Some(pfn) = a.pa.buddy.alloc_pages(9) {
            held.push(pfn);
        }
        let before = vm.stats().huge_fallbacks;
        // Free one 2M block as 512 pages, keeping one page so it cannot merge back.
        let pfn = held.pop().unwrap();
        a.pa.buddy.free_pages(pfn, 9).unwrap();
        let mut pins = Vec::new();
        loop {
            let x = a.pa.buddy.alloc_pages(0).unwrap();
            pins.push(x);
            if (pfn..pfn + 512).contains(&x) {
                break;
            }
        }
        let pin = pins.pop().unwrap();
        for x in pins {
            a.pa.buddy.free_pages(x, 0).unwrap();
        }
        let r = vm.vmalloc_huge(&mut a.pa, &mut hw, 2 << 20, GFP_KERNEL);
        assert!(!r.is_null(), "fell back to 4K frames");
        assert_eq!(vm.stats().huge_fallbacks, before + 1);
        let info = vm.find_area(r as u64).unwrap();
        assert_eq!((info.leaf, info.nr_leaves), (LeafSize::Size4K, 512));
        vm.vfree(&mut a.pa, &mut hw, r).unwrap();
        a.pa.buddy.free_pages(pin, 0).unwrap();
        for pfn in held {
            a.pa.buddy.free_pages(pfn, 9).unwrap();
        }
        vm.vfree(&mut a.pa, &mut hw, p as *mut u8).unwrap();
        vm.vfree(&mut a.pa, &mut hw, q as *mut u8).unwrap();
        assert_eq!(a.pa.buddy.nr_free_pages(), free0);
        assert_eq!(hw.nr_mapped(), 0);
    }

    #[test]
    fn alignment() {
        let (mut a, mut hw, mut vm) = setup();
        let _x = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL);
        for shift in 12..=24 {
            let p = vm.vmalloc_align(&mut a.pa, &mut hw, 4096, 1 << shift, GFP_KERNEL) as u64;
            assert_eq!(p % (1 << shift), 0, "align 2^{shift}");
            vm.vfree(&mut a.pa, &mut hw, p as *mut u8).unwrap();
        }
        assert!(vm
            .vmalloc_align(&mut a.pa, &mut hw, 4096, 3, GFP_KERNEL)
            .is_null());
        assert!(vm.vmalloc(&mut a.pa, &mut hw, 0, GFP_KERNEL).is_null());
    }

    #[test]
    fn alignment_beyond_the_range_fails_cleanly() {
        // Linux's align_shift_alloc_test: every alignment 2^0 … 2^63 for one page.
        let (mut a, mut hw, mut vm) = setup();
        let (start, end) = vm.range();
        for shift in 0..64u32 {
            let p = vm.vmalloc_align(&mut a.pa, &mut hw, 4096, 1u64 << shift, GFP_KERNEL) as u64;
            if p != 0 {
                assert!(
                    p >= start && p + 4096 <= end,
                    "align 2^{shift}: {p:#x} outside the range"
                );
                assert_eq!(p % (1u64 << shift), 0);
                vm.vfree(&mut a.pa, &mut hw, p as *mut u8).unwrap();
            }
        }
        assert!(vm
            .vmalloc_align(&mut a.pa, &mut hw, 4096, 1u64 << 63, GFP_KERNEL)
            .is_null());
    }

    #[test]
    fn vfree_misuse() {
        let (mut a, mut hw, mut vm) = setup();
        vm.vfree(&mut a.pa, &mut hw, core::ptr::null_mut()).unwrap();
        let p = vm.vmalloc(&mut a.pa, &mut hw, 8192, GFP_KERNEL) as u64;
        let e = vm
            .vfree(&mut a.pa, &mut hw, (p + 4096) as *mut u8)
            .unwrap_err();
        assert_eq!(
            e,
            MmError::VfreeInterior {
                addr: p + 4096,
                area_start: p
            }
        );
        assert!(e.to_string().contains("inside the vmalloc area"), "{e}");
        let e = vm
            .vfree(&mut a.pa, &mut hw, (p + 8192) as *mut u8)
            .unwrap_err(); // guard
        assert_eq!(e, MmError::NotVmallocArea { addr: p + 8192 });
        let e = vm
            .vfree(&mut a.pa, &mut hw, 0x1234_5000 as *mut u8)
            .unwrap_err();
        assert!(
            e.to_string().contains("not the start of any vmalloc area"),
            "{e}"
        );
        assert_eq!(hw.nr_mapped(), 2, "errors change nothing");
        vm.vfree(&mut a.pa, &mut hw, p as *mut u8).unwrap();
        assert!(matches!(
            vm.vfree(&mut a.pa, &mut hw, p as *mut u8),
            Err(MmError::NotVmallocArea { .. })
        ));
        // vmalloc frames refuse kfree/free_pages.
        let q = vm.vmalloc(&mut a.pa, &mut hw, 4096, GFP_KERNEL) as u64;
        let phys = vm.vmalloc_to_page(q).unwrap();
        assert!(matches!(
            a.pa.buddy.free_pages(phys >> 12, 0),
            Err(MmError::PageNotAllocated { .. })
        ));
        vm.vfree(&mut a.pa, &mut hw, q as *mut u8).unwrap();
    }

    #[test]
    fn oom_leaks_nothing() {
        let (mut a, mut hw, mut vm) = setup();
        vm.set_flush_mode(FlushMode::Full);
        let free0 = a.pa.buddy.nr_free_pages();
        let p = vm.vmalloc(&mut a.pa, &mut hw, 64 << 20, GFP_KERNEL);
        assert!(p.is_null());
        assert_eq!(a.pa.buddy.nr_free_pages(), free0);
        assert_eq!(vm.free_bytes(), VEND - VSTART);
        assert_eq!(hw.nr_mapped(), 0);
        assert_eq!(vm.stats().areas, 0);
        // Map failure half-way: everything undone.
        hw.fail_after = Some(3);
        assert!(vm
            .vmalloc(&mut a.pa, &mut hw, 8 * 4096, GFP_KERNEL)
            .is_null());
        hw.fail_after = None;
        assert_eq!(a.pa.buddy.nr_free_pages(), free0);
        assert_eq!(vm.free_bytes(), VEND - VSTART);
        assert_eq!(hw.nr_mapped(), 0);
        // Address space exhaustion.
        let mut small = Vmalloc::new(VSTART, VSTART + 8192);
        assert!(small
            .vmalloc(&mut a.pa, &mut hw, 8192, GFP_KERNEL)
            .is_null());
        assert_eq!(a.pa.buddy.nr_free_pages(), free0);
    }

    #[test]
    fn phases_are_reported_in_order() {
        let (mut a, mut hw, mut vm) = setup();
        let mut seen = Vec::new();
        let p = vm.vmalloc_phased(
            &mut a.pa,
            &mut hw,
            4096,
            4096,
            GFP_KERNEL,
            false,
            &mut |ph| seen.push(ph),
        );
        vm.vfree_phased(&mut a.pa, &mut hw, p, &mut |ph| seen.push(ph))
            .unwrap();
        assert_eq!(
            seen,
            [
                Phase::Reserved,
                Phase::Mapped,
                Phase::Unmapped,
                Phase::Flushed,
                Phase::Released
            ]
        );
    }
}
