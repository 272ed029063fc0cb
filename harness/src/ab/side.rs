//! One side of an `ab` job: which kernel it boots, with which config and backend.
//!
//! A kernel is a git revision (built in a temporary worktree), a kernel ELF path, or the
//! working tree (the default). Cargo features (`--base-features` / `--new-features`, e.g.
//! the test-only `ab-test-cost`) build that side's kernel with them. Builds other than
//! the plain working tree use their own target folder (`target/ab`), so they never
//! replace the kernel `kmbench run` boots.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::backend::BackendChoice;
use crate::build::{KERNEL_PACKAGE, KERNEL_TARGET};
use crate::error::{HarnessError, Result};

/// Where a side's kernel comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// The working tree, built like `kmbench run` does.
    WorkingTree,
    /// A kernel ELF to boot as is.
    Elf(PathBuf),
    /// A git revision, built in a temporary worktree.
    Revision(String),
}

impl KernelSource {
    /// `None` → the working tree; an existing file → an ELF; anything else → a revision.
    pub fn parse(arg: Option<&str>) -> KernelSource {
        match arg {
            None | Some("") | Some("worktree") => KernelSource::WorkingTree,
            Some(a) if Path::new(a).is_file() => KernelSource::Elf(PathBuf::from(a)),
            Some(a) => KernelSource::Revision(a.to_string()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            KernelSource::WorkingTree => "working tree".into(),
            KernelSource::Elf(p) => format!("ELF {}", p.display()),
            KernelSource::Revision(r) => format!("git revision {r}"),
        }
    }
}

/// A side, resolved.
#[derive(Clone, Debug)]
pub struct Side {
    /// "base" or "new".
    pub name: &'static str,
    pub kernel: KernelSource,
    pub features: Vec<String>,
    pub config: PathBuf,
    pub backend: Option<BackendChoice>,
}

/// Build (or locate) the side's kernel and copy it to `dest` (so the two sides never
/// share a file a later build could replace). Returns `dest`.
pub fn kernel_for(side: &Side, root: &Path, dest: &Path, quiet: bool) -> Result<PathBuf> {
    let built = match (&side.kernel, side.features.is_empty()) {
        (KernelSource::Elf(p), true) => p.clone(),
        (KernelSource::Elf(p), false) => {
            return Err(HarnessError::AbFeaturesOnElf {
                side: side.name,
                elf: p.clone(),
            })
        }
        (KernelSource::WorkingTree, true) => crate::build::build_kernel(root, quiet, false)?,
        (KernelSource::WorkingTree, false) => cargo_build(root, root, &side.features, quiet)?,
        (KernelSource::Revision(rev), _) => {
            let tmp = tempfile::Builder::new()
                .prefix("kmbench-ab-")
                .tempdir()
                .map_err(|e| HarnessError::io("creating a temporary folder", e))?;
            let wt = tmp.path().join("src");
            git(
                root,
                &[
                    "worktree",
                    "add",
                    "--detach",
                    "--quiet",
                    path_str(&wt)?,
                    rev,
                ],
            )?;
            let r = cargo_build(&wt, root, &side.features, quiet);
            let _ = git(root, &["worktree", "remove", "--force", path_str(&wt)?]);
            r?
        }
    };
    std::fs::copy(&built, dest).map_err(|e| {
        HarnessError::io(
            format!("copying {} to {}", built.display(), dest.display()),
            e,
        )
    })?;
    Ok(dest.to_path_buf())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| HarnessError::NotUtf8Path(p.to_path_buf()))
}

fn git(root: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::io("running git", e))?;
    if !out.status.success() {
        return Err(HarnessError::BuildFailed {
            command: format!("git {}", args.join(" ")),
            status: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// `cargo build --release -p kmbench-kernel --target x86_64-unknown-none [--features …]`
/// in `src`, into `<root>/target/ab` (dependencies are shared across sides and runs).
fn cargo_build(src: &Path, root: &Path, features: &[String], quiet: bool) -> Result<PathBuf> {
    let target_dir = root.join("target").join("ab");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(src)
        .args([
            "build",
            "--release",
            "-p",
            KERNEL_PACKAGE,
            "--target",
            KERNEL_TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .stdin(Stdio::null());
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let described = format!(
        "cargo build --release -p {KERNEL_PACKAGE} --target {KERNEL_TARGET} --features {:?} (in {})",
        features.join(","),
        src.display()
    );
    if !quiet {
        eprintln!("kmbench ab: {described}");
    }
    if let Err(status) = crate::build::run_quietly(&mut cmd, &cargo)? {
        return Err(HarnessError::BuildFailed {
            command: described,
            status,
        });
    }
    let elf = target_dir
        .join(KERNEL_TARGET)
        .join("release")
        .join(KERNEL_PACKAGE);
    if !elf.is_file() {
        return Err(HarnessError::KernelMissing(elf));
    }
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_sources() {
        assert_eq!(KernelSource::parse(None), KernelSource::WorkingTree);
        assert_eq!(
            KernelSource::parse(Some("worktree")),
            KernelSource::WorkingTree
        );
        assert_eq!(
            KernelSource::parse(Some("origin/main")),
            KernelSource::Revision("origin/main".into())
        );
        let f = tempfile::NamedTempFile::new().unwrap();
        let p = f.path().to_str().unwrap();
        assert_eq!(
            KernelSource::parse(Some(p)),
            KernelSource::Elf(f.path().to_path_buf())
        );
    }
}
