//! Linux `lib/test_vmalloc.c`'s cases with its parameters, one CPU.
//!
//! Each case is Linux's loop as written there (sizes, alignments, `__GFP_ZERO`, touches,
//! failure rules); `run_test_mask`, `test_loop_count`, `test_repeat_count`, `nr_pages`
//! and `use_huge` come from the config. Each record carries Linux's summary fields
//! (`extra.linux`: passed/failed runs, repeat, loops, and `avg_usec`, the whole case —
//! setup, every loop, teardown — per run, as test_vmalloc.sh's "Summary:" line) beside
//! kmbench's per-iteration cycles (one serialized timestamp per iteration; consecutive
//! stamps, each interval minus the mean timer overhead). The whole-case time has the
//! per-iteration stamps' cost (one mean overhead each) taken out, so it matches a run
//! without them. Differences from Linux: the random numbers come from a seeded xorshift,
//! the pointer arrays of full_fit and long_busy_list live on the Rust heap, and cases
//! needing subsystems kmbench lacks (per-CPU allocator, RCU, vm_map_ram, vrealloc) are
//! recorded as unsupported.
use crate::arch::tsc;
use crate::mm;
use crate::rng::Rng;
use crate::timing;
use alloc::format;
use alloc::vec::Vec;
use kmbench_mm::{Gfp, __GFP_ZERO, GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT};
use kmbench_protocol::{BenchStatus, GuestPlan, VmallocSuite};

const PAGE: usize = 4096;
/// x86_64 `THREAD_ALIGN << 1` (THREAD_SIZE 16 KiB without KASAN), fix_align_alloc_test's
/// alignment.
const FIX_ALIGN: u64 = 32 << 10;

/// Per-iteration stamps of one case run: [`Clock::restart`] where the loop starts (after
/// the case's setup), [`Clock::lap`] at the end of each iteration.
struct Clock {
    last: u64,
    ovh: f64,
    iterations: Vec<f64>,
    /// Stamps taken (each costs about one mean overhead of the whole-case time).
    stamps: u32,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            last: 0,
            ovh: timing::overhead(),
            iterations: Vec::new(),
            stamps: 0,
        }
    }
    fn restart(&mut self) {
        self.last = tsc::start();
        self.stamps += 1;
    }
    /// End of one iteration.
    #[inline(always)]
    fn lap(&mut self) {
        let t = tsc::start();
        self.iterations.push((t - self.last) as f64 - self.ovh);
        self.last = t;
        self.stamps += 1;
    }
}

/// `__vmalloc_node(size, align, gfp)`.
fn vmalloc_node(size: usize, align: u64, gfp: Gfp) -> *mut u8 {
    if !mm::prepare_vmalloc(size) {
        return core::ptr::null_mut();
    }
    mm::with(|m| {
        m.vmalloc
            .vmalloc_align(&mut m.pages, &mut m.pt, size, align.max(4096), gfp)
    })
}

fn vmalloc(size: usize) -> *mut u8 {
    mm::vmalloc(size, GFP_KERNEL)
}

/// `*((u8 *)p) = v`.
fn touch(p: *mut u8, v: u8) {
    // SAFETY: callers pass the start of a live vmalloc area (at least one page).
    unsafe { p.write_volatile(v) };
}

/// Linux's return value: 0 (Ok) passes, -1 (Err) fails the run.
type CaseResult = Result<(), ()>;

struct Ctx<'a> {
    loops: u32,
    nr_pages: usize,
    use_huge: bool,
    rng: &'a mut Rng,
    clock: Clock,
}

fn fix_size(c: &mut Ctx) -> CaseResult {
    c.clock.restart();
    for _ in 0..c.loops {
        let size = c.nr_pages * PAGE;
        let p = if c.use_huge {
            mm::vmalloc_huge(size, GFP_KERNEL)
        } else {
            vmalloc(size)
        };
        if p.is_null() {
            return Err(());
        }
        touch(p, 0);
        mm::vfree(p);
        c.clock.lap();
    }
    Ok(())
}

