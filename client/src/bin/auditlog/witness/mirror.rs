//! `checkpoint watch --mirror FILE`: the witness keeps the log itself, not
//! only its checkpoints. Each round, once the new checkpoint is accepted,
//! it fetches the records it does not hold yet as stored (StreamEvents with
//! `stored_lines`, up to the checkpoint's size), checks that the leaf
//! hashes of all the records it holds make that checkpoint's root, and only
//! then appends them to FILE (JSON Lines, each record byte for byte as the
//! server stores it) and syncs it, before the checkpoint is kept.
//!
//! So FILE always holds the records of a checkpoint the verifier key
//! signed, checked without trusting the server for anything: a server that
//! serves records other than those its checkpoints signed (a record
//! rewritten after it was signed, even with the HMAC key) is caught by the
//! first mirror that fetches them (MISMATCH), and one that rewrites what a
//! mirror already holds is caught by the witness's consistency check, with
//! the original records kept in FILE as the evidence.
//!
//! A seq the server does not send (cut from the log, or purged by
//! retention) counts as its gap leaf (`auditlog_proof::gap`): right for a
//! record cut before any checkpoint signed it, a MISMATCH naming the
//! missing seqs otherwise (a mirror must be started while the log still
//! holds its records).
//!
//! At start, FILE is read back and checked against the kept checkpoint:
//! its first records must make the kept root (else it was changed since
//! it was written, and the witness stops), and records after the kept size
//! (a round cut short before its checkpoint was kept) are cut, to be
//! fetched and checked again. A file that holds anything but stored records
//! is refused untouched, and one another witness holds (an `flock`) too.

use std::fs::{File, OpenOptions};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use auditlog_client::proof::mirror::{self, MAX_MISSING, MirrorError, Prefix, push_gaps};
use auditlog_client::proof::{Checkpoint, CompactRange, leaf_hash};
use auditlog_client::{Client, Query, stored_seq};
use futures::StreamExt as _;

use crate::CliError;
use crate::proofs::hex;

/// How long a round waits for the server's next message of records
/// before it counts the stream as lost.
const STALLED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Bytes of records gathered before each write to the file.
const WRITE_BYTES: usize = 1 << 20;

/// The mirror file and the tree of the records it holds.
pub(crate) struct Mirror {
    path: PathBuf,
    file: File,
    /// The leaves of seqs 1 to `tree.end()`: every record the file holds,
    /// and the gap leaf of each seq it skips.
    tree: CompactRange,
    /// The length of the file: where the next record goes.
    len: u64,
    /// Whether the records the file holds were checked against a signed
    /// root (at start, or by a round); not when it began behind the kept
    /// checkpoint.
    checked: bool,
}

/// Seqs `from` to `to` (inclusive), mirrored by one round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mirrored {
    pub from: u64,
    pub to: u64,
}

