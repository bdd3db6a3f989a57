//! `auditlog backup DIR`: writes the server's Backup stream into a new
//! directory, each file synced, then the directory. With `--from EARLIER`
//! (an earlier backup), the sealed files EARLIER holds are named to the
//! server, each segment and index with its SHA-256 as hashed here, and
//! those it marks `held` (the log still has them, with that hash in its
//! manifest) are hard-linked from EARLIER instead of sent (copied where a
//! link cannot be made, as across file systems).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use auditlog_client::{Client, pb};
use pb::backup_response::Part;

use crate::CliError;

/// The file being written and how many bytes it still awaits.
struct Open {
    path: PathBuf,
    file: File,
    left: u64,
}

pub(crate) async fn run(
    client: &Client,
    dir: &Path,
    from: Option<&Path>,
    json: bool,
) -> Result<(), CliError> {
    // Before the earlier backup is read whole to hash it.
    create(dir)?;
    let held = from.map(held_in).transpose()?.unwrap_or_default();
    // Only a file named here may come as held.
    let named: std::collections::HashSet<String> = held.iter().map(|h| h.path.clone()).collect();
    let mut stream = client.backup_holding(held).await?;
    let mut open: Option<Open> = None;
    let mut written = 0u64;
    let mut done = None;
    while let Some(message) = stream
        .message()
        .await
        .map_err(auditlog_client::Error::from)?
    {
        match message.part {
            Some(Part::File(f)) => {
                finish(open.take())?;
                let path = dir.join(relative(&f.path)?);
                if let Some(parent) = path.parent().filter(|p| *p != dir) {
                    make_dir(parent)?;
                }
                if f.held {
                    let Some(earlier) = from.filter(|_| named.contains(&f.path)) else {
                        return Err(broken(&format!("{} came as held, unasked", f.path)));
                    };
                    take_held(&earlier.join(&f.path), &path, f.size)?;
                    written += 1;
                    continue;
                }
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| CliError::Io(format!("cannot create {}: {e}", path.display())))?;
                written += 1;
                open = Some(Open {
                    path,
                    file,
                    left: f.size,
                });
            }
            Some(Part::Data(bytes)) => {
                let Some(o) = open.as_mut() else {
                    return Err(broken("bytes before any file"));
                };
                if bytes.len() as u64 > o.left {
                    return Err(broken(&format!("more bytes than {} has", o.path.display())));
                }
                o.file
                    .write_all(&bytes)
                    .map_err(|e| CliError::Io(format!("cannot write {}: {e}", o.path.display())))?;
                o.left -= bytes.len() as u64;
            }
            Some(Part::Done(d)) => {
                finish(open.take())?;
                done = Some(d);
                break;
            }
            None => return Err(broken("an empty message")),
        }
    }
    let Some(done) = done else {
        return Err(broken("it ended before its last message"));
    };
    if done.files != written {
        return Err(broken(&format!(
            "{written} files came, its last message says {}",
            done.files
        )));
    }
    sync_dir(dir)?;
    if dir.join("webhooks").is_dir() {
        sync_dir(&dir.join("webhooks"))?;
    }
    if json {
        say!(
            "{}",
            serde_json::json!({"dir": dir.display().to_string(), "files": done.files, "bytes": done.bytes, "head_seq": done.head_seq, "held_files": done.held_files, "held_bytes": done.held_bytes})
        );
    } else {
        let held = match from {
            Some(earlier) if done.held_files > 0 => format!(
                ", {} more ({} bytes) taken from {}",
                done.held_files,
                done.held_bytes,
                earlier.display()
            ),
            _ => String::new(),
        };
        say!(
            "backed up {} files ({} bytes sent{held}) into {}: every event up to seq {} is in \
             it. To restore, put the keys beside them (hmac.key, checkpoint.key, and \
             pseudonym.key and webhooks/<name>.secret where used) and start a server on that \
             directory",
            done.files,
            done.bytes,
            dir.display(),
            done.head_seq
        );
    }
    Ok(())
}

/// The sealed files the backup `earlier` holds, by what they are now (not
/// by what its manifest said): each compressed segment and index with its
/// SHA-256, hashed here, so a file damaged since is not taken but sent
/// again; each lead copy file with its size.
fn held_in(earlier: &Path) -> Result<Vec<pb::HeldFile>, CliError> {
    // A backup of a log with no sealed segment yet holds none of these
    // (nor a manifest): nothing is named, and everything is sent.
    let entries = std::fs::read_dir(earlier).map_err(|e| unreadable_earlier(earlier, &e))?;
    let mut held = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| CliError::Io(format!("cannot read {}: {e}", earlier.display())))?;
        // Regular files only: a link to elsewhere is not the backup's own.
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !regular {
            continue;
        }
        let sealed = name.starts_with("audit.") && relative(&name).is_ok();
        let copy = name.ends_with(".leads.zst") || name.ends_with(".leads.idx");
        let hashed = name.ends_with(".log.gz") || (name.ends_with(".idx") && !copy);
        if !sealed || !(copy || hashed) {
            continue;
        }
        let path = entry.path();
        let size = std::fs::metadata(&path)
            .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?
            .len();
        let sha256 = if hashed {
            sha256_of(&path)?
        } else {
            String::new()
        };
        held.push(pb::HeldFile {
            path: name,
            sha256,
            size,
        });
    }
    Ok(held)
}

