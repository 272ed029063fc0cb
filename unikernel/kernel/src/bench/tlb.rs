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
//! Page tables of the benchmark window hang off one PML4 entry owned by this module; a
//! buffer's tables are built while nothing walks them and torn down by clearing that
//! entry (one write, one CR3 reload), then freed. Under a shadow-paging hypervisor
//! (kvm_pvm) that keeps table construction from trapping on every PTE write; the `map`
//! suite measures the trapping path on purpose.
use crate::arch::idt::gate_op;
use crate::arch::privileged::{self, run_cpl};
use crate::arch::{cpuid, tsc};
use crate::mm::paging::Leaf;
use crate::mm::window::{self, BenchWindow};
use crate::mm;
use crate::report::{self, Bench};
use crate::timing;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::arch::asm;
use kmbench_mm::Gfp;
use kmbench_protocol::{
    AccessPattern, BenchStatus, GuestPlan, MapSuite, Mapping, TlbFlushSuite, TlbSuite,
};
use serde_json::json;

const PAGE: u64 = 4096;
const LINE: u64 = 64;
const MIB: u64 = 1 << 20;

// ---- small helpers ------------------------------------------------------------------

/// splitmix64: deterministic, seedable.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

// ---- PMU --------------------------------------------------------------------------

use privileged::{rdmsr, wrmsr};

/// Core counters programmed for data-TLB misses.
struct Pmu {
    /// (name, counter MSR)
    counters: Vec<(&'static str, u32)>,
    desc: String,
}

const PMU_ABSENT: &str = "unavailable: CPUID reports no core performance counters";

impl Pmu {
    fn setup() -> Option<Pmu> {
        if !cpuid::features().pmu {
            return None;
        }
        // Event select: event[7:0] | umask<<8 | USR(16) | OS(17) | EN(22); AMD event[11:8] at 35:32.
        let sel = |event: u64, umask: u64| {
            (event & 0xff) | (umask << 8) | (1 << 16) | (1 << 17) | (1 << 22) | ((event >> 8) << 32)
        };
        let mut counters = Vec::new();
        let desc;
        if cpuid::is_amd() {
            // PerfEvtSel0/1 (legacy MSRs, present on every AMD core with counters).
            let events = [
                ("l1_dtlb_miss", 0x45u64, 0xffu64),
                ("l2_dtlb_miss", 0x45, 0xf0),
            ];
            for (i, (name, ev, um)) in events.iter().enumerate() {
                wrmsr(0xc001_0004 + i as u32, 0);
                wrmsr(0xc001_0000 + i as u32, sel(*ev, *um));
                counters.push((*name, 0xc001_0004 + i as u32));
            }
            desc = "AMD ls_l1_d_tlb_miss (0x45/0xff) and L2 DTLB misses (0x45/0xf0), PerfEvtSel0/1"
                .to_string();
        } else {
            let l1 = cpuid::cpuid(1, 0).eax;
            let model = ((l1 >> 4) & 0xf) | (((l1 >> 16) & 0xf) << 4);
            // Ice Lake and later client/server cores use 0x12; older ones 0x08.
            let newer = matches!(
                model,
                0x6a | 0x6c
                    | 0x7d
                    | 0x7e
                    | 0x8c
                    | 0x8d
                    | 0x8f
                    | 0x97
                    | 0x9a
                    | 0xa7
                    | 0xaa
                    | 0xac
                    | 0xb7
                    | 0xba
                    | 0xbd
                    | 0xbf
                    | 0xcf
                    | 0xad
                    | 0xae
            );
            let ev = if newer { 0x12 } else { 0x08 };
            wrmsr(0xc1, 0);
            wrmsr(0x186, sel(ev, 0x0e));
            counters.push(("dtlb_walks", 0xc1));
            desc = format!("Intel DTLB_LOAD_MISSES.WALK_COMPLETED (event {ev:#x} umask 0x0e), IA32_PERFEVTSEL0");
        }
        Some(Pmu { counters, desc })
    }

