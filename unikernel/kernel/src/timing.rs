//! Run-wide timing facts: TSC frequency (found once) and the timer's own overhead.
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TIMER_OVERHEAD: AtomicU64 = AtomicU64::new(0);

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

/// Cycles a `tsc::start()`/`tsc::stop()` pair costs with nothing between them (median),
/// subtracted from per-operation samples.
pub fn set_timer_overhead(c: u64) {
    TIMER_OVERHEAD.store(c, Ordering::Relaxed);
}
pub fn timer_overhead() -> u64 {
    TIMER_OVERHEAD.load(Ordering::Relaxed)
}

/// Per-op cycles, one timed call per sample (for operations well above the timer's own
/// cost), after `warmup` untimed calls; the timer overhead is subtracted.
pub fn per_op(samples: u32, warmup: u32, mut op: impl FnMut()) -> alloc::vec::Vec<u64> {
    let ovh = timer_overhead();
    for _ in 0..warmup {
        op();
    }
    (0..samples.max(1))
        .map(|_| {
            let a = crate::arch::tsc::start();
            op();
            let b = crate::arch::tsc::stop();
            (b - a).saturating_sub(ovh)
        })
        .collect()
}

/// Per-op cycles from `samples` timed batches of `batch` calls each (for operations that
/// cost about as much as the timer itself), after `warmup` untimed calls.
pub fn batched(
    samples: u32,
    warmup: u32,
    batch: u32,
    mut op: impl FnMut(),
) -> alloc::vec::Vec<f64> {
    for _ in 0..warmup {
        op();
    }
    let ovh = timer_overhead() as f64;
    (0..samples.max(1))
        .map(|_| {
            let a = crate::arch::tsc::start();
            for _ in 0..batch {
                op();
            }
            let b = crate::arch::tsc::stop();
            ((b - a) as f64 - ovh).max(0.0) / batch as f64
        })
        .collect()
}
