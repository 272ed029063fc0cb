//! `kmbench compare` end to end: synthetic results files with known shifts, run through
//! the real binary for exit codes.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use kmbench::results::{BenchEntry, Env, ExitInfo, RunResults, RESULTS_SCHEMA};
use kmbench_protocol::{BenchRecord, BenchStatus, Summary};

// ---- synthetic results builder ----

fn env() -> Env {
    Env {
        accel: "kvm".into(),
        hypervisor: "hardware".into(),
        backend: "qemu".into(),
        cpl: 0,
        cpu_model: "host".into(),
        host_cpu: "Test CPU @ 3.00GHz".into(),
        host_kernel: "6.8.0".into(),
        guest_memory_mib: 512,
        tsc_hz: 3_000_000_000,
        tsc_source: "cpuid-0x15".into(),
        boot_ms: 120.0,
        kmbench_commit: "abc123".into(),
        config_file: "configs/default.toml".into(),
        config_hash: "00".into(),
        direct_map_page: "2M".into(),
        host_backing: "4K".into(),
        boots: 5,
        ..Env::default()
    }
}

/// Multiplicative noise pattern, per boot, small (< 1%).
const NOISE: [f64; 8] = [1.000, 1.004, 0.996, 1.007, 0.993, 1.002, 0.998, 1.005];

/// A benchmark with `boots` per-boot medians around `median_cycles` (scaled by `factor`).
fn bench(name: &str, median_cycles: f64, factor: f64, boots: usize) -> BenchEntry {
    let boot_medians: Vec<f64> = (0..boots)
        .map(|i| median_cycles * factor * NOISE[i % NOISE.len()])
        .collect();
    let mut sorted = boot_medians.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = sorted[sorted.len() / 2];
    let cyc = Summary {
        min: median * 0.8,
        median,
        p99: median * 2.0,
        max: median * 3.0,
        mean: median * 1.1,
    };
    let suite = name.split('/').next().unwrap().to_string();
    BenchEntry {
        record: BenchRecord {
            name: name.into(),
            suite,
            status: BenchStatus::Ok,
            unit: "cycles".into(),
            samples: 1000,
            min: cyc.min,
            median: cyc.median,
            p99: cyc.p99,
            max: cyc.max,
            mean: cyc.mean,
            ns: Some(cyc.scaled(1.0 / 3.0)),
            params: BTreeMap::new(),
            extra: BTreeMap::new(),
            message: None,
        },
        boot_medians,
        unstable_boots: vec![],
    }
}

fn run(id: &str, benchmarks: Vec<BenchEntry>) -> RunResults {
    RunResults {
        schema: RESULTS_SCHEMA.into(),
        complete: true,
        run_id: id.into(),
        started_at: "2025-01-01T00:00:00Z".into(),
        env: env(),
        exit: Some(ExitInfo {
            status: "success".into(),
            code: Some(1),
            message: "success".into(),
        }),
        benchmarks,
        ..Default::default()
    }
}

/// Standard set: three benchmarks, `shift` applied to `kmalloc/pair/64` only.
fn standard(id: &str, shift: f64, boots: usize) -> RunResults {
    run(
        id,
        vec![
            bench("kmalloc/pair/64", 300.0, shift, boots),
            bench("kmalloc/pair/4096", 900.0, 1.0, boots),
            bench("timer/rdtsc", 60.0, 1.0, boots),
        ],
    )
}

/// Writes `run` as `<dir>/<name>/results.json` and returns the folder.
fn write_run(dir: &Path, name: &str, run: &RunResults) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("results.json"),
        serde_json::to_string_pretty(run).unwrap(),
    )
    .unwrap();
    d
}

fn kmbench(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kmbench"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run kmbench")
}

fn compare(base: &Path, new: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["compare", base.to_str().unwrap(), new.to_str().unwrap()];
    args.extend_from_slice(extra);
    kmbench(&args)
}

fn compare_json(base: &Path, new: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut a = vec!["--format", "json"];
    a.extend_from_slice(extra);
    let out = compare(base, new, &a);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "json: {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), v)
}