    fn read(&self) -> Vec<u64> {
        self.counters.iter().map(|&(_, msr)| rdmsr(msr)).collect()
    }
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

// ---- CPUID TLB description ----------------------------------------------------------

fn amd_assoc(a: u32) -> serde_json::Value {
    match a {
        0 => json!("none"),
        0xff => json!("full"),
        n => json!(n),
    }
}

/// L2 associativity encoding (0x80000006, 4-bit).
fn amd_l2_assoc(a: u32) -> serde_json::Value {
    match a {
        0 => json!("none"),
        1 => json!(1),
        2 => json!(2),
        3 => json!(3),
        4 => json!(4),
        5 => json!(6),
        6 => json!(8),
        8 => json!(16),
        0xa => json!(32),
        0xb => json!(48),
        0xc => json!(64),
        0xd => json!(96),
        0xe => json!(128),
        0xf => json!("full"),
        9 => json!("see 0x8000001d"),
        n => json!(format!("code {n}")),
    }
}

/// Data-TLB entries per level and page size as CPUID reports them.
pub fn cpuid_tlb() -> serde_json::Value {
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let source;
    if cpuid::is_amd() || cpuid::max_ext_leaf() >= 0x8000_0005 && cpuid::max_leaf() < 0x18 {
        source = "amd cpuid 0x80000005/0x80000006/0x80000019";
        if cpuid::max_ext_leaf() >= 0x8000_0005 {
            let r = cpuid::cpuid(0x8000_0005, 0);
            let e = |reg: u32| (reg >> 16) & 0xff;
            entries.push(json!({"level": "L1", "type": "data", "page_size": "4K", "entries": e(r.ebx), "assoc": amd_assoc(r.ebx >> 24)}));
            entries.push(json!({"level": "L1", "type": "data", "page_size": "2M", "entries": e(r.eax), "assoc": amd_assoc(r.eax >> 24), "note": "4M pages take two entries"}));
        }
        if cpuid::max_ext_leaf() >= 0x8000_0006 {
            let r = cpuid::cpuid(0x8000_0006, 0);
            let e = |reg: u32| (reg >> 16) & 0xfff;
            entries.push(json!({"level": "L2", "type": "data", "page_size": "4K", "entries": e(r.ebx), "assoc": amd_l2_assoc(r.ebx >> 28)}));
            entries.push(json!({"level": "L2", "type": "data", "page_size": "2M", "entries": e(r.eax), "assoc": amd_l2_assoc(r.eax >> 28)}));
        }
        if cpuid::max_ext_leaf() >= 0x8000_0019 {
            let r = cpuid::cpuid(0x8000_0019, 0);
            let e = |reg: u32| (reg >> 16) & 0xfff;
            if r.eax != 0 || r.ebx != 0 {
                entries.push(json!({"level": "L1", "type": "data", "page_size": "1G", "entries": e(r.eax), "assoc": amd_l2_assoc(r.eax >> 28)}));
                entries.push(json!({"level": "L2", "type": "data", "page_size": "1G", "entries": e(r.ebx), "assoc": amd_l2_assoc(r.ebx >> 28)}));
            }
        }
    } else if cpuid::max_leaf() >= 0x18 {
        source = "intel cpuid 0x18 (deterministic address translation)";
        let max_sub = cpuid::cpuid(0x18, 0).eax;
        for sub in 0..=max_sub.min(64) {
            let r = cpuid::cpuid(0x18, sub);
            let kind = r.edx & 0x1f;
            if kind == 0 {
                continue;
            }
            let kind_name = match kind {
                1 => "data",
                2 => "instruction",
                3 => "unified",
                4 => "load",
                5 => "store",
                _ => "other",
            };
            let level = (r.edx >> 5) & 7;
            let ways = (r.ebx >> 16) & 0xffff;
            let sets = r.ecx;
            let full = r.edx & (1 << 8) != 0;
            let mut sizes = Vec::new();
            for (bit, n) in [(0, "4K"), (1, "2M"), (2, "4M"), (3, "1G")] {
                if r.ebx & (1 << bit) != 0 {
                    sizes.push(n);
                }
            }
            for s in sizes {
                if s == "4M" {
                    continue;
                }
                entries.push(json!({"level": format!("L{level}"), "type": kind_name, "page_size": s,
                    "entries": ways as u64 * sets as u64, "assoc": if full { json!("full") } else { json!(ways) }}));
            }
        }
    } else {
        source = "none (no TLB leaf)";
    }
    json!({"source": source, "entries": entries})
}

// ---- the benchmark window ---------------------------------------------------------

const G1_FAULTS: &str = "CPUID reports 1 GiB pages (pdpe1gb), but reading through a 1 GiB leaf faults (#PF, reserved bit): this hypervisor does not honour 1 GiB guest pages (kvm_pvm's shadow paging)";

// ---- buffers ---------------------------------------------------------------------------

enum Backing {
    /// Order-0 frames (phys), mapped in this order in the window.
    Frames(Vec<u64>),
    /// Buddy blocks (phys, order), mapped in this order in the window.
    Blocks(Vec<(u64, u8)>),
    Vmalloc(*mut u8),
}

struct Buffer {
    base: u64,
    bytes: u64,
    backing: Backing,
    /// The window the frames/blocks are mapped in (none for vmalloc buffers).
    window: Option<BenchWindow>,
    /// How it was built, for records.
    how: String,
}

impl Buffer {
    fn free(self) {
        // Unmap first (the window's drop tears its tables down), then free the frames.
        drop(self.window);
        match self.backing {
            Backing::Frames(f) => {
                let blocks: Vec<(u64, u8)> = f.into_iter().map(|p| (p, 0)).collect();
                window::free_blocks(&blocks);
            }
            Backing::Blocks(b) => window::free_blocks(&b),
            Backing::Vmalloc(p) => mm::vfree(p),
        }
    }
}

/// Bytes we may take for a buffer, leaving room for page tables and the rest of the run.
fn available_bytes() -> u64 {
    let free = mm::nr_free_pages() * PAGE;
    let reserve = 16 * MIB + free / 256;
    free.saturating_sub(reserve)
}

fn leaf_of(m: Mapping) -> Leaf {
    match m {
        Mapping::Direct4K | Mapping::Vmalloc => Leaf::K4,
        Mapping::Direct2M | Mapping::VmallocHuge => Leaf::M2,
        Mapping::Direct1G => Leaf::G1,
    }
}

fn leaf_label(l: Leaf) -> &'static str {
    match l {
        Leaf::K4 => "4K",
        Leaf::M2 => "2M",
        Leaf::G1 => "1G",
    }
}

/// A buffer of up to `want` bytes of the given mapping kind.
fn build_buffer(
    mapping: Mapping,
    want: u64,
    scatter_4k: bool,
    seed: u64,
) -> Result<Buffer, (BenchStatus, String)> {
    let leaf = leaf_of(mapping);
    let avail = available_bytes();
    let bytes = want.min(avail) / leaf.bytes() * leaf.bytes();
    if bytes == 0 {
        return Err((
            BenchStatus::Oom,
            format!(
                "{} needs at least {} of free RAM, {} available",
                mapping.label(),
                size_label(leaf.bytes()),
                size_label(avail)
            ),
        ));
    }
    match mapping {
        Mapping::Vmalloc | Mapping::VmallocHuge => {
            let mut b = bytes;
            while b >= leaf.bytes() {
                let p = if mapping == Mapping::Vmalloc {
                    mm::vmalloc(b as usize, Gfp(0))
                } else {
                    mm::vmalloc_huge(b as usize, Gfp(0))
                };
                if !p.is_null() {
                    let how = if mapping == Mapping::Vmalloc {
                        "vmalloc: 4K leaves over order-0 frames"
                    } else {
                        "vmalloc_huge: 2M leaves over order-9 blocks"
                    };
                    return Ok(Buffer {
                        base: p as u64,
                        bytes: b,
                        backing: Backing::Vmalloc(p),
                        window: None,
                        how: how.to_string(),
                    });
                }
                b = b / 2 / leaf.bytes() * leaf.bytes();
            }
            Err((
                BenchStatus::Oom,
                format!("{} of {} failed", mapping.label(), size_label(bytes)),
            ))
        }
        _ => {
            let mut window = BenchWindow::open();
            let base = window.base();
            if mapping == Mapping::Direct4K && scatter_4k {
                let mut frames = window::alloc_frames(bytes / PAGE);
                let mut rng = Rng::new(seed ^ 0x5ca7_7e12);
                for i in (1..frames.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    frames.swap(i, j);
                }
                for (i, &f) in frames.iter().enumerate() {
                    if let Err(e) = window.map(i as u64 * PAGE, f, Leaf::K4) {
                        let b = Buffer {
                            base,
                            bytes: 0,
                            backing: Backing::Frames(frames),
                            window: Some(window),
                            how: String::new(),
                        };
                        b.free();
                        return Err((BenchStatus::Error, format!("mapping the 4K buffer: {e}")));
                    }
                }
                privileged::flush_tlb_all();
                let got = frames.len() as u64 * PAGE;
                Ok(Buffer {
                    base,
                    bytes: got,
                    backing: Backing::Frames(frames),
                    window: Some(window),
                    how: "order-0 frames in shuffled order, 4K leaves in the benchmark window (no physically adjacent neighbours)".to_string(),
                })
            } else {
                let order: u8 = match leaf {
                    Leaf::K4 | Leaf::M2 => 9.min(bytes.trailing_zeros() as u8 - 12),
                    Leaf::G1 => 18,
                };
                let blocks = window::alloc_blocks(bytes, order);
                let got = blocks.len() as u64 * (PAGE << order);
                if got == 0 {
                    return Err((
                        BenchStatus::Oom,
                        format!(
                            "no free order-{order} block ({}) for {}",
                            size_label(PAGE << order),
                            mapping.label()
                        ),
                    ));
                }
                if let Err(e) = window.map_blocks(&blocks, leaf) {
                    drop(window);
                    window::free_blocks(&blocks);
                    return Err((
                        BenchStatus::Error,
                        format!("mapping the {} buffer: {e}", leaf_label(leaf)),
                    ));
                }
                privileged::flush_tlb_all();
                if leaf == Leaf::G1 && crate::arch::idt::probe_read(base).is_err() {
                    drop(window);
                    window::free_blocks(&blocks);
                    return Err((BenchStatus::Unsupported, G1_FAULTS.to_string()));
                }
                Ok(Buffer {
                    base,
                    bytes: got,
                    backing: Backing::Blocks(blocks),
                    window: Some(window),
                    how: format!(
                        "order-{order} buddy blocks, {} leaves in the benchmark window",
                        leaf_label(leaf)
                    ),
                })
            }
        }
    }
}

// ---- chains and timed loops ------------------------------------------------------------

/// Line offset (in lines) of page `i`'s slot: pseudo-random, fixed for the run.
fn line_of(i: u64, seed: u64) -> u64 {
    mix(i ^ seed.rotate_left(17)) & (PAGE / LINE - 1)
}

fn slots(pattern: AccessPattern, bytes: u64) -> u64 {
    match pattern {
        AccessPattern::RandomLine | AccessPattern::Sequential => bytes / LINE,
        AccessPattern::Random | AccessPattern::PageStride => bytes / PAGE,
    }
}

fn slot_addr(base: u64, pattern: AccessPattern, i: u64, seed: u64) -> u64 {
    match pattern {
        AccessPattern::RandomLine | AccessPattern::Sequential => base + i * LINE,
        AccessPattern::Random | AccessPattern::PageStride => {
            base + i * PAGE + line_of(i, seed) * LINE
        }
    }
}

/// Write the pointer chain for `n` slots into the buffer; returns the start address.
fn build_chain(base: u64, pattern: AccessPattern, n: u64, seed: u64) -> u64 {
    let at = |i: u64| slot_addr(base, pattern, i, seed) as *mut u64;
    // SAFETY: every slot lies inside the mapped buffer (n slots of the working set, which
    // is a prefix of the buffer) and nothing else uses the buffer.
    unsafe {
        match pattern {
            AccessPattern::PageStride | AccessPattern::Sequential => {
                for i in 0..n {
                    at(i).write(at((i + 1) % n) as u64);
                }
            }
            AccessPattern::Random | AccessPattern::RandomLine => {
                // Sattolo: a[i] = i, then swap a[i] with a[j], j < i: one n-cycle, i → a[i].
                for i in 0..n {
                    at(i).write(i);
                }
                let mut rng = Rng::new(seed);
                let mut i = n;
                while i > 1 {
                    i -= 1;
                    let j = rng.below(i);
                    let (pi, pj) = (at(i), at(j));
                    let t = pi.read();
                    pi.write(pj.read());
                    pj.write(t);
                }
                for i in 0..n {
                    let p = at(i);
                    p.write(at(p.read()) as u64);
                }
            }
        }
    }
    at(0) as u64
}

/// Follow the chain `n` steps (n ≥ 1); returns where it stopped.
#[inline(never)]
fn chase(mut p: u64, n: u64) -> u64 {
    // SAFETY: p starts on a chain slot and every slot holds the address of another slot.
    unsafe {
        asm!("2:", "mov {p}, [{p}]", "dec {n}", "jnz 2b",
             p = inout(reg) p, n = inout(reg) n.max(1) => _, options(nostack, readonly));
    }
    p
}

/// Read one word per line, `lines` lines, streaming over [base, base+bytes) and wrapping.
#[inline(never)]
fn stream(base: u64, bytes: u64, lines: u64) -> u64 {
    let end = base + bytes;
    let mut acc: u64 = 0;
    // SAFETY: reads only addresses inside [base, end), which is mapped.
    unsafe {
        asm!("mov {p}, {base}",
             "2:", "add {acc}, [{p}]", "add {p}, 64", "cmp {p}, {end}", "jb 3f", "mov {p}, {base}",
             "3:", "dec {n}", "jnz 2b",
             base = in(reg) base, end = in(reg) end, p = out(reg) _, acc = inout(reg) acc,
             n = inout(reg) lines.max(1) => _, options(nostack, readonly));
    }
    acc
}

// ---- the tlb suite --------------------------------------------------------------------

pub fn tlb_suite(cfg: &TlbSuite, plan: &GuestPlan) {
    let features = cpuid::features();
    report::info("tlb/cpuid", cpuid_tlb());
    let pmu = Pmu::setup();
    let ovh = timing::timer_overhead() as f64;
    let accesses = cfg.accesses.max(1) as u64;
    let samples = cfg.samples.max(1);
    let seed = plan.seed;
    let sizes = sweep_sizes(
        cfg.min_bytes.max(PAGE),
        cfg.max_bytes,
        cfg.points_per_doubling,
        PAGE,
    );
    let cpl = run_cpl();

    for &mapping in &cfg.mappings {
        let name = |p: AccessPattern, s: u64| {
            format!("tlb/{}/{}/{}", p.label(), mapping.label(), size_label(s))
        };
        if mapping == Mapping::Direct1G && !features.page_1g {
            for &p in &cfg.patterns {
                for &s in &sizes {
                    Bench::new("tlb", name(p, s))
                        .param("pattern", p.label())
                        .param("mapping", mapping.label())
                        .param("bytes", s)
                        .emit_status(
                            BenchStatus::Unsupported,
                            "1 GiB pages not offered: CPUID 0x80000001 EDX bit 26 (pdpe1gb) is 0",
                        );
                }
            }
            continue;
        }
        let buf = match build_buffer(mapping, cfg.max_bytes, cfg.scatter_4k, seed) {
            Ok(b) => b,
            Err((status, msg)) => {
                for &p in &cfg.patterns {
                    for &s in &sizes {
                        Bench::new("tlb", name(p, s))
                            .param("pattern", p.label())
                            .param("mapping", mapping.label())
                            .param("bytes", s)
                            .emit_status(status, &msg);
                    }
                }
                continue;
            }
        };
        log::info!(
            "tlb: {} buffer {} at {:#x} ({})",
            mapping.label(),
            size_label(buf.bytes),
            buf.base,
            buf.how
        );
        for &pattern in &cfg.patterns {
            for &ws in &sizes {
                let b = Bench::new("tlb", name(pattern, ws))
                    .param("pattern", pattern.label())
                    .param("mapping", mapping.label())
                    .param("bytes", ws)
                    .param("pages", ws / PAGE)
                    .param("accesses", accesses)
                    .param("cpl", cpl);
                if ws > buf.bytes {
                    b.emit_status(
                        BenchStatus::Oom,
                        &format!(
                            "working set larger than the {} buffer that fit in guest RAM ({})",
                            mapping.label(),
                            size_label(buf.bytes)
                        ),
                    );
                    continue;
                }
                let n = slots(pattern, ws);
                let mut counts: Vec<Vec<f64>> = Vec::new();
                let mut s: Vec<f64> = Vec::with_capacity(samples as usize);
                // One sample: `accesses` accesses timed (and counted, with a PMU).
                let mut sample = |work: &mut dyn FnMut()| {
                    let c0 = pmu.as_ref().map(|p| p.read());
                    let a = tsc::start();
                    work();
                    let z = tsc::stop();
                    if let (Some(pm), Some(c0)) = (pmu.as_ref(), c0) {
                        counts.push(
                            pm.read()
                                .iter()
                                .zip(c0)
                                .map(|(x, y)| x.wrapping_sub(y) as f64 / accesses as f64)
                                .collect(),
                        );
                    }
                    s.push(((z - a) as f64 - ovh).max(0.0) / accesses as f64);
                };
                if pattern == AccessPattern::Sequential {
                    stream(buf.base, ws, n.max(accesses));
                    for _ in 0..samples {
                        sample(&mut || {
                            core::hint::black_box(stream(buf.base, ws, accesses));
                        });
                    }
                } else {
                    let mut p = build_chain(buf.base, pattern, n, seed);
                    p = chase(p, n.min(1 << 20).max(accesses.min(1 << 16)));
                    for _ in 0..samples {
                        sample(&mut || p = chase(p, accesses));
                    }
                    core::hint::black_box(p);
                }
                let b = pmu_extra(b, pmu.as_ref(), &counts)
                    .extra("buffer", buf.how.as_str())
                    .extra("buffer_bytes", buf.bytes)
                    .extra(
                        "unit_note",
                        if pattern == AccessPattern::Sequential {
                            "cycles per 64-byte line read (streaming, not dependent)"
                        } else {
                            "cycles per dependent load"
                        },
                    )
                    .extra("slots", n);
                b.emit_cycles_f64(&mut s);
            }
        }
        buf.free();
    }
}

/// Running at CPL3 under kvm_pvm (CS reads 0x33 there; the kernel's user CS is 0x23).
fn is_pvm() -> bool {
    privileged::current_cpl() == 3 && privileged::current_cs() == 0x33
}

// ---- tlbflush ---------------------------------------------------------------------------

pub fn tlbflush_suite(cfg: &TlbFlushSuite) {
    let features = cpuid::features();
    let cpl = run_cpl();
    let via = if cpl == 0 {
        "the instruction at CPL0"
    } else {
        "CPL3: includes the int3 gate round trip (see gate/roundtrip)"
    };
    let pages = (cfg.refill_pages.max(1) as u64).min(1 << 18);
    let buf = match build_buffer(Mapping::Direct4K, pages * PAGE, true, 0x7f1b) {
        Ok(b) => b,
        Err((status, msg)) => {
            for k in ["invlpg", "cr3", "invpcid"] {
                Bench::new("tlbflush", format!("tlbflush/{k}")).emit_status(status, &msg);
            }
            return;
        }
    };
    let pages = buf.bytes / PAGE;
    let page_addrs: Vec<u64> = (0..pages).map(|i| buf.base + i * PAGE).collect();
    let start = build_chain(buf.base, AccessPattern::Random, pages, 0x7f1b);
    let mut p = chase(start, pages * 4);
    let ovh = timing::timer_overhead() as f64;

    // (name, op cost fn, refill flush fn, op description, refill flush description)
    type Op<'a> = (
        &'static str,
        &'a dyn Fn(),
        &'a dyn Fn(),
        &'static str,
        &'static str,
    );
    let target = buf.base;
    let op_invlpg = || privileged::invlpg(target);
    let fl_invlpg = || privileged::invlpg_batch(&page_addrs);
    let op_cr3 = privileged::flush_tlb_all;
    let op_invpcid = || privileged::invpcid(0, 0, target);
    let fl_invpcid = || privileged::invpcid(3, 0, 0);
    let mut ops: Vec<Op> = vec![
        (
            "invlpg",
            &op_invlpg,
            &fl_invlpg,
            "INVLPG of one mapped page",
            "INVLPG of every page of the chase (one gate call at CPL3)",
        ),
        (
            "cr3",
            &op_cr3,
            &op_cr3,
            "CR3 reload with its own value",
            "CR3 reload",
        ),
    ];
    let invpcid_skip = if !features.invpcid {
        Some("INVPCID not offered: CPUID 7.0 EBX bit 10 is 0")
    } else if is_pvm() {
        Some("CPUID offers INVPCID, but under kvm_pvm CPL0 instructions are emulated and its emulator does not implement INVPCID (KVM internal error, emulation failure): skipped")
    } else {
        None
    };
    if invpcid_skip.is_none() {
        ops.push((
            "invpcid",
            &op_invpcid,
            &fl_invpcid,
            "INVPCID type 0 (one address, PCID 0)",
            "INVPCID type 3 (all contexts, non-global)",
        ));
    } else if let Some(why) = invpcid_skip {
        for n in ["tlbflush/invpcid", "tlbflush/invpcid/refill"] {
            Bench::new("tlbflush", n.to_string())
                .param("cpl", cpl)
                .emit_status(BenchStatus::Unsupported, why);
        }
    }
    for (name, op, flush, what, flush_what) in ops {
        let mut s = timing::per_op(cfg.samples, 8, op);
        Bench::new("tlbflush", format!("tlbflush/{name}"))
            .param("cpl", cpl)
            .extra("operation", what)
            .extra("mechanism", via)
            .emit_cycles(&mut s);

        // Refill: chase over all pages after the flush vs after a no-op gate call.
        let mut d: Vec<f64> = Vec::with_capacity(cfg.samples as usize);
        let mut flushed: Vec<f64> = Vec::new();
        let mut baseline: Vec<f64> = Vec::new();
        for _ in 0..cfg.samples.max(1) {
            p = chase(p, pages);
            if cpl == 0 {
                // nothing to mirror: the flush itself has no gate
            } else {
                privileged::gate(gate_op::NOP, 0, 0);
            }
            let a = tsc::start();
            p = chase(p, pages);
            let z = tsc::stop();
            let base = ((z - a) as f64 - ovh) / pages as f64;
            flush();
            let a = tsc::start();
            p = chase(p, pages);
            let z = tsc::stop();
            let after = ((z - a) as f64 - ovh) / pages as f64;
            d.push(after - base);
            flushed.push(after);
            baseline.push(base);
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal));
            v[v.len() / 2]
        };
        Bench::new("tlbflush", format!("tlbflush/{name}/refill"))
            .param("cpl", cpl)
            .param("pages", pages)
            .extra("flush", flush_what)
            .extra("unit_note", "extra cycles per page of a random one-line-per-page chase over a 4K-mapped (scattered) buffer: after the flush minus after a no-op gate call")
            .extra("chase_after_flush_median", med(&mut flushed))
            .extra("chase_baseline_median", med(&mut baseline))
            .emit_cycles_f64(&mut d);
    }
    core::hint::black_box(p);
    drop(page_addrs);
    buf.free();
}

