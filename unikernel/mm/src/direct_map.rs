//! The direct (linear) map: all RAM mapped at `virt = phys + offset`.
//!
//! This mirrors Linux's `PAGE_OFFSET` / `__va()` / `__pa()`: converting between a
//! physical address and its kernel virtual address is one addition, no page walk.
use crate::PAGE_SHIFT;

/// `virt = phys + offset` (wrapping arithmetic, so the offset may be "negative").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectMap {
    pub offset: u64,
}

impl DirectMap {
    pub const fn new(offset: u64) -> Self {
        DirectMap { offset }
    }
    /// `__va(phys)`.
    #[inline(always)]
    pub fn phys_to_virt(&self, phys: u64) -> *mut u8 {
        phys.wrapping_add(self.offset) as usize as *mut u8
    }
    /// `__pa(virt)`. Meaningful only for addresses inside the direct map.
    #[inline(always)]
    pub fn virt_to_phys(&self, virt: *const u8) -> u64 {
        (virt as usize as u64).wrapping_sub(self.offset)
    }
    /// `virt_to_pfn(virt)`.
    #[inline(always)]
    pub fn virt_to_pfn(&self, virt: *const u8) -> u64 {
        self.virt_to_phys(virt) >> PAGE_SHIFT
    }
    /// `pfn_to_virt(pfn)`.
    #[inline(always)]
    pub fn pfn_to_virt(&self, pfn: u64) -> *mut u8 {
        self.phys_to_virt(pfn << PAGE_SHIFT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip_with_negative_offset() {
        let dm = DirectMap::new(0u64.wrapping_sub(0x1000));
        let v = dm.phys_to_virt(0x5000);
        assert_eq!(v as usize, 0x4000);
        assert_eq!(dm.virt_to_phys(v), 0x5000);
        assert_eq!(dm.virt_to_pfn(v), 5);
        assert_eq!(dm.pfn_to_virt(5), v);
    }
}
