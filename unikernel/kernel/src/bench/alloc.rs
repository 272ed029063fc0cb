//! Allocation microbenchmarks: `kmalloc`, `pages`, `vmalloc` (+ Linux's test_vmalloc
//! cases), `stack_vs_heap`, `talc_vs_slab`.
//!
//! Timing rule: an operation that costs about as much as the timer itself (kmalloc fast
//! path, order-0 pages) is timed in batches and reported per op (N ops / N); anything
//! slower is timed one op per sample. The empty start/stop cost (`timer/serialized`) is
//! subtracted either way and stated in each record's `extra.timer_overhead`.
use crate::arch::tsc;
use crate::mm;
use crate::report::Bench;
use crate::timing;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::hint::black_box;
use kmbench_mm::{Gfp, Phase, GFP_KERNEL, MAX_ORDER};
use kmbench_protocol::{
    BenchStatus, FlushMode, GuestPlan, KmallocSuite, PagesSuite, StackVsHeapSuite, TalcVsSlabSuite,
    VmallocSuite,
};

/// Deterministic xorshift64* for workloads with a fixed seed.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Calls per timed batch for alloc+free pairs. Even kmalloc_large and high-order pairs cost
/// only tens of cycles, comparable to the timer itself (and to the TSC's 26-cycle
/// granularity seen under kvm_pvm), so every pair benchmark is batched.
const PAIR_BATCH: u32 = 32;

fn bench<'a>(suite: &'a str, name: String, plan_debug: bool) -> Bench<'a> {
    Bench::new(suite, name)
        .param("cpl", crate::arch::privileged::run_cpl())
        .param("mm_debug", plan_debug)
        .extra("timer_overhead", timing::timer_overhead())
}

// ---- kmalloc ----------------------------------------------------------------------

pub fn kmalloc_suite(cfg: &KmallocSuite, plan: &GuestPlan) {
    let dbg = plan.mm_debug;
    for &size in &cfg.sizes {
        let size = size as usize;
        let cheap = size <= 8192;
        let b = PAIR_BATCH;
        let mut oom = false;
        let mut s = timing::batched(cfg.samples, cfg.warmup, b, || {
            let p = mm::kmalloc(size, GFP_KERNEL);
            if p.is_null() {
                oom = true;
                return;
            }
            black_box(p);
            mm::kfree(p);
        });
        let r = bench("kmalloc", format!("kmalloc/pair/{size}"), dbg)
            .param("size", size)
            .param("batch", b)
            .extra(
                "path",
                if cheap {
                    "slab"
                } else {
                    "page allocator (kmalloc_large)"
                },
            );
        if oom {
            r.emit_status(BenchStatus::Oom, "kmalloc returned NULL")
        } else {
            r.emit_cycles_f64(&mut s)
        }
    }
    for &size in &cfg.n_sizes {
        alloc_n_free_n(cfg, size as usize, dbg);
    }
    for &size in &cfg.kzalloc_sizes {
        let size = size as usize;
        let b = PAIR_BATCH;
        let mut oom = false;
        let mut s = timing::batched(cfg.samples, cfg.warmup, b, || {
            let p = mm::kzalloc(size, GFP_KERNEL);
            if p.is_null() {
                oom = true;
                return;
            }
            black_box(p);
            mm::kfree(p);
        });
        let r = bench("kmalloc", format!("kzalloc/pair/{size}"), dbg)
            .param("size", size)
            .param("batch", b);
        if oom {
            r.emit_status(BenchStatus::Oom, "kzalloc returned NULL")
        } else {
            r.emit_cycles_f64(&mut s)
        }
    }
    if cfg.mixed_ops > 0 {
        mixed(cfg, plan);
    }
}