// ---- map ----------------------------------------------------------------------------------

pub fn map_suite(cfg: &MapSuite) {
    let features = cpuid::features();
    let cpl = run_cpl();
    let ovh = timing::timer_overhead();
    for &size in &cfg.sizes {
        let mut leaves = vec![Leaf::K4, Leaf::M2];
        if size >= 1 << 30 {
            leaves.push(Leaf::G1);
        }
        for leaf in leaves {
            let label = size_label(size);
            let names = [
                format!("map/{}/{label}", leaf_label(leaf)),
                format!("unmap/{}/{label}", leaf_label(leaf)),
            ];
            let status = |st: BenchStatus, msg: &str| {
                for n in &names {
                    Bench::new("map", n.clone())
                        .param("bytes", size)
                        .param("leaf", leaf_label(leaf))
                        .emit_status(st, msg);
                }
            };
            if leaf == Leaf::G1 && !features.page_1g {
                status(
                    BenchStatus::Unsupported,
                    "1 GiB pages not offered: CPUID 0x80000001 EDX bit 26 (pdpe1gb) is 0",
                );
                continue;
            }
            if size % leaf.bytes() != 0 {
                status(
                    BenchStatus::Unsupported,
                    "size is not a multiple of the leaf size",
                );
                continue;
            }
            let order: u8 = if leaf == Leaf::G1 {
                18
            } else {
                9.min(size.trailing_zeros() as u8 - 12)
            };
            if size > available_bytes() {
                status(BenchStatus::Oom, "not enough free RAM");
                continue;
            }
            let blocks = window::alloc_blocks(size, order);
            if (blocks.len() as u64) * (PAGE << order) < size {
                window::free_blocks(&blocks);
                status(
                    BenchStatus::Oom,
                    &format!("not enough free order-{order} blocks"),
                );
                continue;
            }
            let nleaves = size / leaf.bytes();
            let mut window = BenchWindow::open();
            let base = window.base();
            let mut map_s: Vec<u64> = Vec::new();
            let mut unmap_s: Vec<u64> = Vec::new();
            let mut tables = 0u64;
            let mut failed: Option<&'static str> = None;
            for _ in 0..cfg.samples.max(1) {
                let t0 = window::table_pages();
                let a = tsc::start();
                let r = window.map_blocks(&blocks, leaf);
                let z = tsc::stop();
                tables = window::table_pages() - t0;
                if let Err(e) = r {
                    failed = Some(e);
                    break;
                }
                if leaf == Leaf::G1
                    && map_s.is_empty()
                    && crate::arch::idt::probe_read(base).is_err()
                {
                    failed = Some(G1_FAULTS);
                    break;
                }
                map_s.push((z - a).saturating_sub(ovh));
                // Use the mapping the way a caller would: touch every leaf (untimed).
                let mut off = 0;
                while off < size {
                    // SAFETY: just mapped, writable, owned by this suite.
                    unsafe { ((base + off) as *mut u64).write_volatile(off) };
                    off += leaf.bytes();
                }
                let a = tsc::start();
                window.unmap_leaves(size, leaf);
                let z = tsc::stop();
                unmap_s.push((z - a).saturating_sub(ovh));
                window.clear();
            }
            drop(window);
            window::free_blocks(&blocks);
            if let Some(e) = failed {
                status(
                    if e == G1_FAULTS {
                        BenchStatus::Unsupported
                    } else {
                        BenchStatus::Error
                    },
                    e,
                );
                continue;
            }
            let per = |v: &[u64]| {
                let mut w = v.to_vec();
                w.sort_unstable();
                w[w.len() / 2] as f64 / nleaves as f64
            };
            let (pm, pu) = (per(&map_s), per(&unmap_s));
            let note = if is_pvm() {
                "CPL3 under a shadow-paging hypervisor (CS reads 0x33, kvm_pvm): writes into live page tables trap (~6,500 cycles each); new tables are not yet shadowed"
            } else {
                "native PTE writes"
            };
            Bench::new("map", names[0].clone())
                .param("bytes", size)
                .param("leaf", leaf_label(leaf))
                .param("leaves", nleaves)
                .param("cpl", cpl)
                .extra("per_leaf_cycles", pm)
                .extra("table_pages_allocated", tables)
                .extra("what", "map_leaf per leaf into an empty benchmark window (new table pages from the buddy, zeroed by the mapper); no TLB flush (none needed for new entries)")
                .extra("hypervisor_note", note)
                .emit_cycles(&mut map_s);
            Bench::new("map", names[1].clone())
                .param("bytes", size)
                .param("leaf", leaf_label(leaf))
                .param("leaves", nleaves)
                .param("cpl", cpl)
                .extra("per_leaf_cycles", pu)
                .extra("what", "unmap_leaf per leaf (after every leaf was touched) then one full TLB flush (CR3 reload; through the gate at CPL3); table pages are freed afterwards, untimed")
                .extra("flush", "cr3 reload")
                .extra("hypervisor_note", note)
                .emit_cycles(&mut unmap_s);
        }
    }
}
