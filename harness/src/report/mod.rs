//! `kmbench report RUN`: re-print a stored run's tables and write its SVG plots;
//! `kmbench report --list` / `kmbench list`: the runs stored under `results/`.
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::results::RunResults;
use crate::run_dir::{list_runs, load_run, resolve_run};

pub mod charts;
#[cfg(test)]
mod fixture;
pub mod html;
pub mod list;
pub mod plot;
pub mod table;
pub mod tlb;
pub mod tlb_analysis;

pub use list::{print_list, ListArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A results.json file, a run folder containing one, a run id under --results-dir, or
    /// `latest`. Not needed with --list.
    #[arg(required_unless_present = "list")]
    pub run: Option<PathBuf>,
    /// List the runs stored under --results-dir instead.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub runs: crate::run_dir::RunsDirArg,
    /// Only print the tables.
    #[arg(long)]
    pub no_plots: bool,
    /// Write plots here instead of the run folder.
    #[arg(long)]
    pub plots_dir: Option<PathBuf>,
    /// Rebuild the run's results.json from its records.jsonl first (done by itself when
    /// results.json is behind the journal, e.g. after a SIGKILL).
    #[arg(long, conflicts_with = "list")]
    pub rebuild: bool,
}

pub fn main(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if args.list {
        let dir = args.runs.dir();
        print_list(&list_runs(&dir), &dir, &mut out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let arg = args
        .run
        .as_deref()
        .expect("clap requires RUN without --list");
    let (run, path) = load_run(&resolve_run(arg, &args.runs.dir()))?;
    print_run(&run, &mut out)?;
    if tlb::has_tlb(&run) {
        tlb::print_report(&run, &mut out)?;
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
        let written = write_outputs(&run, &dir)?;
        writeln!(out, "\nreport: {}", written.index.display())?;
        if written.plots.is_empty() {
            writeln!(out, "no plots: no benchmark has a size")?;
        } else {
            writeln!(
                out,
                "plots: {} SVG files in {}",
                written.plots.len(),
                dir.display()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What [`write_outputs`] wrote.
#[derive(Debug)]
pub struct Written {
    /// `<chart>.svg`, headline charts first.
    pub plots: Vec<PathBuf>,
    /// `index.html`.
    pub index: PathBuf,
}

/// Write every chart of `run` as `<name>.svg` and the self-contained `index.html` into
/// `dir` (what `kmbench run` leaves in the run folder and `kmbench report` rewrites).
pub fn write_outputs(run: &RunResults, dir: &Path) -> Result<Written, Box<dyn std::error::Error>> {
    let mut svgs = Vec::new();
    let mut plots = Vec::new();
    for c in charts::charts(run) {
        let svg = plot::render(&c)?;
        let path = dir.join(format!("{}.svg", c.name));
        crate::safe_fs::write_atomic(&path, svg.as_bytes())?;
        plots.push(path);
        svgs.push((c.name, svg));
    }
    let index = dir.join("index.html");
    crate::safe_fs::write_atomic(&index, html::run_page(run, &svgs).as_bytes())?;
    Ok(Written { plots, index })
}

/// Print a stored run: the same summary `kmbench run` prints ([`table::print`]), then the
/// details only the report shows: the rest of the environment and the info records.
/// Self-contained so `report` works on any results.json.
pub fn print_run(run: &RunResults, out: &mut impl Write) -> io::Result<()> {
    table::print(run, out)?;
    print_details(run, out)
}

/// The environment beyond the summary's header (start time, config hash, commit, QEMU, mm
/// flags, the guest's hello, backend extras, the exit code) and the guest's info records.
pub(crate) fn print_details(run: &RunResults, out: &mut impl Write) -> io::Result<()> {
    let e = &run.env;
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let mut env_rows: Vec<(&str, String)> = vec![
        ("started", or_dash(&run.started_at)),
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
    if let Some(c) = run.exit.as_ref().and_then(|x| x.code) {
        env_rows.push(("exit code", c.to_string()));
    }
    writeln!(out, "\ndetails:")?;
    let kw = env_rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in env_rows {
        writeln!(out, "  {k:<kw$}  {v}")?;
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
    use crate::results::{BenchEntry, Env};
    use kmbench_protocol::{BenchStatus, FaultRecord, GuestExit, SelftestRecord};
    use std::collections::BTreeMap;

    fn entry(
        name: &str,
        suite: &str,
        cycles: f64,
        params: &[(&str, serde_json::Value)],
    ) -> BenchEntry {
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        super::fixture::entry(name, suite, cycles, params)
    }

    fn sample() -> RunResults {
        let mut benchmarks = vec![
            entry("kmalloc/pair/64", "kmalloc", 120.0, &[]),
            entry("kmalloc/pair/4096", "kmalloc", 480.0, &[]),
            entry("kmalloc/pair/2M", "kmalloc", 9000.0, &[]),
            entry("timer/rdtsc", "timer", 30.0, &[]),
        ];
        for mapping in ["direct-4K", "direct-2M"] {
            for ws in [4096u64, 1 << 20, 64 << 20] {
                benchmarks.push(entry(
                    &format!("tlb/random/{mapping}/{ws}"),
                    "tlb",
                    3.0 + (ws >> 16) as f64 * if mapping == "direct-4K" { 0.5 } else { 0.05 },
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
            rejected_records: vec![],
            analysis: None,
            faults: vec![FaultRecord {
                exit: GuestExit::Panic,
                message: "oops".into(),
                vector: None,
                error_code: None,
                rip: Some(0x1234),
                cr2: None,
                cpl: None,
                cpu: None,
            }],
            noise: None,
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
            "kernel panic: oops (RIP 0x1234)",
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
    fn plots_are_svg_with_text_and_index_inlines_them() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_outputs(&sample(), dir.path()).unwrap();
        let names: Vec<String> = written
            .plots
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["tlb-random.svg", "tlb-ratio.svg", "latency-kmalloc.svg"],
            "timer has no sizes, vmalloc only an oom entry (no alloc-cost chart)"
        );
        let tlb = std::fs::read_to_string(dir.path().join("tlb-random.svg")).unwrap();
        assert!(tlb.starts_with("<svg"));
        for needle in [
            "working set",
            "4 KiB",
            "64 MiB",
            "direct-4K",
            "direct-2M",
            " ns\n</text>",
        ] {
            assert!(tlb.contains(needle), "{needle:?} missing in {tlb}");
        }
        assert!(
            !tlb.contains("cycles"),
            "all entries have ns: the axis is in ns"
        );
        let km = std::fs::read_to_string(dir.path().join("latency-kmalloc.svg")).unwrap();
        assert!(km.contains("kmalloc/pair"));
        let html = std::fs::read_to_string(&written.index).unwrap();
        assert_eq!(html.matches("<svg").count(), 3, "every chart inlined once");
        for remote in ["src=", "href=\"http", "@import", "url("] {
            assert!(
                !html.contains(remote),
                "nothing loaded from elsewhere: {remote}"
            );
        }
        for needle in [
            "<h1>kmbench run demo</h1>",
            "INCOMPLETE",
            "Huge pages or 4K?",
            "1 passed, 1 failed",
            "TLB analysis",
        ] {
            assert!(html.contains(needle), "{needle:?} missing");
        }
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
}