fn full_fit(c: &mut Ctx) -> CaseResult {
    // fls(num_online_cpus()) * 32 MiB / PAGE_SIZE, one CPU.
    let junk_length = 32 << 20 >> 12;
    let mut ptr = Vec::with_capacity(junk_length);
    let mut junk = Vec::with_capacity(junk_length);
    for _ in 0..junk_length {
        ptr.push(vmalloc(PAGE));
        junk.push(vmalloc(PAGE));
    }
    for p in junk {
        mm::vfree(p);
    }
    c.clock.restart();
    let mut rv = Ok(());
    for _ in 0..c.loops {
        let tmp = vmalloc(PAGE);
        if tmp.is_null() {
            rv = Err(());
            break;
        }
        touch(tmp, 1);
        mm::vfree(tmp);
        c.clock.lap();
    }
    for p in ptr {
        mm::vfree(p);
    }
    rv
}

fn long_busy_list(c: &mut Ctx) -> CaseResult {
    let ptr: Vec<*mut u8> = (0..15_000).map(|_| vmalloc(PAGE)).collect();
    c.clock.restart();
    let mut rv = Ok(());
    for _ in 0..c.loops {
        let p1 = vmalloc(100 * PAGE);
        if p1.is_null() {
            rv = Err(());
            break;
        }
        let p2 = vmalloc(PAGE);
        if p2.is_null() {
            mm::vfree(p1);
            rv = Err(());
            break;
        }
        touch(p1, 0);
        touch(p2, 1);
        mm::vfree(p1);
        mm::vfree(p2);
        c.clock.lap();
    }
    for p in ptr {
        mm::vfree(p);
    }
    rv
}

fn random_size(c: &mut Ctx) -> CaseResult {
    c.clock.restart();
    for _ in 0..c.loops {
        let n = c.rng.below(100) as usize + 1; // get_random_u32_inclusive(1, 100)
        let p = vmalloc(n * PAGE);
        if p.is_null() {
            return Err(());
        }
        touch(p, 1);
        mm::vfree(p);
        c.clock.lap();
    }
    Ok(())
}

fn fix_align(c: &mut Ctx) -> CaseResult {
    c.clock.restart();
    for _ in 0..c.loops {
        let p = vmalloc_node(5 * PAGE, FIX_ALIGN, GFP_KERNEL | __GFP_ZERO);
        if p.is_null() {
            return Err(());
        }
        mm::vfree(p);
        c.clock.lap();
    }
    Ok(())
}

fn random_size_align(c: &mut Ctx) -> CaseResult {
    c.clock.restart();
    for _ in 0..c.loops {
        let rnd = c.rng.next() as u8; // get_random_u8()
        let align = 1u64 << (rnd % 23); // up to 1024 pages
        let size = (rnd as usize % 10 + 1) * PAGE; // up to 10 pages
        let p = vmalloc_node(size, align, GFP_KERNEL | __GFP_ZERO);
        if p.is_null() {
            return Err(());
        }
        mm::vfree(p);
        c.clock.lap();
    }
    Ok(())
}

/// "This test case is supposed to be failed": one page at every alignment 2^0 … 2^63,
/// returning at the first failure.
fn align_shift(c: &mut Ctx) -> CaseResult {
    c.clock.restart();
    for i in 0..64u32 {
        let p = vmalloc_node(PAGE, 1u64 << i, GFP_KERNEL | __GFP_ZERO);
        if p.is_null() {
            return Err(());
        }
        mm::vfree(p);
        c.clock.lap();
    }
    Ok(())
}

fn no_block_alloc(c: &mut Ctx) -> CaseResult {
    c.clock.restart();
    for _ in 0..c.loops {
        let gfp = if c.rng.next() as u8 % 2 == 1 {
            GFP_ATOMIC
        } else {
            GFP_NOWAIT
        };
        let p = mm::vmalloc(c.nr_pages * PAGE, gfp);
        if p.is_null() {
            return Err(());
        }
        touch(p, 0);
        mm::vfree(p);
        c.clock.lap();
    }
    Ok(())
}

type CaseFn = fn(&mut Ctx) -> CaseResult;

