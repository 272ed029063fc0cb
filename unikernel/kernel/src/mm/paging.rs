//! The kernel's 4-level page tables, built with the `x86_64` crate.
//!
//! A [`KernelPageTable`] reaches table pages through an offset: 0 (identity, boot page
//! tables live) while the new tables are being built, then `PAGE_OFFSET` (the direct map)
//! once they are live. When the run executes at CPL3 every entry carries the USER bit
//! (CPL3 code must reach kernel memory and write page tables directly); at CPL0 none do.
//! TLB invalidation is left to callers, which batch it (see `privileged`), except where a
//! 2 MiB leaf replaces an emptied PTE table (see [`KernelPageTable::free_empty_pte_table`]).
use x86_64::structures::paging::mapper::{MapToError, MappedFrame, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageSize as HwPageSize, PageTable,
    PageTableFlags as F, PhysFrame, Size1GiB, Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use kmbench_mm::vmalloc::{LeafSize, VmallocHw};
use kmbench_mm::MmError;
use kmbench_protocol::PageSize;

pub struct KernelPageTable {
    pub pml4_phys: u64,
    pub phys_offset: u64,
    pub user: bool,
    /// Page-table pages allocated through this table (for reports).
    pub table_pages: u64,
    /// Pre-allocated frames for new page-table pages (see [`VmallocHw`] impl).
    pub frame_cache: alloc::vec::Vec<u64>,
    /// Empty PTE tables freed to make room for a 2 MiB leaf (Linux `pmd_free_pte_page`).
    pub pte_tables_freed: u64,
}

/// Hands out frames from a list, counting them.
struct CacheFrames<'a> {
    frames: &'a mut alloc::vec::Vec<u64>,
    taken: u64,
}

// SAFETY: every frame in the cache is an unused, exclusively owned 4 KiB frame.
unsafe impl FrameAllocator<Size4KiB> for CacheFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let f = self.frames.pop()?;
        self.taken += 1;
        Some(PhysFrame::containing_address(PhysAddr::new(f)))
    }
}

/// Counts frames handed out by another allocator.
pub struct Counting<'a, A> {
    pub inner: &'a mut A,
    pub taken: u64,
}

// SAFETY: forwards to an allocator that upholds the contract.
unsafe impl<A: FrameAllocator<Size4KiB>> FrameAllocator<Size4KiB> for Counting<'_, A> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let f = self.inner.allocate_frame()?;
        self.taken += 1;
        Some(f)
    }
}

impl KernelPageTable {
    pub fn leaf_flags(&self, writable: bool, executable: bool) -> F {
        let mut f = F::PRESENT;
        if writable {
            f |= F::WRITABLE;
        }
        if !executable {
            f |= F::NO_EXECUTE;
        }
        if self.user {
            f |= F::USER_ACCESSIBLE;
        }
        f
    }

    fn parent_flags(&self) -> F {
        let mut f = F::PRESENT | F::WRITABLE;
        if self.user {
            f |= F::USER_ACCESSIBLE;
        }
        f
    }

