//! Allocation microbenchmarks: `kmalloc` (with slab_test's pattern), `pages`,
//! `stack_vs_heap`, `talc_vs_slab`. (`vmalloc` is in `vmalloc.rs`.)
//!
//! Timing rule: an operation that costs about as much as the timer itself (kmalloc fast
//! path, order-0 pages) is timed in batches and reported per op (N ops / N); anything
//! slower is timed one op per sample. The mean empty start/stop cost
//! (`timer/serialized`) is subtracted once per timed interval, unclamped, and stated in
//! each record's `extra.timer_overhead`.
use crate::arch::tsc;
use crate::mm;
use crate::report::Bench;
use crate::timing;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicPtr, Ordering};
use kmbench_mm::{Gfp, GFP_KERNEL, MAX_ORDER};
use kmbench_protocol::{
    BenchStatus, GuestPlan, KmallocSuite, PagesSuite, StackVsHeapSuite, TalcVsSlabSuite,
};

/// Deterministic xorshift64* for kmalloc/mixed's workload (kept, not `crate::rng`, so
/// the workload stays the one earlier results measured).
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    #[allow(clippy::should_implement_trait)]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Calls per timed batch for alloc+free pairs. Even kmalloc_large and high-order pairs cost
/// only tens of cycles, comparable to the timer itself (and to the TSC's 26-cycle
/// granularity seen under kvm_pvm), so every pair benchmark is batched.
const PAIR_BATCH: u32 = 32;

/// A record with the params and extras every allocation benchmark carries.
pub fn bench<'a>(suite: &'a str, name: String, plan_debug: bool) -> Bench<'a> {
    Bench::new(suite, name)
        .param("cpl", crate::arch::privileged::run_cpl())
        .param("mm_debug", plan_debug)
        .extra("timer_overhead", timing::overhead())
        .extra("tsc_tick", timing::tick())
}

// ---- kmalloc ----------------------------------------------------------------------

