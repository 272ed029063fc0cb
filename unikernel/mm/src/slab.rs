//! SLUB-style slab caches: a [`KmemCache`] hands out fixed-size objects carved from
//! physically contiguous buddy blocks ("slabs").
//!
//! Free objects are linked through a free pointer stored in the object itself (first
//! word; in debug mode after the redzone, so the whole object can be poisoned). Each
//! slab's freelist head, in-use count and owner live in its head page's [`PageDesc`], so
//! `kfree` finds everything from the address alone. The cache allocates from one "cpu"
//! slab and keeps the other non-full slabs on a partial list.
use crate::buddy::{PageDesc, PageKind, NONE};
use crate::error::MmError;
use crate::gfp::GFP_KERNEL;
use crate::page_alloc::PageAllocator;
use crate::PAGE_SIZE;

/// Fill of a free object in debug mode (Linux `POISON_FREE`).
pub const POISON_FREE: u8 = 0x6b;
/// Last byte of a poisoned free object (Linux `POISON_END`).
pub const POISON_END: u8 = 0xa5;
/// Redzone of an allocated object (Linux `SLUB_RED_ACTIVE`).
pub const RED_ACTIVE: u8 = 0xcc;
/// Redzone of a free object (Linux `SLUB_RED_INACTIVE`).
pub const RED_INACTIVE: u8 = 0xbb;
/// Redzone bytes after each object in debug mode.
pub const REDZONE_BYTES: usize = 8;
/// A slab holds at least this many objects unless that would exceed `SLAB_MAX_ORDER`.
pub const SLAB_MIN_OBJECTS: usize = 8;
/// Largest slab order (8 pages = 32 KiB, like Linux's `slub_max_order` default).
pub const SLAB_MAX_ORDER: u8 = 3;

/// One object cache (`struct kmem_cache`).
pub struct KmemCache {
    pub name: &'static str,
    /// Index among the kmalloc caches (stored in `PageDesc::cache`).
    pub index: u8,
    /// Usable object size (what `ksize` reports).
    pub object_size: u32,
    /// Distance between objects: object [+ redzone + free pointer in debug mode].
    pub stride: u32,
    /// Where the free pointer lives inside a free object.
    pub fp_offset: u32,
    /// Slab block order.
    pub order: u8,
    /// Objects per slab.
    pub objects: u16,
    pub debug: bool,
    /// Mask an object address must clear (natural alignment of power-of-two classes,
    /// 8 otherwise): a cheap foreign-pointer check on every free.
    align_mask: u64,
    /// mem_map index of the slab allocations come from, or NONE.
    cpu: u32,
    /// Head of the partial list (non-full slabs other than cpu), or NONE.
    partial: u32,
    /// Slabs with no object in use (kept: at most one).
    nr_empty: u32,
    pub nr_slabs: u64,
    /// Objects currently allocated.
    pub active: u64,
    /// First use-after-free found by the poison check (debug mode), until taken.
    pub debug_report: Option<MmError>,
}

const fn layout(size: usize, debug: bool) -> (u32, u32, u8, u16) {
    let (stride, fp) = if debug {
        (size + REDZONE_BYTES + 8, size + REDZONE_BYTES)
    } else {
        (size, 0)
    };
    let mut order = 0u8;
    while order < SLAB_MAX_ORDER && (PAGE_SIZE << order) / stride < SLAB_MIN_OBJECTS {
        order += 1;
    }
    let objects = (PAGE_SIZE << order) / stride;
    (stride as u32, fp as u32, order, objects as u16)
}

impl KmemCache {
    /// A cache of `size`-byte objects (`size` a multiple of 8, ≤ 8 KiB).
    pub const fn new(index: u8, name: &'static str, size: usize, debug: bool) -> Self {
        let (stride, fp_offset, order, objects) = layout(size, debug);
        let align = if size.is_power_of_two() && !debug {
            size
        } else {
            8
        };
        KmemCache {
            name,
            index,
            object_size: size as u32,
            stride,
            fp_offset,
            order,
            objects,
            debug,
            align_mask: align as u64 - 1,
            cpu: NONE,
            partial: NONE,
            nr_empty: 0,
            nr_slabs: 0,
            active: 0,
            debug_report: None,
        }
    }

