//! The results channel: framed, versioned records on debugcon (port 0xe9).
//!
//! One record per line, `KMB1 <json>\n` (see `kmbench_protocol`), written with a single
//! `rep outsb`. The harness parses exactly these types; it never reads the log.
use crate::arch::port;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use core::sync::atomic::{AtomicU32, Ordering};
use kmbench_protocol::{
    encode_record, ports, BenchRecord, BenchStatus, InfoRecord, Record, SelftestRecord, Summary,
};

static BENCHMARKS: AtomicU32 = AtomicU32::new(0);
/// Serializes writers of the results channel (several CPUs may emit records).
static CHANNEL: spinning_top::Spinlock<()> = spinning_top::Spinlock::new(());

/// The channel lock for fault paths: taken if it frees up within ~10^7 polls, else
/// `None` (the holder may be the faulting CPU itself) and the caller writes anyway.
pub fn lock_channel_bounded() -> Option<spinning_top::guard::SpinlockGuard<'static, ()>> {
    for _ in 0..10_000_000u32 {
        if let Some(g) = CHANNEL.try_lock() {
            return Some(g);
        }
        core::hint::spin_loop();
    }
    None
}
static SELFTESTS_FAILED: AtomicU32 = AtomicU32::new(0);

pub fn emit(record: &Record) {
    match record {
        Record::Bench(_) => {
            BENCHMARKS.fetch_add(1, Ordering::Relaxed);
        }
        Record::Selftest(s) if !s.passed => {
            SELFTESTS_FAILED.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
    let mut line = encode_record(record);
    line.push('\n');
    let _guard = CHANNEL.lock();
    port::outsb(ports::RESULTS, line.as_bytes());
}

pub fn benchmarks_emitted() -> u32 {
    BENCHMARKS.load(Ordering::Relaxed)
}

pub fn selftests_failed() -> u32 {
    SELFTESTS_FAILED.load(Ordering::Relaxed)
}

pub fn info(key: &str, value: serde_json::Value) {
    emit(&Record::Info(InfoRecord {
        key: key.to_string(),
        value,
    }));
}

pub fn selftest(name: &str, passed: bool, detail: String) {
    if passed {
        log::info!("selftest {name}: ok");
    } else {
        log::error!("selftest {name}: FAILED: {detail}");
    }
    emit(&Record::Selftest(SelftestRecord {
        name: name.to_string(),
        passed,
        detail,
    }));
}

/// A benchmark result in cycles, with the ns view derived from the TSC frequency.
pub struct Bench<'a> {
    pub name: String,
    pub suite: &'a str,
    pub params: BTreeMap<String, serde_json::Value>,
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl<'a> Bench<'a> {
    pub fn new(suite: &'a str, name: String) -> Self {
        Bench {
            name,
            suite,
            params: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
    pub fn param(mut self, k: &str, v: impl Into<serde_json::Value>) -> Self {
        self.params.insert(k.to_string(), v.into());
        self
    }
    pub fn extra(mut self, k: &str, v: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(k.to_string(), v.into());
        self
    }

    /// Emit an `ok` record from per-op cycle samples (sorted in place).
    pub fn emit_cycles(self, samples: &mut [u64]) {
        let mut f: alloc::vec::Vec<f64> = samples.iter().map(|&s| s as f64).collect();
        self.emit_cycles_f64(&mut f);
    }

    /// Emit from per-op cycle samples that may be fractional (batched timing).
    pub fn emit_cycles_f64(self, samples: &mut [f64]) {
        let n = samples.len() as u64;
        let Some(s) = Summary::from_f64(samples) else {
            return self.emit_status(BenchStatus::Error, "no samples");
        };
        let ns = crate::timing::cycles_to_ns_factor();
        log::info!(
            "bench {}: median {:.1} cycles ({:.1} ns), n={}",
            self.name,
            s.median,
            s.median * ns,
            n
        );
        emit(&Record::Bench(BenchRecord {
            name: self.name,
            suite: self.suite.to_string(),
            status: BenchStatus::Ok,
            unit: "cycles".to_string(),
            samples: n,
            min: s.min,
            median: s.median,
            p99: s.p99,
            max: s.max,
            mean: s.mean,
            ns: if ns > 0.0 { Some(s.scaled(ns)) } else { None },
            params: self.params,
            extra: self.extra,
            message: None,
        }));
    }

    /// Emit a record that carries no distribution (oom, unsupported, error).
    pub fn emit_status(self, status: BenchStatus, message: &str) {
        log::warn!("bench {}: {:?}: {}", self.name, status, message);
        emit(&Record::Bench(BenchRecord {
            name: self.name,
            suite: self.suite.to_string(),
            status,
            unit: "cycles".to_string(),
            samples: 0,
            min: 0.0,
            median: 0.0,
            p99: 0.0,
            max: 0.0,
            mean: 0.0,
            ns: None,
            params: self.params,
            extra: self.extra,
            message: Some(message.to_string()),
        }));
    }
}
