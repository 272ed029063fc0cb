//! `kmbench report RUN`: re-print a stored run's tables and write its SVG plots;
//! `kmbench report --list` / `kmbench list`: the runs stored under `results/`.
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kmbench_protocol::BenchStatus;

use crate::results::{BenchEntry, RunResults};

pub mod list;
pub mod plot;

pub use list::{list_runs, print_list, ListArgs, RunSummary};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A results.json file, a run folder containing one, a run id under --results-dir, or
    /// `latest`. Not needed with --list.
    #[arg(required_unless_present = "list")]
    pub run: Option<PathBuf>,
    /// List the runs stored under --results-dir instead.
    #[arg(long)]
    pub list: bool,
    /// Where runs are stored.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Only print the tables.
    #[arg(long)]
    pub no_plots: bool,
    /// Write plots here instead of the run folder.
    #[arg(long)]
    pub plots_dir: Option<PathBuf>,
}

/// Resolve a run argument: a path, a run id under `results_dir`, or `latest`.
pub fn resolve_run(arg: &Path, results_dir: &Path) -> PathBuf {
    if arg.exists() {
        return arg.to_path_buf();
    }
    if arg == Path::new("latest") {
        if let Some(last) = list_runs(results_dir)
            .into_iter()
            .rfind(|r| r.error.is_none())
        {
            return last.dir;
        }
    }
    let under = results_dir.join(arg);
    if under.exists() {
        under
    } else {
        arg.to_path_buf()
    }
}