    /// Allocate one object; null when the page allocator is out of memory.
    #[inline(always)]
    pub fn alloc(&mut self, pa: &mut PageAllocator) -> *mut u8 {
        if self.cpu != NONE {
            let d = pa.buddy.desc_mut(self.cpu as usize);
            let obj = d.freelist;
            if obj != 0 {
                // SAFETY: `obj` is a free object of a slab this cache owns (it came off
                // the slab's freelist), so its free pointer at fp_offset is initialised
                // and inside the object's stride.
                d.freelist = unsafe { ((obj + self.fp_offset as u64) as *const u64).read() };
                if d.inuse == 0 {
                    self.nr_empty -= 1;
                }
                d.inuse += 1;
                self.active += 1;
                if self.debug {
                    self.debug_on_alloc(obj);
                }
                return obj as *mut u8;
            }
        }
        self.alloc_slow(pa)
    }

    #[cold]
    fn alloc_slow(&mut self, pa: &mut PageAllocator) -> *mut u8 {
        // The cpu slab is full (or absent): it leaves every list until an object of it
        // is freed. Take a partial slab, else a new one.
        if self.partial != NONE {
            let s = self.partial;
            self.partial_del(pa, s);
            self.cpu = s;
        } else {
            match self.new_slab(pa) {
                Some(s) => self.cpu = s,
                None => return core::ptr::null_mut(),
            }
        }
        self.alloc(pa)
    }

    fn new_slab(&mut self, pa: &mut PageAllocator) -> Option<u32> {
        let base = pa.alloc_pages(self.order, GFP_KERNEL)?.as_ptr();
        let pfn = pa.direct_map.virt_to_pfn(base);
        let idx = pa.buddy.pfn_to_idx(pfn)?;
        for j in 1..(1usize << self.order) {
            let d = pa.buddy.desc_mut(idx + j);
            d.kind = PageKind::SlabTail;
            d.cache = self.index;
        }
        let stride = self.stride as usize;
        for j in 0..self.objects as usize {
            // SAFETY: base..base + objects*stride lies inside the block of PAGE_SIZE<<order
            // bytes the buddy just gave us; nobody else references it yet.
            unsafe {
                let obj = base.add(j * stride);
                let next = if j + 1 < self.objects as usize {
                    obj.add(stride) as u64
                } else {
                    0
                };
                (obj.add(self.fp_offset as usize) as *mut u64).write_unaligned(next);
                if self.debug {
                    self.poison(obj);
                }
            }
        }
        let d = pa.buddy.desc_mut(idx);
        d.kind = PageKind::Slab;
        d.cache = self.index;
        d.order = self.order;
        d.inuse = 0;
        d.objects = self.objects;
        d.freelist = base as u64;
        d.next = NONE;
        d.prev = NONE;
        self.nr_slabs += 1;
        self.nr_empty += 1;
        Some(idx as u32)
    }

    /// Return an empty slab (not on any list) to the buddy.
    fn discard_slab(&mut self, pa: &mut PageAllocator, idx: u32) {
        let idx = idx as usize;
        for j in 1..(1usize << self.order) {
            pa.buddy.desc_mut(idx + j).kind = PageKind::Tail;
        }
        let d = pa.buddy.desc_mut(idx);
        *d = PageDesc {
            kind: PageKind::Allocated,
            order: self.order,
            ..PageDesc::RESERVED
        };
        let pfn = pa.buddy.base_pfn() + idx as u64;
        let r = pa.buddy.free_pages(pfn, self.order);
        debug_assert!(r.is_ok());
        self.nr_slabs -= 1;
    }

