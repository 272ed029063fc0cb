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
