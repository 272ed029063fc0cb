//! Small vmallocs that scale across CPUs: one [`VmapZone`] per CPU (Linux 6.9's per-CPU
//! vmap nodes in shape), each behind its own spin lock, over a reserved range
//! (`VZONE_START`, [`ZONE_BYTES`] per CPU).
//!
//! * `vmalloc_pcpu(size)` (≤ 16 KiB): this CPU's zone gives a slot (no mm lock); each page
//!   comes from this CPU's page list (`mm::percpu`); its PTE is written straight into the
//!   zone's PTE table for that 2 MiB chunk. Only the first use of a chunk takes the mm
//!   lock, to build the tables through the paging code.
//! * `vfree_pcpu(p)` (any CPU): the zone that owns `p` (by address) clears the PTEs and
//!   puts the slot on its lazy list; the frames go to the freeing CPU's page list. No TLB
//!   flush — until the zone's lazy pages reach [`lazy_max_pages`]: then one global
//!   shootdown (`smp::shootdown::flush_tlb_all_cpus`, a full flush on every online CPU)
//!   and the lazy slots become free, as Linux's lazy purge.
//! * The guard: a slot is 8 pages, an allocation at most 4, the rest never mapped.
use super::state::with;
use super::{percpu, VZONE_START};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use kmbench_mm::vmalloc::zone::{VmapZone, ZONE_MAX_PAGES};
use kmbench_protocol::limits::MAX_CPUS;
use kmbench_protocol::PageSize;
use spinning_top::Spinlock;

/// Pages per slot (allocation + guard).
const SLOT_PAGES: u64 = 8;
/// Slots per zone: room for the lazy limit at 64 CPUs' `fls` plus live allocations.
const NR_SLOTS: u32 = 16384;
/// Bytes of virtual space per CPU's zone (512 MiB).
pub const ZONE_BYTES: u64 = SLOT_PAGES * 4096 * NR_SLOTS as u64;

/// Lazily freed pages a zone collects before its purge: Linux's `lazy_max_pages()` (32 MiB
/// of pages × fls(online CPUs), for the whole vmap area) shared out over the CPUs' zones,
/// capped so a zone keeps room for live allocations. The purge is a shootdown of every
/// CPU, so its cost per freed page falls as the limit grows.
pub fn lazy_max_pages(cpus: usize) -> u64 {
    let fls = usize::BITS - cpus.max(1).leading_zeros();
    ((32u64 << 20) / 4096 * fls as u64 / cpus.max(1) as u64).min(NR_SLOTS as u64 / 2)
}
const CHUNK: u64 = 2 << 20;
const _: () = assert!(VZONE_START + ZONE_BYTES * MAX_CPUS as u64 <= super::STACKS_START);

