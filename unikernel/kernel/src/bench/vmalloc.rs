//! The `vmalloc` suite: vmalloc+vfree pairs per size and flush mode, each split into
//! phases that add up to the pair exactly; the same pair without an exit in the loop
//! (`vmalloc/warm/…`); lazy mode across many purges (`vmalloc/lazy_amortized/…`);
//! `vmalloc_huge` with the leaf size checked by a page-table walk; then Linux's
//! `lib/test_vmalloc.c` cases (`test_vmalloc.rs`).
//!
//! # One sample
//! A serialized timestamp at the call, one at each [`Phase`] mark inside vmalloc/vfree and
//! one at the return: eleven consecutive intervals (five in vmalloc, six in vfree). Each
//! interval contains one timestamp's own cost, so the timer's mean overhead
//! (`timing::overhead`) is subtracted once per interval — the same treatment for every
//! phase and for the pair, which is the sum of the phases (exactly, per sample). Between
//! vmalloc and vfree, outside the timed regions, the default pair touches the first byte
//! like test_vmalloc does; under a shadow-paging hypervisor that first touch is a page
//! fault handled by the hypervisor (an exit), which leaves the TLB cold for the vfree.
use crate::arch::{privileged, tsc};
use crate::mm;
use crate::report::Bench;
use crate::timing;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use kmbench_mm::{Phase, GFP_KERNEL};
use kmbench_protocol::PageSize;
use kmbench_protocol::{BenchStatus, FlushMode, GuestPlan, VmallocSuite};

/// What a sample's time is split into. Index = position in [`PARTS`].
const BOOKKEEPING: usize = 0;
const PAGE_ALLOC: usize = 1;
const PTE_WRITES: usize = 2;
const TLB_FLUSH: usize = 3;
const REMAINDER: usize = 4;

/// (name, what it contains, timed intervals it sums).
const PARTS: [(&str, &str, u32); 5] = [
    ("bookkeeping", "area search and registration on vmalloc; lookup, removal, range release (or lazy queueing) and the descriptor's drop on vfree (no page-table writes, no frames)", 4),
    ("page_alloc", "frames from the buddy on vmalloc, back to it on vfree", 2),
    ("pte_writes", "leaf writes into the live page tables on vmalloc, clears on vfree", 2),
    ("tlb_flush", "TLB invalidation on vfree: INVLPG batch or CR3 reload; lazy: queueing, and the purge when the queue goes over the threshold", 1),
    ("remainder", "from the last mark to the return of vmalloc and of vfree (call/return, the closing timestamp)", 2),
];

/// Stamp slots: 0 call of vmalloc, 1-4 its marks, 5 return; 6 call of vfree, 7-11 its
/// marks, 12 return.
const SLOTS: usize = 13;
/// The eleven timed intervals: (first slot, part). Slot 5→6 (the touch) is not timed.
const INTERVALS: [(usize, usize); 11] = [
    (0, BOOKKEEPING),
    (1, PAGE_ALLOC),
    (2, PTE_WRITES),
    (3, BOOKKEEPING),
    (4, REMAINDER),
    (6, BOOKKEEPING),
    (7, PTE_WRITES),
    (8, TLB_FLUSH),
    (9, PAGE_ALLOC),
    (10, BOOKKEEPING),
    (11, REMAINDER),
];

#[derive(Clone, Copy, Default)]
struct Stamps {
    t: [u64; SLOTS],
    seen: u16,
}

impl Stamps {
    #[inline(always)]
    fn mark(&mut self, p: Phase) {
        let i = p.index();
        let slot = if i < 4 { 1 + i } else { 3 + i };
        self.t[slot] = tsc::start();
        self.seen |= 1 << i;
    }
    /// Every mark seen and the stamps in order: then the intervals tile both timed regions.
    fn complete(&self) -> bool {
        self.seen == (1 << Phase::ALL.len()) - 1
            && self.t[..=5].windows(2).all(|w| w[0] <= w[1])
            && self.t[6..].windows(2).all(|w| w[0] <= w[1])
    }
}

/// One pair, overhead-corrected: `pair == Σ parts == alloc + free`.
#[derive(Clone, Copy)]
struct Sample {
    parts: [f64; 5],
    alloc: f64,
    free: f64,
    pair: f64,
    /// This vfree ran a lazy purge.
    purged: bool,
}

impl Sample {
    fn from_stamps(st: &Stamps, ovh: f64, purged: bool) -> Sample {
        let mut parts = [0.0; 5];
        let (mut alloc, mut free) = (0.0, 0.0);
        for &(j, part) in &INTERVALS {
            let v = (st.t[j + 1] - st.t[j]) as f64 - ovh;
            parts[part] += v;
            if j < 5 {
                alloc += v
            } else {
                free += v
            }
        }
        Sample {
            parts,
            alloc,
            free,
            pair: parts.iter().sum(),
            purged,
        }
    }
}