/// slab_test's pattern: N allocations, then N frees; cost per op of each half.
fn alloc_n_free_n(cfg: &KmallocSuite, size: usize, dbg: bool) {
    let n = cfg.n.max(1) as usize;
    let rounds = (cfg.samples / 100).max(5);
    let ovh = timing::timer_overhead() as f64;
    let mut ptrs: Vec<*mut u8> = Vec::new();
    if ptrs.try_reserve_exact(n).is_err() {
        bench("kmalloc", format!("kmalloc/alloc_n/{size}"), dbg)
            .param("size", size)
            .param("n", n)
            .emit_status(BenchStatus::Oom, "no memory for the pointer array of n objects");
        return;
    }
    let (mut alloc_s, mut free_s) = (Vec::new(), Vec::new());
    for round in 0..rounds + 1 {
        let a = tsc::start();
        for _ in 0..n {
            ptrs.push(mm::kmalloc(size, GFP_KERNEL));
        }
        let b = tsc::stop();
        if ptrs.iter().any(|p| p.is_null()) {
            for &p in &ptrs {
                mm::kfree(p);
            }
            bench("kmalloc", format!("kmalloc/alloc_n/{size}"), dbg)
                .emit_status(BenchStatus::Oom, "kmalloc returned NULL");
            return;
        }
        let c = tsc::start();
        for &p in &ptrs {
            mm::kfree(p);
        }
        let d = tsc::stop();
        ptrs.clear();
        if round > 0 {
            // round 0 is the warm-up (slabs come from the buddy the first time)
            alloc_s.push(((b - a) as f64 - ovh) / n as f64);
            free_s.push(((d - c) as f64 - ovh) / n as f64);
        }
    }
    bench("kmalloc", format!("kmalloc/alloc_n/{size}"), dbg)
        .param("size", size)
        .param("n", n)
        .extra("pattern", "slab_test: N kmalloc then N kfree, per op")
        .emit_cycles_f64(&mut alloc_s);
    bench("kmalloc", format!("kmalloc/free_n/{size}"), dbg)
        .param("size", size)
        .param("n", n)
        .extra("pattern", "slab_test: N kmalloc then N kfree, per op")
        .emit_cycles_f64(&mut free_s);
}

/// Random sizes (8 B … 8 KiB, log-uniform), random interleaving of alloc and free
/// over a pool of up to 1,024 live objects; per-op cost over chunks of 1,000 ops.
fn mixed(cfg: &KmallocSuite, plan: &GuestPlan) {
    let mut rng = Rng::new(plan.seed);
    let mut live: Vec<*mut u8> = Vec::with_capacity(1024);
    let chunk = 1000u32;
    let chunks = (cfg.mixed_ops / chunk).max(1);
    let ovh = timing::timer_overhead() as f64;
    // Pre-draw the operations so the RNG is outside the timed region.
    let mut s = Vec::with_capacity(chunks as usize);
    let mut ops: Vec<(bool, usize, usize)> = Vec::with_capacity(chunk as usize);
    for _ in 0..chunks {
        ops.clear();
        let mut n_live = live.len();
        for _ in 0..chunk {
            let alloc = n_live == 0 || (n_live < 1024 && rng.below(2) == 0);
            let size = 8usize << rng.below(11);
            let size = size + rng.below(size as u64) as usize / 2;
            let idx = if n_live == 0 {
                0
            } else {
                rng.below(n_live as u64) as usize
            };
            ops.push((alloc, size.min(8192), idx));
            if alloc {
                n_live += 1
            } else {
                n_live -= 1
            }
        }
        let a = tsc::start();
        for &(alloc, size, idx) in &ops {
            if alloc {
                live.push(mm::kmalloc(size, GFP_KERNEL));
            } else {
                let p = live.swap_remove(idx);
                mm::kfree(p);
            }
        }
        let b = tsc::stop();
        s.push(((b - a) as f64 - ovh) / chunk as f64);
    }
    for p in live {
        mm::kfree(p);
    }
    bench("kmalloc", "kmalloc/mixed".to_string(), plan.mm_debug)
        .param("ops", chunks * chunk)
        .param("seed", plan.seed)
        .extra(
            "pattern",
            "random sizes 8 B-8 KiB, random alloc/free over ≤1024 live objects; per op",
        )
        .emit_cycles_f64(&mut s);
}

// ---- pages ------------------------------------------------------------------------