/// The SHA-256 of the file at `path`, in hex.
fn sha256_of(path: &Path) -> Result<String, CliError> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    File::open(path)
        .and_then(|mut file| std::io::copy(&mut file, &mut hasher))
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Puts the earlier backup's `source` at `target`: a hard link, or a copy
/// (synced) where no link can be made. It must still have the `size` the
/// server's copy has.
fn take_held(source: &Path, target: &Path, size: u64) -> Result<(), CliError> {
    let len = std::fs::metadata(source)
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", source.display())))?
        .len();
    if len != size {
        return Err(CliError::Failed(format!(
            "{} is {len} bytes and the server's copy {size}: the earlier backup changed since \
             it was named; run the backup again, or without --from",
            source.display()
        )));
    }
    if std::fs::hard_link(source, target).is_ok() {
        return Ok(());
    }
    let copied = File::open(source).and_then(|mut from| {
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)?;
        std::io::copy(&mut from, &mut to)?;
        to.sync_all()
    });
    copied.map_err(|e| {
        CliError::Io(format!(
            "cannot copy {} to {}: {e}",
            source.display(),
            target.display()
        ))
    })
}

/// What is checked before the server is asked: `dir` is new or empty,
/// and `from`, if given, a directory that reads.
pub(crate) fn check_local(dir: &Path, from: Option<&Path>) -> Result<(), CliError> {
    is_new(dir)?;
    if let Some(earlier) = from {
        std::fs::read_dir(earlier).map_err(|e| unreadable_earlier(earlier, &e))?;
    }
    Ok(())
}

/// Whether `dir` does not exist yet; an error when it holds anything.
fn is_new(dir: &Path) -> Result<bool, CliError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(false),
            Some(_) => Err(CliError::Usage(format!(
                "{} is not empty: give a new directory (or an empty one) for the backup",
                dir.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(CliError::Io(format!("cannot read {}: {e}", dir.display()))),
    }
}

fn unreadable_earlier(earlier: &Path, e: &std::io::Error) -> CliError {
    CliError::Usage(format!(
        "cannot read {} ({e}): give the directory of an earlier `auditlog backup`",
        earlier.display()
    ))
}

/// DIR, made 0700; one that exists must be empty.
fn create(dir: &Path) -> Result<(), CliError> {
    if is_new(dir)? {
        make_dir(dir)?;
    }
    Ok(())
}

fn make_dir(dir: &Path) -> Result<(), CliError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CliError::Io(format!("cannot create {}: {e}", dir.display())))
}

/// A path the server sent, if it is one a data directory holds: a file
/// name, or `webhooks/` and a file name; never absolute, `..` or hidden.
fn relative(path: &str) -> Result<&Path, CliError> {
    let name = path.strip_prefix("webhooks/").unwrap_or(path);
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    if plain {
        Ok(Path::new(path))
    } else {
        Err(broken(&format!("a file named {path:?}")))
    }
}

/// Syncs a finished file, which must have had all its bytes.
fn finish(open: Option<Open>) -> Result<(), CliError> {
    let Some(o) = open else { return Ok(()) };
    if o.left > 0 {
        return Err(broken(&format!(
            "{} is {} bytes short",
            o.path.display(),
            o.left
        )));
    }
    o.file
        .sync_all()
        .map_err(|e| CliError::Io(format!("cannot sync {}: {e}", o.path.display())))
}

fn sync_dir(dir: &Path) -> Result<(), CliError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CliError::Io(format!("cannot sync {}: {e}", dir.display())))
}

/// The stream was not a whole backup.
fn broken(what: &str) -> CliError {
    CliError::Failed(format!(
        "the backup stream is broken ({what}); what was written is not a whole backup: delete \
         it and run the backup again"
    ))
}

#[cfg(test)]
mod tests {
    use super::{held_in, relative};

    /// What an earlier backup is named by: its sealed regular files, each
    /// segment and index hashed, lead copies by size; not its other files,
    /// nor a link to elsewhere.
    #[test]
    fn an_earlier_backup_names_its_sealed_files_as_they_are() {
        let dir = std::env::temp_dir().join(format!("auditlog-held-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
        write("audit.20261207T000000.000000Z.log.gz", b"abc");
        write("audit.20261207T000000.000000Z.idx", b"");
        write("audit.20261207T000000.000000Z.leads.zst", b"zz");
        write("audit.log", b"active");
        write("manifest.json", b"{}");
        std::os::unix::fs::symlink(
            "/etc/hostname",
            dir.join("audit.20261208T000000.000000Z.log.gz"),
        )
        .unwrap();
        let mut held = held_in(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        held.sort_by(|a, b| a.path.cmp(&b.path));
        let named: Vec<(&str, &str, u64)> = held
            .iter()
            .map(|h| (h.path.as_str(), h.sha256.as_str(), h.size))
            .collect();
        assert_eq!(
            named,
            [
                (
                    "audit.20261207T000000.000000Z.idx",
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    0
                ),
                ("audit.20261207T000000.000000Z.leads.zst", "", 2),
                (
                    "audit.20261207T000000.000000Z.log.gz",
                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                    3
                ),
            ]
        );
    }

    #[test]
    fn only_paths_a_data_directory_holds_are_written() {
        for ok in [
            "audit.log",
            "manifest.json",
            "head",
            "webhooks/crm-sync.pos",
        ] {
            assert!(relative(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../outside",
            "webhooks/../../outside",
            "a/b",
            ".hidden",
            "webhooks/",
            "webhooks/.pos",
            "tree/level-00",
            "name\0",
        ] {
            assert!(relative(bad).is_err(), "{bad:?}");
        }
    }
}