impl Mirror {
    /// Opens `path` (created when missing), checks it against the kept
    /// checkpoint (none on a first run) and cuts what follows the kept size.
    pub(crate) fn open(path: &Path, kept: Option<&Checkpoint>) -> Result<Mirror, CliError> {
        let io = io_error(path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        // Two witnesses appending to one mirror would interleave their
        // records; the lock goes with the process.
        if let Err(e) = file.try_lock() {
            return Err(match e {
                std::fs::TryLockError::WouldBlock => CliError::Failed(format!(
                    "the mirror {} is in use by another witness; give each its own file",
                    path.display()
                )),
                std::fs::TryLockError::Error(e) => io(e),
            });
        }
        let kept_size = kept.map_or(0, |c| c.size);
        let Prefix { tree, len } =
            mirror::read_prefix(BufReader::new(&file), kept_size).map_err(refused(path))?;
        let checked = tree.end() == kept_size;
        if let Some(kept) = kept.filter(|_| checked) {
            let root = tree.root().unwrap_or_default();
            if root != kept.root {
                return Err(CliError::Failed(format!(
                    "the mirror {} was changed since it was written: its {} records make root \
                     {}, not the kept checkpoint's {}; move it aside to fetch the log again",
                    path.display(),
                    kept.size,
                    hex(&root),
                    hex(&kept.root)
                )));
            }
        }
        let total = file.metadata().map_err(io)?.len();
        if total > len {
            file.set_len(len).map_err(io)?;
            file.sync_data().map_err(io)?;
            eprintln!(
                "auditlog: mirror {}: cut {} bytes after seq {} (not covered by the kept \
                 checkpoint); they are fetched and checked again",
                path.display(),
                total - len,
                tree.end()
            );
        }
        Ok(Mirror {
            path: path.to_path_buf(),
            file,
            tree,
            len,
            checked,
        })
    }

    /// Brings the mirror to `to`: fetches the records after the last one
    /// it holds up to `to.size`, checks the whole makes `to.root`, then
    /// appends them and syncs. Nothing is kept when they do not.
    pub(crate) async fn extend(
        &mut self,
        client: &Client,
        to: &Checkpoint,
    ) -> Result<Option<Mirrored>, CliError> {
        let from = self.tree.end() + 1;
        if to.size < from {
            return Ok(None);
        }
        let fetched = match self.fetch(client, to).await {
            Ok(fetched) => fetched,
            Err(e) => {
                self.cut_back()?;
                return Err(e);
            }
        };
        let root = fetched.tree.root().unwrap_or_default();
        if root != to.root {
            self.cut_back()?;
            // Records the file held unchecked (it began behind the kept
            // checkpoint) share the blame.
            let unchecked = match self.checked || from == 1 {
                true => String::new(),
                false => format!(
                    " (or the {} records the mirror held, not yet checked against a checkpoint, \
                     were changed)",
                    from - 1
                ),
            };
            return Err(CliError::Failed(format!(
                "MISMATCH: the records the server sent for seqs {from} to {} do not make its \
                 signed checkpoint's root (size {}, root {}; the records give {}){}: it serves \
                 records other than those it signed{unchecked}",
                to.size,
                to.size,
                hex(&to.root),
                hex(&root),
                fetched.missing
            )));
        }
        self.file.sync_data().map_err(|e| self.io(e))?;
        self.tree = fetched.tree;
        self.len += fetched.bytes;
        self.checked = true;
        Ok(Some(Mirrored { from, to: to.size }))
    }

    /// Reads the records after the mirror's last up to `to.size` from the
    /// server and writes them after the file's checked part, unsynced.
    async fn fetch(&self, client: &Client, to: &Checkpoint) -> Result<Fetched, CliError> {
        let mut tree = self.tree.clone();
        let mut missing = Missing::default();
        let mut buf = Vec::with_capacity(WRITE_BYTES + (64 << 10));
        let mut bytes = 0u64;
        let mut lines = client
            .stream_lines(Query::new(), tree.end() + 1, false)
            .await?;
        while tree.end() < to.size {
            let next = tokio::time::timeout(STALLED_AFTER, lines.next()).await;
            let Ok(next) = next else {
                // As a lost connection: the next round tries again.
                return Err(
                    auditlog_client::Error::Rpc(tonic::Status::deadline_exceeded(format!(
                        "the server sent no record for {} s after seq {}",
                        STALLED_AFTER.as_secs(),
                        tree.end()
                    )))
                    .into(),
                );
            };
            let Some(line) = next else {
                break;
            };
            let line = line?;
            // A newline inside would split the record in FILE.
            let seq = stored_seq(&line)
                .filter(|_| !line.contains(&b'\n'))
                .ok_or_else(|| {
                    CliError::Failed(format!(
                        "the server sent a line that is not a stored record after seq {}",
                        tree.end()
                    ))
                })?;
            if seq <= tree.end() {
                return Err(CliError::Failed(format!(
                    "the server sent seq {seq} after seq {}: out of order",
                    tree.end()
                )));
            }
            if seq > to.size {
                break;
            }
            missing.note(tree.end() + 1, seq)?;
            push_gaps(&mut tree, seq);
            tree.push(leaf_hash(&line));
            buf.extend_from_slice(&line);
            buf.push(b'\n');
            if buf.len() >= WRITE_BYTES {
                self.write_at(&buf, self.len + bytes)?;
                bytes += buf.len() as u64;
                buf.clear();
            }
        }
        drop(lines);
        self.write_at(&buf, self.len + bytes)?;
        bytes += buf.len() as u64;
        // Saturating: a checkpoint of u64::MAX records is refused there
        // (too many seqs not sent), not overflowed.
        let after = to.size.saturating_add(1);
        missing.note(tree.end() + 1, after)?;
        push_gaps(&mut tree, after);
        Ok(Fetched {
            tree,
            bytes,
            missing,
        })
    }

    fn write_at(&self, buf: &[u8], at: u64) -> Result<(), CliError> {
        use std::os::unix::fs::FileExt as _;
        self.file.write_all_at(buf, at).map_err(|e| self.io(e))
    }

    fn io(&self, e: std::io::Error) -> CliError {
        io_error(&self.path)(e)
    }

    /// Cuts what a failed round appended.
    fn cut_back(&self) -> Result<(), CliError> {
        self.file
            .set_len(self.len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io(e))
    }
}

/// `auditlog bundle verify-mirror`: checks, with no server, that the
/// records in the mirror `path` are exactly those `checkpoint` signed (its
/// first `size` records make its root); prints what it found.
pub(crate) fn check_offline(
    path: &Path,
    checkpoint: &Checkpoint,
    json: bool,
) -> Result<(), CliError> {
    let io = io_error(path);
    let file = File::open(path).map_err(io)?;
    let len = match mirror::verify(BufReader::new(&file), checkpoint) {
        Ok(prefix) => prefix.len,
        Err(MirrorError::Short { holds, size }) => {
            return Err(CliError::Failed(format!(
                "{} holds records up to seq {holds} only; the checkpoint covers {size}",
                path.display()
            )));
        }
        Err(MirrorError::Mismatch { size, root }) => {
            return Err(CliError::Failed(format!(
                "{}: its first {size} records make root {}, not the checkpoint's {}: they are \
                 not the records it signed",
                path.display(),
                hex(&root),
                hex(&checkpoint.root)
            )));
        }
        // Not `refused`: its advice is for a witness's `--mirror`.
        Err(MirrorError::NotAMirror { line, after }) => {
            return Err(CliError::Failed(format!(
                "{} is not a witness's mirror: line {line} is not a stored record after seq \
                 {after}",
                path.display()
            )));
        }
        Err(MirrorError::Io(e)) => return Err(io(e)),
    };
    let after = file.metadata().map_err(io)?.len() - len;
    if json {
        say!(
            "{}",
            serde_json::json!({
                "verified": true,
                "origin": checkpoint.origin,
                "tree_size": checkpoint.size,
                "root_hash": hex(&checkpoint.root),
                "bytes_after": after,
            })
        );
    } else {
        let rest = match after {
            0 => String::new(),
            n => format!(" ({n} bytes after them are not covered by this checkpoint)"),
        };
        say!(
            "OK: {} holds the {} records of {}'s checkpoint at tree size {} root {}{rest}",
            path.display(),
            checkpoint.size,
            checkpoint.origin,
            checkpoint.size,
            hex(&checkpoint.root)
        );
    }
    Ok(())
}

/// How an I/O failure on the mirror `path` is told.
fn io_error(path: &Path) -> impl Fn(std::io::Error) -> CliError + Copy + '_ {
    move |e| CliError::Io(format!("mirror {}: {e}", path.display()))
}

