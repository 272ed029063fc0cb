//! `kmbench export`: the shapes Bencher (BMF) and github-action-benchmark
//! (customSmallerIsBetter) read, checked field by field.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kmbench::results::{BenchEntry, Env, RunResults, RESULTS_SCHEMA};
use kmbench_protocol::{BenchRecord, BenchStatus, Summary};
use serde_json::Value;

fn bench(name: &str, median_cycles: f64, boots: &[f64]) -> BenchEntry {
    let cyc = Summary {
        min: median_cycles * 0.5,
        median: median_cycles,
        p99: median_cycles * 4.0,
        max: median_cycles * 10.0,
        mean: median_cycles * 1.2,
    };
    BenchEntry {
        record: BenchRecord {
            name: name.into(),
            suite: name.split('/').next().unwrap().into(),
            status: BenchStatus::Ok,
            unit: "cycles".into(),
            samples: 500,
            min: cyc.min,
            median: cyc.median,
            p99: cyc.p99,
            max: cyc.max,
            mean: cyc.mean,
            ns: Some(cyc.scaled(0.5)), // 2 GHz
            params: BTreeMap::new(),
            extra: BTreeMap::new(),
            message: None,
        },
        boot_medians: boots.to_vec(),
        unstable_boots: vec![],
    }
}

fn sample_run() -> RunResults {
    let mut unsupported = bench("tlb/random/1G/1073741824", 100.0, &[]);
    unsupported.status = BenchStatus::Unsupported;
    unsupported.message = Some("no 1G pages".into());
    let mut no_ns = bench("timer/rdtsc", 40.0, &[40.0]);
    no_ns.ns = None; // falls back to tsc_hz
    let mut counts = bench("buddy/splits/0", 7.0, &[]);
    counts.ns = None;
    counts.unit = "ops".into();
    RunResults {
        schema: RESULTS_SCHEMA.into(),
        complete: true,
        run_id: "r1".into(),
        started_at: "2025-01-01T00:00:00Z".into(),
        env: Env {
            accel: "kvm".into(),
            hypervisor: "hardware".into(),
            tsc_hz: 2_000_000_000,
            ..Env::default()
        },
        exit: Some(kmbench::results::ExitInfo {
            status: "success".into(),
            code: Some(1),
            message: "success".into(),
        }),
        benchmarks: vec![
            bench("kmalloc/pair/64", 200.0, &[198.0, 200.0, 206.0]),
            bench("vmalloc/map/8192", 8000.0, &[8000.0]),
            no_ns,
            counts,
            unsupported,
        ],
        ..Default::default()
    }
}

fn write_run(dir: &Path) -> PathBuf {
    let d = dir.join("run1");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("results.json"),
        serde_json::to_string(&sample_run()).unwrap(),
    )
    .unwrap();
    d
}

fn export(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kmbench"))
        .arg("export")
        .args(args)
        .output()
        .unwrap()
}

