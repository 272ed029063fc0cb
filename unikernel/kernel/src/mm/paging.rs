//! The kernel's 4-level page tables, built with the `x86_64` crate.
//!
//! A [`KernelPageTable`] reaches table pages through an offset: 0 (identity, boot page
//! tables live) while the new tables are being built, then `PAGE_OFFSET` (the direct map)
//! once they are live. When the run executes at CPL3 every entry carries the USER bit
//! (CPL3 code must reach kernel memory and write page tables directly); at CPL0 none do.
//! TLB invalidation is left to callers, which batch it (see `privileged`).
use x86_64::structures::paging::mapper::{MapToError, MappedFrame, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageSize, PageTable, PageTableFlags as F, PhysFrame,
    Size1GiB, Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use kmbench_mm::vmalloc::{LeafSize, VmallocHw};
use kmbench_mm::MmError;

/// Leaf sizes this kernel maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    K4,
    M2,
    G1,
}

impl Leaf {
    pub fn bytes(self) -> u64 {
        match self {
            Leaf::K4 => 4096,
            Leaf::M2 => 2 << 20,
            Leaf::G1 => 1 << 30,
        }
    }
}

pub struct KernelPageTable {
    pub pml4_phys: u64,
    pub phys_offset: u64,
    pub user: bool,
    /// Page-table pages allocated through this table (for reports).
    pub table_pages: u64,
    /// Pre-allocated frames for new page-table pages (see [`VmallocHw`] impl).
    pub frame_cache: alloc::vec::Vec<u64>,
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
        leaf: Leaf,
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
            Leaf::K4 => map_one::<Size4KiB>(&mut m, virt, phys, flags, parent, &mut counting),
            Leaf::M2 => map_one::<Size2MiB>(&mut m, virt, phys, huge, parent, &mut counting),
            Leaf::G1 => map_one::<Size1GiB>(&mut m, virt, phys, huge, parent, &mut counting),
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
        max_leaf: Leaf,
        flags: F,
        frames: &mut A,
    ) -> Result<[u64; 3], &'static str> {
        let mut counts = [0u64; 3];
        let mut off = 0;
        while off < len {
            let (v, p, left) = (virt + off, phys + off, len - off);
            let leaf = [Leaf::G1, Leaf::M2, Leaf::K4]
                .into_iter()
                .find(|l| {
                    l.bytes() <= max_leaf.bytes()
                        && v % l.bytes() == 0
                        && p % l.bytes() == 0
                        && left >= l.bytes()
                })
                .unwrap_or(Leaf::K4);
            self.map_leaf(v, p, leaf, flags, frames)?;
            counts[match leaf {
                Leaf::K4 => 0,
                Leaf::M2 => 1,
                Leaf::G1 => 2,
            }] += 1;
            off += leaf.bytes();
        }
        Ok(counts)
    }

    /// Clear a leaf; returns the physical address it mapped. No TLB flush.
    pub fn unmap_leaf(&mut self, virt: u64, leaf: Leaf) -> Option<u64> {
        let mut m = self.mapper();
        match leaf {
            Leaf::K4 => unmap_one::<Size4KiB>(&mut m, virt),
            Leaf::M2 => unmap_one::<Size2MiB>(&mut m, virt),
            Leaf::G1 => unmap_one::<Size1GiB>(&mut m, virt),
        }
    }

    /// Walk the tables: physical address and leaf size behind `virt`.
    pub fn translate(&mut self, virt: u64) -> Option<(u64, Leaf, F)> {
        let m = self.mapper();
        match m.translate(VirtAddr::new(virt)) {
            TranslateResult::Mapped {
                frame,
                offset,
                flags,
            } => {
                let leaf = match frame {
                    MappedFrame::Size4KiB(_) => Leaf::K4,
                    MappedFrame::Size2MiB(_) => Leaf::M2,
                    MappedFrame::Size1GiB(_) => Leaf::G1,
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
fn map_one<S: PageSize + core::fmt::Debug>(
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
fn unmap_one<S: PageSize>(m: &mut OffsetPageTable<'_>, virt: u64) -> Option<u64>
where
    for<'a> OffsetPageTable<'a>: Mapper<S>,
{
    let (frame, flush) = m.unmap(Page::<S>::containing_address(VirtAddr::new(virt))).ok()?;
    flush.ignore();
    Some(frame.start_address().as_u64())
}

/// vmalloc's hardware side: PTE writes into the live kernel tables, TLB flushes through
/// `privileged` (one gate call per batch at CPL3). New table pages come from the frame
/// cache, refilled by the caller before each vmalloc (vmalloc itself holds the page
/// allocator while it maps).
impl VmallocHw for KernelPageTable {
    fn map(&mut self, virt: u64, phys: u64, size: LeafSize) -> Result<(), MmError> {
        let leaf = match size {
            LeafSize::Size4K => Leaf::K4,
            LeafSize::Size2M => Leaf::M2,
        };
        let flags = self.leaf_flags(true, false);
        let mut cache = core::mem::take(&mut self.frame_cache);
        let mut frames = CacheFrames {
            frames: &mut cache,
            taken: 0,
        };
        let r = self.map_leaf(virt, phys, leaf, flags, &mut frames);
        self.frame_cache = cache;
        r.map_err(|reason| MmError::MapFailed { virt, reason })
    }

    fn unmap(&mut self, virt: u64, size: LeafSize) -> Option<u64> {
        self.unmap_leaf(
            virt,
            match size {
                LeafSize::Size4K => Leaf::K4,
                LeafSize::Size2M => Leaf::M2,
            },
        )
    }

    fn flush_tlb_range(&mut self, pages: &[u64]) {
        crate::arch::privileged::invlpg_batch(pages);
    }

    fn flush_tlb_all(&mut self) {
        crate::arch::privileged::flush_tlb_all();
    }
}
