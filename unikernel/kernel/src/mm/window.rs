//! The benchmark window (`BENCH_MAP_START` … `BENCH_MAP_END`): memory the tlb, tlbflush
//! and map suites map *again*, with a leaf size of their choosing (4K, 2M, 1G), over
//! frames they took from the buddy.
//!
//! [`BenchWindow`] is the one handle to it: at most one exists at a time, it maps leaves at
//! offsets from the window's start (page-table pages from the buddy, through the
//! `x86_64` crate's mapper in [`super::paging`]), and dropping it (or [`BenchWindow::clear`])
//! tears the whole window down in one step: the window owns one PML4 entry, so teardown
//! collects the table pages under it, clears that entry (one write, one CR3 reload) and
//! frees them. Under a shadow-paging hypervisor (kvm_pvm) that keeps table teardown from
//! trapping on every PTE write. The caller keeps owning the frames it mapped.
use super::state::with;
use super::{misuse, phys_to_virt, BENCH_MAP_END, BENCH_MAP_START, PAGE_OFFSET};
use crate::arch::privileged;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};
use kmbench_mm::{Gfp, PageAllocator};
use kmbench_protocol::PageSize;
use x86_64::structures::paging::{
    FrameAllocator, PageTable, PageTableFlags as F, PageTableIndex, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

/// The window's slot in the PML4.
fn pml4_index() -> PageTableIndex {
    VirtAddr::new(BENCH_MAP_START).p4_index()
}

/// The part of the reserved range the window maps: the one PML4 entry it owns (512 GiB).
pub const WINDOW_BYTES: u64 = 1 << 39;

const _: () = assert!(
    BENCH_MAP_START.is_multiple_of(WINDOW_BYTES) && BENCH_MAP_START + WINDOW_BYTES <= BENCH_MAP_END,
    "the window is one whole PML4 entry inside its reserved range"
);

static OPEN: AtomicBool = AtomicBool::new(false);

/// New page-table pages straight from the buddy.
pub(super) struct BuddyFrames<'a> {
    pub(super) pages: &'a mut PageAllocator,
}

// SAFETY: the buddy hands each block out once; the frames are used only as page tables.
unsafe impl FrameAllocator<Size4KiB> for BuddyFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let p = self.pages.alloc_pages(0, Gfp(0))?;
        Some(PhysFrame::containing_address(PhysAddr::new(
            p.as_ptr() as u64 - PAGE_OFFSET,
        )))
    }
}

/// Exclusive handle to the benchmark window. Not `Send`: one CPU, one owner.
pub struct BenchWindow {
    _single_cpu: PhantomData<*mut ()>,
}

impl BenchWindow {
    /// Take the window, empty. Panics if another `BenchWindow` is alive.
    pub fn open() -> BenchWindow {
        assert!(
            !OPEN.swap(true, Ordering::AcqRel),
            "the benchmark window is already open"
        );
        let mut w = BenchWindow {
            _single_cpu: PhantomData,
        };
        w.clear();
        w
    }

    /// First address of the window.
    pub fn base(&self) -> u64 {
        BENCH_MAP_START
    }