    fn partial_add(&mut self, pa: &mut PageAllocator, idx: u32) {
        let head = self.partial;
        let d = pa.buddy.desc_mut(idx as usize);
        d.next = head;
        d.prev = NONE;
        if head != NONE {
            pa.buddy.desc_mut(head as usize).prev = idx;
        }
        self.partial = idx;
    }

    fn partial_del(&mut self, pa: &mut PageAllocator, idx: u32) {
        let (next, prev) = {
            let d = pa.buddy.desc(idx as usize);
            (d.next, d.prev)
        };
        if prev != NONE {
            pa.buddy.desc_mut(prev as usize).next = next;
        } else {
            self.partial = next;
        }
        if next != NONE {
            pa.buddy.desc_mut(next as usize).prev = prev;
        }
    }

    /// Whether `addr` is the start of an object of the slab at mem_map index `idx` that is
    /// not on the slab's freelist (a debug-off double-free check; one freelist walk).
    pub fn check_live(&self, pa: &PageAllocator, idx: usize, addr: u64) -> Result<(), MmError> {
        let base = pa.direct_map.pfn_to_virt(pa.buddy.base_pfn() + idx as u64) as u64;
        let off = addr.wrapping_sub(base);
        if !off.is_multiple_of(self.stride as u64)
            || off / self.stride as u64 >= self.objects as u64
        {
            return Err(MmError::ForeignPointer {
                addr,
                reason: "it points inside a slab object, not at its start",
            });
        }
        let mut f = pa.buddy.desc(idx).freelist;
        let mut steps = 0u32;
        while f != 0 && steps <= self.objects as u32 {
            if f == addr {
                return Err(MmError::DoubleFree {
                    addr,
                    cache: self.name,
                });
            }
            // SAFETY: `f` is on this slab's freelist, so it is a free object of the slab
            // whose free pointer at fp_offset was written by `new_slab` or `free`.
            f = unsafe { ((f + self.fp_offset as u64) as *const u64).read_unaligned() };
            steps += 1;
        }
        Ok(())
    }

    /// Whether this cache runs with debug checks (redzones, poison).
    pub fn debug(&self) -> bool {
        self.debug
    }

    /// Free object `addr` of the slab whose head page has mem_map index `idx`.
    /// On error nothing is freed.
    #[inline(always)]
    pub fn free(&mut self, pa: &mut PageAllocator, idx: usize, addr: u64) -> Result<(), MmError> {
        if addr & self.align_mask != 0 {
            return Err(MmError::ForeignPointer {
                addr,
                reason: "it points inside a slab object, not at its start",
            });
        }
        if self.debug {
            self.debug_check_free(pa, idx, addr)?;
        } else if pa.buddy.desc(idx).freelist == addr {
            // The one double free that is free to detect (SLAB_FREELIST_HARDENED).
            return Err(MmError::DoubleFree {
                addr,
                cache: self.name,
            });
        }
        let d = pa.buddy.desc_mut(idx);
        // SAFETY: `addr` is an allocated object of this slab (page owner checked by the
        // caller; alignment/boundary and state checked above), so writing its free
        // pointer stays inside memory this cache owns.
        unsafe { ((addr + self.fp_offset as u64) as *mut u64).write(d.freelist) };
        d.freelist = addr;
        let was_full = d.inuse == d.objects;
        d.inuse -= 1;
        let now_empty = d.inuse == 0;
        self.active -= 1;
        let idx = idx as u32;
        if now_empty {
            if self.nr_empty >= 1 {
                // Keep one spare empty slab per cache; give the rest back.
                if idx == self.cpu {
                    self.cpu = NONE;
                } else if !was_full {
                    self.partial_del(pa, idx);
                }
                self.discard_slab(pa, idx);
                return Ok(());
            }
            self.nr_empty += 1;
        }
        if was_full && idx != self.cpu {
            self.partial_add(pa, idx);
        }
        Ok(())
    }

