//! The run folder's `index.html` in a real browser: headless Chromium loads it from disk,
//! must log nothing to the console (no script errors, no failed loads) and must lay out
//! every chart (the page's script counts the SVGs with a non-empty box and text into
//! `<html data-charts-rendered="N">`, which `--dump-dom` shows).
//!
//! Needs the `chromium` binary (Debian package `chromium`; `.ci/run` installs it). Outside
//! CI the test is skipped, saying so, when it is missing; under CI (`CI` set) it fails.
use std::path::{Path, PathBuf};
use std::process::Command;

use kmbench::results::RunResults;
use serde_json::json;

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KMBENCH_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn chromium_or_skip() -> Option<PathBuf> {
    match chromium() {
        Some(c) => Some(c),
        None if std::env::var_os("CI").is_some() => {
            panic!("chromium not found under CI: .ci/run installs the Debian package `chromium`")
        }
        None => {
            eprintln!(
                "SKIPPED: chromium not found (apt-get install chromium, or set KMBENCH_CHROMIUM)"
            );
            None
        }
    }
}

/// Load `page` headless; returns (DOM after load, console lines).
fn load(chromium: &Path, page: &Path) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--window-size=1600,1200",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

fn bench(name: &str, suite: &str, ns: f64, params: serde_json::Value) -> serde_json::Value {
    let s = |f: f64| json!({"min": ns * f * 0.9, "median": ns * f, "p99": ns * f * 1.3, "max": ns * f * 2.0, "mean": ns * f});
    let mut b = s(2.6);
    let m = b.as_object_mut().unwrap();
    m.insert("name".into(), name.into());
    m.insert("suite".into(), suite.into());
    m.insert("status".into(), "ok".into());
    m.insert("unit".into(), "cycles".into());
    m.insert("samples".into(), 100.into());
    m.insert("ns".into(), s(1.0));
    m.insert("params".into(), params);
    b
}

/// A run with each headline chart's inputs: kmalloc and vmalloc pairs and phases, pages by
/// order, a TLB sweep under two host backings with CPUID entries.
fn sample_run() -> RunResults {
    let mut b = vec![];
    for size in [64u64, 4096, 65536] {
        b.push(bench(
            &format!("kmalloc/pair/{size}"),
            "kmalloc",
            6.0 + size as f64 / 8000.0,
            json!({"size": size}),
        ));
    }
    for order in [0u64, 9] {
        b.push(bench(
            &format!("alloc_pages/pair/{order}"),
            "pages",
            11.0,
            json!({"order": order, "bytes": 4096u64 << order}),
        ));
    }
    for mode in ["lazy", "full"] {
        for size in [4096u64, 65536] {
            let k = if mode == "lazy" { 1.0 } else { 50.0 };
            let p = json!({"size": size, "flush_mode": mode});
            b.push(bench(
                &format!("vmalloc/pair/{size}/{mode}"),
                "vmalloc",
                390.0 * k,
                p.clone(),
            ));
            for (ph, f) in [
                ("bookkeeping", 0.4),
                ("pte_writes", 0.45),
                ("tlb_flush", 0.05),
            ] {
                b.push(bench(
                    &format!("vmalloc/phase/{size}/{mode}/{ph}"),
                    "vmalloc",
                    390.0 * k * f,
                    p.clone(),
                ));
            }
        }
    }
    for v in ["4K", "thp"] {
        for m in ["direct-4K", "direct-2M", "vmalloc", "vmalloc_huge"] {
            for k in 12..=28u32 {
                let ws = 1u64 << k;
                let y = 1.2
                    + (ws as f64 / 4096.0).log2().max(0.0).powi(2)
                        * if m.ends_with("4K") { 0.5 } else { 0.3 };
                b.push(bench(
                    &format!("tlb/random/{m}/{ws}@{v}"),
                    "tlb",
                    y,
                    json!({"mapping": m, "pattern": "random", "bytes": ws, "variant": v}),
                ));
            }
        }
    }
    let cpuid = json!({"source": "test", "entries": [
        {"type": "data", "level": "L1", "page_size": "4K", "entries": 64},
        {"type": "data", "level": "L2", "page_size": "4K", "entries": 2048},
        {"type": "data", "level": "L1", "page_size": "2M", "entries": 32}]});
    serde_json::from_value(json!({
        "schema": kmbench::results::RESULTS_SCHEMA,
        "complete": true,
        "run_id": "html-test",
        "started_at": "2026-12-02T00:00:00Z",
        "env": {"accel": "kvm", "hypervisor": "pvm", "backend": "kvm", "cpl": 3, "cpu_model": "host",
                "host_cpu": "Test CPU", "host_kernel": "6.x", "guest_memory_mib": 512, "tsc_hz": 2600000000u64,
                "tsc_source": "test", "boot_ms": 20.0, "kmbench_commit": "abc", "config_file": "test.toml",
                "config_hash": "00", "direct_map_page": "2M", "host_backing": "per variant",
                "extra": {"variants": [{"name": "4K", "host_backing": "4K", "status": "success"},
                                        {"name": "thp", "host_backing": "thp", "status": "success"}]}},
        "exit": {"status": "success", "message": "success"},
        "benchmarks": b,
        "info": {"tlb/cpuid@4K": cpuid, "tlb/cpuid@thp": cpuid}
    }))
    .unwrap()
}

