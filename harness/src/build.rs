//! Finding the workspace and building the guest kernel.
use std::path::{Path, PathBuf};

use xshell::{cmd, Shell};

use crate::error::{HarnessError, Result};

pub const KERNEL_TARGET: &str = "x86_64-unknown-none";
pub const KERNEL_PACKAGE: &str = "kmbench-kernel";

/// Walk up from `start` to the directory whose Cargo.toml has a `[workspace]` table.
pub fn find_workspace_root(start: &Path) -> Option<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let manifest = d.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            if text.lines().any(|l| l.trim() == "[workspace]") {
                return Some(d.to_path_buf());
            }
        }
        dir = d.parent();
    }
    None
}

/// The workspace root: from the current directory, else from where this crate was compiled.
pub fn workspace_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(|e| HarnessError::io("current directory", e))?;
    if let Some(root) = find_workspace_root(&cwd) {
        if root.join("unikernel").is_dir() {
            return Ok(root);
        }
    }
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR"));
    find_workspace_root(compiled).ok_or(HarnessError::NoWorkspace(cwd))
}

/// Where cargo puts the kernel ELF.
pub fn kernel_path(root: &Path) -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target_dir = if target_dir.is_relative() {
        root.join(target_dir)
    } else {
        target_dir
    };
    target_dir
        .join(KERNEL_TARGET)
        .join("release")
        .join(KERNEL_PACKAGE)
}

/// Make sure rustup has the kernel target, installing it when missing.
pub fn ensure_target(sh: &Shell, quiet: bool) -> Result<()> {
    if crate::host::find_in_path("rustup").is_none() {
        // Without rustup the toolchain may still have the target (distro rust): let cargo try.
        if let Ok(sysroot) = cmd!(sh, "rustc --print sysroot")
            .quiet()
            .ignore_stderr()
            .read()
        {
            let lib = Path::new(sysroot.trim())
                .join("lib/rustlib")
                .join(KERNEL_TARGET);
            if lib.is_dir() {
                return Ok(());
            }
        }
        return Err(HarnessError::NoRustup);
    }
    let installed = cmd!(sh, "rustup target list --installed")
        .quiet()
        .read()
        .map_err(|e| HarnessError::BuildFailed {
            command: "rustup target list --installed".into(),
            status: e.to_string(),
        })?;
    if installed.lines().any(|l| l.trim() == KERNEL_TARGET) {
        return Ok(());
    }
    if !quiet {
        eprintln!("kmbench: target {KERNEL_TARGET} is missing; running `rustup target add {KERNEL_TARGET}`");
    }
    cmd!(sh, "rustup target add {KERNEL_TARGET}")
        .quiet()
        .run()
        .map_err(|e| HarnessError::BuildFailed {
            command: format!("rustup target add {KERNEL_TARGET}"),
            status: e.to_string(),
        })
}

/// Run a build command with its output (warnings included) kept out of the way unless it
/// fails; on failure, print the last 40 lines of its stderr and return its exit status.
pub(crate) fn run_quietly(
    command: &mut std::process::Command,
    program: &str,
) -> Result<std::result::Result<(), String>> {
    let out = command
        .output()
        .map_err(|e| HarnessError::io(format!("running {program}"), e))?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[lines.len().saturating_sub(40)..] {
        eprintln!("{l}");
    }
    Ok(Err(out.status.to_string()))
}

/// `cargo build --release -p kmbench-kernel --target x86_64-unknown-none` in the workspace root.
pub fn build_kernel(root: &Path, quiet: bool, verbose: bool) -> Result<PathBuf> {
    let sh = Shell::new().map_err(HarnessError::Shell)?;
    sh.change_dir(root);
    ensure_target(&sh, quiet)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let c = cmd!(
        sh,
        "{cargo} build --release -p {KERNEL_PACKAGE} --target {KERNEL_TARGET}"
    )
    .quiet();
    let mut command: std::process::Command = c.into();
    command.stdin(std::process::Stdio::null());
    let failed = |status: String| HarnessError::BuildFailed {
        command: format!("cargo build --release -p {KERNEL_PACKAGE} --target {KERNEL_TARGET}"),
        status,
    };
    if verbose {
        let status = command
            .status()
            .map_err(|e| HarnessError::io(format!("running {cargo}"), e))?;
        if !status.success() {
            return Err(failed(status.to_string()));
        }
    } else {
        if let Err(status) = run_quietly(&mut command, &cargo)? {
            return Err(failed(status));
        }
    }
    let elf = kernel_path(root);
    if !elf.is_file() {
        return Err(HarnessError::KernelMissing(elf));
    }
    Ok(elf)
}

/// The kernel to boot: `KMBENCH_KERNEL`, else the built (or, with `no_build`, existing) ELF.
pub fn kernel(root: &Path, no_build: bool, quiet: bool, verbose: bool) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("KMBENCH_KERNEL") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(HarnessError::KernelOverrideMissing(p))
        };
    }
    if no_build {
        let elf = kernel_path(root);
        return if elf.is_file() {
            Ok(elf)
        } else {
            Err(HarnessError::KernelMissing(elf))
        };
    }
    build_kernel(root, quiet, verbose)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_workspace() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = find_workspace_root(here).unwrap();
        assert!(root.join("unikernel").is_dir());
        assert!(
            find_workspace_root(Path::new("/")).is_none() || !Path::new("/Cargo.toml").exists()
        );
    }
}
