//! Finding a `-cpu` model KVM accepts on this host (some hosts abort on `host`), cached
//! on disk keyed by QEMU version, host kernel and host CPU.
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use xshell::{cmd, Shell};

use super::kill;
use super::status::first_error_line;
use crate::config::Machine;
use crate::error::{HarnessError, Result};

/// Models tried in order under KVM. `host` aborts on some hosts ("failed to set MSR 0x10a").
pub const KVM_CPU_CANDIDATES: [&str; 4] = [
    "host",
    "host,-arch-capabilities",
    "max",
    "max,-arch-capabilities",
];

/// Find a `-cpu` model KVM accepts, cached in `cache_file` keyed by QEMU version, host
/// kernel and host CPU. Returns (model, came_from_cache).
pub fn probe_cpu_model(
    qemu: &Path,
    machine: Machine,
    cache_file: &Path,
    key: &str,
    quiet: bool,
) -> Result<(String, bool)> {
    let mut cache: BTreeMap<String, String> = std::fs::read_to_string(cache_file)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    if let Some(m) = cache.get(key) {
        return Ok((m.clone(), true));
    }
    let mut last = String::new();
    for cpu in KVM_CPU_CANDIDATES {
        match try_cpu(qemu, machine, cpu) {
            Ok(()) => {
                cache.insert(key.to_string(), cpu.to_string());
                if let Some(dir) = cache_file.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = std::fs::write(
                    cache_file,
                    serde_json::to_string_pretty(&cache).unwrap_or_default(),
                );
                return Ok((cpu.to_string(), false));
            }
            Err(e) => {
                if !quiet {
                    eprintln!(
                        "kmbench: -cpu {cpu} does not start under KVM ({e}); trying the next model"
                    );
                }
                last = e;
            }
        }
    }
    Err(HarnessError::NoCpuModel {
        tried: KVM_CPU_CANDIDATES.join(", "),
        last,
    })
}

/// Drop a cached model (after QEMU refused to start with it).
pub fn forget_cpu_model(cache_file: &Path, key: &str) {
    let Ok(text) = std::fs::read_to_string(cache_file) else {
        return;
    };
    let Ok(mut cache) = serde_json::from_str::<BTreeMap<String, String>>(&text) else {
        return;
    };
    if cache.remove(key).is_some() {
        let _ = std::fs::write(
            cache_file,
            serde_json::to_string_pretty(&cache).unwrap_or_default(),
        );
    }
}

/// Start QEMU paused (`-S`) with `-cpu cpu`: a model KVM rejects aborts within milliseconds.
fn try_cpu(qemu: &Path, machine: Machine, cpu: &str) -> std::result::Result<(), String> {
    let sh = Shell::new().map_err(|e| e.to_string())?;
    let m = machine.label();
    let mut c: Command = cmd!(
        sh,
        "{qemu} -M {m} -accel kvm -cpu {cpu} -m 64 -nodefaults -no-user-config -display none -S"
    )
    .quiet()
    .into();
    c.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(700) {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            let line = first_error_line(&err);
            return Err(if line.is_empty() {
                format!("exited: {status}")
            } else {
                line
            });
        }
        thread::sleep(Duration::from_millis(10));
    }
    kill(&mut child);
    Ok(())
}

/// Everything that keys the CPU probe cache.
pub fn probe_key(
    qemu_version: &str,
    host_kernel: &str,
    host_cpu: &str,
    machine: Machine,
) -> String {
    format!(
        "{qemu_version} | {host_kernel} | {host_cpu} | {}",
        machine.label()
    )
}