    /// Map one writable, non-executable leaf at `base() + offset` over `phys`.
    pub fn map(&mut self, offset: u64, phys: u64, leaf: PageSize) -> Result<(), &'static str> {
        if offset + leaf.bytes() > WINDOW_BYTES {
            return Err("beyond the benchmark window (512 GiB)");
        }
        with(|m| {
            let flags = m.pt.leaf_flags(true, false);
            let mut frames = BuddyFrames {
                pages: &mut m.pages,
            };
            m.pt.map_leaf(BENCH_MAP_START + offset, phys, leaf, flags, &mut frames)
        })
    }

    /// Map physically contiguous buddy blocks `(phys, order)` back to back from the
    /// window's start with `leaf` leaves; returns the bytes mapped. No TLB flush (none is
    /// needed for new entries).
    pub fn map_blocks(
        &mut self,
        blocks: &[(u64, u8)],
        leaf: PageSize,
    ) -> Result<u64, &'static str> {
        let mut off = 0;
        for &(p, o) in blocks {
            let len = 4096u64 << o;
            let mut x = 0;
            while x < len {
                self.map(off + x, p + x, leaf)?;
                x += leaf.bytes();
            }
            off += len;
        }
        Ok(off)
    }

    /// Clear the leaves covering `[base(), base() + len)` one by one (they must be `leaf`
    /// leaves), then flush the whole TLB. The table pages stay until [`Self::clear`].
    pub fn unmap_leaves(&mut self, len: u64, leaf: PageSize) {
        with(|m| {
            let mut off = 0;
            while off < len {
                m.pt.unmap_leaf(BENCH_MAP_START + off, leaf);
                off += leaf.bytes();
            }
        });
        privileged::flush_tlb_all();
    }

    /// Drop every mapping and table page of the window (one PML4 entry cleared, one TLB
    /// flush). Returns the table pages freed.
    pub fn clear(&mut self) -> u64 {
        with(|m| {
            let offset = VirtAddr::new(PAGE_OFFSET);
            let table = |phys: PhysAddr| (offset + phys.as_u64()).as_mut_ptr::<PageTable>();
            // SAFETY: the PML4 is RAM reachable through the direct map, and `&mut m` (inside
            // `with`) means no other page-table access is in progress.
            let pml4 = unsafe { &mut *table(PhysAddr::new(m.pt.pml4_phys)) };
            let entry = &mut pml4[pml4_index()];
            if !entry.flags().contains(F::PRESENT) {
                return 0;
            }
            let mut frames: Vec<PhysAddr> = Vec::new();
            let pdpt_phys = entry.addr();
            // SAFETY: table pages of the window are RAM reachable through the direct map,
            // reached only through this window (exclusive: one `BenchWindow`).
            let pdpt = unsafe { &*table(pdpt_phys) };
            for e1 in pdpt.iter() {
                let f1 = e1.flags();
                if !f1.contains(F::PRESENT) || f1.contains(F::HUGE_PAGE) {
                    continue;
                }
                // SAFETY: as above.
                let pd = unsafe { &*table(e1.addr()) };
                for e2 in pd.iter() {
                    let f2 = e2.flags();
                    if f2.contains(F::PRESENT) && !f2.contains(F::HUGE_PAGE) {
                        frames.push(e2.addr());
                    }
                }
                frames.push(e1.addr());
            }
            frames.push(pdpt_phys);
            // Unlink the window's subtree: nothing else lives under this entry.
            pml4[pml4_index()].set_unused();
            privileged::flush_tlb_all();
            let n = frames.len() as u64;
            for f in frames {
                if let Err(e) = m.pages.free_pages(phys_to_virt(f.as_u64()), 0) {
                    misuse("benchmark window teardown", e);
                }
            }
            m.pt.table_pages = m.pt.table_pages.saturating_sub(n);
            n
        })
    }
}

impl Drop for BenchWindow {
    fn drop(&mut self) {
        self.clear();
        OPEN.store(false, Ordering::Release);
    }
}

/// Page-table pages the kernel's tables hold now (for the `map` suite's records).
pub fn table_pages() -> u64 {
    with(|m| m.pt.table_pages)
}

/// Physically contiguous blocks of `order`, up to `bytes`, as `(phys, order)`; stops
/// early when the buddy runs out.
pub fn alloc_blocks(bytes: u64, order: u8) -> Vec<(u64, u8)> {
    let block = 4096u64 << order;
    with(|m| {
        let mut v = Vec::new();
        for _ in 0..bytes / block {
            match m.pages.alloc_pages(order, Gfp(0)) {
                Some(p) => v.push((p.as_ptr() as u64 - PAGE_OFFSET, order)),
                None => break,
            }
        }
        v
    })
}

/// Give back blocks from [`alloc_blocks`] (or order-0 frames as `(phys, 0)`).
pub fn free_blocks(blocks: &[(u64, u8)]) {
    with(|m| {
        for &(p, o) in blocks {
            let _ = m.pages.free_pages(phys_to_virt(p), o);
        }
    })
}

/// Up to `n` order-0 frames (physical addresses), fewer if the buddy runs out.
pub fn alloc_frames(n: u64) -> Vec<u64> {
    with(|m| {
        let mut v = Vec::with_capacity(n as usize);
        for _ in 0..n {
            match m.pages.alloc_pages(0, Gfp(0)) {
                Some(p) => v.push(p.as_ptr() as u64 - PAGE_OFFSET),
                None => break,
            }
        }
        v
    })
}
