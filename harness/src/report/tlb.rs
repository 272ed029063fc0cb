//! TLB report: the `tlb/<pattern>/<mapping>/<size>` sweep side by side, the TLB geometry
//! inferred from it, and the facts of the environment that explain it.
//!
//! Printed after `kmbench run` (when the run has tlb records) and by `kmbench report`.
//!
//! # Geometry inference (Calibrator / lmbench `tlb` style)
//!
//! A dependent chase that touches one cache line per page costs one TLB lookup per access.
//! While the pages fit in a TLB level, latency sits on a plateau; once they overflow it,
//! every access also pays that level's miss (the next level's lookup, or a page walk), and
//! latency steps up to a new plateau. So, per mapping (page size):
//!
//! 1. take the `random` sweep (else `page_stride`), points sorted by working set, ns per
//!    access (median of the samples);
//! 2. smooth with a 3-point running median (one noisy point is not a step);
//! 3. walk the points keeping the current plateau level (median of the points since the
//!    last step); a point more than [`STEP_REL`] (25 %) and [`STEP_ABS_NS`] above the
//!    plateau starts a step. The step's working set is the last point still on the
//!    plateau; consecutive points that keep rising by more than half the threshold belong
//!    to the same step (log-spaced sweeps spread one transition over several points);
//! 4. estimated entries = step working set / page size (for `random`, one access per page:
//!    the number of pages that still fit), with the first point past the step as the upper
//!    bound (the true size lies between); extra cost per miss = new plateau − old plateau.
//!
//! Steps are not only TLB levels: the same curve also steps where the touched lines
//! overflow a data cache (one line per page at a random line offset: L1D overflows at a
//! few hundred pages) and, under a hypervisor, where shadow/nested structures overflow.
//! The report therefore prints the CPUID-reported entries (the guest's `tlb/cpuid` info
//! record) beside each estimate and marks a step as matching a TLB level only when it is
//! within a factor of two of it.
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use kmbench_protocol::BenchStatus;

use crate::format::{bench_size, fmt_num, human_size};
use crate::results::{BenchEntry, RunResults};

/// Relative rise over the plateau that counts as a step.
pub const STEP_REL: f64 = 0.25;
/// Absolute rise (ns) below which a change is noise.
pub const STEP_ABS_NS: f64 = 0.3;

/// Mapping labels in report column order.
pub const MAPPINGS: [&str; 5] = [
    "direct-4K",
    "direct-2M",
    "direct-1G",
    "vmalloc",
    "vmalloc_huge",
];

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
fn latency(e: &BenchEntry) -> Option<f64> {
    if e.status != BenchStatus::Ok {
        return None;
    }
    let y = e.ns.as_ref().map(|s| s.median).unwrap_or(e.median);
    (y.is_finite() && y > 0.0).then_some(y)
}

/// variant → pattern → mapping → bytes → entry
type Grid<'a> = BTreeMap<String, BTreeMap<String, BTreeMap<String, BTreeMap<u64, &'a BenchEntry>>>>;

fn grid(run: &RunResults) -> Grid<'_> {
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

fn mapping_page(m: &str) -> u64 {
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

fn page_label(bytes: u64) -> &'static str {
    match bytes {
        4096 => "4K",
        0x20_0000 => "2M",
        _ => "1G",
    }
}

fn env_facts(run: &RunResults, variant: &str) -> Vec<String> {
    let e = &run.env;
    let vinfo = e
        .extra
        .get("variants")
        .and_then(|v| v.as_array())
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("name").and_then(|n| n.as_str()) == Some(variant))
        });
    let get = |k: &str, dflt: String| {
        vinfo
            .and_then(|v| v.get(k))
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or(dflt)
    };
    let backing = get("host_backing", e.host_backing.clone());
    let cpl = get("cpl", e.cpl.to_string());
    let dm = get("direct_map_page", e.direct_map_page.clone());
    let host_thp = e
        .extra
        .get("host_thp")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();
    let mut v = vec![format!(
        "hypervisor {} (accel {}, backend {}), guest CPL {cpl}, host backing {backing}, host THP {host_thp}, guest THP none (kmbench maps explicitly; direct map {dm} leaves)",
        e.hypervisor, e.accel, e.backend
    )];
    match e.hypervisor.as_str() {
        "pvm" => v.push(
            "kvm_pvm = shadow paging: the CPU walks the host's shadow tables, not the guest's; a guest 2M leaf \
             becomes a 2M TLB entry only where the host backs it with a 2M page (thp/hugetlbfs), otherwise it is \
             split into 4K shadow entries, so 4K and 2M guest mappings then show the same TLB steps; each walk \
             is a native 4-level walk (no nested walk)."
                .into(),
        ),
        "hardware" => v.push(
            "hardware virtualization (EPT/NPT): a TLB miss costs a 2-D walk (up to 24 references); \
             guest 2M/1G leaves help only as far as the host backing is huge too."
                .into(),
        ),
        "tcg" => v.push("TCG: emulated, its soft TLB is not the CPU's; the numbers say nothing about hardware TLBs.".into()),
        _ => {}
    }
    v
}