fn json_stdout(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bmf_shape() {
    let t = tempfile::tempdir().unwrap();
    let run = write_run(t.path());
    let v = json_stdout(&export(&["--format", "bmf", run.to_str().unwrap()]));
    let doc = v
        .as_object()
        .expect("BMF is an object keyed by benchmark name");
    // Unsupported benchmarks are not exported.
    assert!(!doc.contains_key("tlb/random/1G/1073741824"));
    assert_eq!(doc.len(), 4);
    for (name, measures) in doc {
        let measures = measures
            .as_object()
            .unwrap_or_else(|| panic!("{name}: measures object"));
        for (measure, metric) in measures {
            let m = metric.as_object().unwrap();
            assert!(
                m["value"].is_f64() || m["value"].is_u64(),
                "{name}/{measure}: value is a number"
            );
            for k in m.keys() {
                assert!(
                    ["value", "lower_value", "upper_value"].contains(&k.as_str()),
                    "{name}/{measure}: unexpected key {k}"
                );
            }
            let val = m["value"].as_f64().unwrap();
            if let (Some(lo), Some(hi)) = (m.get("lower_value"), m.get("upper_value")) {
                let (lo, hi) = (lo.as_f64().unwrap(), hi.as_f64().unwrap());
                assert!(lo <= val && val <= hi, "{name}: {lo} {val} {hi}");
            } else {
                assert!(m.get("lower_value").is_none() && m.get("upper_value").is_none());
            }
        }
    }
    // Latency in ns: the median across boots, bounded by its CI across boots (3 boots:
    // 198, 200, 206 cycles = 99, 100, 103 ns; [min, max] is the best there is).
    let k = &v["kmalloc/pair/64"]["latency"];
    assert_eq!(k["value"].as_f64(), Some(100.0));
    assert_eq!(k["lower_value"].as_f64(), Some(99.0));
    assert_eq!(k["upper_value"].as_f64(), Some(103.0));
    // A single boot has no bounds.
    assert!(v["vmalloc/map/8192"]["latency"]
        .get("lower_value")
        .is_none());
    // cycles without ns summary: converted with tsc_hz (40 cycles at 2 GHz = 20 ns).
    assert_eq!(v["timer/rdtsc"]["latency"]["value"].as_f64(), Some(20.0));
    // A unit that is not time keeps its own measure.
    assert!(v["buddy/splits/0"].get("latency").is_none());
    assert_eq!(v["buddy/splits/0"]["ops"]["value"].as_f64(), Some(7.0));
}

#[test]
fn github_action_benchmark_shape() {
    let t = tempfile::tempdir().unwrap();
    let run = write_run(t.path());
    let out_file = t.path().join("gab.json");
    let out = export(&[
        "--format",
        "github-action-benchmark",
        "--out",
        out_file.to_str().unwrap(),
        run.join("results.json").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "--out writes the file, not stdout");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    let arr = v
        .as_array()
        .expect("customSmallerIsBetter input is an array");
    assert_eq!(arr.len(), 4);
    for e in arr {
        let o = e.as_object().unwrap();
        assert!(o["name"].is_string());
        assert!(o["unit"].is_string());
        assert!(o["value"].is_number());
        if let Some(r) = o.get("range") {
            assert!(r.is_string(), "range is a string like \"± 3\"");
        }
        if let Some(x) = o.get("extra") {
            assert!(x.is_string());
        }
        for k in o.keys() {
            assert!(
                ["name", "unit", "value", "range", "extra"].contains(&k.as_str()),
                "unexpected key {k}"
            );
        }
    }
    let k = arr.iter().find(|e| e["name"] == "kmalloc/pair/64").unwrap();
    assert_eq!(k["unit"], "ns");
    assert_eq!(k["value"].as_f64(), Some(100.0));
    // The same bounds as BMF's: [99, 103] around 100 → ± 3 (the larger side).
    assert_eq!(k["range"], "± 3.00");
    assert!(k["extra"]
        .as_str()
        .unwrap()
        .contains("3 boots, range = 75.0% CI of the median"));
    let single = arr
        .iter()
        .find(|e| e["name"] == "vmalloc/map/8192")
        .unwrap();
    assert!(single.get("range").is_none(), "no range from a single boot");
    assert_eq!(single["value"].as_f64(), Some(4000.0));
}

#[test]
fn export_rejects_bad_input() {
    let t = tempfile::tempdir().unwrap();
    let out = export(&[
        "--format",
        "bmf",
        t.path().join("missing").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let bad = t.path().join("bad.json");
    std::fs::write(&bad, "[1, 2").unwrap();
    assert_eq!(
        export(&["--format", "bmf", bad.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn broken_runs_are_not_published_unless_allowed() {
    let t = tempfile::tempdir().unwrap();
    let mut r = sample_run();
    r.complete = false;
    r.exit = Some(kmbench::results::ExitInfo {
        status: "timeout".into(),
        code: None,
        message: "guest timed out after 60s".into(),
    });
    let d = t.path().join("broken");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("results.json"), serde_json::to_string(&r).unwrap()).unwrap();
    let out = export(&["--format", "bmf", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to publish a broken run") && err.contains("timed out"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let out = export(&["--format", "bmf", "--allow-incomplete", d.to_str().unwrap()]);
    assert!(out.status.success());
}

#[test]
fn cycles_beside_latency() {
    let t = tempfile::tempdir().unwrap();
    let run = write_run(t.path());
    let v = json_stdout(&export(&[
        "--format",
        "bmf",
        "--cycles",
        run.to_str().unwrap(),
    ]));
    let c = &v["kmalloc/pair/64"]["cycles"];
    assert_eq!(c["value"].as_f64(), Some(200.0));
    assert_eq!(
        (c["lower_value"].as_f64(), c["upper_value"].as_f64()),
        (Some(198.0), Some(206.0))
    );
    assert!(v["kmalloc/pair/64"].get("latency").is_some());
    let v = json_stdout(&export(&[
        "--format",
        "github-action-benchmark",
        "--cycles",
        run.to_str().unwrap(),
    ]));
    let e = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "kmalloc/pair/64 (cycles)")
        .unwrap();
    assert_eq!(e["unit"], "cycles");
    assert_eq!(e["range"], "± 6.00");
}