pub fn pages_suite(cfg: &PagesSuite) {
    let dbg = mm::mm_debug();
    for &order in &cfg.orders {
        if order > MAX_ORDER {
            bench("pages", format!("alloc_pages/pair/{order}"), dbg)
                .emit_status(BenchStatus::Error, "order above MAX_ORDER (18)");
            continue;
        }
        let before = mm::with(|m| m.pages.buddy.stats());
        let b = PAIR_BATCH;
        let mut oom = false;
        let mut s = timing::batched(cfg.samples, cfg.warmup, b, || {
            match mm::alloc_pages(order, Gfp(0)) {
                Some(p) => mm::free_pages(black_box(p.as_ptr()), order),
                None => oom = true,
            }
        });
        let after = mm::with(|m| m.pages.buddy.stats());
        let ops = ((cfg.samples + cfg.warmup) * b) as f64;
        let r = bench("pages", format!("alloc_pages/pair/{order}"), dbg)
            .param("order", order)
            .param("bytes", 4096u64 << order)
            .param("batch", b)
            .extra("splits_per_op", (after.splits - before.splits) as f64 / ops)
            .extra("merges_per_op", (after.merges - before.merges) as f64 / ops);
        if oom {
            r.emit_status(BenchStatus::Oom, "no free block of this order")
        } else {
            r.emit_cycles_f64(&mut s)
        }
        alloc_n_pages(cfg, order, dbg);
    }
}

fn alloc_n_pages(cfg: &PagesSuite, order: u8, dbg: bool) {
    let free_blocks = mm::nr_free_pages() >> order;
    let n = (cfg.n as u64).min(free_blocks / 2) as usize;
    if n == 0 {
        bench("pages", format!("alloc_pages/alloc_n/{order}"), dbg)
            .emit_status(BenchStatus::Oom, "not enough free memory");
        return;
    }
    let rounds = (cfg.samples / 100).max(5);
    let ovh = timing::timer_overhead() as f64;
    let mut held = Vec::with_capacity(n);
    let (mut a_s, mut f_s) = (Vec::new(), Vec::new());
    let before = mm::with(|m| m.pages.buddy.stats());
    for round in 0..=rounds {
        let a = tsc::start();
        for _ in 0..n {
            held.push(mm::alloc_pages(order, Gfp(0)));
        }
        let b = tsc::stop();
        let c = tsc::start();
        for p in held.drain(..).flatten() {
            mm::free_pages(p.as_ptr(), order);
        }
        let d = tsc::stop();
        if round > 0 {
            a_s.push(((b - a) as f64 - ovh) / n as f64);
            f_s.push(((d - c) as f64 - ovh) / n as f64);
        }
    }
    let after = mm::with(|m| m.pages.buddy.stats());
    let ops = (n as u64 * (rounds as u64 + 1)) as f64;
    bench("pages", format!("alloc_pages/alloc_n/{order}"), dbg)
        .param("order", order)
        .param("n", n)
        .extra("splits_per_op", (after.splits - before.splits) as f64 / ops)
        .emit_cycles_f64(&mut a_s);
    bench("pages", format!("alloc_pages/free_n/{order}"), dbg)
        .param("order", order)
        .param("n", n)
        .extra("merges_per_op", (after.merges - before.merges) as f64 / ops)
        .emit_cycles_f64(&mut f_s);
}

// ---- vmalloc ----------------------------------------------------------------------

/// TSC stamps at vmalloc's phase boundaries.
#[derive(Default, Clone, Copy)]
struct Stamps {
    t: [u64; 5],
}

impl Stamps {
    fn mark(&mut self, p: Phase) {
        let i = match p {
            Phase::Reserved => 0,
            Phase::Mapped => 1,
            Phase::Unmapped => 2,
            Phase::Flushed => 3,
            Phase::Released => 4,
        };
        self.t[i] = tsc::rdtsc();
    }
}

/// One vmalloc + vfree, timed in phases. Returns None on OOM.
struct VmallocSample {
    alloc: u64,
    free: u64,
    bookkeeping: u64,
    pte_writes: u64,
    flush: u64,
}