/// Why a pair could not be timed.
enum PairError {
    Oom,
    /// A phase mark was missing or out of order (a bug in the instrumentation).
    Incomplete,
}

/// PageSize the page-table walk finds at `virt`.
fn walked_leaf(virt: u64) -> Option<PageSize> {
    mm::with(|m| m.pt.translate(virt)).map(|(_, l, _)| l)
}

/// One vmalloc+vfree pair timed in phases; `touch` writes the first byte in between.
/// Returns the sample and, for huge requests, the leaf the walk found.
fn pair_once(
    size: usize,
    huge: bool,
    touch: bool,
) -> Result<(Sample, Option<PageSize>), PairError> {
    if !mm::prepare_vmalloc(size) {
        return Err(PairError::Oom);
    }
    let ovh = timing::overhead();
    let mut st = Stamps::default();
    let purges0 = mm::with(|m| m.vmalloc.stats().purges);
    let p = mm::with(|m| {
        st.t[0] = tsc::start();
        let p = m.vmalloc.vmalloc_phased(
            &mut m.pages,
            &mut m.pt,
            size,
            4096,
            GFP_KERNEL,
            huge,
            &mut |ph| st.mark(ph),
        );
        st.t[5] = tsc::stop();
        p
    });
    if p.is_null() {
        return Err(PairError::Oom);
    }
    let leaf = if huge { walked_leaf(p as u64) } else { None };
    if touch {
        // SAFETY: p is the start of a fresh area of `size` bytes; touch its first byte
        // like test_vmalloc does (outside the timed regions).
        unsafe { p.write_volatile(1) };
    }
    let r = mm::with(|m| {
        st.t[6] = tsc::start();
        let r = m
            .vmalloc
            .vfree_phased(&mut m.pages, &mut m.pt, p, &mut |ph| st.mark(ph));
        st.t[12] = tsc::stop();
        r
    });
    if let Err(e) = r {
        mm::misuse("vfree", e)
    }
    let purged = mm::with(|m| m.vmalloc.stats().purges) > purges0;
    if !st.complete() {
        return Err(PairError::Incomplete);
    }
    Ok((Sample::from_stamps(&st, ovh, purged), leaf))
}

/// Running at CPL3 under kvm_pvm (CS reads 0x33 there; the kernel's user CS is 0x23).
fn is_pvm() -> bool {
    privileged::current_cpl() == 3 && privileged::current_cs() == 0x33
}

/// The median exactly as the records' summaries compute it.
fn median(v: &[f64]) -> f64 {
    kmbench_protocol::Summary::from_f64(&mut v.to_vec()).map_or(0.0, |s| s.median)
}

/// Exits in one pair's loop, by flush mode and CPL (what `extra.exits` says).
fn exits_note(mode: FlushMode, touch: bool) -> String {
    let cpl = privileged::run_cpl();
    let flush = match (mode, cpl) {
        (FlushMode::Lazy, _) => "no flush exit (lazy: none until a purge)",
        (_, 3) => "one int3 gate call per vfree for the flush (an exit under kvm_pvm)",
        _ => "the flush instruction at CPL0 (emulated, an exit, under kvm_pvm; native on hardware KVM)",
    };
    let touch = if touch {
        "first touch of the new page before vfree (a shadow page fault under shadow paging; none with hardware EPT/NPT)"
    } else {
        "no touch"
    };
    format!("{touch}; {flush}")
}

/// Samples of one (size, mode, touch) set, and what is known about them.
struct Set {
    size: usize,
    mode: FlushMode,
    huge: bool,
    touch: bool,
    samples: Vec<Sample>,
    /// Phase-check failures (samples dropped).
    incomplete: u32,
    /// Leaves the walk found (huge only): 2M, 4K.
    leaves: [u32; 2],
}