/// How a mirror file that cannot be read as one is told.
fn refused(path: &Path) -> impl Fn(MirrorError) -> CliError + '_ {
    move |e| match e {
        MirrorError::Io(e) => io_error(path)(e),
        MirrorError::NotAMirror { line, after } => not_a_mirror(path, line, after),
        other => CliError::Failed(format!("mirror {}: {other}", path.display())),
    }
}

fn not_a_mirror(path: &Path, line: u64, after: u64) -> CliError {
    CliError::Failed(format!(
        "{} is not a mirror this witness wrote: line {line} is not a stored record after seq \
         {after}; give --mirror a new file, or the one it wrote",
        path.display()
    ))
}

/// The seqs a round counted as gap leaves because the server did not
/// send them.
#[derive(Debug, Default)]
struct Missing {
    count: u64,
    first: u64,
    last: u64,
}

impl Missing {
    /// Notes the seqs from `from` to before `until`; refuses more than
    /// [`MAX_MISSING`] in a round, so a checkpoint of an absurd size (it is
    /// signed by the operator the witness does not trust) cannot keep the
    /// mirror hashing gap leaves for ever.
    fn note(&mut self, from: u64, until: u64) -> Result<(), CliError> {
        if until <= from {
            return Ok(());
        }
        if self.count == 0 {
            self.first = from;
        }
        self.count = self.count.saturating_add(until - from);
        self.last = until - 1;
        if self.count > MAX_MISSING {
            return Err(CliError::Failed(format!(
                "the server did not send {} records from seq {} to {}: a mirror counts a seq \
                 the log does not hold as its gap leaf, but not over {MAX_MISSING} in a round; \
                 records were purged by retention before this mirror began, or the server does \
                 not serve what its checkpoint signed",
                self.count, self.first, self.last
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        write!(
            f,
            "; {} seqs in {} to {} were not sent (cut from the log or purged by retention) \
             and count as gap leaves",
            self.count, self.first, self.last
        )
    }
}

/// What [`Mirror::fetch`] wrote.
struct Fetched {
    tree: CompactRange,
    bytes: u64,
    missing: Missing,
}

#[cfg(test)]
mod tests {
    use auditlog_client::proof::{Hash, gap_line, root_of};

    use super::*;

    #[test]
    fn skipped_seqs_count_as_their_gap_leaves() {
        let mut tree = CompactRange::new(0);
        let mut missing = Missing::default();
        for seq in [1, 4, 5] {
            missing.note(tree.end() + 1, seq).unwrap();
            push_gaps(&mut tree, seq);
            tree.push(leaf_hash(format!("record {seq}").as_bytes()));
        }
        missing.note(tree.end() + 1, 8).unwrap();
        push_gaps(&mut tree, 8);
        let leaves: Vec<Hash> = (1..=7u64)
            .map(|seq| match seq {
                1 | 4 | 5 => leaf_hash(format!("record {seq}").as_bytes()),
                _ => leaf_hash(&gap_line(seq)),
            })
            .collect();
        assert_eq!(tree.root(), Some(root_of(&leaves)));
        assert_eq!(
            missing.to_string(),
            "; 4 seqs in 2 to 7 were not sent (cut from the log or purged by retention) and \
             count as gap leaves"
        );
        assert_eq!(Missing::default().to_string(), "");
    }

    #[test]
    fn a_round_counts_no_more_than_its_share_of_gaps() {
        let mut missing = Missing::default();
        missing.note(1, MAX_MISSING + 1).unwrap();
        let Err(CliError::Failed(e)) = missing.note(MAX_MISSING + 2, MAX_MISSING + 3) else {
            panic!("one more gap than a round counts was taken");
        };
        assert!(
            e.contains(&format!(
                "did not send {} records from seq 1 to",
                MAX_MISSING + 1
            )),
            "{e}"
        );
        let mut absurd = Missing::default();
        assert!(absurd.note(2, u64::MAX).is_err());
    }
}