fn vmalloc_once(size: usize, align: u64, huge: bool) -> Option<VmallocSample> {
    if !mm::prepare_vmalloc(size) {
        return None;
    }
    let mut st = Stamps::default();
    let (t0, t1, t2, t3) = mm::with(|m| {
        let t0 = tsc::start();
        let p = m.vmalloc.vmalloc_phased(
            &mut m.pages,
            &mut m.pt,
            size,
            align,
            GFP_KERNEL,
            huge,
            &mut |ph| st.mark(ph),
        );
        let t1 = tsc::stop();
        if p.is_null() {
            return None;
        }
        // SAFETY: p is the start of a fresh area of `size` bytes; touch its first byte like
        // test_vmalloc does (outside the timed region).
        unsafe { p.write_volatile(1) };
        let t2 = tsc::start();
        let r = m
            .vmalloc
            .vfree_phased(&mut m.pages, &mut m.pt, p, &mut |ph| st.mark(ph));
        let t3 = tsc::stop();
        if let Err(e) = r {
            mm::misuse("vfree", e)
        }
        Some((t0, t1, t2, t3))
    })?;
    let [reserved, mapped, unmapped, flushed, released] = st.t;
    Some(VmallocSample {
        alloc: t1 - t0,
        free: t3 - t2,
        bookkeeping: (reserved - t0) + (released - flushed),
        pte_writes: (mapped - reserved) + (unmapped - t2),
        flush: flushed - unmapped,
    })
}

fn to_f64(v: &[u64]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn flush_label(m: FlushMode) -> &'static str {
    m.label()
}

pub fn vmalloc_suite(cfg: &VmallocSuite, plan: &GuestPlan) {
    let dbg = plan.mm_debug;
    let original = mm::with(|m| m.vmalloc.flush_mode());
    for &mode in &cfg.flush_modes {
        mm::with(|m| m.vmalloc.set_flush_mode(mm::to_mm_flush(mode)));
        for &size in &cfg.sizes {
            vmalloc_pair(cfg, size as usize, mode, false, dbg);
        }
        mm::with(|m| m.vmalloc.purge_lazy(&mut m.pt));
    }
    mm::with(|m| m.vmalloc.set_flush_mode(mm::to_mm_flush(plan.flush_mode)));
    for &size in &cfg.huge_sizes {
        vmalloc_pair(cfg, size as usize, plan.flush_mode, true, dbg);
    }
    if cfg.test_vmalloc {
        test_vmalloc(cfg, plan);
    }
    mm::with(|m| {
        m.vmalloc.purge_lazy(&mut m.pt);
        m.vmalloc.set_flush_mode(original);
    });
}

fn vmalloc_pair(cfg: &VmallocSuite, size: usize, mode: FlushMode, huge: bool, dbg: bool) {
    let prefix = if huge { "vmalloc_huge" } else { "vmalloc" };
    let suffix = if huge {
        String::new()
    } else {
        format!("/{}", flush_label(mode))
    };
    // Big areas are slow (every PTE write traps under a shadow-paging hypervisor): fewer samples.
    let pages = (size / 4096).max(1) as u32;
    let samples = (cfg.samples / (pages / 64).max(1)).max(10);
    let mut v: Vec<VmallocSample> = Vec::with_capacity(samples as usize);
    for i in 0..samples + cfg.warmup.min(samples) {
        match vmalloc_once(size, 4096, huge) {
            Some(s) if i >= cfg.warmup.min(samples) => v.push(s),
            Some(_) => {}
            None => {
                bench("vmalloc", format!("{prefix}/pair/{size}{suffix}"), dbg)
                    .param("size", size)
                    .emit_status(BenchStatus::Oom, "vmalloc returned NULL");
                return;
            }
        }
    }
    let ovh = timing::timer_overhead();
    let col = |f: fn(&VmallocSample) -> u64| -> Vec<f64> {
        v.iter().map(|s| f(s).saturating_sub(ovh) as f64).collect()
    };
    let base = |name: String| {
        bench("vmalloc", name, dbg)
            .param("size", size)
            .param("pages", pages)
            .param("flush_mode", flush_label(mode))
            .param("huge", huge)
    };
    let mut pair: Vec<f64> = v
        .iter()
        .map(|s| (s.alloc + s.free).saturating_sub(2 * ovh) as f64)
        .collect();
    base(format!("{prefix}/pair/{size}{suffix}")).emit_cycles_f64(&mut pair);
    base(format!("{prefix}/alloc/{size}{suffix}")).emit_cycles_f64(&mut col(|s| s.alloc));
    base(format!("{prefix}/free/{size}{suffix}")).emit_cycles_f64(&mut col(|s| s.free));
    base(format!("{prefix}/phase/{size}{suffix}/bookkeeping"))
        .extra("what", "area + frame allocation on vmalloc, range + frame release on vfree (no page-table writes)")
        .emit_cycles_f64(&mut to_f64(&v.iter().map(|s| s.bookkeeping).collect::<Vec<_>>()));
    base(format!("{prefix}/phase/{size}{suffix}/pte_writes"))
        .extra(
            "what",
            "PTE writes into the live page tables: map on vmalloc, unmap on vfree",
        )
        .emit_cycles_f64(&mut to_f64(
            &v.iter().map(|s| s.pte_writes).collect::<Vec<_>>(),
        ));
    base(format!("{prefix}/phase/{size}{suffix}/tlb_flush"))
        .extra("what", "TLB invalidation on vfree (INVLPG batch, CR3 reload, or lazy: usually none, sometimes a purge)")
        .emit_cycles_f64(&mut to_f64(&v.iter().map(|s| s.flush).collect::<Vec<_>>()));
}