#[test]
fn run_index_html_loads_without_console_errors_and_shows_its_charts() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = sample_run();
    let w = kmbench::report::write_outputs(&run, dir.path()).unwrap();
    let names: Vec<String> = w
        .plots
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for headline in ["alloc-cost", "vmalloc-phases", "tlb-random", "tlb-ratio"] {
        assert!(
            names.iter().any(|n| n == headline),
            "{headline} missing: {names:?}"
        );
    }
    let (dom, console) = load(&chromium, &w.index);
    assert!(console.is_empty(), "console output: {console:#?}");
    let rendered = format!("data-charts-rendered=\"{}\"", w.plots.len());
    assert!(
        dom.contains(&rendered),
        "want {rendered}; DOM head: {}",
        &dom[..dom.len().min(400)]
    );
    for needle in [
        "kmalloc or vmalloc?",
        "Huge pages or 4K?",
        "L1 4K reach 256 KiB",
        "TLB analysis",
    ] {
        assert!(dom.contains(needle), "{needle:?} not in the DOM");
    }
}

#[test]
fn the_console_check_sees_script_errors() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><p>x</p><script>missing_fn();</script>",
    )
    .unwrap();
    let (_, console) = load(&chromium, &page);
    assert!(
        console.iter().any(|l| l.contains("missing_fn")),
        "{console:#?}"
    );
}

#[test]
fn compare_html_loads_and_shows_the_change_chart() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let base = sample_run();
    let mut new = sample_run();
    for (i, b) in new.benchmarks.iter_mut().enumerate() {
        let f = if i % 7 == 0 { 1.3 } else { 1.0 };
        b.record.median *= f;
        b.boot_medians = (0..5)
            .map(|k| b.record.median * (1.0 + k as f64 * 0.002))
            .collect();
    }
    let dir = tempfile::tempdir().unwrap();
    let cmp =
        kmbench::compare::compare_runs(&base, dir.path(), &new, dir.path(), &Default::default());
    let page = dir.path().join("compare.html");
    std::fs::write(&page, kmbench::report::html::compare_page(&cmp)).unwrap();
    let (dom, console) = load(&chromium, &page);
    assert!(console.is_empty(), "console output: {console:#?}");
    assert!(
        dom.contains("data-charts-rendered=\"1\""),
        "the change chart is laid out"
    );
    assert!(dom.contains("Change of the median per benchmark"));
}
