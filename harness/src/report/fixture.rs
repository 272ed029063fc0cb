//! Test fixtures shared by the report tests: a measured benchmark entry.
use std::collections::BTreeMap;

use kmbench_protocol::{BenchRecord, BenchStatus, Summary};

use crate::results::BenchEntry;

/// An ok entry with median `cycles` (min 0.9×, p99 2×, max 4×), ns = cycles / 2, and
/// `params`.
pub fn entry(
    name: &str,
    suite: &str,
    cycles: f64,
    params: BTreeMap<String, serde_json::Value>,
) -> BenchEntry {
    let s = Summary {
        min: cycles * 0.9,
        median: cycles,
        p99: cycles * 2.0,
        max: cycles * 4.0,
        mean: cycles,
    };
    BenchEntry {
        record: BenchRecord {
            name: name.into(),
            suite: suite.into(),
            status: BenchStatus::Ok,
            unit: "cycles".into(),
            samples: 100,
            min: s.min,
            median: s.median,
            p99: s.p99,
            max: s.max,
            mean: s.mean,
            ns: Some(s.scaled(0.5)),
            params,
            extra: BTreeMap::new(),
            message: None,
        },
        boot_medians: vec![],
        unstable_boots: vec![],
    }
}

/// A complete run holding `benchmarks` and nothing else.
pub fn run_of(benchmarks: Vec<BenchEntry>) -> crate::results::RunResults {
    crate::results::RunResults {
        schema: crate::results::RESULTS_SCHEMA.into(),
        complete: true,
        run_id: "t".into(),
        started_at: String::new(),
        env: Default::default(),
        exit: None,
        benchmarks,
        ..Default::default()
    }
}