/// Linux `lib/test_vmalloc.c` cases, one CPU, `test_loops` iterations each. Each
/// iteration is one sample; `extra` carries passed/failed and the avg in µs like
/// test_vmalloc.sh's "Summary:" line.
fn test_vmalloc(cfg: &VmallocSuite, plan: &GuestPlan) {
    let loops = cfg.test_loops.max(1);
    let mut rng = Rng::new(plan.seed ^ 0x7465_7374);
    let page = 4096usize;
    run_case("fix_size_alloc_test", loops, plan, || {
        let p = mm::vmalloc(3 * page, GFP_KERNEL);
        touch_and_vfree(p)
    });
    {
        // full_fit: fill the area with pairs, free every "junk" half, then allocate into the holes.
        let junk = 8192usize.min((mm::nr_free_pages() / 8) as usize);
        let mut keep = Vec::with_capacity(junk);
        let mut holes = Vec::with_capacity(junk);
        for _ in 0..junk {
            keep.push(mm::vmalloc(page, GFP_KERNEL));
            holes.push(mm::vmalloc(page, GFP_KERNEL));
        }
        for p in holes {
            if !p.is_null() {
                mm::vfree(p);
            }
        }
        run_case("full_fit_alloc_test", loops, plan, || {
            touch_and_vfree(mm::vmalloc(page, GFP_KERNEL))
        });
        for p in keep {
            if !p.is_null() {
                mm::vfree(p);
            }
        }
    }
    {
        let busy = 15_000usize.min((mm::nr_free_pages() / 4) as usize);
        let list: Vec<*mut u8> = (0..busy).map(|_| mm::vmalloc(page, GFP_KERNEL)).collect();
        run_case("long_busy_list_alloc_test", loops, plan, || {
            touch_and_vfree(mm::vmalloc(page, GFP_KERNEL))
        });
        for p in list {
            if !p.is_null() {
                mm::vfree(p);
            }
        }
    }
    let draws: Vec<u64> = (0..loops).map(|_| rng.next()).collect();
    let mut i = 0;
    run_case("random_size_alloc_test", loops, plan, || {
        let n = (draws[i % draws.len()] % 100 + 1) as usize;
        i += 1;
        touch_and_vfree(mm::vmalloc(n * page, GFP_KERNEL))
    });
    run_case("fix_align_alloc_test", loops, plan, || {
        touch_and_vfree(vmalloc_align(5 * page, 32 << 10))
    });
    let mut i = 0;
    run_case("random_size_align_alloc_test", loops, plan, || {
        let r = draws[i % draws.len()];
        i += 1;
        let align = 1u64 << (r % 11 + 3);
        let size = ((r >> 8) % 10 + 1) as usize * page;
        touch_and_vfree(vmalloc_align(size, align))
    });
    // Every alignment 2^0 … 2^63 for one page; Linux expects the large ones to fail.
    let mut shift = 0u32;
    run_case("align_shift_alloc_test", 64, plan, || {
        let align = 1u64 << shift;
        shift += 1;
        touch_and_vfree(vmalloc_align(page, align))
    });
}