/// Cache-line pairs apart (the adjacent-line prefetcher), so no CPU's lock or slots share
/// a line with another CPU's.
#[repr(align(128))]
struct Zone {
    zone: Option<VmapZone>,
    /// Per 2 MiB chunk: the direct-map address of its PTE table (0: not built yet).
    tables: Vec<u64>,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZONE_INIT: Spinlock<Zone> = Spinlock::new(Zone {
    zone: None,
    tables: Vec::new(),
});
static ZONES: [Spinlock<Zone>; MAX_CPUS] = [ZONE_INIT; MAX_CPUS];
/// The PTE flags of a zone page (set on first use).
static LEAF_FLAGS: AtomicU64 = AtomicU64::new(0);

fn zone_base(cpu: usize) -> u64 {
    VZONE_START + cpu as u64 * ZONE_BYTES
}

fn pte_slot(tables: &[u64], base: u64, va: u64) -> Option<*mut u64> {
    let t = *tables.get(((va - base) / CHUNK) as usize)?;
    (t != 0).then(|| (t + ((va >> 12) & 511) * 8) as *mut u64)
}

/// `size` bytes (1 ..= 16 KiB) virtually contiguous, page by page, from this CPU's zone;
/// null when the zone or memory is exhausted.
pub fn vmalloc_pcpu(size: usize) -> *mut u8 {
    let pages = size.div_ceil(4096);
    if pages == 0 || pages > ZONE_MAX_PAGES {
        return core::ptr::null_mut();
    }
    let cpu = crate::arch::smp::current_cpu();
    let base = zone_base(cpu);
    let mut z = ZONES[cpu].lock();
    let z = &mut *z;
    let zone = z.zone.get_or_insert_with(|| {
        let lazy = lazy_max_pages(crate::smp::worker::cpus());
        VmapZone::new(base, SLOT_PAGES, NR_SLOTS, lazy)
    });
    if z.tables.is_empty() {
        z.tables = alloc::vec![0; (ZONE_BYTES / CHUNK) as usize];
    }
    let slot = match zone.alloc_slot(pages) {
        Some(s) => s,
        None if zone.lazy_pages() > 0 => {
            // Every slot is live or lazily freed: purge now, then retry.
            purge(zone);
            match zone.alloc_slot(pages) {
                Some(s) => s,
                None => return core::ptr::null_mut(),
            }
        }
        None => return core::ptr::null_mut(),
    };
    let va = zone.addr(slot);
    for i in 0..pages {
        let page = percpu::alloc_page_pcpu();
        if page.is_null() {
            // Give back what was mapped; the slot waits for the purge like any freed one.
            let area = *zone.area_mut(slot);
            for (k, &f) in area.frames[..i].iter().enumerate() {
                if let Some(pte) = pte_slot(&z.tables, base, va + k as u64 * 4096) {
                    // SAFETY: the PTE this function wrote for this slot's page `k`.
                    unsafe { pte.write_volatile(0) };
                }
                percpu::free_page_pcpu((f + super::PAGE_OFFSET) as *mut u8);
            }
            zone.free_slot(slot);
            return core::ptr::null_mut();
        }
        let phys = page as u64 - super::PAGE_OFFSET;
        let at = va + i as u64 * 4096;
        match pte_slot(&z.tables, base, at) {
            Some(pte) => {
                let flags = LEAF_FLAGS.load(Ordering::Relaxed);
                // SAFETY: `pte` is the entry for `at` in this zone's own PTE table (built
                // under the mm lock, never freed); only this zone's lock holder writes
                // it, and `at` is unmapped (a fresh or purged slot), so no TLB holds it.
                unsafe { pte.write_volatile(phys | flags) };
            }
            None => {
                // First use of this 2 MiB chunk: map through the paging code (building
                // the tables), then remember the PTE table.
                let table = with(|m| {
                    let flags = m.pt.leaf_flags(true, false);
                    LEAF_FLAGS.store(flags.bits(), Ordering::Relaxed);
                    let mut frames = super::window::BuddyFrames {
                        pages: &mut m.pages,
                    };
                    m.pt.map_leaf(at, phys, PageSize::Size4K, flags, &mut frames)
                        .expect("map a vmap-zone page");
                    m.pt.pte_table(at).expect("the PTE table just built")
                });
                z.tables[((at - base) / CHUNK) as usize] = table;
            }
        }
        zone.area_mut(slot).frames[i] = phys;
    }
    va as *mut u8
}

/// Free `p`, which [`vmalloc_pcpu`] returned (on any CPU). Misuse (not a zone
/// allocation, or freed already) ends the run.
pub fn vfree_pcpu(p: *mut u8) {
    let va = p as u64;
    let owner = va.wrapping_sub(VZONE_START) / ZONE_BYTES;
    if va < VZONE_START || owner >= MAX_CPUS as u64 {
        super::misuse(
            "vfree_pcpu",
            kmbench_mm::MmError::NotVmallocArea { addr: va },
        );
    }
    let base = zone_base(owner as usize);
    let mut frames = [0u64; ZONE_MAX_PAGES];
    let n;
    {
        let mut g = ZONES[owner as usize].lock();
        let z = &mut *g;
        let Some(zone) = z.zone.as_mut() else {
            super::misuse(
                "vfree_pcpu",
                kmbench_mm::MmError::NotVmallocArea { addr: va },
            );
        };
        let freed = zone.slot_of(va).and_then(|s| zone.free_slot(s));
        let Some((area, purge)) = freed else {
            drop(g);
            super::misuse(
                "vfree_pcpu",
                kmbench_mm::MmError::NotVmallocArea { addr: va },
            );
        };
        n = area.pages as usize;
        for i in 0..n {
            if let Some(pte) = pte_slot(&z.tables, base, va + i as u64 * 4096) {
                // SAFETY: this zone's PTE for a page of the slot being freed (lock held).
                unsafe { pte.write_volatile(0) };
            }
        }
        frames[..n].copy_from_slice(&area.frames[..n]);
        if purge {
            self::purge(zone);
        }
    }
    for &f in &frames[..n] {
        percpu::free_page_pcpu((f + super::PAGE_OFFSET) as *mut u8);
    }
}

/// One shootdown for every lazily freed slot of `zone`: a full flush on every online CPU
/// (far above the 33-page ceiling). The caller holds the zone's lock, so nobody reuses a
/// slot meanwhile; CPUs spinning on it take the IPI (interrupts are on in SMP workers).
fn purge(zone: &mut VmapZone) {
    let (lo, hi) = zone.range();
    crate::smp::shootdown::flush_tlb_all_cpus(lo, (hi - lo) / 4096, 4096);
    zone.purged();
}

/// (purges, live slots) of CPU `cpu`'s zone.
pub fn zone_stats(cpu: usize) -> (u64, u32) {
    ZONES[cpu]
        .lock()
        .zone
        .as_ref()
        .map_or((0, 0), |z| (z.purges, z.live))
}