pub fn kmalloc_suite(cfg: &KmallocSuite, plan: &GuestPlan) {
    let dbg = plan.mm_debug;
    if cfg.cold {
        for &size in &cfg.n_sizes {
            slab_test_cold(cfg, size as usize, dbg);
        }
    }
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
            // SAFETY: kmalloc returned this pointer (or null) above; it is freed once.
            unsafe { mm::kfree(p) };
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
            // SAFETY: kmalloc returned this pointer (or null) above; it is freed once.
            unsafe { mm::kfree(p) };
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

/// One slab_test round: N `kmalloc` writing `*p = 22`, then N `kfree` each after
/// `*p = 23`; cycles per op of each half. `None` on OOM (everything freed).
fn slab_test_round(size: usize, n: usize, ptrs: &mut Vec<*mut u8>) -> Option<(f64, f64)> {
    let ovh = timing::overhead();
    let a = tsc::start();
    for _ in 0..n {
        let p = mm::kmalloc(size, GFP_KERNEL);
        if p.is_null() {
            break;
        }
        // SAFETY: p is a fresh object of at least `size` ≥ 1 bytes (slab_test: *p = 22).
        unsafe { p.write_volatile(22) };
        ptrs.push(p);
    }
    let b = tsc::stop();
    if ptrs.len() < n {
        for p in ptrs.drain(..) {
            // SAFETY: kmalloc returned this pointer (or null) above; it is freed once.
            unsafe { mm::kfree(p) };
        }
        return None;
    }
    let c = tsc::start();
    for &p in ptrs.iter() {
        // SAFETY: p is a live object of this round (slab_test: *p = 23 before kfree).
        unsafe { p.write_volatile(23) };
        // SAFETY: kmalloc returned this pointer (or null) above; it is freed once.
        unsafe { mm::kfree(p) };
    }
    let d = tsc::stop();
    ptrs.clear();
    Some((
        ((b - a) as f64 - ovh) / n as f64,
        ((d - c) as f64 - ovh) / n as f64,
    ))
}

/// slab_test's test 1, once, before anything else used the size class in this suite: the
/// run Linux's module does (cold: slabs come from the buddy, caches and TLB hold nothing
/// of it). `kmalloc/alloc_n|free_n/<size>/cold`, one sample each.
fn slab_test_cold(cfg: &KmallocSuite, size: usize, dbg: bool) {
    let n = cfg.n.max(1) as usize;
    let mut ptrs: Vec<*mut u8> = Vec::with_capacity(n);
    let r = slab_test_round(size, n, &mut ptrs);
    for (half, v) in [("alloc_n", r.map(|x| x.0)), ("free_n", r.map(|x| x.1))] {
        let b = bench("kmalloc", format!("kmalloc/{half}/{size}/cold"), dbg)
            .param("size", size)
            .param("n", n)
            .param("rounds", 1)
            .extra("pattern", "slab_test test 1, one cold run: N kmalloc (*p = 22) then N kfree (*p = 23), per op");
        match v {
            Some(c) => b.emit_cycles_f64(&mut [c]),
            None => b.emit_status(BenchStatus::Oom, "kmalloc returned NULL"),
        }
    }
}

/// slab_test's test 1 repeated warm: rounds of N allocations, then N frees.
fn alloc_n_free_n(cfg: &KmallocSuite, size: usize, dbg: bool) {
    let n = cfg.n.max(1) as usize;
    let rounds = (cfg.samples / 100).max(5);
    let mut ptrs: Vec<*mut u8> = Vec::new();
    if ptrs.try_reserve_exact(n).is_err() {
        bench("kmalloc", format!("kmalloc/alloc_n/{size}"), dbg)
            .param("size", size)
            .param("n", n)
            .emit_status(
                BenchStatus::Oom,
                "no memory for the pointer array of n objects",
            );
        return;
    }
    let (mut alloc_s, mut free_s) = (Vec::new(), Vec::new());
    for round in 0..rounds + 1 {
        let Some((a, f)) = slab_test_round(size, n, &mut ptrs) else {
            bench("kmalloc", format!("kmalloc/alloc_n/{size}"), dbg)
                .param("size", size)
                .emit_status(BenchStatus::Oom, "kmalloc returned NULL");
            return;
        };
        if round > 0 {
            // round 0 is the warm-up (slabs come from the buddy the first time)
            alloc_s.push(a);
            free_s.push(f);
        }
    }
    let pattern = "slab_test test 1, warm: N kmalloc (*p = 22) then N kfree (*p = 23), per op; first round discarded";
    bench("kmalloc", format!("kmalloc/alloc_n/{size}"), dbg)
        .param("size", size)
        .param("n", n)
        .param("rounds", rounds)
        .extra("pattern", pattern)
        .emit_cycles_f64(&mut alloc_s);
    bench("kmalloc", format!("kmalloc/free_n/{size}"), dbg)
        .param("size", size)
        .param("n", n)
        .param("rounds", rounds)
        .extra("pattern", pattern)
        .emit_cycles_f64(&mut free_s);
}

/// Random sizes (8 B … 8 KiB, log-uniform), random interleaving of alloc and free
/// over a pool of up to 1,024 live objects; per-op cost over chunks of 1,000 ops.
fn mixed(cfg: &KmallocSuite, plan: &GuestPlan) {
    let mut rng = Rng::new(plan.seed);
    let mut live: Vec<*mut u8> = Vec::with_capacity(1024);
    let chunk = 1000u32;
    let chunks = (cfg.mixed_ops / chunk).max(1);
    let ovh = timing::overhead();
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
                // SAFETY: kmalloc returned this pointer (or null) above; it is freed once.
                unsafe { mm::kfree(p) };
            }
        }
        let b = tsc::stop();
        s.push(((b - a) as f64 - ovh) / chunk as f64);
    }
    for p in live {
        // SAFETY: kmalloc returned this pointer (or null) above; it is freed once.
        unsafe { mm::kfree(p) };
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
                .param("order", order)
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
            .param("order", order)
            .param("bytes", 4096u64 << order)
            .emit_status(BenchStatus::Oom, "not enough free memory");
        return;
    }
    let rounds = (cfg.samples / 100).max(5);
    let ovh = timing::overhead();
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
        .param("bytes", 4096u64 << order)
        .param("n", n)
        .extra("splits_per_op", (after.splits - before.splits) as f64 / ops)
        .emit_cycles_f64(&mut a_s);
    bench("pages", format!("alloc_pages/free_n/{order}"), dbg)
        .param("order", order)
        .param("bytes", 4096u64 << order)
        .param("n", n)
        .extra("merges_per_op", (after.merges - before.merges) as f64 / ops)
        .emit_cycles_f64(&mut f_s);
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
fn with_stack_buffer<const N: usize>() {
    let mut buf = core::mem::MaybeUninit::<[u8; N]>::uninit();
    work(buf.as_mut_ptr().cast(), N);
}