pub fn main(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if args.list {
        print_list(&list_runs(&args.results_dir), &args.results_dir, &mut out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let arg = args
        .run
        .as_deref()
        .expect("clap requires RUN without --list");
    let (run, path) = crate::compare::load_run(&resolve_run(arg, &args.results_dir))?;
    print_run(&run, &mut out)?;
    if crate::tlb::has_tlb(&run) {
        crate::tlb::print_report(&run, &mut out)?;
    }
    if !args.no_plots {
        let dir = match &args.plots_dir {
            Some(d) => d.clone(),
            None => path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        };
        std::fs::create_dir_all(&dir)?;
        let written = plot::write_plots(&run, &dir)?;
        if written.is_empty() {
            writeln!(out, "\nno plots: no benchmark has a size")?;
        } else {
            writeln!(out, "\nplots:")?;
            for p in written {
                writeln!(out, "  {}", p.display())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---- sizes ----

/// Parse `64`, `4096`, `4K`, `4k`, `2M`, `1G`, `4KiB`, `2MB`… into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return None;
    }
    let n: u64 = s[..digits_end].parse().ok()?;
    let mult: u64 = match s[digits_end..].to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn param_size(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        serde_json::Value::String(s) => parse_size(s),
        _ => None,
    }
}

/// A benchmark's size in bytes: the `size` (or `bytes`) param, else the last name segment.
pub fn bench_size(e: &BenchEntry) -> Option<u64> {
    for key in ["size", "bytes"] {
        if let Some(s) = e.params.get(key).and_then(param_size) {
            return Some(s);
        }
    }
    e.name.rsplit('/').next().and_then(parse_size)
}

/// `64 B`, `4 KiB`, `2 MiB`, `1.5 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (m, u) in UNITS {
        if bytes >= m {
            return if bytes.is_multiple_of(m) {
                format!("{} {u}", bytes / m)
            } else {
                format!("{:.1} {u}", bytes as f64 / m as f64)
            };
        }
    }
    format!("{bytes} B")
}

/// Nanoseconds with a unit that keeps numbers short.
pub fn human_ns(ns: f64) -> String {
    crate::compare::fmt_ns(ns)
}

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

// ---- tables ----

struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn write(&self, out: &mut impl Write, indent: &str) -> io::Result<()> {
        let mut w: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: Vec<String>| -> String {
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
        writeln!(
            out,
            "{indent}{}",
            line(self.headers.iter().map(|h| h.to_string()).collect())
        )?;
        for r in &self.rows {
            writeln!(out, "{indent}{}", line(r.clone()))?;
        }
        Ok(())
    }
}

fn status_text(e: &BenchEntry) -> String {
    match (e.status, &e.message) {
        (BenchStatus::Ok, _) => String::new(),
        (s, Some(m)) => format!("{}: {m}", status_name(s)),
        (s, None) => status_name(s).to_string(),
    }
}

fn status_name(s: BenchStatus) -> &'static str {
    match s {
        BenchStatus::Ok => "ok",
        BenchStatus::Oom => "oom",
        BenchStatus::Error => "error",
        BenchStatus::Unsupported => "unsupported",
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

/// Print a stored run: environment header, benchmarks by suite (cycles and ns), self-tests,
/// faults and info. Self-contained so `report` works on any results.json.
pub fn print_run(run: &RunResults, out: &mut impl Write) -> io::Result<()> {
    let e = &run.env;
    writeln!(
        out,
        "run {}  started {}  {}",
        run.run_id,
        run.started_at,
        if run.complete {
            "complete"
        } else {
            "INCOMPLETE"
        }
    )?;
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let mut env_rows: Vec<(&str, String)> = vec![
        (
            "accel",
            format!(
                "{} (hypervisor {}, backend {})",
                or_dash(&e.accel),
                or_dash(&e.hypervisor),
                or_dash(&e.backend)
            ),
        ),
        (
            "cpl",
            if e.cpl_source.is_empty() {
                e.cpl.to_string()
            } else {
                format!("{} ({})", e.cpl, e.cpl_source)
            },
        ),
        ("host cpu", or_dash(&e.host_cpu)),
        ("host kernel", or_dash(&e.host_kernel)),
        (
            "guest cpu",
            format!(
                "{}{}",
                or_dash(&e.cpu_model),
                if e.machine.is_empty() {
                    String::new()
                } else {
                    format!(", machine {}", e.machine)
                }
            ),
        ),
        (
            "memory",
            format!(
                "{} MiB, direct map {} pages, host backing {}",
                e.guest_memory_mib,
                or_dash(&e.direct_map_page),
                or_dash(&e.host_backing)
            ),
        ),
        (
            "tsc",
            format!(
                "{:.3} GHz ({})",
                e.tsc_hz as f64 / 1e9,
                or_dash(&e.tsc_source)
            ),
        ),
        (
            "boot",
            format!(
                "{:.0} ms{}",
                e.boot_ms,
                if e.boots > 1 {
                    format!(", {} boots", e.boots)
                } else {
                    String::new()
                }
            ),
        ),
        (
            "config",
            format!(
                "{} (sha256 {})",
                or_dash(&e.config_file),
                e.config_hash.get(..12).unwrap_or(&e.config_hash)
            ),
        ),
        ("commit", or_dash(&e.kmbench_commit)),
    ];
    if !e.qemu_version.is_empty() {
        env_rows.push(("qemu", e.qemu_version.clone()));
    }
    if !e.flush_mode.is_empty() || e.mm_debug {
        env_rows.push((
            "mm",
            format!(
                "flush {}, debug {}",
                or_dash(&e.flush_mode),
                if e.mm_debug { "on" } else { "off" }
            ),
        ));
    }
    if let Some(g) = &e.guest {
        let f = &g.features;
        let feats: Vec<&str> = [
            (f.page_1g, "1G"),
            (f.pcid, "pcid"),
            (f.invpcid, "invpcid"),
            (f.pmu, "pmu"),
            (f.nx, "nx"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        env_rows.push((
            "guest",
            format!(
                "{} sees {}, {} [{}], {} MiB",
                g.kernel,
                g.guest_hypervisor,
                g.cpu_brand.trim(),
                feats.join(" "),
                g.mem_bytes >> 20
            ),
        ));
    }
    for (k, v) in &e.extra {
        env_rows.push(("extra", format!("{k} = {v}")));
    }
    let kw = env_rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in env_rows {
        writeln!(out, "  {k:<kw$}  {v}")?;
    }
    if let Some(x) = &run.exit {
        writeln!(
            out,
            "  {:<kw$}  {}{}: {}",
            "exit",
            x.status,
            x.code.map(|c| format!(" ({c})")).unwrap_or_default(),
            x.message
        )?;
    }

    for (suite, entries) in by_suite(run) {
        writeln!(
            out,
            "\n{suite} ({} benchmark{})",
            entries.len(),
            if entries.len() == 1 { "" } else { "s" }
        )?;
        let multi_boot = entries.iter().any(|b| b.boot_medians.len() > 1);
        let has_sizes = entries.iter().any(|b| bench_size(b).is_some());
        let unit = entries
            .iter()
            .map(|b| b.unit.as_str())
            .find(|u| !u.is_empty())
            .unwrap_or("cycles");
        let mut headers = vec!["benchmark"];
        if has_sizes {
            headers.push("size");
        }
        headers.extend(["median", "p99", "min", "median ns", "p99 ns", "samples"]);
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
            let ok = b.status == BenchStatus::Ok;
            let cell = |v: f64| if ok { fmt_num(v) } else { "-".into() };
            r.push(cell(b.median));
            r.push(cell(b.p99));
            r.push(cell(b.min));
            match (&b.ns, ok) {
                (Some(ns), true) => {
                    r.push(human_ns(ns.median));
                    r.push(human_ns(ns.p99));
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
        writeln!(out, "  (median/p99/min in {unit})")?;
        Table {
            headers,
            right,
            rows,
        }
        .write(out, "  ")?;
    }
    if run.benchmarks.is_empty() {
        writeln!(out, "\nno benchmarks")?;
    }

    if !run.selftests.is_empty() {
        let failed: Vec<_> = run.selftests.iter().filter(|t| !t.passed).collect();
        writeln!(
            out,
            "\nself-tests: {} passed, {} failed",
            run.selftests.len() - failed.len(),
            failed.len()
        )?;
        for t in failed {
            writeln!(
                out,
                "  FAIL {}{}",
                t.name,
                if t.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", t.detail)
                }
            )?;
        }
    }
    if !run.faults.is_empty() {
        writeln!(out, "\nfaults:")?;
        for f in &run.faults {
            let mut extra = Vec::new();
            if let Some(v) = f.vector {
                extra.push(format!("vector {v}"));
            }
            if let Some(c) = f.error_code {
                extra.push(format!("error code {c:#x}"));
            }
            if let Some(r) = f.rip {
                extra.push(format!("rip {r:#x}"));
            }
            if let Some(c) = f.cr2 {
                extra.push(format!("cr2 {c:#x}"));
            }
            if let Some(c) = f.cpl {
                extra.push(format!("cpl {c}"));
            }
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!(" ({})", extra.join(", "))
            };
            writeln!(out, "  {}: {}{extra}", f.exit.describe(), f.message)?;
        }
    }
    if !run.info.is_empty() {
        writeln!(out, "\ninfo:")?;
        let kw = run.info.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, v) in &run.info {
            let mut s = match v {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            if s.chars().count() > 100 {
                s = s.chars().take(97).collect::<String>() + "...";
            }
            writeln!(out, "  {k:<kw$}  {s}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Env;
    use kmbench_protocol::{FaultRecord, GuestExit, SelftestRecord, Summary};

    fn entry(
        name: &str,
        suite: &str,
        cycles: f64,
        params: &[(&str, serde_json::Value)],
    ) -> BenchEntry {
        let s = Summary {
            min: cycles * 0.9,
            median: cycles,
            p99: cycles * 2.0,
            max: cycles * 4.0,
            mean: cycles,
        };
        BenchEntry {
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
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            extra: BTreeMap::new(),
            message: None,
            boot_medians: vec![],
        }
    }

    fn sample() -> RunResults {
        let mut benchmarks = vec![
            entry("kmalloc/pair/64", "kmalloc", 120.0, &[]),
            entry("kmalloc/pair/4096", "kmalloc", 480.0, &[]),
            entry("kmalloc/pair/2M", "kmalloc", 9000.0, &[]),
            entry("timer/rdtsc", "timer", 30.0, &[]),
        ];
        for mapping in ["4K", "2M"] {
            for ws in [4096u64, 1 << 20, 64 << 20] {
                benchmarks.push(entry(
                    &format!("tlb/random/{mapping}/{ws}"),
                    "tlb",
                    3.0 + (ws >> 16) as f64 * if mapping == "4K" { 0.5 } else { 0.05 },
                    &[
                        ("bytes", ws.into()),
                        ("mapping", mapping.into()),
                        ("pattern", "random".into()),
                    ],
                ));
            }
        }
        let mut oom = entry("vmalloc/map/1G", "vmalloc", 0.0, &[("size", "1G".into())]);
        oom.status = BenchStatus::Oom;
        oom.message = Some("out of memory".into());
        benchmarks.push(oom);
        RunResults {
            schema: crate::results::RESULTS_SCHEMA.into(),
            complete: false,
            run_id: "demo".into(),
            started_at: "2025-01-01T00:00:00Z".into(),
            env: Env {
                accel: "kvm".into(),
                hypervisor: "hardware".into(),
                host_cpu: "Test CPU".into(),
                tsc_hz: 2_000_000_000,
                ..Env::default()
            },
            exit: None,
            benchmarks,
            selftests: vec![
                SelftestRecord {
                    name: "buddy/merge".into(),
                    passed: true,
                    detail: String::new(),
                },
                SelftestRecord {
                    name: "slab/redzone".into(),
                    passed: false,
                    detail: "corrupted".into(),
                },
            ],
            info: BTreeMap::new(),
            faults: vec![FaultRecord {
                exit: GuestExit::Panic,
                message: "oops".into(),
                vector: None,
                error_code: None,
                rip: Some(0x1234),
                cr2: None,
                cpl: None,
            }],
        }
    }

    #[test]
    fn print_run_shows_everything() {
        let mut buf = Vec::new();
        print_run(&sample(), &mut buf).unwrap();
        let s = String::from_utf8(buf).unwrap();
        for needle in [
            "run demo",
            "INCOMPLETE",
            "Test CPU",
            "kmalloc (3 benchmarks)",
            "timer (1 benchmark)",
            "tlb (6 benchmarks)",
            "2 MiB",
            "4 KiB",
            "60.0 ns",
            "oom: out of memory",
            "1 passed, 1 failed",
            "FAIL slab/redzone: corrupted",
            "kernel panic: oops (rip 0x1234)",
        ] {
            assert!(s.contains(needle), "missing {needle:?} in\n{s}");
        }
        // Sizes right-aligned: the size column ends at the same offset on every kmalloc row.
        let ends: Vec<usize> = s
            .lines()
            .filter(|l| l.contains("kmalloc/pair/"))
            .map(|l| l.find(" B").or(l.find("iB")).unwrap())
            .collect();
        assert!(
            ends.windows(2)
                .all(|w| w[0] + 1 >= w[1] && w[1] + 1 >= w[0]),
            "{s}"
        );
    }

    #[test]
    fn plots_are_svg_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let written = plot::write_plots(&sample(), dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["latency-kmalloc.svg", "tlb-random.svg"],
            "timer has no sizes, vmalloc only an oom entry"
        );
        let tlb = std::fs::read_to_string(dir.path().join("tlb-random.svg")).unwrap();
        assert!(tlb.starts_with("<svg"));
        assert!(
            tlb.contains("<text")
                && tlb.contains("working set")
                && tlb.contains("4 KiB")
                && tlb.contains("64 MiB"),
            "{tlb}"
        );
        assert_eq!(
            tlb.matches(r#"stroke-width="2""#).count(),
            2 + 2,
            "one line per mapping, plus legend marks"
        );
        let km = std::fs::read_to_string(dir.path().join("latency-kmalloc.svg")).unwrap();
        assert!(km.contains("kmalloc/pair"));
    }

    #[test]
    fn list_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        for (id, when) in [("b", "2025-02-01T00:00:00Z"), ("a", "2025-01-01T00:00:00Z")] {
            let mut r = sample();
            r.run_id = id.into();
            r.started_at = when.into();
            std::fs::create_dir_all(dir.path().join(id)).unwrap();
            std::fs::write(
                dir.path().join(id).join("results.json"),
                serde_json::to_string(&r).unwrap(),
            )
            .unwrap();
        }
        std::fs::create_dir_all(dir.path().join("junk")).unwrap();
        std::fs::write(dir.path().join("junk/results.json"), "nope").unwrap();
        let runs = list_runs(dir.path());
        assert_eq!(
            runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
            ["junk", "a", "b"]
        );
        assert_eq!(runs[1].benchmarks, 11);
        assert_eq!(runs[1].complete, Some(false));
        assert!(runs[0].error.is_some());
        let mut buf = Vec::new();
        print_list(&runs, dir.path(), &mut buf).unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert!(
            s.contains("kvm/hardware/0") && s.contains("unreadable"),
            "{s}"
        );
        assert_eq!(
            resolve_run(Path::new("latest"), dir.path()),
            dir.path().join("b")
        );
        assert_eq!(
            resolve_run(Path::new("a"), dir.path()),
            dir.path().join("a")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64"), Some(64));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("rdtsc"), None);
        assert_eq!(parse_size("4x"), None);
        assert_eq!(human_size(64), "64 B");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(3 << 19), "1.5 MiB");
    }
}
