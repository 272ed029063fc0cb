//! `timer`, `gate` and `alu`: the clock, the privilege gate and the CPU itself.
use crate::arch::privileged::{self, run_cpl};
use crate::arch::tsc;
use crate::report::Bench;
use crate::timing;
use alloc::string::ToString;
use alloc::vec::Vec;
use kmbench_protocol::{AluSuite, GateSuite, TimerSuite};

/// Empty serialized pairs averaged for the timer overhead.
const OVERHEAD_PAIRS: usize = 20_000;
/// TSC steps averaged for the tick.
const TICK_STEPS: usize = 2_000;

/// What the timer measurement found (see `timing`).
pub struct TimerFacts {
    /// Mean empty start/stop pair, fractional cycles (spikes excluded, see `excluded`).
    pub mean: f64,
    pub median: u64,
    /// Pairs above 8× the median left out of the mean (host preemption, SMIs).
    pub excluded: usize,
    /// Cycles per TSC step (1.0 when the counter changes on every read).
    pub tick: f64,
    /// Back-to-back raw reads that returned the same value (coarse TSC when > 0).
    pub zero_deltas: usize,
    /// Smallest non-zero back-to-back delta.
    pub min_step: u64,
    /// Sizes of consecutive distinct TSC values (for the `timer/tick` record).
    pub steps: Vec<u64>,
}

fn empty_pairs(n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let a = tsc::start();
            let b = tsc::stop();
            b - a
        })
        .collect()
}

/// Measure the timer's overhead (mean of many empty pairs) and the TSC tick, and store
/// both in `timing` for every later subtraction.
pub fn measure_timer() -> TimerFacts {
    let _ = empty_pairs(256); // warm up
    let pairs = empty_pairs(OVERHEAD_PAIRS);
    let mut sorted = pairs.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let cut = median.max(1) * 8;
    let kept: Vec<u64> = pairs.iter().copied().filter(|&c| c <= cut).collect();
    let mean = kept.iter().sum::<u64>() as f64 / kept.len().max(1) as f64;

    // Back-to-back raw reads: zero deltas mean the counter is coarser than one read.
    let mut zero_deltas = 0;
    let mut min_step = u64::MAX;
    let mut prev = tsc::rdtsc();
    for _ in 0..10_000 {
        let t = tsc::rdtsc();
        match t.wrapping_sub(prev) {
            0 => zero_deltas += 1,
            d => min_step = min_step.min(d),
        }
        prev = t;
    }
    // Consecutive distinct values: their mean distance is the tick on a coarse TSC.
    let mut steps = Vec::with_capacity(TICK_STEPS);
    let mut last = tsc::rdtsc();
    while steps.len() < TICK_STEPS {
        let t = tsc::rdtsc();
        if t != last {
            steps.push(t.wrapping_sub(last));
            last = t;
        }
    }
    let tick = if zero_deltas == 0 {
        1.0
    } else {
        let mut s = steps.clone();
        s.sort_unstable();
        // Leave out steps that span a host interruption (more than 4× the median step).
        let cut = s[s.len() / 2] * 4;
        let k: Vec<u64> = s.into_iter().filter(|&d| d <= cut).collect();
        k.iter().sum::<u64>() as f64 / k.len().max(1) as f64
    };
    timing::set_overhead(mean);
    timing::set_tick(tick);
    TimerFacts {
        mean,
        median,
        excluded: pairs.len() - kept.len(),
        tick,
        zero_deltas,
        min_step,
        steps,
    }
}

/// [`measure_timer`], returning only the mean overhead.
pub fn measure_timer_overhead() -> f64 {
    measure_timer().mean
}

