//! The TLB part of `results.json`'s `analysis` section, computed from a run's tlb sweep
//! records: per mapping the latency steps ([`super::tlb::infer_steps`]) with the CPUID
//! entries beside them, and the TLB entry size the mapping's leaves act as.
//!
//! # Effective entry size
//! A mapping's leaves behave as entries of size E when its first step sits where E-sized
//! entries would overflow the first TLB level: at `L1 entries(E) × E` bytes of working
//! set. For each E no larger than the leaf (4K; 2M for 2M leaves; 1G for 1G leaves) the
//! prediction uses CPUID's L1 data-TLB entries for E, or, when CPUID reports none, the
//! direct-4K sweep's own first step for E = 4K. The hypothesis closest to the measured
//! first step (in log2, within a factor of two) wins; otherwise the size is
//! `undetermined`. Under a shadow-paging hypervisor without huge host backing, 2M guest
//! leaves step where 4K entries overflow (the host splits them): effective 4K.
use std::collections::BTreeMap;

use kmbench_protocol::BenchStatus;

use crate::analysis::{
    Analysis, CpuidTlb, EffectiveEntry, EntryHypothesis, MappingAnalysis, TlbAnalysis, TlbLevel,
    ANALYSIS_SCHEMA,
};
use crate::format::{bench_size, human_size};
use crate::results::{BenchEntry, RunResults};

/// Relative rise over the plateau that counts as a step.
pub const STEP_REL: f64 = 0.25;
/// Absolute rise (ns) below which a change is noise.
pub const STEP_ABS_NS: f64 = 0.3;

/// One detected latency step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Last working set on the lower plateau.
    pub bytes: u64,
    /// First working set past the step.
    pub upper_bytes: u64,
    /// Entries estimated: bytes / page size (rounded).
    pub entries: u64,
    pub upper_entries: u64,
    pub before_ns: f64,
    pub after_ns: f64,
}