fn collect(
    cfg: &VmallocSuite,
    size: usize,
    mode: FlushMode,
    huge: bool,
    touch: bool,
) -> Result<Set, ()> {
    let pages = (size / 4096).max(1) as u32;
    // Big areas are slow (every PTE write may trap under a shadow-paging hypervisor).
    let samples = (cfg.samples / (pages / 64).max(1)).max(10);
    let warmup = cfg.warmup.min(samples);
    let mut set = Set {
        size,
        mode,
        huge,
        touch,
        samples: Vec::with_capacity(samples as usize),
        incomplete: 0,
        leaves: [0; 2],
    };
    for i in 0..samples + warmup {
        match pair_once(size, huge, touch) {
            Ok((s, leaf)) if i >= warmup => {
                set.samples.push(s);
                match leaf {
                    Some(PageSize::Size2M) => set.leaves[0] += 1,
                    Some(_) => set.leaves[1] += 1,
                    None => {}
                }
            }
            Ok(_) => {}
            Err(PairError::Incomplete) => set.incomplete += 1,
            Err(PairError::Oom) => return Err(()),
        }
    }
    Ok(set)
}

fn base<'a>(name: String, set: &Set, dbg: bool) -> Bench<'a> {
    super::alloc::bench("vmalloc", name, dbg)
        .param("size", set.size)
        .param("pages", (set.size / 4096).max(1))
        .param("flush_mode", set.mode.label())
        .param("huge", set.huge)
        .param("touch", set.touch)
        .extra("exits", exits_note(set.mode, set.touch))
        .extra(
            "phase_check",
            serde_json::json!({
                "samples": set.samples.len(),
                "dropped_incomplete": set.incomplete,
                "rule": "per sample: pair = Σ phases = alloc + free; each of the 11 intervals minus one mean timer overhead",
            }),
        )
        .extra(
            "purges_in_samples",
            set.samples.iter().filter(|s| s.purged).count(),
        )
}

/// Emit pair/alloc/free and the phases of a set under `prefix` (`vmalloc`,
/// `vmalloc/warm`, `vmalloc_huge`); `only` limits the phases emitted.
fn emit_set(
    prefix: &str,
    set: &Set,
    dbg: bool,
    extra: &[(&str, serde_json::Value)],
    only: &[usize],
) {
    let suffix = format!("{}/{}", set.size, set.mode.label());
    let col = |f: &dyn Fn(&Sample) -> f64| -> Vec<f64> { set.samples.iter().map(f).collect() };
    let with_extra = |mut b: Bench<'static>| {
        for (k, v) in extra {
            b = b.extra(k, v.clone());
        }
        b
    };
    let ovh = timing::overhead();
    with_extra(base(format!("{prefix}/pair/{suffix}"), set, dbg))
        .extra("overhead_subtracted", 11.0 * ovh)
        .emit_cycles_f64(&mut col(&|s| s.pair));
    if only.len() == PARTS.len() {
        with_extra(base(format!("{prefix}/alloc/{suffix}"), set, dbg))
            .extra("overhead_subtracted", 5.0 * ovh)
            .emit_cycles_f64(&mut col(&|s| s.alloc));
        with_extra(base(format!("{prefix}/free/{suffix}"), set, dbg))
            .extra("overhead_subtracted", 6.0 * ovh)
            .emit_cycles_f64(&mut col(&|s| s.free));
    }
    for &i in only {
        let (name, what, intervals) = PARTS[i];
        with_extra(base(format!("{prefix}/phase/{suffix}/{name}"), set, dbg))
            .extra("what", what)
            .extra("intervals", intervals)
            .extra("overhead_subtracted", intervals as f64 * ovh)
            .emit_cycles_f64(&mut col(&|s| s.parts[i]));
    }
}

fn oom(name: String, size: usize, dbg: bool) {
    super::alloc::bench("vmalloc", name, dbg)
        .param("size", size)
        .emit_status(BenchStatus::Oom, "vmalloc returned NULL");
}

fn set_mode(mode: FlushMode) {
    mm::with(|m| {
        m.vmalloc.purge_lazy(&mut m.pt);
        m.vmalloc.set_flush_mode(mode);
    });
}

