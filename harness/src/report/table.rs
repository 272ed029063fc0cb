//! The run summary, one implementation for both commands: printed after `kmbench run`, and
//! by `kmbench report` (which adds the details only it shows, see `report::print_run`).
use std::collections::BTreeMap;
use std::io::{self, Write};

use kmbench_protocol::{BenchStatus, FaultRecord, GuestExit};

use crate::format::{bench_size, fmt_ns, fmt_num, human_size};
use crate::results::{BenchEntry, RunResults};

/// A fault's message and, in parentheses, whatever the guest captured:
/// `page fault (vector 14, error code 0x2, rip 0x111bd3, CR2 0x7fff…, cpl 0)`.
pub fn describe_fault(f: &FaultRecord) -> String {
    let mut parts = Vec::new();
    if let Some(v) = f.vector {
        parts.push(format!("vector {v}"));
    }
    if let Some(c) = f.error_code {
        parts.push(format!("error code {c:#x}"));
    }
    if let Some(r) = f.rip {
        parts.push(format!("RIP {r:#x}"));
    }
    if let Some(c) = f.cr2 {
        parts.push(format!("CR2 {c:#x}"));
    }
    if let Some(c) = f.cpl {
        parts.push(format!("CPL {c}"));
    }
    if parts.is_empty() {
        f.message.clone()
    } else {
        format!("{} ({})", f.message, parts.join(", "))
    }
}

/// `message` headed by what the exit means (`kernel panic: oops`), unless it already starts
/// with that (`CPU exception: page fault (#PF)`).
pub fn with_exit_kind(exit: GuestExit, message: &str) -> String {
    if message
        .to_lowercase()
        .starts_with(&exit.describe().to_lowercase())
    {
        message.to_string()
    } else {
        format!("{}: {message}", exit.describe())
    }
}

/// The status column: empty for ok, else the status and the guest's reason.
fn status_text(e: &BenchEntry) -> String {
    match (e.status, &e.message) {
        (BenchStatus::Ok, _) => String::new(),
        (s, Some(m)) => format!("{}: {m}", s.label()),
        (s, None) => s.label().to_string(),
    }
}

/// A param as a table cell: strings bare, other values as JSON.
fn param_text(v: &serde_json::Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

fn hz(h: u64) -> String {
    if h == 0 {
        "unknown".into()
    } else {
        format!("{:.3} GHz", h as f64 / 1e9)
    }
}

/// Benchmarks grouped by suite, suites in order of first appearance.
pub fn by_suite(run: &RunResults) -> Vec<(String, Vec<&BenchEntry>)> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&BenchEntry>> = BTreeMap::new();
    for e in &run.benchmarks {
        let suite = if e.suite.is_empty() {
            e.name.split('/').next().unwrap_or("").to_string()
        } else {
            e.suite.clone()
        };
        if !groups.contains_key(&suite) {
            order.push(suite.clone());
        }
        groups.entry(suite).or_default().push(e);
    }
    order
        .into_iter()
        .map(|s| {
            let v = groups.remove(&s).unwrap_or_default();
            (s, v)
        })
        .collect()
}

/// Columns padded to their widest cell, joined by two spaces; `right` marks right-aligned ones.
struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn write(&self, out: &mut dyn Write, indent: &str) -> io::Result<()> {
        let mut w: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let pad = " ".repeat(w[i].saturating_sub(c.chars().count()));
                    if self.right[i] {
                        format!("{pad}{c}")
                    } else {
                        format!("{c}{pad}")
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_string()
        };
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        writeln!(out, "{indent}{}", line(&headers))?;
        for r in &self.rows {
            writeln!(out, "{indent}{}", line(r))?;
        }
        Ok(())
    }
}

/// Print the environment header, the benchmarks grouped by suite, self-tests, faults and the exit.
pub fn print(r: &RunResults, out: &mut dyn Write) -> io::Result<()> {
    print_with(r, out, false)
}

/// What `kmbench run` prints: as [`print`], but a TLB sweep's access benchmarks (hundreds
/// of rows) are one line per pattern and variant; `kmbench report` and `index.html` have
/// every row.
pub fn print_summary(r: &RunResults, out: &mut dyn Write) -> io::Result<()> {
    print_with(r, out, true)
}

/// Is `e` one point of a TLB sweep (`tlb/<pattern>/<mapping>/<size>`)?
pub fn is_access(e: &BenchEntry) -> bool {
    e.suite == "tlb" && e.params.contains_key("mapping")
}