    fn mapper(&mut self) -> OffsetPageTable<'_> {
        // SAFETY: pml4_phys is this table's root, and phys_offset maps all physical
        // memory holding page-table pages (identity before the switch, the direct map
        // after). &mut self guarantees no other mapper for this table exists now.
        unsafe {
            let pml4 = &mut *((self.pml4_phys + self.phys_offset) as *mut PageTable);
            OffsetPageTable::new(pml4, VirtAddr::new(self.phys_offset))
        }
    }

    /// Map one leaf. Table pages come from `frames`.
    pub fn map_leaf<A: FrameAllocator<Size4KiB>>(
        &mut self,
        virt: u64,
        phys: u64,
        leaf: PageSize,
        flags: F,
        frames: &mut A,
    ) -> Result<(), &'static str> {
        let parent = self.parent_flags();
        let mut counting = Counting {
            inner: frames,
            taken: 0,
        };
        let mut m = self.mapper();
        let huge = flags | F::HUGE_PAGE;
        let r = match leaf {
            PageSize::Size4K => {
                map_one::<Size4KiB>(&mut m, virt, phys, flags, parent, &mut counting)
            }
            PageSize::Size2M => {
                map_one::<Size2MiB>(&mut m, virt, phys, huge, parent, &mut counting)
            }
            PageSize::Size1G => {
                map_one::<Size1GiB>(&mut m, virt, phys, huge, parent, &mut counting)
            }
        };
        self.table_pages += counting.taken;
        r
    }

    /// Map [virt, virt+len) → [phys, …) with the largest leaves up to `max_leaf` that
    /// alignment allows; returns leaf counts (4K, 2M, 1G).
    pub fn map_range<A: FrameAllocator<Size4KiB>>(
        &mut self,
        virt: u64,
        phys: u64,
        len: u64,
        max_leaf: PageSize,
        flags: F,
        frames: &mut A,
    ) -> Result<[u64; 3], &'static str> {
        let mut counts = [0u64; 3];
        let mut off = 0;
        while off < len {
            let (v, p, left) = (virt + off, phys + off, len - off);
            let leaf = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K]
                .into_iter()
                .find(|l| {
                    l.bytes() <= max_leaf.bytes()
                        && v % l.bytes() == 0
                        && p % l.bytes() == 0
                        && left >= l.bytes()
                })
                .unwrap_or(PageSize::Size4K);
            self.map_leaf(v, p, leaf, flags, frames)?;
            counts[match leaf {
                PageSize::Size4K => 0,
                PageSize::Size2M => 1,
                PageSize::Size1G => 2,
            }] += 1;
            off += leaf.bytes();
        }
        Ok(counts)
    }

    /// Clear a leaf; returns the physical address it mapped. No TLB flush.
    pub fn unmap_leaf(&mut self, virt: u64, leaf: PageSize) -> Option<u64> {
        let mut m = self.mapper();
        match leaf {
            PageSize::Size4K => unmap_one::<Size4KiB>(&mut m, virt),
            PageSize::Size2M => unmap_one::<Size2MiB>(&mut m, virt),
            PageSize::Size1G => unmap_one::<Size1GiB>(&mut m, virt),
        }
    }

    /// Linux's `pmd_free_pte_page`, as `vmap_try_huge_pmd` uses it: when the PD entry
    /// covering `virt` points to a PTE table whose 512 entries are all clear (a range
    /// once mapped with 4K leaves, since unmapped), clear the PD entry and return the
    /// table's frame, so a 2 MiB leaf can go there. `Ok(None)`: no table there. A table
    /// with a live entry is an error: the 2 MiB range is not free.
    ///
    /// The caller must invalidate `virt` (INVLPG also drops paging-structure-cache
    /// entries) before the frame is reused; [`VmallocHw::map`] does so right after
    /// writing the 2 MiB leaf.
    pub fn free_empty_pte_table(&mut self, virt: u64) -> Result<Option<u64>, &'static str> {
        let v = VirtAddr::new(virt);
        let mut table_phys = self.pml4_phys;
        for index in [v.p4_index(), v.p3_index()] {
            // SAFETY: table_phys is a page-table page of this hierarchy (the root, or a
            // frame a present non-huge entry points to), mapped at phys + phys_offset;
            // &mut self excludes any other access to these tables meanwhile.
            let table = unsafe { &*((table_phys + self.phys_offset) as *const PageTable) };
            let e = &table[index];
            if !e.flags().contains(F::PRESENT) || e.flags().contains(F::HUGE_PAGE) {
                return Ok(None);
            }
            table_phys = e.addr().as_u64();
        }
        // SAFETY: as above; table_phys is the PD reached through present entries.
        let pd = unsafe { &mut *((table_phys + self.phys_offset) as *mut PageTable) };
        let entry = &mut pd[v.p2_index()];
        if !entry.flags().contains(F::PRESENT) || entry.flags().contains(F::HUGE_PAGE) {
            return Ok(None);
        }
        let pt_phys = entry.addr().as_u64();
        // SAFETY: a present non-huge PD entry points to a PTE table of this hierarchy.
        let pt = unsafe { &*((pt_phys + self.phys_offset) as *const PageTable) };
        if pt.iter().any(|e| !e.is_unused()) {
            return Err("4K mappings remain in this 2 MiB range");
        }
        entry.set_unused();
        self.table_pages -= 1;
        self.pte_tables_freed += 1;
        Ok(Some(pt_phys))
    }

    /// The direct-map address of the PTE table that holds `virt`'s 4K entry, if the
    /// tables down to it exist (no 1G/2M leaf on the way).
    pub fn pte_table(&self, virt: u64) -> Option<u64> {
        let v = VirtAddr::new(virt);
        let mut table_phys = self.pml4_phys;
        for index in [v.p4_index(), v.p3_index(), v.p2_index()] {
            // SAFETY: table_phys is a page-table page of this hierarchy (the root or the
            // target of a present non-huge entry), mapped at phys + phys_offset; only read.
            let table = unsafe { &*((table_phys + self.phys_offset) as *const PageTable) };
            let e = &table[index];
            if !e.flags().contains(F::PRESENT) || e.flags().contains(F::HUGE_PAGE) {
                return None;
            }
            table_phys = e.addr().as_u64();
        }
        Some(table_phys + self.phys_offset)
    }

    /// Walk the tables: physical address and leaf size behind `virt`.
    pub fn translate(&mut self, virt: u64) -> Option<(u64, PageSize, F)> {
        let m = self.mapper();
        match m.translate(VirtAddr::new(virt)) {
            TranslateResult::Mapped {
                frame,
                offset,
                flags,
            } => {
                let leaf = match frame {
                    MappedFrame::Size4KiB(_) => PageSize::Size4K,
                    MappedFrame::Size2MiB(_) => PageSize::Size2M,
                    MappedFrame::Size1GiB(_) => PageSize::Size1G,
                };
                Some((frame.start_address().as_u64() + offset, leaf, flags))
            }
            _ => None,
        }
    }

    /// Make sure the frame cache holds at least `n` frames, taking them from `alloc`.
    pub fn refill_frame_cache(&mut self, n: usize, mut alloc: impl FnMut() -> Option<u64>) -> bool {
        while self.frame_cache.len() < n {
            match alloc() {
                Some(f) => self.frame_cache.push(f),
                None => return false,
            }
        }
        true
    }
}

