//! The page allocator as the rest of the kernel sees it: buddy blocks returned as
//! direct-map virtual addresses (Linux `__get_free_pages` / `free_pages`).
//!
//! This is the only layer that touches page contents (for `__GFP_ZERO`); the buddy below
//! works purely on pfns and descriptors.
use core::ptr::NonNull;

use crate::buddy::{BuddyAllocator, PageDesc};
use crate::direct_map::DirectMap;
use crate::error::MmError;
use crate::gfp::Gfp;
use crate::{PAGE_SHIFT, PAGE_SIZE};

/// Buddy allocator + direct map.
pub struct PageAllocator {
    pub buddy: BuddyAllocator,
    pub direct_map: DirectMap,
}

impl PageAllocator {
    /// Manages nothing until `buddy.init` + `free_range`; usable in a `static`.
    pub const fn empty() -> Self {
        PageAllocator {
            buddy: BuddyAllocator::empty(),
            direct_map: DirectMap { offset: 0 },
        }
    }

    /// Allocate 2^order pages; returns their direct-map address. `__GFP_ZERO` zeroes.
    #[inline]
    pub fn alloc_pages(&mut self, order: u8, gfp: Gfp) -> Option<NonNull<u8>> {
        let pfn = self.buddy.alloc_pages(order)?;
        let p = self.direct_map.pfn_to_virt(pfn);
        if gfp.zero() {
            // SAFETY: the buddy just handed us pfn..pfn+2^order exclusively, and the direct
            // map covers all managed RAM, so `p` is valid for PAGE_SIZE << order bytes.
            unsafe { core::ptr::write_bytes(p, 0, PAGE_SIZE << order) };
        }
        NonNull::new(p)
    }

    /// Free a block by its direct-map address; same checks as the buddy's `free_pages`.
    #[inline]
    pub fn free_pages(&mut self, addr: *mut u8, order: u8) -> Result<(), MmError> {
        let phys = self.direct_map.virt_to_phys(addr);
        if phys & (PAGE_SIZE as u64 - 1) != 0 {
            return Err(MmError::InvalidOrder {
                pfn: phys >> PAGE_SHIFT,
                order,
            });
        }
        self.buddy.free_pages(phys >> PAGE_SHIFT, order)
    }

    /// `virt_to_pfn` for direct-map addresses; `None` outside managed RAM.
    #[inline(always)]
    pub fn virt_to_pfn(&self, addr: *const u8) -> Option<u64> {
        let pfn = self.direct_map.virt_to_pfn(addr);
        self.buddy.pfn_to_idx(pfn).map(|_| pfn)
    }

    /// `virt_to_page`: the descriptor of the page holding `addr`, if managed.
    pub fn virt_to_page(&self, addr: *const u8) -> Option<&PageDesc> {
        self.buddy.page(self.direct_map.virt_to_pfn(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gfp::{__GFP_ZERO, GFP_KERNEL};
    use crate::testing::HostArena;

    #[test]
    fn alloc_zero_free() {
        let mut a = HostArena::new(4 << 20);
        let pa = &mut a.pa;
        let total = pa.buddy.nr_free_pages();
        let p = pa.alloc_pages(1, GFP_KERNEL).unwrap();
        // SAFETY: p is an 8 KiB block of the host arena owned by this test.
        unsafe { core::ptr::write_bytes(p.as_ptr(), 0xaa, 2 * PAGE_SIZE) };
        pa.free_pages(p.as_ptr(), 1).unwrap();
        let q = pa.alloc_pages(1, GFP_KERNEL | __GFP_ZERO).unwrap();
        assert_eq!(q, p);
        // SAFETY: as above.
        let s = unsafe { core::slice::from_raw_parts(q.as_ptr(), 2 * PAGE_SIZE) };
        assert!(s.iter().all(|&b| b == 0));
        assert!(pa.virt_to_page(q.as_ptr()).is_some());
        // SAFETY: pointer arithmetic only, q+1 stays inside the block.
        let mid = unsafe { q.as_ptr().add(1) };
        assert!(matches!(
            pa.free_pages(mid, 1),
            Err(MmError::InvalidOrder { .. })
        ));
        pa.free_pages(q.as_ptr(), 1).unwrap();
        assert_eq!(pa.buddy.nr_free_pages(), total);
    }

    #[test]
    fn oom_returns_none() {
        let mut a = HostArena::new(2 << 20);
        let n = a.nr_pages();
        let pa = &mut a.pa;
        let mut v = std::vec::Vec::new();
        while let Some(p) = pa.alloc_pages(0, GFP_KERNEL) {
            v.push(p);
        }
        assert_eq!(v.len() as u64, n);
        assert!(pa.alloc_pages(0, GFP_KERNEL).is_none());
        for p in v {
            pa.free_pages(p.as_ptr(), 0).unwrap();
        }
        assert_eq!(pa.buddy.nr_free_pages(), n);
    }
}