pub fn vmalloc_suite(cfg: &VmallocSuite, plan: &GuestPlan) {
    let dbg = plan.mm_debug;
    let original = mm::with(|m| m.vmalloc.flush_mode());
    for &size in &cfg.sizes {
        let size = size as usize;
        let mut sets = Vec::new();
        for &mode in &cfg.flush_modes {
            set_mode(mode);
            match collect(cfg, size, mode, false, true) {
                Ok(s) => sets.push(s),
                Err(()) => oom(format!("vmalloc/pair/{size}/{}", mode.label()), size, dbg),
            }
        }
        // The same PTE-write code in every mode: what a mode adds on top of lazy's comes
        // from what its flush left behind (under shadow paging: a trap per PTE write after
        // each CR3 reload / INVLPG).
        let lazy_pte = sets.iter().find(|s| s.mode == FlushMode::Lazy).map(|s| {
            median(
                &s.samples
                    .iter()
                    .filter(|x| !x.purged)
                    .map(|x| x.parts[PTE_WRITES])
                    .collect::<Vec<_>>(),
            )
        });
        for set in &sets {
            let mut extra = Vec::new();
            if let (Some(lazy), false) = (lazy_pte, set.mode == FlushMode::Lazy) {
                let ratio = median(
                    &set.samples
                        .iter()
                        .map(|x| x.parts[PTE_WRITES])
                        .collect::<Vec<_>>(),
                ) / lazy.max(1.0);
                let dominated = is_pvm() && ratio > 4.0;
                extra.push(("pte_writes_vs_lazy", serde_json::json!(ratio)));
                extra.push(("hypervisor_dominated", serde_json::json!(dominated)));
                if dominated {
                    extra.push(("hypervisor_note", serde_json::json!(format!(
                        "pte_writes is {ratio:.1}x the lazy mode's: after each flush the shadow-paging hypervisor (kvm_pvm) write-protects the page tables again, so the next PTE writes trap; this mode's cost is mostly the hypervisor's"
                    ))));
                }
            }
            if set.mode == FlushMode::Lazy {
                let pending_max = cfg.samples as u64 * (size as u64 / 4096).max(1);
                extra.push(("lazy_note", serde_json::json!(format!(
                    "{} purge(s) in these samples (at most {} pages freed against a threshold of {}): the deferred flush is mostly outside these numbers; see vmalloc/lazy_amortized",
                    set.samples.iter().filter(|s| s.purged).count(),
                    pending_max,
                    mm::with(|m| m.vmalloc.lazy_max_pages()),
                ))));
            }
            emit_set("vmalloc", set, dbg, &extra, &[0, 1, 2, 3, 4]);
        }
        if cfg.exit_effect_sizes.contains(&(size as u64)) {
            for &mode in &cfg.flush_modes {
                set_mode(mode);
                match collect(cfg, size, mode, false, false) {
                    Ok(set) => emit_set(
                        "vmalloc/warm",
                        &set,
                        dbg,
                        &[("counterpart", serde_json::json!(format!("vmalloc/pair/{size}/{} (same pair, first byte touched between vmalloc and vfree)", mode.label())))],
                        &[BOOKKEEPING, PTE_WRITES],
                    ),
                    Err(()) => oom(format!("vmalloc/warm/pair/{size}/{}", mode.label()), size, dbg),
                }
            }
        }
    }
    set_mode(plan.flush_mode);
    for &size in &cfg.huge_sizes {
        vmalloc_huge(cfg, size as usize, plan.flush_mode, dbg);
    }
    for &size in &cfg.lazy_amortized_sizes {
        lazy_amortized(cfg, size as usize, dbg);
    }
    set_mode(plan.flush_mode);
    if cfg.test_vmalloc {
        super::test_vmalloc::run(cfg, plan);
    }
    mm::with(|m| {
        m.vmalloc.purge_lazy(&mut m.pt);
        m.vmalloc.set_flush_mode(original);
    });
}

/// `vmalloc_huge/…`: the leaf size is what a page-table walk finds after each vmalloc;
/// any 4K leaf turns the records into an error naming the fallback's reason.
fn vmalloc_huge(cfg: &VmallocSuite, size: usize, mode: FlushMode, dbg: bool) {
    let set = match collect(cfg, size, mode, true, true) {
        Ok(s) => s,
        Err(()) => {
            return oom(
                format!("vmalloc_huge/pair/{size}/{}", mode.label()),
                size,
                dbg,
            )
        }
    };
    let [m2, k4] = set.leaves;
    if k4 > 0 || m2 == 0 {
        let why = mm::with(|m| m.vmalloc.stats().last_huge_fallback)
            .map_or("the request is below 2 MiB", |f| f.describe());
        return base(
            format!("vmalloc_huge/pair/{size}/{}", mode.label()),
            &set,
            dbg,
        )
        .extra("leaf_walked", serde_json::json!({"2M": m2, "4K": k4}))
        .emit_status(
            BenchStatus::Error,
            &format!(
                "vmalloc_huge got 4K leaves in {k4} of {} samples (page-table walk): {why}",
                m2 + k4
            ),
        );
    }
    let freed = mm::with(|m| m.pt.pte_tables_freed);
    let pte: f64 = set.samples.iter().map(|s| s.parts[PTE_WRITES]).sum();
    let all: f64 = set.samples.iter().map(|s| s.pair).sum();
    let share = if all > 0.0 { pte / all } else { 0.0 };
    let dominated = is_pvm() && share > 0.5;
    let mut extra = alloc::vec![
        ("leaf_walked", serde_json::json!({"2M": m2, "4K": k4})),
        ("pte_tables_freed_so_far", serde_json::json!(freed)),
        ("pte_writes_share", serde_json::json!(share)),
        ("hypervisor_dominated", serde_json::json!(dominated)),
    ];
    if dominated {
        extra.push(("hypervisor_note", serde_json::json!(
            "a 2 MiB leaf is a PD-entry write; KVM's shadow MMU keeps upper-level page tables write-protected, so each map and unmap traps into the hypervisor"
        )));
    }
    emit_set("vmalloc_huge", &set, dbg, &extra, &[0, 1, 2, 3, 4]);
}