fn vmalloc_align(size: usize, align: u64) -> *mut u8 {
    if !mm::prepare_vmalloc(size) {
        return core::ptr::null_mut();
    }
    mm::with(|m| {
        m.vmalloc
            .vmalloc_align(&mut m.pages, &mut m.pt, size, align.max(4096), GFP_KERNEL)
    })
}

fn touch_and_vfree(p: *mut u8) -> bool {
    if p.is_null() {
        return false;
    }
    // SAFETY: p is the start of a live vmalloc area of at least one page.
    unsafe { p.write_volatile(1) };
    mm::vfree(p);
    true
}

fn run_case(name: &str, loops: u32, plan: &GuestPlan, mut iteration: impl FnMut() -> bool) {
    let ovh = timing::timer_overhead();
    let (mut passed, mut failed) = (0u32, 0u32);
    let mut s = Vec::with_capacity(loops as usize);
    for _ in 0..loops {
        let a = tsc::start();
        let ok = iteration();
        let b = tsc::stop();
        if ok {
            passed += 1
        } else {
            failed += 1
        }
        s.push((b - a).saturating_sub(ovh) as f64);
    }
    let mean: f64 = s.iter().sum::<f64>() / s.len().max(1) as f64;
    let avg_usec = mean * timing::cycles_to_ns_factor() / 1000.0;
    log::info!("Summary: {name} passed: {passed} failed: {failed} repeat: 1 loops: {loops} avg: {avg_usec:.2} usec");
    bench("vmalloc", format!("test_vmalloc/{name}"), plan.mm_debug)
        .param("loops", loops)
        .param("flush_mode", plan.flush_mode.label())
        .extra("passed", passed)
        .extra("failed", failed)
        .extra("avg_usec", avg_usec)
        .extra(
            "linux",
            "lib/test_vmalloc.c semantics, one CPU; compare with test_vmalloc.sh's Summary line",
        )
        .emit_cycles_f64(&mut s);
}

// ---- stack_vs_heap, talc_vs_slab --------------------------------------------------

/// The function body every variant shares: touch the buffer's first, middle and last byte.
#[inline(never)]
fn work(buf: *mut u8, len: usize) {
    // SAFETY: callers pass a buffer of `len` bytes they own for the duration of the call.
    unsafe {
        buf.write_volatile(1);
        buf.add(len / 2).write_volatile(2);
        buf.add(len - 1).write_volatile(3);
    }
    black_box(buf);
}

/// The buffer on the stack, left uninitialised (no memset) so all variants do the same work.
#[inline(never)]
fn with_stack_buffer() {
    let mut buf = core::mem::MaybeUninit::<[u8; 2048]>::uninit();
    work(buf.as_mut_ptr().cast(), 2048);
}

/// One kmalloc'd buffer: `false` (nothing touched) when kmalloc returned NULL.
#[inline(never)]
fn with_kmalloc_buffer(size: usize) -> bool {
    let p = mm::kmalloc(size, GFP_KERNEL);
    if p.is_null() {
        return false;
    }
    work(p, size);
    mm::kfree(p);
    true
}

/// A one-CPU "per-CPU" scratch cache: one buffer kept for reuse, refilled from kmalloc.
static mut PERCPU_SCRATCH: *mut u8 = core::ptr::null_mut();

/// The scratch buffer: `false` (nothing touched) when refilling it from kmalloc failed.
#[inline(never)]
fn with_percpu_buffer(size: usize) -> bool {
    // SAFETY: single CPU, interrupts off: nothing else touches the scratch slot meanwhile.
    let p = unsafe {
        let p = core::ptr::replace(
            core::ptr::addr_of_mut!(PERCPU_SCRATCH),
            core::ptr::null_mut(),
        );
        if p.is_null() {
            mm::kmalloc(size, GFP_KERNEL)
        } else {
            p
        }
    };
    if p.is_null() {
        return false;
    }
    work(p, size);
    // SAFETY: as above; the slot is empty because we took it.
    unsafe { *core::ptr::addr_of_mut!(PERCPU_SCRATCH) = p };
    true
}