impl Step {
    pub fn extra_ns(&self) -> f64 {
        self.after_ns - self.before_ns
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if s.is_empty() {
        return f64::NAN;
    }
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Steps in a latency curve; `points` = (working set bytes, latency), any order.
pub fn infer_steps(points: &[(u64, f64)], page_bytes: u64) -> Vec<Step> {
    let mut pts: Vec<(u64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| *x > 0 && y.is_finite() && *y > 0.0)
        .collect();
    pts.sort_by_key(|p| p.0);
    pts.dedup_by_key(|p| p.0);
    let n = pts.len();
    if n < 3 {
        return vec![];
    }
    let y: Vec<f64> = (0..n)
        .map(|i| {
            if i == 0 || i == n - 1 {
                pts[i].1
            } else {
                median(&[pts[i - 1].1, pts[i].1, pts[i + 1].1])
            }
        })
        .collect();
    let is_rise = |from: f64, to: f64, rel: f64| to > from * (1.0 + rel) && to - from > STEP_ABS_NS;
    let pages = |b: u64| (b as f64 / page_bytes as f64).round() as u64;
    let mut steps: Vec<Step> = Vec::new();
    let mut plateau: Vec<f64> = vec![y[0]];
    // The new plateau's level: its points after the transition's last one, if any.
    let settle = |steps: &mut Vec<Step>, plateau: &[f64]| {
        if let Some(last) = steps.last_mut() {
            last.after_ns = if plateau.len() > 1 {
                median(&plateau[1..])
            } else {
                plateau[0]
            };
        }
    };
    let mut i = 1;
    while i < n {
        let level = median(&plateau);
        if is_rise(level, y[i], STEP_REL) {
            settle(&mut steps, &plateau);
            // A transition whose new plateau settled back near the old one was noise.
            steps.retain(|s| is_rise(s.before_ns, s.after_ns, STEP_REL / 2.0));
            let mut j = i;
            while j + 1 < n && is_rise(y[j], y[j + 1], STEP_REL / 2.0) {
                j += 1;
            }
            steps.push(Step {
                bytes: pts[i - 1].0,
                upper_bytes: pts[i].0,
                entries: pages(pts[i - 1].0),
                upper_entries: pages(pts[i].0),
                before_ns: level,
                after_ns: y[j],
            });
            plateau = vec![y[j]];
            i = j + 1;
        } else {
            plateau.push(y[i]);
            i += 1;
        }
    }
    settle(&mut steps, &plateau);
    steps
}

// ---- reading a run -----------------------------------------------------------------

fn pstr(e: &BenchEntry, k: &str) -> Option<String> {
    e.params.get(k).map(|v| match v {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    })
}

pub fn has_tlb(run: &RunResults) -> bool {
    run.benchmarks.iter().any(|e| e.suite == "tlb")
}

/// Latency in ns when known (else the record's unit).
pub(crate) fn latency(e: &BenchEntry) -> Option<f64> {
    if e.status != BenchStatus::Ok {
        return None;
    }
    let y = e.ns.as_ref().map(|s| s.median).unwrap_or(e.median);
    (y.is_finite() && y > 0.0).then_some(y)
}

/// variant → pattern → mapping → bytes → entry
pub(crate) type Grid<'a> =
    BTreeMap<String, BTreeMap<String, BTreeMap<String, BTreeMap<u64, &'a BenchEntry>>>>;

pub(crate) fn grid(run: &RunResults) -> Grid<'_> {
    let mut g: Grid = BTreeMap::new();
    for e in run.benchmarks.iter().filter(|e| e.suite == "tlb") {
        let base = e.name.split('@').next().unwrap_or(&e.name);
        let segs: Vec<&str> = base.split('/').collect();
        let pattern = pstr(e, "pattern").or_else(|| segs.get(1).map(|s| s.to_string()));
        let mapping = pstr(e, "mapping").or_else(|| segs.get(2).map(|s| s.to_string()));
        let (Some(pattern), Some(mapping), Some(bytes)) = (pattern, mapping, bench_size(e)) else {
            continue;
        };
        let variant = pstr(e, "variant").unwrap_or_default();
        g.entry(variant)
            .or_default()
            .entry(pattern)
            .or_default()
            .entry(mapping)
            .or_default()
            .insert(bytes, e);
    }
    g
}

pub(crate) fn mapping_page(m: &str) -> u64 {
    match m {
        "direct-2M" | "vmalloc_huge" => 2 << 20,
        "direct-1G" => 1 << 30,
        _ => 4096,
    }
}

/// CPUID-reported data-TLB entries: (level, page size) → entries.
pub fn cpuid_entries(run: &RunResults, variant: &str) -> Vec<(String, String, u64)> {
    let key = if variant.is_empty() {
        "tlb/cpuid".to_string()
    } else {
        format!("tlb/cpuid@{variant}")
    };
    let v = run.info.get(&key).or_else(|| run.info.get("tlb/cpuid"));
    let mut out = Vec::new();
    if let Some(list) = v.and_then(|v| v.get("entries")).and_then(|e| e.as_array()) {
        for e in list {
            let ty = e.get("type").and_then(|t| t.as_str()).unwrap_or("");
            if ty == "instruction" {
                continue;
            }
            let level = e
                .get("level")
                .and_then(|t| t.as_str())
                .unwrap_or("?")
                .to_string();
            let ps = e
                .get("page_size")
                .and_then(|t| t.as_str())
                .unwrap_or("?")
                .to_string();
            let n = e.get("entries").and_then(|t| t.as_u64()).unwrap_or(0);
            if n > 0 {
                out.push((level, ps, n));
            }
        }
    }
    out
}

pub(crate) fn page_label(bytes: u64) -> &'static str {
    match bytes {
        4096 => "4K",
        0x20_0000 => "2M",
        _ => "1G",
    }
}