/// Linux's `test_case_array`, id = bit index in `run_test_mask`.
const CASES: [(&str, Result<CaseFn, &str>); 13] = [
    ("fix_size_alloc_test", Ok(fix_size)),
    ("full_fit_alloc_test", Ok(full_fit)),
    ("long_busy_list_alloc_test", Ok(long_busy_list)),
    ("random_size_alloc_test", Ok(random_size)),
    ("fix_align_alloc_test", Ok(fix_align)),
    ("random_size_align_alloc_test", Ok(random_size_align)),
    ("align_shift_alloc_test", Ok(align_shift)),
    (
        "pcpu_alloc_test",
        Err("needs a per-CPU allocator (__alloc_percpu), which kmbench does not have"),
    ),
    (
        "kvfree_rcu_1_arg_vmalloc_test",
        Err("needs RCU (kvfree_rcu), which kmbench does not have"),
    ),
    (
        "kvfree_rcu_2_arg_vmalloc_test",
        Err("needs RCU (kvfree_rcu), which kmbench does not have"),
    ),
    (
        "vm_map_ram_test",
        Err("needs vm_map_ram, which kmbench does not implement"),
    ),
    ("no_block_alloc_test", Ok(no_block_alloc)),
    (
        "vrealloc_test",
        Err("needs vrealloc, which kmbench does not implement"),
    ),
];

pub fn run(cfg: &VmallocSuite, plan: &GuestPlan) {
    let loops = cfg.test_loops.max(1);
    let repeat = cfg.test_repeat.max(1);
    let nr_pages = (cfg.test_nr_pages as usize).max(1);
    let mut rng = Rng::new(plan.seed ^ 0x7465_7374);
    for (id, (name, case)) in CASES.iter().enumerate() {
        if cfg.test_mask & (1 << id) == 0 {
            continue;
        }
        let b = super::alloc::bench("vmalloc", format!("test_vmalloc/{name}"), plan.mm_debug)
            .param("loops", loops)
            .param("repeat", repeat)
            .param("flush_mode", plan.flush_mode.label())
            .param("seed", plan.seed)
            .param("run_test_mask_id", 1u32 << id);
        let b = if id == 0 || id == 11 {
            b.param("nr_pages", nr_pages)
                .param("use_huge", id == 0 && cfg.test_use_huge)
        } else {
            b
        };
        let case = match case {
            Ok(f) => f,
            Err(why) => {
                b.emit_status(BenchStatus::Unsupported, why);
                continue;
            }
        };
        let (mut passed, mut failed) = (0u32, 0u32);
        let mut samples = Vec::new();
        let mut whole = 0.0;
        for _ in 0..repeat {
            let mut ctx = Ctx {
                loops,
                nr_pages,
                use_huge: cfg.test_use_huge,
                rng: &mut rng,
                clock: Clock::new(),
            };
            let a = tsc::start();
            let r = case(&mut ctx);
            let z = tsc::stop();
            // The start/stop pair and every stamp inside it each cost one mean overhead.
            whole += (z - a) as f64 - (ctx.clock.stamps as f64 + 1.0) * timing::overhead();
            samples.append(&mut ctx.clock.iterations);
            match r {
                Ok(()) => passed += 1,
                Err(()) => failed += 1,
            }
        }
        let avg_usec = whole / repeat as f64 * timing::cycles_to_ns_factor() / 1000.0;
        log::info!(
            "Summary: {name} passed: {passed} failed: {failed} repeat: {repeat} loops: {loops} avg: {} usec",
            avg_usec as u64
        );
        let b = b
            .extra(
                "linux",
                serde_json::json!({
                    "passed": passed,
                    "failed": failed,
                    "repeat": repeat,
                    "loops": loops,
                    "avg_usec": avg_usec,
                    "avg_usec_means": "the whole case per run (setup, all loops, teardown), as test_vmalloc's Summary line",
                }),
            )
            .extra("iterations_timed", samples.len())
            .extra(
                "expected",
                if id == 6 {
                    "fail (Linux: \"this test case is supposed to be failed\")"
                } else {
                    "pass"
                },
            );
        if samples.is_empty() {
            b.emit_status(
                BenchStatus::Error,
                "the case failed before its first iteration completed",
            );
        } else {
            b.emit_cycles_f64(&mut samples);
        }
    }
}
