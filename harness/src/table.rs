//! The summary printed after a run (and reusable by `kmbench report`).
use std::io::{self, Write};

use kmbench_protocol::BenchStatus;

use crate::results::RunResults;

/// A number for a table cell: thousands separators for big values, 2 significant decimals for small.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let int = format!("{:.0}", a);
        let mut out = String::new();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn status_label(s: BenchStatus) -> &'static str {
    match s {
        BenchStatus::Ok => "ok",
        BenchStatus::Oom => "oom",
        BenchStatus::Error => "error",
        BenchStatus::Unsupported => "unsupported",
    }
}

fn hz(h: u64) -> String {
    if h == 0 {
        "unknown".into()
    } else {
        format!("{:.3} GHz", h as f64 / 1e9)
    }
}

/// Print the environment header, the benchmarks grouped by suite, self-tests and faults.
pub fn print(r: &RunResults, out: &mut dyn Write) -> io::Result<()> {
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

    if !r.benchmarks.is_empty() {
        let name_w = r
            .benchmarks
            .iter()
            .map(|b| b.name.len())
            .max()
            .unwrap_or(9)
            .max(9);
        let rows: Vec<[String; 8]> = r
            .benchmarks
            .iter()
            .map(|b| {
                [
                    status_label(b.status).to_string(),
                    b.samples.to_string(),
                    fmt_num(b.min),
                    fmt_num(b.median),
                    fmt_num(b.p99),
                    fmt_num(b.max),
                    b.unit.clone(),
                    b.ns.map(|n| fmt_num(n.median))
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let heads = [
            "status",
            "samples",
            "min",
            "median",
            "p99",
            "max",
            "unit",
            "median ns",
        ];
        let mut w = heads.map(str::len);
        for row in &rows {
            for (i, c) in row.iter().enumerate() {
                w[i] = w[i].max(c.len());
            }
        }
        writeln!(out)?;
        write!(out, "{:<name_w$}", "benchmark")?;
        for (i, h) in heads.iter().enumerate() {
            write!(out, "  {:>width$}", h, width = w[i])?;
        }
        writeln!(out)?;
        let mut suite: Option<&str> = None;
        for (b, row) in r.benchmarks.iter().zip(&rows) {
            if suite != Some(b.suite.as_str()) {
                writeln!(out, "[{}]", b.suite)?;
                suite = Some(b.suite.as_str());
            }
            write!(out, "{:<name_w$}", b.name)?;
            for (i, c) in row.iter().enumerate() {
                write!(out, "  {:>width$}", c, width = w[i])?;
            }
            writeln!(out)?;
            if let Some(m) = &b.message {
                writeln!(out, "    {m}")?;
            }
        }
    } else {
        writeln!(out, "\n(no benchmark records)")?;
    }

    if !r.selftests.is_empty() {
        let failed: Vec<_> = r.selftests.iter().filter(|s| !s.passed).collect();
        writeln!(
            out,
            "\nself-tests: {} passed, {} failed",
            r.selftests.len() - failed.len(),
            failed.len()
        )?;
        for s in failed {
            writeln!(out, "  FAILED {}: {}", s.name, s.detail)?;
        }
    }

    for f in &r.faults {
        writeln!(
            out,
            "\nguest fault ({}): {}",
            serde_json::to_value(f.exit)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            f.message
        )?;
        let mut parts = Vec::new();
        if let Some(v) = f.vector {
            parts.push(format!("vector {v}"));
        }
        if let Some(c) = f.error_code {
            parts.push(format!("error code {c:#x}"));
        }
        if let Some(v) = f.rip {
            parts.push(format!("RIP {v:#018x}"));
        }
        if let Some(v) = f.cr2 {
            parts.push(format!("CR2 {v:#018x}"));
        }
        if let Some(v) = f.cpl {
            parts.push(format!("CPL {v}"));
        }
        if !parts.is_empty() {
            writeln!(out, "  {}", parts.join("  "))?;
        }
    }
    if let Some(x) = &r.exit {
        writeln!(out, "\nexit: {} — {}", x.status, x.message)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(1.4), "1.40");
        assert_eq!(fmt_num(15.25), "15.2");
        assert_eq!(fmt_num(150.4), "150");
        assert_eq!(fmt_num(1_234_567.0), "1,234,567");
        assert_eq!(fmt_num(f64::NAN), "-");
    }
}
