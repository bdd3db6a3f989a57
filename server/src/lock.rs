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
    /// The path, or a path it is under, is a file (or anything else but a
    /// directory): mkdir's own words for it are "File exists" or "Not a
    /// directory", which leave the operator guessing which path is meant.
    #[error("{}", not_a_directory(.dir, .found, *.is_file))]
    NotADirectory {
        dir: PathBuf,
        found: PathBuf,
        is_file: bool,
    },
    #[error("cannot create data directory {dir}: {source}")]
    Create {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock data directory {dir} ({LOCK_FILE}): {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Says that `dir` cannot be the data directory because `found` (itself,
/// or a path it is under) is not a directory.
fn not_a_directory(dir: &Path, found: &Path, is_file: bool) -> String {
    let what = if is_file { " (it is a file)" } else { "" };
    let fault = if dir == found {
        format!("is not a directory{what}")
    } else {
        format!(
            "cannot be created: {} is not a directory{what}",
            found.display()
        )
    };
    format!(
        "data directory {} {fault}; set data_dir (--data-dir, AUDITLOG_DATA_DIR) to a \
         directory, which is created if missing",
        dir.display()
    )
}

/// Creates the data directory `dir` if it is missing; refuses a path that
/// is, or is under, something other than a directory, naming it.
pub(crate) fn create_data_dir(dir: &Path) -> Result<(), LockError> {
    make_private_dir(dir).map_err(|source| {
        // The nearest of `dir` and its parents that is there decides: if it
        // is not a directory, that is the fault, whatever mkdir said.
        let found = dir
            .ancestors()
            .filter(|p| !p.as_os_str().is_empty())
            .find_map(|p| std::fs::metadata(p).ok().map(|m| (p, m)));
        match found {
            Some((found, meta)) if !meta.is_dir() => LockError::NotADirectory {
                dir: dir.to_owned(),
                found: found.to_owned(),
                is_file: meta.is_file(),
            },
            _ => LockError::Create {
                dir: dir.to_owned(),
                source,
            },
        }
    })
}

/// Creates `dir` readable by its owner alone (mode 0700, as `mkdir -p -m
/// 700` does: missing parents get the usual mode). The log holds what
/// callers record about people; another local user has no business
/// reading it. An existing directory is left as it is.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        made => made,
    }
}

/// A warning when other local users can read or enter the data directory
/// `dir` (its mode lets group or others in): what they could read and the
/// one command that closes it. `None` when it is the owner's alone.
pub(crate) fn open_to_others(dir: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "data directory {} has mode {mode:04o}: other local users can read the log and \
             what it records; `chmod 700 {}` closes it (new data directories are made 0700)",
            dir.display(),
            dir.display()
        )
    })
}

impl DirLock {
    /// Takes the lock on `dir` (created if missing), or says who holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_owned(),
            source,
        };
        create_data_dir(dir)?;
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

    /// A data directory that is a file, or under one, is named as such;
    /// before, mkdir's words were passed on: "File exists (os error 17)"
    /// for the file itself and "Not a directory" under it.
    #[test]
    fn a_data_directory_that_is_a_file_or_under_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passwd");
        std::fs::write(&file, "root:x:0:0\n").unwrap();
        let err = DirLock::acquire(&file).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "data directory {} is not a directory (it is a file); set data_dir \
                 (--data-dir, AUDITLOG_DATA_DIR) to a directory, which is created if missing",
                file.display()
            )
        );
        let under = file.join("data");
        let err = DirLock::acquire(&under).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "data directory {} cannot be created: {} is not a directory (it is a file);",
                under.display(),
                file.display()
            )),
            "{err}"
        );
        assert!(!err.contains("os error"), "{err}");
    }
}