    /// Give every empty slab (including the spare) back to the buddy
    /// (`kmem_cache_shrink`).
    pub fn shrink(&mut self, pa: &mut PageAllocator) {
        if self.cpu != NONE && pa.buddy.desc(self.cpu as usize).inuse == 0 {
            let c = self.cpu;
            self.cpu = NONE;
            self.discard_slab(pa, c);
            self.nr_empty -= 1;
        }
        let mut s = self.partial;
        while s != NONE {
            let (next, inuse) = {
                let d = pa.buddy.desc(s as usize);
                (d.next, d.inuse)
            };
            if inuse == 0 {
                self.partial_del(pa, s);
                self.discard_slab(pa, s);
                self.nr_empty -= 1;
            }
            s = next;
        }
    }

    /// Change the object layout (debug on/off). Only valid with no slabs.
    pub(crate) fn relayout(&mut self, debug: bool) {
        debug_assert!(self.nr_slabs == 0);
        *self = KmemCache::new(self.index, self.name, self.object_size as usize, debug);
    }

    // ---- debug mode -------------------------------------------------------------

    /// Poison a free object and mark its redzone inactive.
    ///
    /// # Safety
    /// `obj` must be an object of a slab owned by this cache.
    unsafe fn poison(&self, obj: *mut u8) {
        let n = self.object_size as usize;
        // SAFETY: the caller guarantees obj..obj+stride belongs to this cache; the
        // object and its redzone are within the stride.
        unsafe {
            core::ptr::write_bytes(obj, POISON_FREE, n - 1);
            obj.add(n - 1).write(POISON_END);
            core::ptr::write_bytes(obj.add(n), RED_INACTIVE, REDZONE_BYTES);
        }
    }

    #[cold]
    fn debug_on_alloc(&mut self, obj: u64) {
        let n = self.object_size as usize;
        let p = obj as *mut u8;
        // SAFETY: `obj` was just taken off this cache's freelist, so the object and its
        // redzone (within the stride) belong to this cache.
        let body = unsafe { core::slice::from_raw_parts(p, n) };
        let bad =
            body[..n - 1]
                .iter()
                .position(|&b| b != POISON_FREE)
                .or(if body[n - 1] != POISON_END {
                    Some(n - 1)
                } else {
                    None
                });
        if let Some(offset) = bad {
            if self.debug_report.is_none() {
                self.debug_report = Some(MmError::UseAfterFree {
                    addr: obj,
                    cache: self.name,
                    offset,
                });
            }
        }
        // SAFETY: as above; the redzone follows the object inside the stride.
        unsafe { core::ptr::write_bytes(p.add(n), RED_ACTIVE, REDZONE_BYTES) };
    }

    #[cold]
    fn debug_check_free(
        &mut self,
        pa: &PageAllocator,
        idx: usize,
        addr: u64,
    ) -> Result<(), MmError> {
        let base = pa.direct_map.pfn_to_virt(pa.buddy.base_pfn() + idx as u64) as u64;
        let off = addr.wrapping_sub(base);
        if !off.is_multiple_of(self.stride as u64)
            || off / self.stride as u64 >= self.objects as u64
        {
            return Err(MmError::ForeignPointer {
                addr,
                reason: "it points inside a slab object, not at its start",
            });
        }
        let n = self.object_size as usize;
        // SAFETY: addr is an object boundary of a slab of this cache (checked above), so
        // the redzone addr+n..addr+n+REDZONE_BYTES is inside the slab.
        let rz = unsafe { core::slice::from_raw_parts((addr as *const u8).add(n), REDZONE_BYTES) };
        if rz.iter().all(|&b| b == RED_INACTIVE) {
            return Err(MmError::DoubleFree {
                addr,
                cache: self.name,
            });
        }
        if let Some(i) = rz.iter().position(|&b| b != RED_ACTIVE) {
            return Err(MmError::Redzone {
                addr,
                cache: self.name,
                offset: n + i,
            });
        }
        // SAFETY: the object is allocated and being freed by its owner.
        unsafe { self.poison(addr as *mut u8) };
        Ok(())
    }
}
