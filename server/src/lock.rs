//! One server per data directory.
//!
//! Two servers writing one directory would both hand out the next seqs and
//! fork the chain. At start the server takes an exclusive advisory lock
//! (`flock`) on `<data_dir>/LOCK`, before it reads or writes anything else
//! there, and holds it for the life of the process. The OS drops the lock
//! when the process ends, however it ends, so a crash never leaves a stale
//! lock behind. The file holds the holder's pid, only so that a second
//! server can say who holds the directory when it refuses to start.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "data directory {dir} is in use by another auditlog-server ({holder}); stop that \
         server, or give this one another --data-dir"
    )]
    InUse { dir: PathBuf, holder: String },
    #[error("cannot lock data directory {dir} ({LOCK_FILE}): {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl DirLock {
    /// Takes the lock on `dir` (created if missing), or says who holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The holder may not have written its pid yet.
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "its pid not yet written".to_owned(),
                };
                return Err(LockError::InUse {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io)?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err().to_string();
        let pid = format!("pid {}", std::process::id());
        assert!(
            err.contains(&pid) && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }
}
