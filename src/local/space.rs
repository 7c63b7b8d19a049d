//! Free-space guard: fjall poisons the database when a journal write fails, so before a batch
//! touches fjall (and while large content streams in) the store checks that its filesystem is
//! writable and keeps a reserve free; otherwise the write is refused with `Error::NoSpace`.

use std::path::{Path, PathBuf};

use rustix::fs::StatVfsMountFlags;

use crate::error::{Error, Result};

/// Default free space kept on the store's filesystem: appends are refused below it.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug)]
pub(crate) struct Space {
    path: PathBuf,
    min_free: u64,
}

impl Space {
    pub(crate) fn new(path: &Path, min_free: u64) -> Space {
        Space {
            path: path.to_path_buf(),
            min_free,
        }
    }

    /// `Err(NoSpace)` if the filesystem is read-only, or (unless `deletes_only`) has less
    /// than the reserve free.
    pub(crate) fn check(&self, deletes_only: bool) -> Result<()> {
        let st = rustix::fs::statvfs(&self.path).map_err(|e| {
            Error::io(
                format!("checking free space of {}", self.path.display()),
                e.into(),
            )
        })?;
        if st.f_flag.contains(StatVfsMountFlags::RDONLY) {
            return Err(Error::NoSpace(format!(
                "the store's filesystem ({}) is read-only: nothing was stored; remount it read-write",
                self.path.display()
            )));
        }
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if !deletes_only && free < self.min_free {
            return Err(Error::NoSpace(format!(
                "only {free} bytes free on the store's filesystem ({}), below the {} kept in \
                 reserve: nothing was stored; free some space (or lower --min-free-space)",
                self.path.display(),
                self.min_free
            )));
        }
        Ok(())
    }
}

/// Turns "no space" and "read-only" I/O errors into `NoSpace`; other errors as they are.
pub(crate) fn classify_io(context: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() => Error::NoSpace(format!(
            "{context}: the store's filesystem is full: nothing was stored; free some space"
        )),
        Some(code) if code == rustix::io::Errno::ROFS.raw_os_error() => Error::NoSpace(format!(
            "{context}: the store's filesystem is read-only: nothing was stored"
        )),
        _ => Error::io(context, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Space::new(dir.path(), 0).check(false).is_ok());
        let huge = Space::new(dir.path(), u64::MAX);
        assert!(matches!(huge.check(false), Err(Error::NoSpace(_))));
        assert!(huge.check(true).is_ok());
    }

    /// A read-only filesystem is refused even for deletes. Needs root to mount a tmpfs.
    #[test]
    fn read_only_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return;
        }
        let r = Space::new(dir.path(), 0).check(true);
        let _ = std::process::Command::new("umount")
            .arg(dir.path())
            .status();
        match r {
            Err(Error::NoSpace(m)) => assert!(m.contains("read-only"), "{m}"),
            other => panic!("expected NoSpace, got {other:?}"),
        }
    }

    #[test]
    fn classify() {
        let full = std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error());
        assert!(matches!(classify_io("x", full), Error::NoSpace(_)));
        let other = std::io::Error::other("boom");
        assert!(matches!(classify_io("x", other), Error::Io { .. }));
    }
}
