//! `tlb`, `tlbflush` and `map`: what address translation costs.
//!
//! * `tlb/<pattern>/<mapping>/<size>`: cycles per access over a working set, swept from
//!   `min_bytes` to `max_bytes`. One buffer of up to `max_bytes` is built per mapping kind
//!   and the working sets are its prefixes (like lmbench's `lat_mem_rd`/`tlb`):
//!   - `direct-4K` / `direct-2M` / `direct-1G`: RAM from the buddy mapped again in the
//!     benchmark window (`mm::BENCH_MAP_START`) with that leaf size. With `scatter_4k`
//!     the 4K buffer is built from separate order-0 frames in shuffled order, so no two
//!     virtually adjacent pages are physically adjacent (defeats Zen's 4K→16K coalescing).
//!     2M/1G buffers come from order-9/order-18 buddy blocks (naturally aligned).
//!   - `vmalloc` (4K leaves over scattered frames) and `vmalloc_huge` (2M leaves).
//!
//!   Patterns: `random` (dependent chase, one line per page at a fixed pseudo-random line
//!   offset, random cyclic order from Sattolo's algorithm), `random_line` (chase over every
//!   line), `page_stride` (chase, one line per page, in page order), `sequential` (streaming
//!   reads, cycles per 64 B line). Pointer chains live inside the buffers.
//! * `tlb/cpuid` info record: TLB geometry as CPUID describes it (AMD 0x80000005/6/19,
//!   Intel 0x18).
//! * `tlbflush/<kind>` (invlpg, cr3, invpcid): cost per operation (at CPL3 through the
//!   int3 gate, which is included) and `tlbflush/<kind>/refill`: extra cycles per page of
//!   a chase over `refill_pages` 4K pages after the flush, against the same chase after a
//!   no-op gate call.
//! * `map/<leaf>/<size>` and `unmap/<leaf>/<size>`: mapping/unmapping physically
//!   contiguous memory in the benchmark window with 4K, 2M (and 1G) leaves.
//!
//! The benchmark window itself (its page tables, teardown in one step) is
//! `mm::window::BenchWindow`; the PMU and CPUID decoding are in `arch::x86_64::{pmu,
//! cpuid_tlb}`, the timed loops in `arch::x86_64::loops`.
//!
//! Files: [`buffer`] (building a buffer of each mapping kind), [`chain`] (the pointer
//! chains inside buffers), [`sweep`] (the `tlb` suite), [`flush`] (`tlbflush`),
//! [`map`] (`map`/`unmap`); this file holds what they share.
mod buffer;
mod chain;
mod flush;
mod map;
mod sweep;

pub use flush::tlbflush_suite;
pub use map::map_suite;
pub use sweep::tlb_suite;

use crate::arch::pmu::{Pmu, PMU_ABSENT};
use crate::arch::privileged;
use crate::mm;
use crate::report::Bench;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use kmbench_protocol::PageSize;

const PAGE: u64 = 4096;
const LINE: u64 = 64;
const MIB: u64 = 1 << 20;

const G1_FAULTS: &str = "CPUID reports 1 GiB pages (pdpe1gb), but reading through a 1 GiB leaf faults (#PF, reserved bit): this hypervisor does not honour 1 GiB guest pages (kvm_pvm's shadow paging)";

/// Bytes we may take for a buffer, leaving room for page tables and the rest of the run.
fn available_bytes() -> u64 {
    let free = mm::nr_free_pages() * PAGE;
    let reserve = 16 * MIB + free / 256;
    free.saturating_sub(reserve)
}

fn leaf_label(l: PageSize) -> &'static str {
    match l {
        PageSize::Size4K => "4K",
        PageSize::Size2M => "2M",
        PageSize::Size1G => "1G",
    }
}

/// Running at CPL3 under kvm_pvm (CS reads 0x33 there; the kernel's user CS is 0x23).
fn is_pvm() -> bool {
    privileged::current_cpl() == 3 && privileged::current_cs() == 0x33
}

/// `4KiB`, `64MiB`, `1GiB`; 3 significant digits otherwise (`1.41MiB`, `724KiB`).
pub fn size_label(bytes: u64) -> String {
    let (unit, name) = if bytes >= 1 << 30 {
        (1u64 << 30, "GiB")
    } else if bytes >= MIB {
        (MIB, "MiB")
    } else if bytes >= 1024 {
        (1024, "KiB")
    } else {
        (1, "B")
    };
    if bytes.is_multiple_of(unit) {
        return format!("{}{name}", bytes / unit);
    }
    let v = bytes as f64 / unit as f64;
    if v < 10.0 {
        format!("{v:.2}{name}")
    } else if v < 100.0 {
        format!("{v:.1}{name}")
    } else {
        format!("{v:.0}{name}")
    }
}

/// 2^(1/k) by bisection (no libm in the kernel).
fn root_of_two(k: u32) -> f64 {
    let (mut lo, mut hi) = (1.0f64, 2.0f64);
    for _ in 0..64 {
        let mid = (lo + hi) / 2.0;
        let mut p = 1.0;
        for _ in 0..k {
            p *= mid;
        }
        if p < 2.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Log-spaced working sets from `min` to `max`, `ppd` points per doubling, rounded to
/// `align` bytes, without duplicates.
pub fn sweep_sizes(min: u64, max: u64, ppd: u32, align: u64) -> Vec<u64> {
    let ppd = ppd.max(1);
    let r = root_of_two(ppd);
    let min = min.max(align);
    let mut out: Vec<u64> = Vec::new();
    let mut base = min;
    'outer: loop {
        let mut f = 1.0f64;
        for _ in 0..ppd {
            let s = ((base as f64 * f / align as f64 + 0.5) as u64).max(1) * align;
            if s > max {
                break 'outer;
            }
            if out.last() != Some(&s) {
                out.push(s);
            }
            f *= r;
        }
        match base.checked_mul(2) {
            Some(b) => base = b,
            None => break,
        }
    }
    out
}

/// PMU facts every access record carries.
fn pmu_extra<'a>(b: Bench<'a>, pmu: Option<&Pmu>, per_access: &[Vec<f64>]) -> Bench<'a> {
    match pmu {
        None => b
            .extra("dtlb_misses", "unavailable")
            .extra("pmu", PMU_ABSENT),
        Some(p) => {
            let mut b = b.extra("pmu", p.desc.clone());
            for (i, &(name, _)) in p.counters.iter().enumerate() {
                let mut v: Vec<f64> = per_access
                    .iter()
                    .filter_map(|s| s.get(i).copied())
                    .collect();
                v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal));
                let med = v.get(v.len() / 2).copied().unwrap_or(0.0);
                b = b.extra(&format!("{name}_per_access"), med);
                if i == 0 {
                    b = b.extra("dtlb_misses", med);
                }
            }
            if p.desc.is_empty() {
                b
            } else {
                b.extra("pmu_note", "counts read with RDMSR (through the gate at CPL3) around each sample; median per access; MSR writes may be ignored by a hypervisor")
            }
        }
    }
}