pub fn timer(cfg: &TimerSuite) {
    let n = cfg.samples.max(1) as usize;
    let mut raw: Vec<u64> = (0..n)
        .map(|_| {
            let a = tsc::rdtsc();
            let b = tsc::rdtsc();
            b.wrapping_sub(a)
        })
        .collect();
    Bench::new("timer", "timer/rdtsc".to_string())
        .param("samples", n)
        .emit_cycles(&mut raw);

    let mut pair = empty_pairs(n);
    let f = measure_timer();
    Bench::new("timer", "timer/serialized".to_string())
        .param("samples", n)
        .extra("note", "lfence;rdtsc;lfence twice with nothing between; its mean over many pairs (subtracted_overhead) is subtracted once per timed interval")
        .extra("subtracted_overhead", f.mean)
        .extra("overhead_pairs", OVERHEAD_PAIRS)
        .extra("overhead_median", f.median)
        .extra("overhead_excluded_spikes", f.excluded)
        .emit_cycles(&mut pair);
    let mut steps = f.steps;
    Bench::new("timer", "timer/tick".to_string())
        .param("steps", steps.len())
        .extra("tick", f.tick)
        .extra("coarse", f.zero_deltas > 0)
        .extra("zero_deltas_of_10000_reads", f.zero_deltas)
        .extra("min_nonzero_read_delta", f.min_step)
        .extra("note", "distance between consecutive distinct TSC values; on a coarse TSC (reads that return the same value) their mean is the tick, else the tick is taken as 1 cycle")
        .emit_cycles(&mut steps);
}

pub fn gate(cfg: &GateSuite) {
    let n = cfg.samples.max(1) as usize;
    let cpl = run_cpl();
    if cpl == 0 {
        // At CPL0 privileged work runs directly, without the gate; the int3 round trip is
        // not part of any operation (and KVM's emulator, which runs all of CPL0 under a
        // software hypervisor, cannot execute int3).
        Bench::new("gate", "gate/roundtrip".to_string())
            .param("cpl", cpl)
            .emit_status(
                kmbench_protocol::BenchStatus::Unsupported,
                "the run is at CPL0: privileged operations need no gate",
            );
    } else {
        for _ in 0..16 {
            privileged::gate_nop();
        }
        let (mut s, how) = timing::auto(n as u32, 0, || {
            privileged::gate_nop();
        });
        Bench::new("gate", "gate/roundtrip".to_string())
            .param("cpl", cpl)
            .extra(
                "mechanism",
                "int3 through a DPL-3 IDT gate + iretq, no-op handler",
            )
            .extra("timing", how.describe())
            .emit_cycles_f64(&mut s);
    }

    let local = 0u64;
    let page = core::ptr::addr_of!(local) as u64 & !0xfff;
    let (mut s, how) = timing::auto(n as u32, 0, || privileged::invlpg(page));
    Bench::new("gate", "gate/invlpg".to_string())
        .param("cpl", cpl)
        .extra("timing", how.describe())
        .extra(
            "mechanism",
            if cpl == 0 {
                "invlpg instruction"
            } else {
                "gate + invlpg"
            },
        )
        .emit_cycles_f64(&mut s);

    let (mut s, how) = timing::auto(n as u32, 0, privileged::flush_tlb_all);
    Bench::new("gate", "gate/cr3-reload".to_string())
        .param("cpl", cpl)
        .extra("timing", how.describe())
        .extra(
            "mechanism",
            if cpl == 0 {
                "mov cr3 (reload)"
            } else {
                "gate + mov cr3 (reload)"
            },
        )
        .emit_cycles_f64(&mut s);
}

pub use crate::arch::loops::dependent_adds;

pub fn alu(cfg: &AluSuite) {
    let iters = cfg.iterations.max(1) as u64;
    let ovh = timing::overhead();
    let mut s: Vec<f64> = (0..cfg.samples.max(1))
        .map(|_| {
            let a = tsc::start();
            core::hint::black_box(dependent_adds(iters));
            let b = tsc::stop();
            ((b - a) as f64 - ovh) / iters as f64
        })
        .collect();
    Bench::new("alu", "alu/dependent-add".to_string())
        .param("iterations", iters)
        .param("cpl", run_cpl())
        .extra(
            "unit_note",
            "cycles per iteration of a 2-add dependent chain + loop",
        )
        .emit_cycles_f64(&mut s);
}