fn verdict_of<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["benchmarks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing in {v}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---- tests ----

#[test]
fn regression_of_20_percent_exits_1() {
    let t = tempfile::tempdir().unwrap();
    let base = write_run(t.path(), "base", &standard("base", 1.0, 5));
    let new = write_run(t.path(), "new", &standard("new", 1.2, 5));
    let out = compare(&base, &new, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("kmalloc/pair/64"), "{text}");
    assert!(text.contains("regressed"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is a pipe: {text}"
    );

    let (code, v) = compare_json(&base, &new, &[]);
    assert_eq!(code, 1);
    let b = verdict_of(&v, "kmalloc/pair/64");
    assert_eq!(b["verdict"], "regressed");
    assert_eq!(b["significance"], "significant");
    let change = b["change"].as_f64().unwrap();
    assert!((change - 0.2).abs() < 0.01, "{change}");
    let ci = b["ci"].as_array().unwrap();
    assert!(
        ci[0].as_f64().unwrap() > 0.1 && ci[1].as_f64().unwrap() < 0.3,
        "{ci:?}"
    );
    assert!(b["p_value"].as_f64().unwrap() < 0.05);
    assert_eq!(verdict_of(&v, "timer/rdtsc")["verdict"], "unchanged");
    // Sorted by effect size: the shifted benchmark first.
    assert_eq!(v["benchmarks"][0]["name"], "kmalloc/pair/64");
    assert_eq!(v["summary"]["regressed"], 1);
    // Fields the output promises.
    assert_eq!(v["schema"], "kmbench.compare/1");
    assert!(b["base_median_ns"].as_f64().unwrap() > 0.0);
}

#[test]
fn improvement_of_20_percent_exits_0() {
    let t = tempfile::tempdir().unwrap();
    let base = write_run(t.path(), "base", &standard("base", 1.0, 5));
    let new = write_run(t.path(), "new", &standard("new", 0.8, 5));
    let (code, v) = compare_json(&base, &new, &[]);
    assert_eq!(code, 0);
    let b = verdict_of(&v, "kmalloc/pair/64");
    assert_eq!(b["verdict"], "improved");
    assert!((b["change"].as_f64().unwrap() + 0.2).abs() < 0.01);
    assert_eq!(v["summary"]["improved"], 1);
    assert_eq!(v["summary"]["regressed"], 0);
}

#[test]
fn one_percent_is_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let base = write_run(t.path(), "base", &standard("base", 1.0, 5));
    let new = write_run(t.path(), "new", &standard("new", 1.01, 5));
    let (code, v) = compare_json(&base, &new, &[]);
    assert_eq!(code, 0);
    assert_eq!(verdict_of(&v, "kmalloc/pair/64")["verdict"], "unchanged");
    // The boots overlap (noise ±0.7%): with a 0.5% threshold it is beyond noise but not confirmed.
    let (code, v) = compare_json(&base, &new, &["--threshold", "0.5"]);
    assert_eq!(code, 0);
    assert_eq!(
        verdict_of(&v, "kmalloc/pair/64")["verdict"],
        "not_significant"
    );
    // +3% separates the boots completely: with a 2% threshold that is a confirmed regression.
    let new3 = write_run(t.path(), "new3", &standard("new3", 1.03, 5));
    let (code, v) = compare_json(&base, &new3, &["--threshold", "2"]);
    assert_eq!(code, 1);
    assert_eq!(verdict_of(&v, "kmalloc/pair/64")["verdict"], "regressed");
    let (code, v) = compare_json(&base, &new3, &["--threshold", "5"]);
    assert_eq!(code, 0, "below a 5% threshold");
    assert_eq!(
        verdict_of(&v, "kmalloc/pair/64")["verdict"],
        "below_threshold",
        "significant, but smaller than the minimum effect"
    );
}

#[test]
fn self_compare_reports_no_change() {
    let t = tempfile::tempdir().unwrap();
    let base = write_run(t.path(), "base", &standard("base", 1.0, 5));
    let out = compare(&base, &base, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 regressed, 0 improved, 3 unchanged"),
        "{}",
        stdout(&out)
    );
    let (code, v) = compare_json(&base, &base.join("results.json"), &[]);
    assert_eq!(code, 0);
    for b in v["benchmarks"].as_array().unwrap() {
        assert_eq!(b["change"].as_f64(), Some(0.0));
        assert_eq!(b["verdict"], "unchanged");
        assert_eq!(b["significance"], "not_significant");
    }
}

#[test]
fn environment_mismatch_exits_2_naming_the_field_unless_forced() {
    let t = tempfile::tempdir().unwrap();
    let base = write_run(t.path(), "base", &standard("base", 1.0, 5));
    let mut other = standard("new", 1.2, 5);
    other.env.hypervisor = "pvm".into();
    let new = write_run(t.path(), "new", &other);
    let out = compare(&base, &new, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("hypervisor") && err.contains("hardware") && err.contains("pvm"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());

    let out = compare(&base, &new, &["--force"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "forced compare proceeds and finds the regression"
    );
    assert!(
        stdout(&out).contains("hypervisor"),
        "the difference is still shown: {}",
        stdout(&out)
    );

    let (code, v) = compare_json(&base, &new, &["--force"]);
    assert_eq!(code, 1);
    assert_eq!(v["forced"], true);
    assert_eq!(v["env_differences"][0]["field"], "hypervisor");

    // Each listed field is checked.
    for field in [
        "host_cpu",
        "accel",
        "cpl",
        "direct_map_page",
        "host_backing",
        "backend",
        "machine",
        "guest_memory_mib",
        "mm_debug",
        "flush_mode",
        "config_hash",
    ] {
        let mut r = standard("x", 1.0, 5);
        match field {
            "backend" => r.env.backend = "kvm".into(),
            "machine" => r.env.machine = "q35".into(),
            "guest_memory_mib" => r.env.guest_memory_mib = 2048,
            "mm_debug" => r.env.mm_debug = true,
            "flush_mode" => r.env.flush_mode = "full".into(),
            "config_hash" => r.env.config_hash = "ff".into(),
            "host_cpu" => r.env.host_cpu = "Other CPU".into(),
            "accel" => r.env.accel = "tcg".into(),
            "cpl" => r.env.cpl = 3,
            "direct_map_page" => r.env.direct_map_page = "4K".into(),
            "host_backing" => r.env.host_backing = "2M".into(),
            _ => unreachable!(),
        }
        let p = write_run(t.path(), field, &r);
        let out = compare(&base, &p, &[]);
        assert_eq!(out.status.code(), Some(2), "{field}");
        assert!(stderr(&out).contains(field), "{field}: {}", stderr(&out));
    }
}

#[test]
fn unusable_input_exits_2() {
    let t = tempfile::tempdir().unwrap();
    let base = write_run(t.path(), "base", &standard("base", 1.0, 5));
    // Missing file / folder without results.json.
    let out = compare(&base, &t.path().join("nope"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope"));
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(compare(&empty, &base, &[]).status.code(), Some(2));
    // Garbage.
    let garbage = t.path().join("garbage.json");
    std::fs::write(&garbage, "this is { not json").unwrap();
    let out = compare(&base, &garbage, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("garbage.json"), "{}", stderr(&out));
    // Valid JSON, wrong schema.
    let mut v = serde_json::to_value(standard("x", 1.0, 5)).unwrap();
    v["schema"] = "kmbench.results/99".into();
    let wrong = t.path().join("wrong.json");
    std::fs::write(&wrong, v.to_string()).unwrap();
    let out = compare(&wrong, &base, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("kmbench.results/99"),
        "{}",
        stderr(&out)
    );
    // Right schema, missing fields.
    let partial = t.path().join("partial.json");
    std::fs::write(&partial, r#"{"schema":"kmbench.results/1"}"#).unwrap();
    assert_eq!(compare(&base, &partial, &[]).status.code(), Some(2));
}

#[test]
fn benchmarks_on_one_side_only_are_listed() {
    let t = tempfile::tempdir().unwrap();
    let mut b = standard("base", 1.0, 5);
    b.benchmarks.push(bench("vmalloc/map/8192", 5000.0, 1.0, 5));
    let mut n = standard("new", 1.0, 5);
    n.benchmarks.push(bench("buddy/split/1", 400.0, 1.0, 5));
    let base = write_run(t.path(), "base", &b);
    let new = write_run(t.path(), "new", &n);
    let out = compare(&base, &new, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a benchmark the new run lacks is broken"
    );
    let text = stdout(&out);
    assert!(
        text.contains("only in base (missing from new: broken) (1): vmalloc/map/8192"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("missing from the new run: vmalloc/map/8192"),
        "{}",
        stderr(&out)
    );
    assert!(text.contains("only in new (1): buddy/split/1"), "{text}");
    let (_, v) = compare_json(&base, &new, &[]);
    assert_eq!(v["only_in_base"], serde_json::json!(["vmalloc/map/8192"]));
    assert_eq!(v["only_in_new"], serde_json::json!(["buddy/split/1"]));
}

#[test]
fn single_boot_runs_compare_without_significance() {
    let t = tempfile::tempdir().unwrap();
    let base = write_run(t.path(), "base", &standard("base", 1.0, 1));
    // One boot per side can never be significant: even +20% says "insufficient boots"
    // (on a host that swings 57% between runs, a single boot proves nothing).
    let big = write_run(t.path(), "big", &standard("big", 1.2, 1));
    let (code, v) = compare_json(&base, &big, &[]);
    assert_eq!(code, 0);
    let b = verdict_of(&v, "kmalloc/pair/64");
    assert_eq!(b["verdict"], "insufficient_boots");
    assert_eq!(b["significance"], "n/a");
    assert!(b["note"].as_str().unwrap().contains("cannot reach"), "{b}");
    assert!((b["change"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    assert_eq!(v["summary"]["insufficient"], 3);
    // Old-style entry without boot_medians at all falls back to `median`.
    let mut r = standard("nb", 1.0, 1);
    for e in &mut r.benchmarks {
        e.boot_medians.clear();
    }
    let nb = write_run(t.path(), "nb", &r);
    let (code, v) = compare_json(&nb, &base, &[]);
    assert_eq!(code, 0);
    assert_eq!(verdict_of(&v, "timer/rdtsc")["change"].as_f64(), Some(0.0));
}

#[test]
fn few_boots_and_noisy_shifts_are_not_significant() {
    let t = tempfile::tempdir().unwrap();
    // 3 boots per side: the exact test's smallest p is 0.1, above 0.05/3.
    let base = write_run(t.path(), "base", &standard("base", 1.0, 3));
    let new = write_run(t.path(), "new", &standard("new", 1.2, 3));
    let (code, v) = compare_json(&base, &new, &[]);
    assert_eq!(code, 0);
    let b = verdict_of(&v, "kmalloc/pair/64");
    assert_eq!(b["verdict"], "insufficient_boots");
    assert!((b["p_value"].as_f64().unwrap() - 0.1).abs() < 1e-9);
    // …a family-wise alpha of 0.5 (0.167 per test) accepts it.
    let (code, v) = compare_json(&base, &new, &["--alpha", "0.5"]);
    assert_eq!(code, 1);
    assert_eq!(verdict_of(&v, "kmalloc/pair/64")["verdict"], "regressed");

    // Overlapping noisy boots, 6 each: median shift of +10% but not separable.
    let mut b = standard("b", 1.0, 6);
    let mut n = standard("n", 1.0, 6);
    b.benchmarks[0].boot_medians = vec![300.0, 250.0, 360.0, 310.0, 240.0, 380.0];
    n.benchmarks[0].boot_medians = vec![330.0, 260.0, 390.0, 345.0, 245.0, 400.0];
    let base = write_run(t.path(), "nb", &b);
    let new = write_run(t.path(), "nn", &n);
    let (code, v) = compare_json(&base, &new, &[]);
    assert_eq!(code, 0);
    let k = verdict_of(&v, "kmalloc/pair/64");
    assert_eq!(k["verdict"], "not_significant");
    assert!(k["p_adjusted"].as_f64().unwrap() >= 0.05, "{k}");
}

#[test]
fn broken_new_runs_fail_and_are_named() {
    let t = tempfile::tempdir().unwrap();
    let base = write_run(t.path(), "base", &standard("base", 1.0, 5));
    let mut r = standard("new", 1.0, 5);
    r.complete = false;
    r.exit = Some(ExitInfo {
        status: "panic".into(),
        code: Some(5),
        message: "guest kernel panic: at mm/slab.rs:12".into(),
    });
    let new = write_run(t.path(), "new", &r);
    let out = compare(&base, &new, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the new run new is broken: incomplete"),
        "{err}"
    );
    assert!(
        err.contains("exited with panic: guest kernel panic"),
        "{err}"
    );
    assert!(stdout(&out).contains("[BROKEN:"), "{}", stdout(&out));
    let (_, v) = compare_json(&base, &new, &[]);
    assert_eq!(v["new"]["problems"].as_array().unwrap().len(), 2);
    // A run that never recorded its exit is broken too.
    let mut r = standard("noexit", 1.0, 5);
    r.exit = None;
    let p = write_run(t.path(), "noexit", &r);
    assert_eq!(compare(&base, &p, &[]).status.code(), Some(1));
    // A broken base cannot be compared against: error, not a verdict.
    let out = compare(&new, &base, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the base run new is broken"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn different_host_states_refuse_unless_forced() {
    use kmbench_protocol::CanaryRecord;
    let reading = |c: f64| CanaryRecord {
        seq: 0,
        after: None,
        tsc: 0,
        compute: c,
        memory: 40.0,
    };
    let noise =
        |c: f64| kmbench::noise::analyse(&[vec![reading(c), reading(c)]], &[true], 0.1, false);
    let t = tempfile::tempdir().unwrap();
    let mut b = standard("base", 1.0, 5);
    b.noise = noise(1.5);
    let mut n = standard("new", 1.0, 5);
    n.noise = noise(3.4);
    let base = write_run(t.path(), "base", &b);
    let new = write_run(t.path(), "new", &n);
    let out = compare(&base, &new, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("host_state (canaries)") && err.contains("unstable host"),
        "{err}"
    );
    assert!(
        err.contains("compute 1.50") && err.contains("compute 3.40"),
        "{err}"
    );
    assert_eq!(compare(&base, &new, &["--force"]).status.code(), Some(0));
    // Within the band: compared normally.
    n.noise = noise(1.6);
    let new = write_run(t.path(), "new2", &n);
    assert_eq!(compare(&base, &new, &[]).status.code(), Some(0));
}

#[test]
fn policy_from_config_overrides_per_benchmark() {
    let t = tempfile::tempdir().unwrap();
    let base = write_run(t.path(), "base", &standard("base", 1.0, 5));
    let new = write_run(t.path(), "new", &standard("new", 1.2, 5));
    let cfg = t.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[compare]\nthreshold = 2.0\n[[compare.benchmark]]\nname = \"kmalloc/pair/*\"\nthreshold = 25.0\n[[compare.benchmark]]\nname = \"timer/*\"\nignore = true\n",
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let (code, v) = compare_json(&base, &new, &["--config", cfg_s]);
    assert_eq!(code, 0, "+20% is below this benchmark's 25% threshold");
    let k = verdict_of(&v, "kmalloc/pair/64");
    assert_eq!(k["verdict"], "below_threshold");
    assert_eq!(k["threshold"].as_f64(), Some(0.25));
    assert_eq!(verdict_of(&v, "timer/rdtsc")["verdict"], "ignored");
    assert_eq!(v["tests"], 2, "ignored benchmarks are not in the family");
    // The policy a run recorded is used when no --config is given.
    let mut r = standard("new2", 1.2, 5);
    let loaded = kmbench::config::load(&cfg).unwrap();
    r.env.extra.insert(
        "compare_policy".into(),
        serde_json::to_value(&loaded.config.compare).unwrap(),
    );
    let new2 = write_run(t.path(), "new2", &r);
    let (code, _) = compare_json(&base, &new2, &[]);
    assert_eq!(code, 0);
    std::fs::write(&cfg, "[compare]\nalpha = 2\n").unwrap();
    let out = compare(&base, &new, &["--config", cfg_s]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("alpha"), "{}", stderr(&out));
}

#[test]
fn status_changes_are_reported() {
    let t = tempfile::tempdir().unwrap();
    let base = write_run(t.path(), "base", &standard("base", 1.0, 5));
    let mut r = standard("new", 1.0, 5);
    r.benchmarks[1].status = BenchStatus::Oom;
    r.benchmarks[1].message = Some("out of memory".into());
    let new = write_run(t.path(), "new", &r);
    let (code, v) = compare_json(&base, &new, &[]);
    assert_eq!(code, 1, "ok → oom counts as a regression");
    assert_eq!(verdict_of(&v, "kmalloc/pair/4096")["verdict"], "broken");
    let (code, v) = compare_json(&new, &base, &[]);
    assert_eq!(code, 0);
    assert_eq!(verdict_of(&v, "kmalloc/pair/4096")["verdict"], "fixed");
}

#[test]
fn markdown_and_colour() {
    let t = tempfile::tempdir().unwrap();
    let base = write_run(t.path(), "base", &standard("base", 1.0, 5));
    let new = write_run(t.path(), "new", &standard("new", 1.2, 5));
    let out = compare(&base, &new, &["--format", "md"]);
    assert_eq!(out.status.code(), Some(1));
    let md = stdout(&out);
    assert!(md.contains("| Benchmark | Base | New | Change |"), "{md}");
    assert!(md.contains("| `kmalloc/pair/64` |"), "{md}");
    assert!(md.contains("+20."), "{md}");
    assert!(md.contains("**regressed**"), "{md}");

    // Colour rendering itself (stdout is never a terminal under the test harness).
    let (b, _) = kmbench::run_dir::load_run(&base).unwrap();
    let (n, _) = kmbench::run_dir::load_run(&new).unwrap();
    let cmp = kmbench::compare::compare_runs(&b, &base, &n, &new, &Default::default());
    let coloured = kmbench::compare::render_text(&cmp, true);
    assert!(coloured.contains("\x1b[31m"), "regression in red");
    let plain = kmbench::compare::render_text(&cmp, false);
    assert!(!plain.contains('\x1b'));
    assert!(!kmbench::compare::use_color(true));
}
