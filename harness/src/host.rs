//! Host probing: accelerator, hypervisor kind, CPL choice, CPU, kernel, QEMU, git commit,
//! huge pages. A leaf module: backends and the run use it, it uses neither.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{Accel, CplSetting};
use crate::error::HarnessError;

/// The accelerator actually used (after resolving "auto").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelKind {
    Kvm,
    Tcg,
}

impl AccelKind {
    pub fn label(self) -> &'static str {
        match self {
            AccelKind::Kvm => "kvm",
            AccelKind::Tcg => "tcg",
        }
    }
}

/// What kind of virtualization the guest will run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypervisor {
    /// KVM on VMX/SVM hardware: CPL0 runs natively.
    Hardware,
    /// `kvm_pvm`: a software hypervisor with shadow paging; CPL0 is emulated (~1000x slower).
    Pvm,
    /// QEMU's TCG emulator.
    Tcg,
    /// KVM works but neither a known module nor vmx/svm is visible.
    Unknown,
}

impl Hypervisor {
    pub fn label(self) -> &'static str {
        match self {
            Hypervisor::Hardware => "hardware",
            Hypervisor::Pvm => "pvm",
            Hypervisor::Tcg => "tcg",
            Hypervisor::Unknown => "unknown",
        }
    }
}

/// Classify the KVM hypervisor from `/sys/module` and the `/proc/cpuinfo` flags.
pub fn detect_kvm_kind(sys_module: &Path, cpuinfo: &str) -> Hypervisor {
    if sys_module.join("kvm_pvm").exists() {
        return Hypervisor::Pvm;
    }
    if sys_module.join("kvm_intel").exists() || sys_module.join("kvm_amd").exists() {
        return Hypervisor::Hardware;
    }
    let has_flag = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if has_flag {
        Hypervisor::Hardware
    } else {
        Hypervisor::Unknown
    }
}

/// Resolve `cpl = "auto"`: ring 3 where ring 0 is emulated (pvm, or an unidentified KVM),
/// ring 0 on hardware KVM and TCG. Returns (cpl, source).
pub fn resolve_cpl(setting: CplSetting, source_if_fixed: &str, hv: Hypervisor) -> (u8, String) {
    match setting {
        CplSetting::Fixed(n) => (n, source_if_fixed.to_string()),
        CplSetting::Auto => {
            let cpl = match hv {
                Hypervisor::Pvm | Hypervisor::Unknown => 3,
                Hypervisor::Hardware | Hypervisor::Tcg => 0,
            };
            (cpl, "auto".to_string())
        }
    }
}

/// The accelerator to use for `requested` and the hypervisor behind it. `auto` falls back to
/// TCG (with a warning through `warn`) when /dev/kvm is unusable; `kvm` then fails.
pub fn resolve_accel(
    requested: Accel,
    cpuinfo: &str,
    warn: &mut dyn FnMut(&str),
) -> Result<(AccelKind, Hypervisor), HarnessError> {
    let accel = match requested {
        Accel::Auto => match kvm_usable() {
            Ok(()) => AccelKind::Kvm,
            Err(e) => {
                warn(&format!("warning: /dev/kvm unusable ({e}); falling back to TCG: TCG numbers are emulation, not hardware numbers"));
                AccelKind::Tcg
            }
        },
        Accel::Kvm => {
            kvm_usable().map_err(HarnessError::KvmUnavailable)?;
            AccelKind::Kvm
        }
        Accel::Tcg => AccelKind::Tcg,
    };
    let hv = match accel {
        AccelKind::Tcg => Hypervisor::Tcg,
        AccelKind::Kvm => detect_kvm_kind(Path::new("/sys/module"), cpuinfo),
    };
    Ok((accel, hv))
}

/// The warning for measuring at CPL0 where ring 0 is emulated.
pub fn emulated_cpl0_warning(hv: Hypervisor, cpl: u8) -> Option<&'static str> {
    (hv == Hypervisor::Pvm && cpl == 0).then_some(
        "warning: CPL0 under kvm_pvm is emulated (~1000x slower); measured code should run at CPL3",
    )
}

/// `/dev/kvm` opens read-write (Err carries the reason).
pub fn kvm_usable() -> Result<(), std::io::Error> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(|_| ())
}

pub fn cpuinfo() -> String {
    std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()
}