/// The run's analysis, or None when it has nothing to analyse.
pub fn analyze(run: &RunResults) -> Option<Analysis> {
    let tlb = tlb(run);
    (!tlb.is_empty()).then(|| Analysis {
        schema: ANALYSIS_SCHEMA.to_string(),
        tlb,
    })
}

/// Capacity estimate (bytes) for a step. A chase over N pages through a structure of C
/// entries misses a fraction f ≈ 1 − C/N once N > C (random replacement or LRU with a
/// random cyclic order), so the first point past the step, at N₁ with latency y₁, gives
/// C ≈ N₁ (1 − f₁), f₁ = (y₁ − before) / (after − before); clamped to the step's range.
fn capacity(curve: &[(u64, f64)], s: &Step) -> f64 {
    let y1 = curve
        .iter()
        .find(|(b, _)| *b == s.upper_bytes)
        .map_or(s.after_ns, |p| p.1);
    let span = s.after_ns - s.before_ns;
    let f = if span > 0.0 {
        ((y1 - s.before_ns) / span).clamp(0.0, 1.0)
    } else {
        1.0
    };
    (s.upper_bytes as f64 * (1.0 - f)).clamp(s.bytes as f64, s.upper_bytes as f64)
}

fn tlb(run: &RunResults) -> Vec<TlbAnalysis> {
    let mut out = Vec::new();
    for (variant, patterns) in &grid(run) {
        let Some(pattern) = ["random", "page_stride"]
            .into_iter()
            .find(|p| patterns.contains_key(*p))
        else {
            continue;
        };
        let cpu: Vec<CpuidTlb> = cpuid_entries(run, variant)
            .into_iter()
            .map(|(level, page_size, entries)| CpuidTlb {
                level,
                page_size,
                entries,
            })
            .collect();
        let mut maps = Vec::new();
        for (m, pts) in &patterns[pattern] {
            let page = mapping_page(m);
            let curve: Vec<(u64, f64)> = pts
                .iter()
                .filter_map(|(b, e)| latency(e).map(|y| (*b, y)))
                .collect();
            if curve.len() < 3 {
                continue;
            }
            let plabel = page_label(page);
            let reported: Vec<CpuidTlb> = cpu
                .iter()
                .filter(|c| c.page_size == plabel)
                .cloned()
                .collect();
            let levels = infer_steps(&curve, page)
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let est = capacity(&curve, s);
                    let matches = reported
                        .iter()
                        .find(|c| {
                            let (lo, hi) = (s.entries.max(1) as f64, s.upper_entries.max(1) as f64);
                            (c.entries as f64) >= lo / 2.0 && (c.entries as f64) <= hi * 2.0
                        })
                        .map(|c| c.level.clone());
                    TlbLevel {
                        index: i as u32 + 1,
                        bytes_min: s.bytes,
                        bytes_max: s.upper_bytes,
                        entries_min: s.entries,
                        entries_max: s.upper_entries,
                        bytes_estimate: est.round() as u64,
                        entries_estimate: (est / page as f64).round() as u64,
                        latency_before_ns: s.before_ns,
                        latency_after_ns: s.after_ns,
                        extra_ns: s.extra_ns(),
                        cpuid: reported.clone(),
                        matches,
                    }
                })
                .collect::<Vec<_>>();
            maps.push(MappingAnalysis {
                mapping: m.clone(),
                page_bytes: page,
                points: curve.len(),
                levels,
                effective_entry: None,
            });
        }
        // The direct-4K sweep's first step: the 4K reference when CPUID has none.
        let ref_4k = maps
            .iter()
            .find(|m| m.mapping == "direct-4K")
            .and_then(|m| m.levels.first())
            .map(|l| l.entries_estimate);
        for m in &mut maps {
            m.effective_entry = effective_entry(m, &cpu, ref_4k);
        }
        out.push(TlbAnalysis {
            variant: variant.clone(),
            pattern: pattern.to_string(),
            mappings: maps,
        });
    }
    out
}

