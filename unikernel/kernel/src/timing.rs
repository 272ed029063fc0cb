//! Run-wide timing facts and the timing helpers every suite uses.
//!
//! * The TSC frequency (found once at boot).
//! * The timer's own cost: the mean of many empty `tsc::start()`/`tsc::stop()` pairs, kept
//!   fractional. Under kvm_pvm the TSC advances in steps of ~24.45 cycles, so a single
//!   empty pair reads 49 or 73 and its median flips between boots; the mean over many
//!   pairs is what a subtraction needs to be unbiased.
//! * The TSC tick: how far the counter moves when it moves (1 on hardware with a
//!   finely updated TSC, ~24.45 under kvm_pvm).
//!
//! Subtracting the mean overhead from one sample can give a value below zero when the
//! operation is shorter than a tick; nothing is clamped (a clamp would bias the mean
//! upwards and hide it). Operations shorter than [`MIN_TICKS_PER_SAMPLE`] ticks are
//! therefore timed in batches ([`batched`], or [`auto`] picks).
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// f64 bits of the mean empty-pair cost.
static TIMER_OVERHEAD: AtomicU64 = AtomicU64::new(0);
/// f64 bits of the measured TSC tick.
static TSC_TICK: AtomicU64 = AtomicU64::new(0x3ff0_0000_0000_0000); // 1.0

/// A sample should span at least this many TSC ticks, so that ±1 tick of quantization is
/// at most ~2.5% of it.
pub const MIN_TICKS_PER_SAMPLE: f64 = 40.0;

pub fn set_tsc_hz(hz: u64) {
    TSC_HZ.store(hz, Ordering::Relaxed);
}
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}
pub fn cycles_to_ns_factor() -> f64 {
    let hz = tsc_hz();
    if hz == 0 {
        0.0
    } else {
        1e9 / hz as f64
    }
}

/// Store the mean cost of an empty serialized start/stop pair (fractional cycles).
pub fn set_overhead(mean: f64) {
    TIMER_OVERHEAD.store(mean.to_bits(), Ordering::Relaxed);
}
/// Mean cost of an empty serialized start/stop pair, subtracted once per timed interval.
pub fn overhead() -> f64 {
    f64::from_bits(TIMER_OVERHEAD.load(Ordering::Relaxed))
}

/// Store the measured TSC tick (cycles per counter step).
pub fn set_tick(tick: f64) {
    TSC_TICK.store(tick.to_bits(), Ordering::Relaxed);
}
/// Cycles per TSC step (1.0 until measured).
pub fn tick() -> f64 {
    f64::from_bits(TSC_TICK.load(Ordering::Relaxed))
}

/// The overhead rounded to whole cycles, for code still on integer samples.
pub fn timer_overhead() -> u64 {
    (overhead() + 0.5) as u64
}

/// How a distribution was timed, for the record's `extra.timing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// One timed call per sample.
    PerOp,
    /// `n` calls per timed sample, reported per call.
    Batched(u32),
}

impl Method {
    pub fn describe(self) -> alloc::string::String {
        match self {
            Method::PerOp => "per_op".into(),
            Method::Batched(n) => alloc::format!("batched x{n}"),
        }
    }
}

/// Per-op cycles, one timed call per sample (for operations spanning many ticks), after
/// `warmup` untimed calls; the mean overhead is subtracted, nothing is clamped.
pub fn per_op(samples: u32, warmup: u32, mut op: impl FnMut()) -> alloc::vec::Vec<f64> {
    let ovh = overhead();
    for _ in 0..warmup {
        op();
    }
    (0..samples.max(1))
        .map(|_| {
            let a = crate::arch::tsc::start();
            op();
            let b = crate::arch::tsc::stop();
            (b - a) as f64 - ovh
        })
        .collect()
}

/// Per-op cycles from `samples` timed batches of `batch` calls each (for operations that
/// cost about as much as the timer itself), after `warmup` untimed calls. Unclamped.
pub fn batched(
    samples: u32,
    warmup: u32,
    batch: u32,
    mut op: impl FnMut(),
) -> alloc::vec::Vec<f64> {
    for _ in 0..warmup {
        op();
    }
    let ovh = overhead();
    let batch = batch.max(1);
    (0..samples.max(1))
        .map(|_| {
            let a = crate::arch::tsc::start();
            for _ in 0..batch {
                op();
            }
            let b = crate::arch::tsc::stop();
            ((b - a) as f64 - ovh) / batch as f64
        })
        .collect()
}

/// Calls per timed sample so that one sample spans [`MIN_TICKS_PER_SAMPLE`] ticks, for
/// an operation of about `op_cycles` (1 = per-op timing is fine).
pub fn batch_for(op_cycles: f64) -> u32 {
    let want = MIN_TICKS_PER_SAMPLE * tick();
    if op_cycles >= want {
        1
    } else {
        ((want / op_cycles.max(1.0)) as u32 + 1).min(4096)
    }
}

/// Time `op` per-op if it spans at least [`MIN_TICKS_PER_SAMPLE`] ticks (judged from a
/// 16-call pilot batch after the warm-up), batched otherwise.
pub fn auto(samples: u32, warmup: u32, mut op: impl FnMut()) -> (alloc::vec::Vec<f64>, Method) {
    for _ in 0..warmup {
        op();
    }
    let pilot = batched(1, 0, 16, &mut op)[0];
    match batch_for(pilot) {
        1 => (per_op(samples, 0, op), Method::PerOp),
        n => (batched(samples, 0, n, op), Method::Batched(n)),
    }
}
