//! `kmbench ab` orchestration against the fake QEMU (tests/fixtures/fake-qemu.sh): boot
//! order, output folders, compare.json, exit codes. No timings.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fake_qemu() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-qemu.sh")
}

const CONFIG: &str = "[suites.timer]\nsamples = 100\n";

fn ab(dir: &Path, config: &Path, extra: &[&str]) -> (i32, String, String) {
    let elf = fake_qemu(); // any file is a "kernel ELF": the fake QEMU never reads it
    let o = Command::new(env!("CARGO_BIN_EXE_kmbench"))
        .arg("ab")
        .arg(config)
        .args(["--accel", "tcg", "--backend", "qemu", "--quiet", "--base"])
        .arg(&elf)
        .arg("--new")
        .arg(&elf)
        .arg("--out")
        .arg(dir)
        .args(extra)
        .env("KMBENCH_QEMU", fake_qemu())
        .env_remove("FAKE_QEMU_MODE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

#[test]
fn same_kernel_twice_is_no_regression_with_both_sides_kept() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let out = t.path().join("job");
    let html = t.path().join("ab.html");
    let (code, stdout, stderr) = ab(
        &out,
        &cfg,
        &[
            "--boots",
            "4",
            "--format",
            "json",
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let page = std::fs::read_to_string(&html).expect("--html writes the page");
    assert!(
        page.contains("<h2>Verdict</h2>") && page.contains("</html>"),
        "{page}"
    );
    let cmp: serde_json::Value = serde_json::from_str(&stdout).expect("--format json on stdout");
    assert_eq!(cmp["schema"], "kmbench.compare/1");
    assert_eq!(cmp["design"], "paired");
    assert_eq!(cmp["ab"]["order"], "ABBA");
    assert_eq!(cmp["ab"]["pairs_booted"], 4);
    assert_eq!(
        cmp["pairs"].as_array().unwrap().len(),
        4,
        "the fake guest has no canaries: every pair agrees"
    );
    assert_eq!(json(&out.join("compare.json")), cmp);
    for side in ["base", "new"] {
        let r = json(&out.join(side).join("results.json"));
        assert_eq!(r["complete"], true, "{side}");
        assert_eq!(
            r["benchmarks"][0]["boot_medians"].as_array().unwrap().len(),
            4
        );
        assert!(out.join(side).join("records.jsonl").is_file());
    }
    assert!(out.join("kernels/base.elf").is_file() && out.join("kernels/new.elf").is_file());
    for b in cmp["benchmarks"].as_array().unwrap() {
        assert!(
            !matches!(b["verdict"].as_str(), Some("regressed" | "improved")),
            "{b}"
        );
    }
}

#[test]
fn boots_alternate_abba() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let out = t.path().join("job");
    let (code, _, stderr) = ab(&out, &cfg, &["--boots", "3"]);
    assert_eq!(code, 0, "{stderr}");
    // Order of the guest logs' creation: A1 B1 B2 A2 A3 B3.
    let mtime = |side: &str, n: u32| {
        std::fs::metadata(out.join(side).join(format!("guest-{n}.log")))
            .unwrap()
            .modified()
            .unwrap()
    };
    assert!(mtime("base", 1) <= mtime("new", 1));
    assert!(mtime("new", 2) <= mtime("base", 2));
    assert!(mtime("base", 3) <= mtime("new", 3));
}

#[test]
fn a_broken_new_side_is_a_regression_and_named() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let bad = t.path().join("bad.toml");
    std::fs::write(&bad, format!("[guest]\nfault = \"panic\"\n{CONFIG}")).unwrap();
    let out = t.path().join("job");
    let bad_s = bad.to_str().unwrap();
    let (code, _, stderr) = ab(&out, &cfg, &["--boots", "3", "--new-config", bad_s]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the new run") && stderr.contains("is broken"),
        "{stderr}"
    );
    assert!(stderr.contains("panic"), "{stderr}");
    let cmp = json(&out.join("compare.json"));
    assert!(!cmp["new"]["problems"].as_array().unwrap().is_empty());
    // The same config as base: broken base → error (2), nothing to compare against.
    let out2 = t.path().join("job2");
    let (code, _, stderr) = ab(&out2, &bad, &["--boots", "2"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the base run") && stderr.contains("broken"),
        "{stderr}"
    );
}

#[test]
fn differences_asked_for_are_shown_not_refused() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let other = t.path().join("other.toml");
    std::fs::write(&other, format!("[run]\nmemory_mib = 256\n{CONFIG}")).unwrap();
    let out = t.path().join("job");
    let (code, _, stderr) = ab(
        &out,
        &cfg,
        &["--boots", "2", "--new-config", other.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    let cmp = json(&out.join("compare.json"));
    let fields: Vec<&str> = cmp["env_differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"guest_memory_mib") && fields.contains(&"config_hash"),
        "{fields:?}"
    );
    assert_eq!(cmp["forced"], false);
}

#[test]
fn bad_arguments_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let (code, _, stderr) = ab(&t.path().join("job"), &t.path().join("missing.toml"), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
}