/// Map one leaf of size `S`; the TLB needs no flush for a new mapping on x86.
fn map_one<S: HwPageSize + core::fmt::Debug>(
    m: &mut OffsetPageTable<'_>,
    virt: u64,
    phys: u64,
    flags: F,
    parent: F,
    frames: &mut impl FrameAllocator<Size4KiB>,
) -> Result<(), &'static str>
where
    for<'a> OffsetPageTable<'a>: Mapper<S>,
{
    // SAFETY: callers map frames they own at addresses in kernel-reserved ranges, so no
    // live mapping of someone else's memory is created or aliased.
    let r = unsafe {
        m.map_to_with_table_flags(
            Page::<S>::containing_address(VirtAddr::new(virt)),
            PhysFrame::<S>::containing_address(PhysAddr::new(phys)),
            flags,
            parent,
            frames,
        )
    };
    match r {
        Ok(flush) => {
            flush.ignore();
            Ok(())
        }
        Err(MapToError::FrameAllocationFailed) => Err("out of memory for a page table"),
        Err(MapToError::ParentEntryHugePage) => Err("a huge page already covers this address"),
        Err(MapToError::PageAlreadyMapped(_)) => Err("page already mapped"),
    }
}

/// Clear one leaf of size `S`; returns the physical address it mapped. No TLB flush.
fn unmap_one<S: HwPageSize>(m: &mut OffsetPageTable<'_>, virt: u64) -> Option<u64>
where
    for<'a> OffsetPageTable<'a>: Mapper<S>,
{
    let (frame, flush) = m
        .unmap(Page::<S>::containing_address(VirtAddr::new(virt)))
        .ok()?;
    flush.ignore();
    Some(frame.start_address().as_u64())
}

/// vmalloc's hardware side: PTE writes into the live kernel tables, TLB flushes through
/// `privileged` (one gate call per batch at CPL3). New table pages come from the frame
/// cache, refilled by the caller before each vmalloc (vmalloc itself holds the page
/// allocator while it maps).
impl VmallocHw for KernelPageTable {
    fn map(&mut self, virt: u64, phys: u64, size: LeafSize) -> Result<(), MmError> {
        let leaf = size;
        let flags = self.leaf_flags(true, false);
        // A 2 MiB leaf where 4K leaves used to be: free the emptied PTE table first.
        let freed_table = match leaf {
            PageSize::Size2M => self
                .free_empty_pte_table(virt)
                .map_err(|reason| MmError::MapFailed { virt, reason })?,
            _ => None,
        };
        let mut cache = core::mem::take(&mut self.frame_cache);
        let mut frames = CacheFrames {
            frames: &mut cache,
            taken: 0,
        };
        let r = self.map_leaf(virt, phys, leaf, flags, &mut frames);
        self.frame_cache = cache;
        if let Some(table) = freed_table {
            // Drop the stale PD entry from the paging-structure caches (and, under
            // shadow paging, make the hypervisor see the new leaf) before the old table's
            // frame is reused: Linux's flush_tlb_kernel_range in pmd_free_pte_page.
            crate::arch::privileged::invlpg(virt);
            self.frame_cache.push(table);
        }
        r.map_err(|reason| MmError::MapFailed { virt, reason })
    }

    fn unmap(&mut self, virt: u64, size: LeafSize) -> Option<u64> {
        #[cfg(any(feature = "ab-test-cost", feature = "ab-test-nop"))]
        super::api::ab_test_cost();
        self.unmap_leaf(virt, size)
    }

    fn flush_tlb_range(&mut self, pages: &[u64]) {
        if super::state::smp_enabled() && crate::smp::worker::cpus() > 1 {
            // Every CPU may cache these kernel mappings: one shootdown, page by page
            // when the pages are one contiguous run, else a full flush everywhere.
            let contiguous = pages.windows(2).all(|w| w[1] == w[0] + 4096);
            let (start, n) = match (pages.first(), contiguous) {
                (Some(&s), true) => (s, pages.len() as u64),
                _ => (0, u64::MAX >> 12),
            };
            crate::smp::shootdown::flush_tlb_all_cpus(start, n, 4096);
            return;
        }
        crate::arch::privileged::invlpg_batch(pages);
    }

    fn flush_tlb_all(&mut self) {
        if super::state::smp_enabled() && crate::smp::worker::cpus() > 1 {
            // The lazy purge and the `full` mode: a full flush on every CPU.
            crate::smp::shootdown::flush_tlb_all_cpus(0, u64::MAX >> 12, 4096);
            return;
        }
        crate::arch::privileged::flush_tlb_all();
    }
}
