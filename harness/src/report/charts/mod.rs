//! Which charts a run gets, built from its results (drawing is [`super::plot`]'s).
//!
//! Headline charts, answering the two questions kmbench exists for:
//! * `alloc-cost`: kmalloc vs vmalloc (and pages) — one alloc+free pair by size, every
//!   vmalloc flush mode, min–p99 bands;
//! * `vmalloc-phases`: vmalloc decomposed (bookkeeping, PTE writes, TLB flush, alloc, free)
//!   per flush mode, with kmalloc's pair as a dashed reference;
//! * `tlb-<pattern>`: ns per access vs working set, one line per mapping, one panel per
//!   host backing (variant), min–p99 bands, TLB-reach markers (CPUID entries × page size,
//!   or, where CPUID reports none, the latency steps of the `analysis` section, drawn
//!   dotted and labelled `inferred`; the subtitle says which);
//! * `tlb-ratio`: direct-4K / direct-2M and vmalloc / vmalloc_huge vs working set;
//! * `smp-scalability`: per-op cost vs CPUs running it concurrently (linear x), one line
//!   per SMP family (`smp/kmalloc/pair/64`, `ipi/roundtrip`), min–p99 bands;
//! * `smp-shootdown`: one TLB shootdown's cost vs target CPUs, one line per pages and
//!   leaf size (`1 page 4K`, `512 pages 4K`, `1 page 2M`).
//!
//! Then one `latency-<suite>` chart per suite with sizes: series grouped by operation and
//! mode (the name without its size: `vmalloc/pair/4096/lazy` is a point of
//! `vmalloc/pair … lazy`), x in bytes or page orders, panels per variant or flush mode.
//! SMP records (suites `smp`, `ipi`, `tlb_shootdown`) get only their own charts.
//!
//! Files: [`group`] (reading names and params, grouping entries into panels and lines),
//! [`alloc`] (the allocator headline charts), [`tlb`] (the TLB headline charts),
//! [`latency`] (per-suite latency charts), [`smp`] (the SMP charts, and how their names and
//! params are read).
mod alloc;
mod group;
mod latency;
mod smp;
#[cfg(test)]
mod smp_tests;
#[cfg(test)]
mod tests;
mod tlb;

pub use alloc::{alloc_cost, vmalloc_phases};
pub use group::{is_access, point, series_label, size_of, unit_of};
pub use latency::suite_charts;
pub use smp::{is_smp, smp_scalability, smp_shootdown};
pub use tlb::{inferred_markers, max_4k_reach, reach_markers, tlb_charts, tlb_ratio};

use crate::report::plot::Chart;
use crate::results::RunResults;

fn y_desc(unit: &str, what: &str) -> String {
    if unit == "ns" {
        format!("{what} (log)")
    } else {
        format!("{what}, {unit} (log)")
    }
}

fn run_tag(run: &RunResults) -> String {
    let e = &run.env;
    format!(
        "run {} · {} {} · CPL {} · host backing {}",
        run.run_id, e.accel, e.hypervisor, e.cpl, e.host_backing
    )
}

/// Every chart of `run`, headline charts first, in the order the report shows them.
pub fn charts(run: &RunResults) -> Vec<Chart> {
    let mut out = Vec::new();
    out.extend(alloc_cost(run));
    out.extend(vmalloc_phases(run));
    out.extend(tlb_charts(run));
    out.extend(tlb_ratio(run));
    out.extend(smp_scalability(run));
    out.extend(smp_shootdown(run));
    out.extend(suite_charts(run));
    out
}

pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