/// `vmalloc/lazy_amortized/<size>/pair|purge`: lazy mode across the purge threshold
/// `lazy_purges` times. The pair distribution includes the purging pairs, so its mean is
/// the amortized cost; `purge` is the tlb_flush phase of the pairs that purged (one full
/// flush and the return of every pending range).
fn lazy_amortized(cfg: &VmallocSuite, size: usize, dbg: bool) {
    set_mode(FlushMode::Lazy);
    let threshold = mm::with(|m| m.vmalloc.lazy_max_pages());
    let pages = (size as u64 / 4096).max(1);
    let per_purge = threshold / pages + 1;
    let pairs = per_purge * cfg.lazy_purges.max(1) as u64;
    for _ in 0..cfg.warmup {
        if pair_once(size, false, true).is_err() {
            return oom(format!("vmalloc/lazy_amortized/{size}/pair"), size, dbg);
        }
    }
    set_mode(FlushMode::Lazy); // start with an empty queue
    let purges0 = mm::with(|m| m.vmalloc.stats().purges);
    let mut pair = Vec::with_capacity(pairs as usize);
    let mut purge = Vec::new();
    let mut purging_pairs_total = 0.0;
    // Mean pair cost of each purge cycle (the pairs up to and including a purge).
    let mut cycles = Vec::new();
    let (mut cycle_sum, mut cycle_n) = (0.0, 0u32);
    let mut incomplete = 0u32;
    for _ in 0..pairs {
        match pair_once(size, false, true) {
            Ok((s, _)) => {
                pair.push(s.pair);
                cycle_sum += s.pair;
                cycle_n += 1;
                if s.purged {
                    purge.push(s.parts[TLB_FLUSH]);
                    purging_pairs_total += s.pair;
                    cycles.push(cycle_sum / cycle_n as f64);
                    (cycle_sum, cycle_n) = (0.0, 0);
                }
            }
            Err(PairError::Incomplete) => incomplete += 1,
            Err(PairError::Oom) => {
                return oom(format!("vmalloc/lazy_amortized/{size}/pair"), size, dbg)
            }
        }
    }
    let purges = mm::with(|m| m.vmalloc.stats().purges) - purges0;
    let total: f64 = pair.iter().sum();
    let purge_total: f64 = purge.iter().sum();
    let n = pair.len().max(1) as f64;
    let b = |name: &str| {
        super::alloc::bench(
            "vmalloc",
            format!("vmalloc/lazy_amortized/{size}/{name}"),
            dbg,
        )
        .param("size", size)
        .param("pages", pages)
        .param("flush_mode", "lazy")
        .param("lazy_max_pages", threshold)
        .param("pairs", pairs)
        .param("touch", true)
        .extra("purges", purges)
        .extra("pairs_per_purge", per_purge)
        .extra("dropped_incomplete", incomplete)
    };
    b("pair")
        .extra("amortized_mean", total / n)
        .extra(
            "mean_without_purging_pairs",
            (total - purging_pairs_total) / (n - purge.len() as f64).max(1.0),
        )
        .extra("purge_share", if total > 0.0 { purge_total / total } else { 0.0 })
        .extra("what", "vmalloc+vfree pairs in lazy mode over enough pairs to cross the purge threshold `purges` times; the mean is the amortized cost including the deferred flushes")
        .emit_cycles_f64(&mut pair);
    if cycles.is_empty() {
        b("per_cycle").emit_status(BenchStatus::Error, "no purge happened");
    } else {
        b("per_cycle")
            .extra("what", "mean pair cost of each purge cycle (the pairs from one purge up to and including the next): one amortized cost per cycle, so a host interruption in one cycle moves one sample, not the median")
            .emit_cycles_f64(&mut cycles);
    }
    if purge.is_empty() {
        b("purge").emit_status(BenchStatus::Error, "no purge happened");
    } else {
        b("purge")
            .extra("what", "tlb_flush phase of the vfree that purged: one full TLB flush and the return of every pending range to the free pool")
            .emit_cycles_f64(&mut purge);
    }
}
