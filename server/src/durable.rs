//! Durable file replacement: the one way the server puts a whole file in
//! place (the manifest, a rebuilt segment index, a compressed segment and
//! its lead copy, a webhook's position).
//!
//! A file is written under its temporary name `<name>.tmp` and fsynced
//! ([`stage`]), renamed over `<name>`, and the directory fsynced
//! ([`publish`]); [`replace`] and [`replace_with`] do all of it for one
//! file. Several staged files can be published together, with one directory
//! fsync.
//!
//! Invariant: after a crash at any point, `<name>` is either the old file or
//! the new one, whole, never a mix; once `publish` returns, the new one
//! survives a crash of the machine. A `.tmp` file is never read as data:
//! recovery deletes any it finds.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A file written and fsynced under its temporary name, waiting for
/// [`publish`] to put it in place.
#[derive(Debug)]
#[must_use = "a staged file is in place only once published"]
pub(crate) struct Staged {
    tmp: PathBuf,
    target: PathBuf,
}

/// `<target>.tmp`: where a file is written before it is renamed into place.
pub(crate) fn tmp_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Creates `<target>.tmp` (truncating a leftover one), lets `write` fill
/// it, and fsyncs it. A writer that buffers must flush before it returns.
pub(crate) fn stage<T, E: From<std::io::Error>>(
    target: &Path,
    write: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<(Staged, T), E> {
    let tmp = tmp_path(target);
    let mut file = File::create(&tmp)?;
    let out = write(&mut file)?;
    file.sync_all()?;
    let staged = Staged {
        tmp,
        target: target.to_path_buf(),
    };
    Ok((staged, out))
}

/// Renames each staged file over its target, then fsyncs the directories
/// that hold them.
pub(crate) fn publish(staged: impl IntoIterator<Item = Staged>) -> std::io::Result<()> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for s in staged {
        std::fs::rename(&s.tmp, &s.target)?;
        let dir = s.target.parent().unwrap_or(Path::new(".")).to_path_buf();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        sync_dir(&dir)?;
    }
    Ok(())
}

/// Replaces `target` with a file that `write` fills: [`stage`], then
/// [`publish`].
pub(crate) fn replace_with<T, E: From<std::io::Error>>(
    target: &Path,
    write: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<T, E> {
    let (staged, out) = stage(target, write)?;
    publish([staged])?;
    Ok(out)
}

/// Replaces `target` with `bytes`.
pub(crate) fn replace(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace_with(target, |f| f.write_all(bytes))
}

/// Makes a directory entry change (a created, renamed or deleted file)
/// durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_is_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("manifest.json");
        std::fs::write(&target, b"old").unwrap();
        replace(&target, b"new contents").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new contents");
        assert!(!tmp_path(&target).exists());
        assert_eq!(tmp_path(&target), dir.path().join("manifest.json.tmp"));
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.idx");
        std::fs::write(&target, b"old").unwrap();
        let failed = replace_with(&target, |f| {
            f.write_all(b"half")?;
            Err::<(), _>(std::io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
    }

    #[test]
    fn staged_files_appear_only_when_published() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.gz"), dir.path().join("a.idx"));
        let (sa, ()) = stage(&a, |f| f.write_all(b"1")).unwrap();
        let (sb, ()) = stage(&b, |f| f.write_all(b"2")).unwrap();
        assert!(!a.exists() && !b.exists());
        publish([sa, sb]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"1");
        assert_eq!(std::fs::read(&b).unwrap(), b"2");
    }
}