fn print_with(r: &RunResults, out: &mut dyn Write, compact: bool) -> io::Result<()> {
    print_header(r, out)?;
    print_benchmarks(r, out, compact)?;
    print_selftests(r, out)?;
    print_faults(r, out)?;
    if let Some(x) = &r.exit {
        writeln!(out, "\nexit: {} — {}", x.status, x.message)?;
    }
    Ok(())
}

fn print_header(r: &RunResults, out: &mut dyn Write) -> io::Result<()> {
    let e = &r.env;
    writeln!(out)?;
    writeln!(
        out,
        "kmbench run {}  ({}){}",
        r.run_id,
        e.config_file,
        if r.complete { "" } else { "  [INCOMPLETE]" }
    )?;
    writeln!(
        out,
        "  accel {} ({}), hypervisor {}, cpl {} ({}), cpu {}, machine {}",
        e.accel, e.backend, e.hypervisor, e.cpl, e.cpl_source, e.cpu_model, e.machine
    )?;
    writeln!(out, "  host {} / {}", e.host_cpu, e.host_kernel)?;
    writeln!(
        out,
        "  tsc {} ({}), boot {:.1} ms, guest memory {} MiB, direct map {}, host backing {}, boots {}",
        hz(e.tsc_hz),
        if e.tsc_source.is_empty() { "-" } else { &e.tsc_source },
        e.boot_ms,
        e.guest_memory_mib,
        e.direct_map_page,
        e.host_backing,
        e.boots
    )?;
    if e.accel == "tcg" {
        writeln!(
            out,
            "  note: TCG is an emulator: these are not hardware numbers"
        )?;
    }
    Ok(())
}

/// One line per (pattern, variant) of a TLB sweep: its mappings, working-set range, the
/// fastest and slowest median, and how many points were not measured.
fn print_access_groups(entries: &[&BenchEntry], out: &mut dyn Write) -> io::Result<()> {
    let p = |e: &BenchEntry, k: &str| {
        e.params
            .get(k)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_default()
    };
    let mut groups: Vec<((String, String), Vec<&BenchEntry>)> = Vec::new();
    for e in entries.iter().copied().filter(|e| is_access(e)) {
        let key = (p(e, "pattern"), p(e, "variant"));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(e),
            None => groups.push((key, vec![e])),
        }
    }
    for ((pattern, variant), v) in groups {
        let mut maps: Vec<String> = v.iter().map(|e| p(e, "mapping")).collect();
        maps.dedup();
        let mut uniq: Vec<String> = Vec::new();
        for m in maps {
            if !uniq.contains(&m) {
                uniq.push(m);
            }
        }
        let sizes: Vec<u64> = v.iter().filter_map(|e| bench_size(e)).collect();
        let (lo, hi) = (sizes.iter().min(), sizes.iter().max());
        let ok: Vec<f64> = v
            .iter()
            .filter(|e| e.status == BenchStatus::Ok)
            .filter_map(|e| e.ns.as_ref().map(|n| n.median))
            .collect();
        let fastest = ok.iter().copied().fold(f64::INFINITY, f64::min);
        let slowest = ok.iter().copied().fold(0.0f64, f64::max);
        let missing = v.len() - v.iter().filter(|e| e.status == BenchStatus::Ok).count();
        writeln!(
            out,
            "  tlb/{pattern}{}: {} points, mappings {}, working sets {} – {}{}{}",
            if variant.is_empty() {
                String::new()
            } else {
                format!(" [{variant}]")
            },
            v.len(),
            uniq.join(", "),
            lo.map(|s| human_size(*s)).unwrap_or_default(),
            hi.map(|s| human_size(*s)).unwrap_or_default(),
            if ok.is_empty() {
                String::new()
            } else {
                format!(
                    ", median {} – {} per access",
                    fmt_ns(fastest),
                    fmt_ns(slowest)
                )
            },
            if missing > 0 {
                format!(", {missing} not measured")
            } else {
                String::new()
            }
        )?;
    }
    Ok(())
}

