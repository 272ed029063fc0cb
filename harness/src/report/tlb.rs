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
use std::collections::BTreeSet;
use std::io::{self, Write};

use super::tlb_analysis::{self, grid, latency};
pub use super::tlb_analysis::{cpuid_entries, has_tlb, infer_steps, Step, STEP_ABS_NS, STEP_REL};
use crate::format::{fmt_num, human_size};
use crate::results::RunResults;

/// Mapping labels in report column order.
pub const MAPPINGS: [&str; 5] = [
    "direct-4K",
    "direct-2M",
    "direct-1G",
    "vmalloc",
    "vmalloc_huge",
];

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
    print_report_with(run, out, true)
}

/// The TLB section as `kmbench run` prints it: the facts, the 4K/2M picks and the inferred
/// geometry, without the per-working-set matrices (those are in `kmbench report`, the
/// charts and `index.html`).
pub fn print_summary(run: &RunResults, out: &mut impl Write) -> io::Result<()> {
    print_report_with(run, out, false)
}

fn print_report_with(run: &RunResults, out: &mut impl Write, matrices: bool) -> io::Result<()> {
    let g = grid(run);
    let derived;
    let analysis = match &run.analysis {
        Some(a) => Some(a),
        None => {
            derived = tlb_analysis::analyze(run);
            derived.as_ref()
        }
    };
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
            if !matrices {
                writeln!(
                    out,
                    "  {} mappings × {} working sets ({} – {}); per-size matrix: kmbench report, index.html",
                    cols.len() + others.len(),
                    sizes.len(),
                    sizes.first().map(|s| human_size(*s)).unwrap_or_default(),
                    sizes.last().map(|s| human_size(*s)).unwrap_or_default()
                )?;
            }
            let sizes: BTreeSet<u64> = if matrices { sizes } else { BTreeSet::new() };
            if matrices {
                write!(out, "  {:>10}", "working set")?;
                for c in &cols {
                    write!(out, " {:>12}", c)?;
                }
                for c in &others {
                    write!(out, " {:>12}", c)?;
                }
                writeln!(out, " {:>7}", "4K/2M")?;
            }
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
        // Geometry per mapping: printed from results.json's `analysis` section (derived
        // from the records when an older results.json has none).
        let Some(geo) = analysis
            .iter()
            .flat_map(|a| a.tlb.iter())
            .find(|t| &t.variant == variant)
        else {
            continue;
        };
        writeln!(out, "\n  TLB geometry inferred from `{}` (steps where latency rises > {:.0}% over the plateau; results.json analysis.tlb):", geo.pattern, STEP_REL * 100.0)?;
        for m in &geo.mappings {
            let plabel = tlb_analysis::page_label(m.page_bytes);
            let rep_s = m
                .levels
                .first()
                .map(|l| &l.cpuid)
                .into_iter()
                .flatten()
                .map(|c| format!("{} {}", c.level, c.entries))
                .collect::<Vec<_>>()
                .join(", ");
            let cpu_all = cpuid_entries(run, variant);
            let rep_s = if rep_s.is_empty() {
                let r: Vec<String> = cpu_all
                    .iter()
                    .filter(|(_, ps, _)| ps == plabel)
                    .map(|(l, _, n)| format!("{l} {n}"))
                    .collect();
                if r.is_empty() {
                    "not reported".to_string()
                } else {
                    r.join(", ")
                }
            } else {
                rep_s
            };
            writeln!(
                out,
                "    {} ({plabel} pages; CPUID data TLB {plabel}: {rep_s}):",
                m.mapping
            )?;
            if m.levels.is_empty() {
                writeln!(
                    out,
                    "      no step found (flat within {:.0}%)",
                    STEP_REL * 100.0
                )?;
            }
            for l in &m.levels {
                let entries = if l.bytes_min < m.page_bytes {
                    format!("< 1 page ({})", human_size(l.bytes_min))
                } else {
                    format!(
                        "~{} ({}–{}) entries",
                        l.entries_estimate, l.entries_min, l.entries_max
                    )
                };
                let matched = l
                    .matches
                    .as_ref()
                    .and_then(|lv| l.cpuid.iter().find(|c| &c.level == lv))
                    .map(|c| format!("  ≈ CPUID {} {}", c.level, c.entries))
                    .unwrap_or_else(|| {
                        "  (no TLB level this size: cache or hypervisor)".to_string()
                    });
                writeln!(
                    out,
                    "      step after {:>9}: {entries:<26} +{} ns/access ({} → {} ns){matched}",
                    human_size(l.bytes_min),
                    fmt_num(l.extra_ns),
                    fmt_num(l.latency_before_ns),
                    fmt_num(l.latency_after_ns),
                )?;
            }
            if let Some(e) = &m.effective_entry {
                writeln!(out, "      acts as {} TLB entries: {}", e.label, e.evidence)?;
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
