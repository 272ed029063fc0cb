//! Creating the files kmbench writes without following symlinks, and locking a folder.
//!
//! kmbench often runs as root, and `--out` may sit in a world-writable folder: a symlink
//! planted under a name kmbench writes (`guest.log`, `records.jsonl`, a temporary file)
//! must never redirect the write to its target. So every file kmbench creates is first
//! unlinked (which removes a symlink itself, never its target) and then created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`; whole-file writes go to a fresh, randomly named
//! temporary file (created the same way by `tempfile`) renamed over the destination.
//! A folder is claimed by an advisory lock on its `.kmbench.lock`, held while the run
//! lasts.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Create `path` afresh for writing: an existing file or symlink of that name is removed
/// first (never followed), then the file is created exclusively, not following symlinks.
pub fn create_fresh(path: &Path) -> std::io::Result<File> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a directory is in the way",
            ))
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Write `path` atomically: a uniquely named temporary file in the same folder (never an
/// existing file, never through a symlink), synced, then renamed over `path` (a rename
/// replaces a symlink named `path`, it does not write through it).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Why a folder could not be claimed.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds the lock; its pid when it wrote one.
    Busy(Option<u32>),
    Io(std::io::Error),
}

/// An exclusive claim on a folder, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

/// The lock file's name inside a claimed folder.
pub const LOCK_FILE: &str = ".kmbench.lock";

/// Claim `dir` through `dir/.kmbench.lock` (flock, non-blocking); the lock file records
/// the holder's pid for the refusal message.
pub fn lock_folder(dir: &Path) -> Result<FolderLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(LockError::Io)?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let pid = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            return Err(LockError::Busy(pid));
        }
        return Err(LockError::Io(e));
    }
    file.set_len(0).map_err(LockError::Io)?;
    writeln!(file, "{}", std::process::id()).map_err(LockError::Io)?;
    Ok(FolderLock { _file: file })
}

/// `,` doubled: how QEMU's option parser reads a literal comma inside a value
/// (`path=a,,b` is the path `a,b`).
pub fn qemu_opt_value(s: &str) -> String {
    s.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_symlinks_are_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("victim");
        std::fs::write(&target, "precious").unwrap();
        for name in ["guest.log", "records.jsonl"] {
            let p = d.path().join(name);
            std::os::unix::fs::symlink(&target, &p).unwrap();
            let mut f = create_fresh(&p).unwrap();
            f.write_all(b"new").unwrap();
            assert!(!std::fs::symlink_metadata(&p).unwrap().is_symlink());
        }
        // A dangling symlink (target not yet existing) is not followed either.
        let p = d.path().join("dangling.log");
        std::os::unix::fs::symlink(d.path().join("created-by-follow"), &p).unwrap();
        create_fresh(&p).unwrap();
        assert!(!d.path().join("created-by-follow").exists());
        // results.json through write_atomic.
        let p = d.path().join("results.json");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        write_atomic(&p, b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{}");
    }

    #[test]
    fn temporary_names_are_unique_and_cleaned_up() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("results.json");
        // The old fixed name, planted as a symlink, is not touched.
        let target = d.path().join("victim");
        std::fs::write(&target, "precious").unwrap();
        std::os::unix::fs::symlink(&target, d.path().join(".results.json.tmp")).unwrap();
        for i in 0..5 {
            write_atomic(&p, format!("{i}").as_bytes()).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "4");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        let names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn a_folder_is_claimed_once() {
        let d = tempfile::tempdir().unwrap();
        let lock = lock_folder(d.path()).unwrap();
        match lock_folder(d.path()) {
            Err(LockError::Busy(pid)) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(lock);
        lock_folder(d.path()).unwrap();
    }

    #[test]
    fn commas_are_doubled_for_qemu() {
        assert_eq!(qemu_opt_value("/tmp/a,b/guest.log"), "/tmp/a,,b/guest.log");
        assert_eq!(qemu_opt_value("plain"), "plain");
        assert_eq!(qemu_opt_value(",,"), ",,,,");
    }
}