/// The stack variant for `size` bytes: a fixed-size array per supported size (the kernel
/// stacks are 16 KiB, so at most 8 KiB).
fn stack_buffer_fn(size: usize) -> Option<fn()> {
    Some(match size {
        16 => with_stack_buffer::<16>,
        32 => with_stack_buffer::<32>,
        64 => with_stack_buffer::<64>,
        128 => with_stack_buffer::<128>,
        256 => with_stack_buffer::<256>,
        512 => with_stack_buffer::<512>,
        1024 => with_stack_buffer::<1024>,
        2048 => with_stack_buffer::<2048>,
        4096 => with_stack_buffer::<4096>,
        8192 => with_stack_buffer::<8192>,
        _ => return None,
    })
}

/// One kmalloc'd buffer: `false` (nothing touched) when kmalloc returned NULL.
#[inline(never)]
fn with_kmalloc_buffer(size: usize) -> bool {
    let p = mm::kmalloc(size, GFP_KERNEL);
    if p.is_null() {
        return false;
    }
    work(p, size);
    // SAFETY: kmalloc returned this pointer (or null) above; it is freed once.
    unsafe { mm::kfree(p) };
    true
}

/// A one-CPU "per-CPU" scratch cache: one buffer kept for reuse, refilled from kmalloc.
/// An atomic slot, so no `static mut` and no unsafe access. Taken with a Relaxed load then
/// store (plain `mov`s, like the old raw-pointer read/write; a `swap` would be a locked
/// `xchg` and change what the benchmark measures): only one CPU runs this benchmark.
static PERCPU_SCRATCH: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());

/// Empty the slot and return what it held (null if nothing).
#[inline(always)]
fn take_percpu_scratch() -> *mut u8 {
    let p = PERCPU_SCRATCH.load(Ordering::Relaxed);
    PERCPU_SCRATCH.store(core::ptr::null_mut(), Ordering::Relaxed);
    p
}

/// The scratch buffer: `false` (nothing touched) when refilling it from kmalloc failed.
#[inline(never)]
fn with_percpu_buffer(size: usize) -> bool {
    let p = take_percpu_scratch();
    let p = if p.is_null() {
        mm::kmalloc(size, GFP_KERNEL)
    } else {
        p
    };
    if p.is_null() {
        return false;
    }
    work(p, size);
    PERCPU_SCRATCH.store(p, Ordering::Relaxed);
    true
}

/// Empty the scratch slot (so the next size starts from kmalloc again).
fn drop_percpu_buffer() {
    let p = take_percpu_scratch();
    if !p.is_null() {
        // SAFETY: kmalloc returned this pointer (or null) above; it is freed once.
        unsafe { mm::kfree(p) };
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
    let name = format!("stack_vs_heap/stack/{size}");
    match stack_buffer_fn(size) {
        Some(f) => {
            let mut s = timing::batched(cfg.samples, 100, b, f);
            bench("stack_vs_heap", name, dbg)
                .param("buffer", size)
                .param("batch", b)
                .emit_cycles_f64(&mut s);
        }
        None => bench("stack_vs_heap", name, dbg)
            .param("buffer", size)
            .emit_status(
                BenchStatus::Unsupported,
                "stack buffers come in powers of two from 16 B to 8 KiB (kernel stacks are 16 KiB)",
            ),
    }
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
            // SAFETY: kmalloc returned this pointer (or null) above; it is freed once.
            unsafe { mm::kfree(p) };
        });
        emit_or_oom(row("kmalloc"), oom, "kmalloc returned NULL", &mut s);
    }
}