fn effective_entry(
    m: &MappingAnalysis,
    cpu: &[CpuidTlb],
    ref_4k: Option<u64>,
) -> Option<EffectiveEntry> {
    let first = m.levels.first()?;
    let measured = first.bytes_estimate.max(1);
    let mut hyps = Vec::new();
    for e in [4096u64, 2 << 20, 1 << 30] {
        if e > m.page_bytes {
            continue;
        }
        let label = page_label(e);
        let l1 = cpu
            .iter()
            .find(|c| c.level == "L1" && c.page_size == label)
            .map(|c| (format!("CPUID L1 data TLB, {label} pages"), c.entries));
        let reference = l1.or_else(|| {
            (e == 4096 && m.mapping != "direct-4K")
                .then_some(ref_4k)
                .flatten()
                .map(|n| {
                    (
                        "the direct-4K sweep's first step (CPUID reports no 4K entries)"
                            .to_string(),
                        n,
                    )
                })
        });
        let Some((reference, n)) = reference else {
            continue;
        };
        let predicted = n * e;
        hyps.push(EntryHypothesis {
            entry_bytes: e,
            reference,
            reference_entries: n,
            predicted_step_bytes: predicted,
            log2_error: ((measured as f64) / (predicted as f64)).log2().abs(),
        });
    }
    let best = hyps
        .iter()
        .filter(|h| h.log2_error <= 1.0)
        .min_by(|a, b| a.log2_error.total_cmp(&b.log2_error));
    let listed = hyps
        .iter()
        .map(|h| {
            format!(
                "{} entries: {} × {} = {} ({})",
                page_label(h.entry_bytes),
                h.reference_entries,
                page_label(h.entry_bytes),
                human_size(h.predicted_step_bytes),
                h.reference
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let (bytes, label, evidence) = match best {
        Some(h) => (
            h.entry_bytes,
            page_label(h.entry_bytes).to_string(),
            format!(
                "first step at ~{} of working set ({:.2} of its {} leaves); predicted: {listed}; closest: {} entries",
                human_size(measured),
                measured as f64 / m.page_bytes as f64,
                page_label(m.page_bytes),
                page_label(h.entry_bytes)
            ),
        ),
        None if m.page_bytes == 4096 && hyps.is_empty() => (
            4096,
            "4K".to_string(),
            format!(
                "4K leaves make 4K entries (or coalesced ones; with no CPUID entry count there is nothing to test that against); first step at ~{}",
                human_size(measured)
            ),
        ),
        None => (
            0,
            "undetermined".to_string(),
            if hyps.is_empty() {
                format!(
                    "first step at ~{}, but no reference entry count (CPUID reports no data-TLB entries and there is no direct-4K sweep)",
                    human_size(measured)
                )
            } else {
                format!(
                    "first step at ~{}; no prediction within a factor of two: {listed}",
                    human_size(measured)
                )
            },
        ),
    };
    Some(EffectiveEntry {
        bytes,
        label,
        evidence,
        hypotheses: hyps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_steps_give_64_and_2048() {
        // 1 ns up to 64 pages, 3 ns up to 2048 pages, 20 ns beyond; 2 points per doubling.
        let mut pts = Vec::new();
        let mut p = 1.0f64;
        while p <= 65536.0 {
            let pages = p.round() as u64;
            let y = if pages <= 64 {
                1.0
            } else if pages <= 2048 {
                3.0
            } else {
                20.0
            };
            pts.push((pages * 4096, y));
            p *= std::f64::consts::SQRT_2;
        }
        let s = infer_steps(&pts, 4096);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].entries, 64);
        assert_eq!(s[1].entries, 2048);
        assert!((s[0].extra_ns() - 2.0).abs() < 1e-9);
        assert!((s[1].extra_ns() - 17.0).abs() < 1e-9);
        assert!(s[0].upper_entries > 64 && s[0].upper_entries <= 128);
    }

    #[test]
    fn gradual_transition_is_one_step_and_noise_is_none() {
        let pts = vec![
            (4096 * 8, 2.8),
            (4096 * 16, 2.8),
            (4096 * 32, 2.9),
            (4096 * 64, 2.8),
            (4096 * 91, 7.7),
            (4096 * 128, 7.7),
            (4096 * 256, 7.75),
            (4096 * 362, 9.7),
            (4096 * 512, 12.2),
            (4096 * 724, 14.8),
            (4096 * 1024, 15.4),
            (4096 * 2048, 15.5),
        ];
        let s = infer_steps(&pts, 4096);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].entries, 64);
        assert_eq!(s[1].entries, 256);
        assert!((s[1].after_ns - 15.45).abs() < 0.01, "{s:?}");
        let flat: Vec<(u64, f64)> = (1..20)
            .map(|i| (i * 4096, 5.0 + (i % 3) as f64 * 0.05))
            .collect();
        assert!(infer_steps(&flat, 4096).is_empty());
        // one outlier is smoothed away
        let mut spike = flat.clone();
        spike[7].1 = 50.0;
        assert!(infer_steps(&spike, 4096).is_empty());
    }

    fn level(bytes: u64, page: u64) -> TlbLevel {
        let entries = bytes / page;
        TlbLevel {
            bytes_estimate: bytes,
            index: 1,
            bytes_min: 0,
            bytes_max: 0,
            entries_min: entries,
            entries_max: entries,
            entries_estimate: entries,
            latency_before_ns: 1.0,
            latency_after_ns: 3.0,
            extra_ns: 2.0,
            cpuid: vec![],
            matches: None,
        }
    }

    /// A mapping whose first step is at `first` bytes of working set.
    fn mapping(name: &str, page: u64, first: u64) -> MappingAnalysis {
        MappingAnalysis {
            mapping: name.into(),
            page_bytes: page,
            points: 10,
            levels: vec![level(first, page)],
            effective_entry: None,
        }
    }

    fn l1(page: &str, n: u64) -> CpuidTlb {
        CpuidTlb {
            level: "L1".into(),
            page_size: page.into(),
            entries: n,
        }
    }

    #[test]
    fn guest_2m_leaves_stepping_like_4k_entries_are_4k() {
        // Zen: L1 64 entries for 4K and 2M. A 2M mapping stepping after 256 KiB = 64 × 4K
        // (1/8 of one 2M leaf) acts as 4K entries; stepping after 64 leaves acts as 2M.
        let cpu = [l1("4K", 64), l1("2M", 64)];
        let split = effective_entry(&mapping("direct-2M", 2 << 20, 300 << 10), &cpu, None).unwrap();
        assert_eq!(split.label, "4K", "{split:?}");
        let huge = effective_entry(&mapping("direct-2M", 2 << 20, 128 << 20), &cpu, None).unwrap();
        assert_eq!(huge.label, "2M", "{huge:?}");
        let k4 = effective_entry(&mapping("direct-4K", 4096, 70 << 12), &cpu, None).unwrap();
        assert_eq!((k4.label.as_str(), k4.bytes), ("4K", 4096));
        assert_eq!(k4.hypotheses.len(), 1, "a 4K leaf cannot act as a 2M entry");
    }

    #[test]
    fn without_cpuid_the_4k_sweep_is_the_reference() {
        let e =
            effective_entry(&mapping("vmalloc_huge", 2 << 20, 400 << 10), &[], Some(91)).unwrap();
        assert_eq!(e.label, "4K", "{e:?}");
        assert!(e.evidence.contains("direct-4K"), "{}", e.evidence);
        let none = effective_entry(&mapping("direct-2M", 2 << 20, 80 << 20), &[], None).unwrap();
        assert_eq!(none.label, "undetermined");
    }
}