pub fn cpu_model_name(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// `/sys/kernel/mm/transparent_hugepage/enabled`, the bracketed choice.
pub fn thp_mode(file: &str) -> String {
    std::fs::read_to_string(Path::new("/sys/kernel/mm/transparent_hugepage").join(file))
        .ok()
        .and_then(|s| {
            let a = s.find('[')?;
            let b = s[a..].find(']')?;
            Some(s[a + 1..a + b].to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// (HugePages_Free, Hugepagesize in KiB) from /proc/meminfo.
pub fn huge_pages_free() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    parse_meminfo_hugepages(&text)
}

/// Free 2 MiB huge pages in the host pool (sysfs, else /proc/meminfo when its huge page
/// size is 2 MiB).
pub fn free_huge_pages_2m() -> u64 {
    let sys = Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
    if let Ok(s) = std::fs::read_to_string(sys) {
        return s.trim().parse().unwrap_or(0);
    }
    let (free, size_kb) = huge_pages_free();
    if size_kb == 2048 {
        free
    } else {
        0
    }
}

/// Check that hugetlbfs backing of `memory_mib` can be satisfied before a backend tries
/// (QEMU aborts, mmap fails): one 2 MiB page per 2 MiB of guest memory.
pub fn check_huge_pages(memory_mib: u64) -> Result<(), HarnessError> {
    let need = memory_mib.div_ceil(2);
    let have = free_huge_pages_2m();
    if have < need {
        return Err(HarnessError::HugePages { need, have });
    }
    Ok(())
}

pub fn parse_meminfo_hugepages(text: &str) -> (u64, u64) {
    let get = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (get("HugePages_Free:"), get("Hugepagesize:"))
}

/// The QEMU binary: `KMBENCH_QEMU` or `qemu-system-x86_64` on PATH.
pub fn find_qemu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KMBENCH_QEMU") {
        let p = PathBuf::from(p);
        return p.exists().then_some(p);
    }
    find_in_path("qemu-system-x86_64")
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// First line of `qemu --version`.
pub fn qemu_version(qemu: &Path) -> String {
    Command::new(qemu)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `git rev-parse HEAD` (+ "-dirty"), or "unknown" outside a repository.
pub fn git_commit(root: &Path) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "HEAD"])
        .output();
    let Ok(out) = out else {
        return "unknown".into();
    };
    if !out.status.success() {
        return "unknown".into();
    }
    let mut commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["status", "--porcelain"])
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty {
        commit.push_str("-dirty");
    }
    commit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypervisor_from_modules_and_flags() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            detect_kvm_kind(d.path(), "flags : fpu sse"),
            Hypervisor::Unknown
        );
        assert_eq!(
            detect_kvm_kind(d.path(), "flags\t\t: fpu svm sse"),
            Hypervisor::Hardware
        );
        std::fs::create_dir(d.path().join("kvm_amd")).unwrap();
        assert_eq!(detect_kvm_kind(d.path(), ""), Hypervisor::Hardware);
        std::fs::create_dir(d.path().join("kvm_pvm")).unwrap();
        assert_eq!(detect_kvm_kind(d.path(), "flags : vmx"), Hypervisor::Pvm);
    }

    #[test]
    fn cpl_resolution() {
        assert_eq!(
            resolve_cpl(CplSetting::Auto, "config", Hypervisor::Pvm),
            (3, "auto".into())
        );
        assert_eq!(
            resolve_cpl(CplSetting::Auto, "config", Hypervisor::Hardware),
            (0, "auto".into())
        );
        assert_eq!(
            resolve_cpl(CplSetting::Auto, "config", Hypervisor::Tcg),
            (0, "auto".into())
        );
        assert_eq!(
            resolve_cpl(CplSetting::Auto, "config", Hypervisor::Unknown).0,
            3
        );
        assert_eq!(
            resolve_cpl(CplSetting::Fixed(0), "cli", Hypervisor::Pvm),
            (0, "cli".into())
        );
        assert_eq!(
            resolve_cpl(CplSetting::Fixed(3), "config", Hypervisor::Tcg),
            (3, "config".into())
        );
    }

    #[test]
    fn meminfo_and_cpuinfo_parsing() {
        let m = "MemTotal: 1 kB\nHugePages_Total:      10\nHugePages_Free:        4\nHugepagesize:       2048 kB\n";
        assert_eq!(parse_meminfo_hugepages(m), (4, 2048));
        assert_eq!(
            cpu_model_name("processor : 0\nmodel name\t: AMD EPYC 9B14\n"),
            "AMD EPYC 9B14"
        );
        assert_eq!(cpu_model_name(""), "unknown");
    }
}
