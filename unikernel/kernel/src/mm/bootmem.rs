//! The boot-time frame allocator (Linux's memblock idea, minimal): a bump pointer over
//! the RAM right after the kernel image, used before the buddy allocator exists — for
//! the new page tables, the buddy's `mem_map`, the heap pool and the first stacks.
//! Whatever it handed out stays reserved; the rest of RAM goes to the buddy.
use crate::arch::pvh::Region;

pub struct BootMem {
    pub start: u64,
    pub next: u64,
    pub end: u64,
}

impl BootMem {
    /// Bump from the first 2 MiB boundary after `kernel_end` inside the region holding it.
    pub fn new(usable: &[Region], kernel_end: u64) -> Option<BootMem> {
        let start = (kernel_end + (2 << 20) - 1) & !((2 << 20) - 1);
        let r = usable.iter().find(|r| r.start <= start && start < r.end)?;
        Some(BootMem {
            start,
            next: start,
            end: r.end,
        })
    }

    /// `bytes` (rounded up to pages) aligned to `align`, below 4 GiB (the boot identity
    /// map). Physical address. Not zeroed: every user initialises what it takes (the
    /// `x86_64` mapper zeroes new table pages, the buddy writes every `mem_map` entry).
    pub fn alloc(&mut self, bytes: u64, align: u64) -> Option<u64> {
        let p = (self.next + align - 1) & !(align - 1);
        let len = (bytes + 4095) & !4095;
        if p + len > self.end || p + len > (4 << 30) {
            return None;
        }
        self.next = p + len;
        Some(p)
    }

    pub fn used(&self) -> u64 {
        self.next - self.start
    }
}