/// Empty the scratch slot (so the next size starts from kmalloc again).
fn drop_percpu_buffer() {
    // SAFETY: single CPU, interrupts off; the pointer came from kmalloc.
    let p = unsafe {
        core::ptr::replace(
            core::ptr::addr_of_mut!(PERCPU_SCRATCH),
            core::ptr::null_mut(),
        )
    };
    if !p.is_null() {
        mm::kfree(p);
    }
}

/// Emit `samples`, or `oom` with `what` when any timed call failed to allocate.
fn emit_or_oom(b: Bench<'_>, oom: bool, what: &str, s: &mut [f64]) {
    if oom {
        b.emit_status(BenchStatus::Oom, what)
    } else {
        b.emit_cycles_f64(s)
    }
}

/// The error every allocation benchmark gives a size the host should have refused.
fn bad_size(b: Bench<'_>, size: usize) {
    b.emit_status(
        BenchStatus::Error,
        &alloc::format!("size {size} is not a valid allocation size"),
    )
}

pub fn stack_vs_heap_suite(cfg: &StackVsHeapSuite) {
    let size = cfg.buffer as usize;
    let dbg = mm::mm_debug();
    let b = 64;
    let mut s = timing::batched(cfg.samples, 100, b, with_stack_buffer);
    bench("stack_vs_heap", format!("stack_vs_heap/stack/{size}"), dbg)
        .param("buffer", 2048)
        .param("batch", b)
        .emit_cycles_f64(&mut s);
    let heap = |kind: &str| {
        bench("stack_vs_heap", format!("stack_vs_heap/{kind}/{size}"), dbg)
            .param("buffer", size)
            .param("batch", b)
    };
    if size == 0 {
        bad_size(heap("kmalloc"), size);
        bad_size(heap("percpu"), size);
        return;
    }
    let mut oom = false;
    let mut s = timing::batched(cfg.samples, 100, b, || {
        oom |= !with_kmalloc_buffer(size);
    });
    emit_or_oom(heap("kmalloc"), oom, "kmalloc returned NULL", &mut s);
    let mut oom = false;
    let mut s = timing::batched(cfg.samples, 100, b, || {
        oom |= !with_percpu_buffer(size);
    });
    drop_percpu_buffer();
    emit_or_oom(heap("percpu"), oom, "kmalloc returned NULL", &mut s);
}

pub fn talc_vs_slab_suite(cfg: &TalcVsSlabSuite) {
    use core::alloc::Layout;
    let dbg = mm::mm_debug();
    let b = 64;
    for &size in &cfg.sizes {
        let size = size as usize;
        let row = |kind: &str| {
            bench("talc_vs_slab", format!("talc_vs_slab/{kind}/{size}"), dbg)
                .param("size", size)
                .param("batch", b)
        };
        // A zero-size Layout must never reach the global allocator (undefined behaviour).
        let layout = match Layout::from_size_align(size, 8) {
            Ok(l) if l.size() > 0 => l,
            _ => {
                bad_size(row("talc"), size);
                bad_size(row("kmalloc"), size);
                continue;
            }
        };
        let mut oom = false;
        let mut s = timing::batched(cfg.samples, 100, b, || {
            // SAFETY: layout has non-zero size (checked above); the block is freed with
            // the same layout.
            unsafe {
                let p = alloc::alloc::alloc(layout);
                if p.is_null() {
                    oom = true;
                    return;
                }
                black_box(p);
                alloc::alloc::dealloc(p, layout);
            }
        });
        emit_or_oom(row("talc"), oom, "talc returned NULL", &mut s);
        let mut oom = false;
        let mut s = timing::batched(cfg.samples, 100, b, || {
            let p = mm::kmalloc(size, GFP_KERNEL);
            if p.is_null() {
                oom = true;
                return;
            }
            black_box(p);
            mm::kfree(p);
        });
        emit_or_oom(row("kmalloc"), oom, "kmalloc returned NULL", &mut s);
    }
}
