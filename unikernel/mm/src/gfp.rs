//! GFP ("get free pages") flags: how an allocation may behave.
//!
//! kmbench runs on one CPU with no reclaim, swap or compaction, so nothing here ever
//! sleeps or blocks: `GFP_KERNEL` and `GFP_ATOMIC` behave identically. They are kept
//! distinct because callers state intent (ATOMIC = "must not sleep") as in Linux.
use core::ops::{BitAnd, BitOr, BitOrAssign};

/// A set of allocation flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Gfp(pub u32);

/// The allocation may sleep/reclaim. Here: nothing sleeps, so it is the same as
/// [`GFP_ATOMIC`] in behaviour.
pub const GFP_KERNEL: Gfp = Gfp(1 << 0);
/// The allocation must never sleep or block (interrupt context). Nothing in this crate
/// blocks, so this is honoured trivially; there are no emergency reserves either.
pub const GFP_ATOMIC: Gfp = Gfp(1 << 1);
/// Linux's GFP_NOWAIT: no sleeping, no reclaim, no emergency reserves. Nothing here
/// sleeps, so it behaves like [`GFP_ATOMIC`].
pub const GFP_NOWAIT: Gfp = Gfp(1 << 2);
/// Zero the returned memory.
#[allow(non_upper_case_globals)]
pub const __GFP_ZERO: Gfp = Gfp(1 << 8);

impl Gfp {
    /// Whether every flag in `other` is set in `self`.
    #[inline]
    pub const fn contains(self, other: Gfp) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether the memory must be zeroed.
    #[inline]
    pub const fn zero(self) -> bool {
        self.0 & __GFP_ZERO.0 != 0
    }
}

impl BitOr for Gfp {
    type Output = Gfp;
    #[inline]
    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}
impl BitOrAssign for Gfp {
    #[inline]
    fn bitor_assign(&mut self, rhs: Gfp) {
        self.0 |= rhs.0;
    }
}
impl BitAnd for Gfp {
    type Output = Gfp;
    #[inline]
    fn bitand(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 & rhs.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn flags_combine() {
        let g = GFP_KERNEL | __GFP_ZERO;
        assert!(g.zero() && g.contains(GFP_KERNEL) && !g.contains(GFP_ATOMIC));
        assert!(!GFP_ATOMIC.zero());
        assert_eq!((g & __GFP_ZERO), __GFP_ZERO);
    }
}