/// One table per suite: size (when any benchmark has one), the SMP counts `cpus` and
/// `targets` (when any benchmark has the param: entries may share a name and differ only
/// there), statistics in the suite's unit and in ns, samples, boots (multi-boot runs) and
/// status.
fn print_benchmarks(run: &RunResults, out: &mut dyn Write, compact: bool) -> io::Result<()> {
    if run.benchmarks.is_empty() {
        return writeln!(out, "\nno benchmarks");
    }
    for (suite, entries) in by_suite(run) {
        writeln!(
            out,
            "\n{suite} ({} benchmark{})",
            entries.len(),
            if entries.len() == 1 { "" } else { "s" }
        )?;
        let entries: Vec<&BenchEntry> = if compact {
            print_access_groups(&entries, out)?;
            entries.into_iter().filter(|e| !is_access(e)).collect()
        } else {
            entries
        };
        if entries.is_empty() {
            continue;
        }
        let multi_boot = entries.iter().any(|b| b.boot_medians.len() > 1);
        let has_sizes = entries.iter().any(|b| bench_size(b).is_some());
        let unit = entries
            .iter()
            .map(|b| b.unit.as_str())
            .find(|u| !u.is_empty())
            .unwrap_or("cycles");
        let counts: Vec<&'static str> = ["cpus", "targets"]
            .into_iter()
            .filter(|k| entries.iter().any(|b| b.params.contains_key(*k)))
            .collect();
        let mut headers = vec!["benchmark"];
        if has_sizes {
            headers.push("size");
        }
        headers.extend(&counts);
        headers.extend([
            "min",
            "median",
            "p99",
            "max",
            "median ns",
            "p99 ns",
            "samples",
        ]);
        if multi_boot {
            headers.push("boots");
        }
        headers.push("status");
        let mut rows = Vec::new();
        for b in &entries {
            let mut r = vec![b.name.clone()];
            if has_sizes {
                r.push(bench_size(b).map(human_size).unwrap_or_default());
            }
            for k in &counts {
                r.push(b.params.get(*k).map(param_text).unwrap_or_default());
            }
            let ok = b.status == BenchStatus::Ok;
            let cell = |v: f64| if ok { fmt_num(v) } else { "-".into() };
            r.push(cell(b.min));
            r.push(cell(b.median));
            r.push(cell(b.p99));
            r.push(cell(b.max));
            match (&b.ns, ok) {
                (Some(ns), true) => {
                    r.push(fmt_ns(ns.median));
                    r.push(fmt_ns(ns.p99));
                }
                _ => {
                    r.push("-".into());
                    r.push("-".into());
                }
            }
            r.push(b.samples.to_string());
            if multi_boot {
                r.push(b.boot_medians.len().to_string());
            }
            r.push(status_text(b));
            rows.push(r);
        }
        let n = headers.len();
        let mut right = vec![true; n];
        right[0] = false;
        right[n - 1] = false;
        writeln!(out, "  (min/median/p99/max in {unit})")?;
        Table {
            headers,
            right,
            rows,
        }
        .write(out, "  ")?;
    }
    Ok(())
}

fn print_selftests(run: &RunResults, out: &mut dyn Write) -> io::Result<()> {
    if run.selftests.is_empty() {
        return Ok(());
    }
    let failed: Vec<_> = run.selftests.iter().filter(|t| !t.passed).collect();
    writeln!(
        out,
        "\nself-tests: {} passed, {} failed",
        run.selftests.len() - failed.len(),
        failed.len()
    )?;
    for t in failed {
        if t.detail.is_empty() {
            writeln!(out, "  FAIL {}", t.name)?;
        } else {
            writeln!(out, "  FAIL {}: {}", t.name, t.detail)?;
        }
    }
    Ok(())
}

fn print_faults(run: &RunResults, out: &mut dyn Write) -> io::Result<()> {
    if run.faults.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nfaults:")?;
    for f in &run.faults {
        writeln!(out, "  {}", with_exit_kind(f.exit, &describe_fault(f)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_the_serialised_names() {
        for s in [
            BenchStatus::Ok,
            BenchStatus::Oom,
            BenchStatus::Error,
            BenchStatus::Unsupported,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.label());
        }
    }

    #[test]
    fn fault_description() {
        let mut f = FaultRecord {
            exit: GuestExit::Exception,
            message: "page fault".into(),
            vector: Some(14),
            error_code: Some(2),
            rip: Some(0x1234),
            cr2: Some(0x1000),
            cpl: Some(3),
            cpu: None,
        };
        assert_eq!(
            describe_fault(&f),
            "page fault (vector 14, error code 0x2, RIP 0x1234, CR2 0x1000, CPL 3)"
        );
        f.vector = None;
        f.error_code = None;
        f.rip = None;
        f.cr2 = None;
        f.cpl = None;
        assert_eq!(describe_fault(&f), "page fault");
        assert_eq!(
            with_exit_kind(GuestExit::Exception, "CPU exception: page fault"),
            "CPU exception: page fault"
        );
        assert_eq!(
            with_exit_kind(GuestExit::Panic, "oops"),
            "kernel panic: oops"
        );
    }
}