/// The TLB section of a run's report.
pub fn print_report(run: &RunResults, out: &mut impl Write) -> io::Result<()> {
    let g = grid(run);
    if g.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\nTLB (ns per access, median; 4K/2M = direct-4K / direct-2M)"
    )?;
    for (variant, patterns) in &g {
        let title = if variant.is_empty() {
            String::new()
        } else {
            format!(" [{variant}]")
        };
        writeln!(out, "\n== tlb{title}")?;
        for f in env_facts(run, variant) {
            writeln!(out, "  {f}")?;
        }
        for (pattern, maps) in patterns {
            let cols: Vec<&str> = MAPPINGS
                .iter()
                .copied()
                .filter(|m| {
                    maps.get(*m)
                        .is_some_and(|pts| pts.values().any(|e| latency(e).is_some()))
                })
                .collect();
            let others: Vec<&String> = maps
                .keys()
                .filter(|m| {
                    !MAPPINGS.contains(&m.as_str())
                        && maps[*m].values().any(|e| latency(e).is_some())
                })
                .collect();
            let sizes: BTreeSet<u64> = maps.values().flat_map(|m| m.keys().copied()).collect();
            writeln!(out, "\n  {pattern}{title}")?;
            write!(out, "  {:>10}", "working set")?;
            for c in &cols {
                write!(out, " {:>12}", c)?;
            }
            for c in &others {
                write!(out, " {:>12}", c)?;
            }
            writeln!(out, " {:>7}", "4K/2M")?;
            for s in &sizes {
                write!(out, "  {:>10}", human_size(*s))?;
                let val = |m: &str| maps.get(m).and_then(|p| p.get(s)).and_then(|e| latency(e));
                for c in &cols {
                    match val(c) {
                        Some(y) => write!(out, " {:>12}", fmt_num(y))?,
                        None => write!(out, " {:>12}", "-")?,
                    }
                }
                for c in &others {
                    match val(c) {
                        Some(y) => write!(out, " {:>12}", fmt_num(y))?,
                        None => write!(out, " {:>12}", "-")?,
                    }
                }
                match (val("direct-4K"), val("direct-2M")) {
                    (Some(a), Some(b)) => writeln!(out, " {:>7.2}", a / b)?,
                    _ => writeln!(out, " {:>7}", "-")?,
                }
            }
            let picks: Vec<String> = [16u64 << 20, 256 << 20, 1 << 30]
                .iter()
                .filter_map(|&b| {
                    let a = maps.get("direct-4K")?.get(&b).and_then(|e| latency(e))?;
                    let c = maps.get("direct-2M")?.get(&b).and_then(|e| latency(e))?;
                    Some(format!("{} {:.2}", human_size(b), a / c))
                })
                .collect();
            if !picks.is_empty() {
                writeln!(out, "  4K/2M{title}: {}", picks.join(", "))?;
            }
            let unsupported: Vec<String> = maps
                .iter()
                .filter(|(_, pts)| !pts.values().any(|e| latency(e).is_some()))
                .filter_map(|(m, pts)| {
                    pts.values()
                        .next()
                        .map(|e| format!("{m}: {}", e.message.clone().unwrap_or_default()))
                })
                .collect();
            for u in unsupported {
                writeln!(out, "  (not measured) {u}")?;
            }
        }
        // Geometry per mapping.
        let pattern = ["random", "page_stride"]
            .into_iter()
            .find(|p| patterns.contains_key(*p));
        let Some(pattern) = pattern else { continue };
        let cpu = cpuid_entries(run, variant);
        writeln!(out, "\n  TLB geometry inferred from `{pattern}` (steps where latency rises > {:.0}% over the plateau):", STEP_REL * 100.0)?;
        for (m, pts) in &patterns[pattern] {
            let page = mapping_page(m);
            let curve: Vec<(u64, f64)> = pts
                .iter()
                .filter_map(|(b, e)| latency(e).map(|y| (*b, y)))
                .collect();
            if curve.len() < 3 {
                continue;
            }
            let steps = infer_steps(&curve, page);
            let plabel = page_label(page);
            let reported: Vec<&(String, String, u64)> =
                cpu.iter().filter(|(_, ps, _)| ps == plabel).collect();
            let rep_s = reported
                .iter()
                .map(|(l, _, n)| format!("{l} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                out,
                "    {m} ({plabel} pages; CPUID data TLB {plabel}: {}):",
                if rep_s.is_empty() {
                    "not reported".to_string()
                } else {
                    rep_s
                }
            )?;
            if steps.is_empty() {
                writeln!(
                    out,
                    "      no step found (flat within {:.0}%)",
                    STEP_REL * 100.0
                )?;
            }
            for s in &steps {
                let matched = reported
                    .iter()
                    .filter(|(_, _, n)| {
                        let (lo, hi) = (s.entries.max(1) as f64, s.upper_entries.max(1) as f64);
                        (*n as f64) >= lo / 2.0 && (*n as f64) <= hi * 2.0
                    })
                    .map(|(l, _, n)| format!("CPUID {l} {n}"))
                    .collect::<Vec<_>>();
                let entries = if s.bytes < page {
                    format!("< 1 page ({})", human_size(s.bytes))
                } else {
                    format!("~{}–{} entries", s.entries, s.upper_entries)
                };
                writeln!(
                    out,
                    "      step after {:>9}: {entries:<22} +{} ns/access ({} → {} ns){}",
                    human_size(s.bytes),
                    fmt_num(s.extra_ns()),
                    fmt_num(s.before_ns),
                    fmt_num(s.after_ns),
                    if matched.is_empty() {
                        "  (no TLB level this size: cache or hypervisor)".to_string()
                    } else {
                        format!("  ≈ {}", matched.join(", "))
                    }
                )?;
            }
        }
    }
    Ok(())
}

/// 4K/2M latency ratio at a working set, per variant and pattern (for summaries and tests).
pub fn ratio_4k_2m(run: &RunResults, variant: &str, pattern: &str, bytes: u64) -> Option<f64> {
    let g = grid(run);
    let maps = g.get(variant)?.get(pattern)?;
    let a = latency(maps.get("direct-4K")?.get(&bytes)?)?;
    let b = latency(maps.get("direct-2M")?.get(&bytes)?)?;
    Some(a / b)
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
}
