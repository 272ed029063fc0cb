//! Host-side stand-ins for hardware, shared by unit tests, property tests and benches:
//! [`HostArena`] (a 2 MiB-aligned heap block playing RAM) and [`FakePageTable`].
//!
//! Only built with `cfg(test)` or the `testing` feature (which links std).
extern crate std;

use std::alloc::{alloc, dealloc, Layout};
use std::collections::HashMap;
use std::vec::Vec;

use crate::buddy::PageDesc;
use crate::error::MmError;
use crate::page_alloc::PageAllocator;
use crate::vmalloc::{LeafSize, VmallocHw};
use crate::{PAGE_SHIFT, PAGE_SIZE};

/// Fake physical address of the arena's first byte (1 GiB: aligned for any order).
pub const HOST_PHYS_BASE: u64 = 1 << 30;

/// A heap block standing in for RAM, with a page allocator managing all of it.
/// The direct-map offset is `arena - HOST_PHYS_BASE`, so pfns start at 0x40000.
pub struct HostArena {
    pub pa: PageAllocator,
    arena: *mut u8,
    layout: Layout,
}

impl HostArena {
    /// `bytes` rounded up to 2 MiB.
    pub fn new(bytes: usize) -> HostArena {
        let bytes = bytes.div_ceil(2 << 20) * (2 << 20);
        let layout = Layout::from_size_align(bytes, 2 << 20).unwrap();
        // SAFETY: layout has non-zero size.
        let arena = unsafe { alloc(layout) };
        assert!(!arena.is_null(), "host arena allocation failed");
        let nr = (bytes >> PAGE_SHIFT) as u64;
        let map = std::boxed::Box::leak(
            std::vec![std::mem::MaybeUninit::<PageDesc>::uninit(); nr as usize].into_boxed_slice(),
        );
        let sections = std::boxed::Box::leak(
            std::vec![0u8; crate::buddy::mem_map_sections(nr)].into_boxed_slice(),
        );
        let mut pa = PageAllocator::empty();
        let base_pfn = HOST_PHYS_BASE >> PAGE_SHIFT;
        pa.buddy.init(base_pfn, map, sections);
        pa.direct_map.offset = (arena as u64).wrapping_sub(HOST_PHYS_BASE);
        pa.buddy.free_range(base_pfn, base_pfn + nr);
        HostArena { pa, arena, layout }
    }

    /// Arena size in pages.
    pub fn nr_pages(&self) -> u64 {
        (self.layout.size() / PAGE_SIZE) as u64
    }

    /// Whether `[p, p+len)` lies inside the arena.
    pub fn contains(&self, p: *const u8, len: usize) -> bool {
        let a = self.arena as usize;
        (p as usize) >= a && (p as usize) + len <= a + self.layout.size()
    }
}

impl Drop for HostArena {
    fn drop(&mut self) {
        let (map, sections) = self.pa.buddy.take_mem_map();
        // SAFETY: `map` and `sections` came from Box::leak in `new` and the buddy no longer
        // refers to them.
        drop(unsafe { std::boxed::Box::from_raw(map as *mut [std::mem::MaybeUninit<PageDesc>]) });
        // SAFETY: as above.
        drop(unsafe { std::boxed::Box::from_raw(sections as *mut [u8]) });
        // SAFETY: `arena` was allocated in `new` with this layout and is freed once.
        unsafe { dealloc(self.arena, self.layout) };
    }
}

/// A page table as a map from virtual page to (phys, leaf size), with flush counters
/// and optional failure injection. Like the kernel's tables, a 4K leaf needs a PTE table
/// for its 2 MiB region, which stays after the last 4K unmap; a 2M leaf over an empty
/// PTE table frees it (`pte_tables_freed`), over a non-empty one fails.
#[derive(Default)]
pub struct FakePageTable {
    pub entries: HashMap<u64, (u64, LeafSize)>,
    /// 2 MiB region base → live 4K entries in its PTE table.
    pub pte_tables: HashMap<u64, u32>,
    pub pte_tables_freed: u64,
    pub full_flushes: u64,
    pub range_flushes: u64,
    pub invlpg_pages: u64,
    /// When `Some(n)`, the next n maps succeed and the following one fails.
    pub fail_after: Option<usize>,
}

impl FakePageTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Physical address `virt` translates to, if mapped.
    pub fn translate(&self, virt: u64) -> Option<u64> {
        if let Some(&(p, LeafSize::Size4K)) = self.entries.get(&(virt & !0xfff)) {
            return Some(p + (virt & 0xfff));
        }
        let base = virt & !((2 << 20) - 1);
        match self.entries.get(&base) {
            Some(&(p, LeafSize::Size2M)) => Some(p + (virt - base)),
            _ => None,
        }
    }

    /// Number of leaves currently mapped.
    pub fn nr_mapped(&self) -> usize {
        self.entries.len()
    }

    /// All mapped leaves (virt, phys, size).
    pub fn leaves(&self) -> Vec<(u64, u64, LeafSize)> {
        self.entries.iter().map(|(&v, &(p, s))| (v, p, s)).collect()
    }
}

impl VmallocHw for FakePageTable {
    fn map(&mut self, virt: u64, phys: u64, size: LeafSize) -> Result<(), MmError> {
        if let Some(n) = self.fail_after.as_mut() {
            if *n == 0 {
                return Err(MmError::MapFailed {
                    virt,
                    reason: "injected failure",
                });
            }
            *n -= 1;
        }
        let b = size.bytes();
        if !virt.is_multiple_of(b) || !phys.is_multiple_of(b) {
            return Err(MmError::MapFailed {
                virt,
                reason: "misaligned leaf",
            });
        }
        if self.translate(virt).is_some() {
            return Err(MmError::MapFailed {
                virt,
                reason: "already mapped",
            });
        }
        let region = virt & !((2 << 20) - 1);
        match size {
            LeafSize::Size1G => {
                return Err(MmError::MapFailed {
                    virt,
                    reason: "the fake page table maps no 1 GiB leaves",
                })
            }
            LeafSize::Size4K => *self.pte_tables.entry(region).or_insert(0) += 1,
            LeafSize::Size2M => match self.pte_tables.get(&region) {
                Some(0) => {
                    self.pte_tables.remove(&region);
                    self.pte_tables_freed += 1;
                }
                Some(_) => {
                    return Err(MmError::MapFailed {
                        virt,
                        reason: "4K mappings remain in this 2 MiB range",
                    })
                }
                None => {}
            },
        }
        self.entries.insert(virt, (phys, size));
        Ok(())
    }

    fn unmap(&mut self, virt: u64, size: LeafSize) -> Option<u64> {
        match self.entries.get(&virt) {
            Some(&(p, s)) if s == size => {
                self.entries.remove(&virt);
                if s == LeafSize::Size4K {
                    if let Some(n) = self.pte_tables.get_mut(&(virt & !((2 << 20) - 1))) {
                        *n -= 1;
                    }
                }
                Some(p)
            }
            _ => None,
        }
    }

    fn flush_tlb_range(&mut self, pages: &[u64]) {
        self.range_flushes += 1;
        self.invlpg_pages += pages.len() as u64;
    }

    fn flush_tlb_all(&mut self) {
        self.full_flushes += 1;
    }
}
