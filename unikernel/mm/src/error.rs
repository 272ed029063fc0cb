//! Errors reported by the allocators' misuse checks.
//!
//! Every variant carries the address (or pfn) involved and, where known, the size class,
//! and `Display` renders a one-line diagnosis a user can act on.
use core::fmt;

/// What went wrong in a free (or, for `UseAfterFree`, was noticed on a later allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmError {
    /// `kfree` of an object that is already free.
    DoubleFree { addr: u64, cache: &'static str },
    /// `kfree` of a pointer no kmalloc cache handed out.
    ForeignPointer { addr: u64, reason: &'static str },
    /// Bytes after the object (its redzone) were overwritten: a buffer overrun.
    /// `offset` is the first bad byte, counted from the object's start.
    Redzone {
        addr: u64,
        cache: &'static str,
        offset: usize,
    },
    /// A freed object's poison (0x6b) was changed before it was reallocated: someone
    /// wrote through a dangling pointer. `offset` is the first bad byte.
    UseAfterFree {
        addr: u64,
        cache: &'static str,
        offset: usize,
    },
    /// `free_pages` with an order other than the block's allocation order.
    BadOrder { pfn: u64, allocated: u8, freed: u8 },
    /// An order above `MAX_ORDER`, or a pfn not aligned to its order.
    InvalidOrder { pfn: u64, order: u8 },
    /// `free_pages` of a block that is already free.
    PageDoubleFree { pfn: u64, order: u8 },
    /// `free_pages` of a page the buddy did not hand out as a block head.
    PageNotAllocated { pfn: u64, reason: &'static str },
    /// A pfn (or address) outside the memory the buddy manages.
    PfnOutOfRange { pfn: u64 },
    /// `vfree` of an address that is not in any vmalloc area.
    NotVmallocArea { addr: u64 },
    /// `vfree` of an address inside an area but not its start.
    VfreeInterior { addr: u64, area_start: u64 },
    /// The page-table backend refused a mapping (already mapped, misaligned, no memory
    /// for a page table).
    MapFailed { virt: u64, reason: &'static str },
    /// Debug mode can only be switched while nothing is allocated.
    DebugModeBusy { live_objects: u64 },
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MmError::DoubleFree { addr, cache } => write!(
                f,
                "double kfree of {addr:#x} ({cache}): the object was already freed; look for a second kfree or a stale copy of the pointer"
            ),
            MmError::ForeignPointer { addr, reason } => write!(
                f,
                "kfree of {addr:#x}, which kmalloc never returned: {reason}"
            ),
            MmError::Redzone { addr, cache, offset } => write!(
                f,
                "redzone overwritten at {addr:#x}+{offset} ({cache}): a write ran past the end of the object"
            ),
            MmError::UseAfterFree { addr, cache, offset } => write!(
                f,
                "use after free: poison of freed object {addr:#x} ({cache}) changed at offset {offset}; something wrote through a dangling pointer"
            ),
            MmError::BadOrder { pfn, allocated, freed } => write!(
                f,
                "free_pages(pfn {pfn:#x}, order {freed}) but the block was allocated with order {allocated}"
            ),
            MmError::InvalidOrder { pfn, order } => write!(
                f,
                "free_pages(pfn {pfn:#x}, order {order}): order above MAX_ORDER or pfn not aligned to it"
            ),
            MmError::PageDoubleFree { pfn, order } => write!(
                f,
                "double free_pages of pfn {pfn:#x} (order {order}): the block is already free"
            ),
            MmError::PageNotAllocated { pfn, reason } => write!(
                f,
                "free_pages of pfn {pfn:#x}, which was not allocated: {reason}"
            ),
            MmError::PfnOutOfRange { pfn } => write!(
                f,
                "pfn {pfn:#x} is outside the memory managed by the page allocator"
            ),
            MmError::NotVmallocArea { addr } => write!(
                f,
                "vfree of {addr:#x}, which is not the start of any vmalloc area"
            ),
            MmError::VfreeInterior { addr, area_start } => write!(
                f,
                "vfree of {addr:#x}, which points inside the vmalloc area starting at {area_start:#x}; pass the area's start"
            ),
            MmError::MapFailed { virt, reason } => {
                write!(f, "mapping {virt:#x} failed: {reason}")
            }
            MmError::DebugModeBusy { live_objects } => write!(
                f,
                "cannot switch kmalloc debug mode with {live_objects} objects still allocated; free them first"
            ),
        }
    }
}
