//! Pooling the benchmark records of several boots (`--boots N`).
//!
//! Each boot is a fresh guest, so boots are the replication unit. Per benchmark (by name):
//! `boot_medians` = one median per boot; `median` = median of the boot medians;
//! `min` = min of mins; `max` = max of maxes; `p99` = median of the p99s; `mean` = mean of
//! the means; `samples` = sum. `ns` is pooled the same way when every boot has it. Status
//! is the first non-ok status seen; params/extra/message come from the first boot.
use kmbench_protocol::{BenchRecord, BenchStatus, Summary};

use crate::results::BenchEntry;

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn pool_summary(parts: &[Summary]) -> Summary {
    Summary {
        min: parts.iter().map(|s| s.min).fold(f64::INFINITY, f64::min),
        median: median(&parts.iter().map(|s| s.median).collect::<Vec<_>>()),
        p99: median(&parts.iter().map(|s| s.p99).collect::<Vec<_>>()),
        max: parts
            .iter()
            .map(|s| s.max)
            .fold(f64::NEG_INFINITY, f64::max),
        mean: parts.iter().map(|s| s.mean).sum::<f64>() / parts.len() as f64,
    }
}

/// Pool one benchmark's records from several boots (in boot order). Panics on empty input.
pub fn pool(records: &[BenchRecord]) -> BenchEntry {
    let first = records.first().expect("at least one record");
    let mut entry = BenchEntry::from(first.clone());
    if records.len() == 1 {
        return entry;
    }
    let stats: Vec<Summary> = records
        .iter()
        .map(|r| Summary {
            min: r.min,
            median: r.median,
            p99: r.p99,
            max: r.max,
            mean: r.mean,
        })
        .collect();
    let p = pool_summary(&stats);
    entry.min = p.min;
    entry.median = p.median;
    entry.p99 = p.p99;
    entry.max = p.max;
    entry.mean = p.mean;
    entry.samples = records.iter().map(|r| r.samples).sum();
    entry.boot_medians = records.iter().map(|r| r.median).collect();
    entry.ns = records
        .iter()
        .map(|r| r.ns)
        .collect::<Option<Vec<_>>>()
        .map(|v| pool_summary(&v));
    if let Some(bad) = records.iter().find(|r| r.status != BenchStatus::Ok) {
        entry.status = bad.status;
        if entry.message.is_none() {
            entry.message = bad.message.clone();
        }
    }
    entry
}

/// Pool all boots: benchmarks in order of first appearance.
pub fn pool_boots(boots: &[Vec<BenchRecord>]) -> Vec<BenchEntry> {
    let mut order: Vec<String> = Vec::new();
    let mut by_name: std::collections::HashMap<String, Vec<BenchRecord>> = Default::default();
    for boot in boots {
        for r in boot {
            let v = by_name.entry(r.name.clone()).or_insert_with(|| {
                order.push(r.name.clone());
                Vec::new()
            });
            v.push(r.clone());
        }
    }
    order.iter().map(|n| pool(&by_name[n])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        name: &str,
        min: f64,
        median: f64,
        p99: f64,
        max: f64,
        mean: f64,
        samples: u64,
    ) -> BenchRecord {
        BenchRecord {
            name: name.into(),
            suite: "t".into(),
            status: BenchStatus::Ok,
            unit: "cycles".into(),
            samples,
            min,
            median,
            p99,
            max,
            mean,
            ns: Some(
                Summary {
                    min,
                    median,
                    p99,
                    max,
                    mean,
                }
                .scaled(0.5),
            ),
            params: Default::default(),
            extra: Default::default(),
            message: None,
        }
    }

    #[test]
    fn single_boot_is_unchanged() {
        let e = pool(&[rec("a", 1.0, 2.0, 3.0, 4.0, 2.5, 10)]);
        assert_eq!(
            (e.min, e.median, e.p99, e.max, e.mean, e.samples),
            (1.0, 2.0, 3.0, 4.0, 2.5, 10)
        );
        assert_eq!(e.boot_medians, vec![2.0]);
    }

    #[test]
    fn pooled_statistics() {
        let boots = vec![
            vec![
                rec("a", 1.0, 10.0, 20.0, 30.0, 11.0, 100),
                rec("b", 5.0, 5.0, 5.0, 5.0, 5.0, 1),
            ],
            vec![rec("a", 2.0, 12.0, 22.0, 40.0, 13.0, 100)],
            vec![rec("a", 0.5, 11.0, 21.0, 35.0, 12.0, 50)],
        ];
        let out = pool_boots(&boots);
        assert_eq!(out.len(), 2);
        let a = &out[0];
        assert_eq!(a.name, "a");
        assert_eq!(a.boot_medians, vec![10.0, 12.0, 11.0]);
        assert_eq!(a.median, 11.0);
        assert_eq!(a.min, 0.5);
        assert_eq!(a.max, 40.0);
        assert_eq!(a.p99, 21.0);
        assert_eq!(a.mean, 12.0);
        assert_eq!(a.samples, 250);
        assert_eq!(a.ns.unwrap().median, 5.5);
        assert_eq!(out[1].name, "b");
        assert_eq!(out[1].samples, 1);
    }

    #[test]
    fn even_boot_count_median_and_status() {
        let mut r2 = rec("a", 1.0, 4.0, 5.0, 6.0, 4.0, 1);
        r2.status = BenchStatus::Oom;
        r2.message = Some("out of memory".into());
        let e = pool(&[rec("a", 1.0, 2.0, 3.0, 4.0, 2.0, 1), r2]);
        assert_eq!(e.median, 3.0);
        assert_eq!(e.status, BenchStatus::Oom);
        assert_eq!(e.message.as_deref(), Some("out of memory"));
    }
}
