//! Shared helpers for the tests that boot the real kernel through the `kmbench` binary.
//! The kernel is built once per test binary; configs can be derived from a file under
//! `configs/` with a few keys changed and written into the test's tempdir.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use kmbench::results::RunResults;

pub fn root() -> PathBuf {
    kmbench::build::find_workspace_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
}

pub fn kernel() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL
        .get_or_init(|| kmbench::build::build_kernel(&root(), true, false).expect("kernel builds"))
}

/// True when `/dev/kvm` opens read-write; otherwise prints why KVM cases are skipped.
pub fn kvm_usable() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping: /dev/kvm not usable ({e})");
            false
        }
    }
}

/// What one `kmbench run` left behind.
pub struct Run {
    pub code: i32,
    pub stderr: String,
    pub results: RunResults,
    /// Keeps the run directory (`<tmp>/run`) and any derived config alive.
    pub tmp: tempfile::TempDir,
}

impl Run {
    /// The last non-empty line of the harness's stderr (its one-line verdict).
    pub fn last_stderr_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }

    /// `label: exit code N, stderr: …` for assertion messages.
    pub fn context(&self, label: &str) -> String {
        format!("{label}: exit code {}, stderr:\n{}", self.code, self.stderr)
    }
}

/// Options for [`kmbench_run`].
#[derive(Default)]
pub struct Opts<'a> {
    /// `--accel` value ("tcg" when None).
    pub accel: Option<&'a str>,
    /// `--cpl` value (config / auto when None).
    pub cpl: Option<u8>,
    pub extra: &'a [&'a str],
    /// Extra environment for the harness (e.g. KMBENCH_QEMU).
    pub env: Vec<(&'a str, OsString)>,
    /// Derived config text to write into the tempdir instead of using `config` as is.
    pub config_text: Option<String>,
}

/// Run `kmbench run <config> --quiet --out <tmp>/run` with `opts`.
pub fn kmbench_run(config: &str, opts: Opts) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let config_path = match &opts.config_text {
        Some(text) => {
            let name = Path::new(config).file_name().unwrap();
            let p = tmp.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
        None => PathBuf::from(config),
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kmbench"));
    cmd.current_dir(root())
        .arg("run")
        .arg(&config_path)
        .args(["--accel", opts.accel.unwrap_or("tcg"), "--quiet", "--out"])
        .arg(&out);
    if let Some(cpl) = opts.cpl {
        cmd.args(["--cpl", &cpl.to_string()]);
    }
    cmd.args(opts.extra)
        .env("KMBENCH_KERNEL", kernel())
        .env_remove("KMBENCH_QEMU")
        .stdin(Stdio::null());
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let code = o.status.code().unwrap_or(-1);
    let text = std::fs::read_to_string(out.join("results.json")).unwrap_or_else(|e| {
        panic!("results.json missing ({e}); exit code {code}, stderr:\n{stderr}")
    });
    Run {
        code,
        stderr,
        results: serde_json::from_str(&text).unwrap(),
        tmp,
    }
}

/// Run `kmbench run <config> --accel tcg --quiet --out <tmp>` plus `extra`.
pub fn run(config: &str, extra: &[&str]) -> (i32, String, RunResults, tempfile::TempDir) {
    let r = kmbench_run(
        config,
        Opts {
            extra,
            ..Opts::default()
        },
    );
    (r.code, r.stderr, r.results, r.tmp)
}

/// The text of `configs/…` (relative to the workspace root) with `[table] key = value`
/// entries set, re-serialised; unknown keys would be rejected by the harness as usual.
pub fn derive_config(config: &str, set: &[(&str, &str, toml::Value)]) -> String {
    let text = std::fs::read_to_string(root().join(config)).unwrap();
    let mut doc: toml::Table = text.parse().unwrap();
    for (table, key, value) in set {
        let t = doc
            .entry(table.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("[{table}] is not a table in {config}"));
        t.insert(key.to_string(), value.clone());
    }
    toml::to_string(&doc).unwrap()
}

/// A `KMBENCH_QEMU` wrapper script in `dir` that runs the real QEMU with `suffix`
/// appended to the `-cpu` value (e.g. ",pdpe1gb=off" to hide 1 GiB pages).
pub fn qemu_with_cpu_suffix(dir: &Path, suffix: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let qemu =
        kmbench::host::find_in_path("qemu-system-x86_64").expect("qemu-system-x86_64 in PATH");
    let script = format!(
        "#!/bin/sh\n\
         # Appends {suffix} to the -cpu value, then runs the real QEMU.\n\
         n=$#; prev=\n\
         for a in \"$@\"; do\n\
         \x20 if [ \"$prev\" = \"-cpu\" ]; then a=\"$a{suffix}\"; fi\n\
         \x20 set -- \"$@\" \"$a\"; prev=$a\n\
         done\n\
         shift $n\n\
         exec '{}' \"$@\"\n",
        qemu.display()
    );
    let p = dir.join("qemu-wrapper.sh");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}
