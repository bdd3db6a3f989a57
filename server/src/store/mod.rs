//! The store: the append-only log file, its single writer, the index over it,
//! and recovery.
//!
//! Layout of the data directory:
//!
//! - `audit.log`: the log, one record per line (format in [`record`]).
//! - `audit.log.quarantine`: bytes recovery cut from the end of the log (a
//!   torn last line, a half-written batch), kept for inspection.
//! - `hmac.key`: the generated HMAC key, when none is configured.
//!
//! Invariants: only the writer thread appends to the log; a record enters the
//! index, reaches subscribers and is acknowledged only after it is durable
//! (under the default [`Durability::Fsync`]); a failed write leaves the file
//! as it was before the write. The store never sees protobuf types.

pub mod index;
pub mod record;
mod recovery;
mod writer;

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use index::{Filter, Meta, Order, Stats};
pub use record::{NewEvent, Record};

use crate::integrity::{Keyring, Report, Verifier};
use index::Index;

/// The log file's name in the data directory.
pub const LOG_FILE: &str = "audit.log";
/// Where recovery moves bytes it cuts from the end of the log.
pub const QUARANTINE_FILE: &str = "audit.log.quarantine";

/// When an acknowledged event is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// `fdatasync` before acknowledging: an acknowledged event survives a
    /// crash of the server, the OS or the machine. The default.
    #[default]
    Fsync,
    /// Acknowledge once written to the OS page cache: survives a crash of the
    /// server, but events of the last few seconds can be lost if the machine
    /// loses power or the OS crashes.
    OsBuffered,
}

/// What the store needs from the configuration.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub durability: Durability,
}

/// What the server returns for a durably written event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    /// True when an idempotency key matched an earlier event.
    pub duplicate: bool,
}

/// A receipt a caller kept, to be checked against the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub signature: String,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the disk holding the data directory is full ({0}); nothing was written, free space and retry"
    )]
    DiskFull(std::io::Error),
    #[error("writing the log failed ({0}); nothing was written")]
    Write(std::io::Error),
    #[error(
        "the store stopped accepting writes after an fsync failure ({0}); restart the server to recover from what is on disk"
    )]
    Poisoned(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("cannot open the data directory {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("reading the log failed: {0}")]
    Read(std::io::Error),
    #[error("the log is damaged at seq {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error(transparent)]
    Key(#[from] crate::integrity::KeyError),
}

/// One group of records the writer committed, in seq order.
pub type Committed = Arc<[Record]>;

/// The public handle of the store; cheap to share behind an `Arc`.
pub struct Store {
    shared: Arc<Shared>,
    /// Taken on shutdown, which ends the writer once it has drained.
    sender: Mutex<Option<mpsc::Sender<writer::Append>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// State the writer and the readers share.
struct Shared {
    dir: PathBuf,
    /// A read-only handle on the log for positional reads.
    reader: File,
    index: RwLock<Index>,
    keyring: Keyring,
    hub: broadcast::Sender<Committed>,
    /// Set when an fsync failed: the page cache can no longer be trusted, so
    /// no further write is accepted until a restart recovers from disk.
    poisoned: AtomicBool,
    poison_reason: Mutex<String>,
}

/// How many committed groups a slow subscriber may fall behind before it
/// reads from the file instead.
const HUB_CAPACITY: usize = 1024;
/// How many append requests may wait for the writer.
const QUEUE_DEPTH: usize = 4096;

impl Store {
    /// Opens (or creates) the store in `config.data_dir`, recovers the log's
    /// tail, rebuilds the index and starts the writer.
    pub fn open(config: StoreConfig, keyring: Keyring) -> Result<Store, StoreError> {
        let dir = config.data_dir.clone();
        let open_err = |source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(open_err)?;
        let recovered = recovery::recover(&dir)?;
        let reader = File::open(dir.join(LOG_FILE)).map_err(open_err)?;
        let (hub, _) = broadcast::channel(HUB_CAPACITY);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            reader,
            index: RwLock::new(recovered.index),
            keyring,
            hub,
            poisoned: AtomicBool::new(false),
            poison_reason: Mutex::new(String::new()),
        });
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let state = writer::Writer::new(
            recovered.file,
            recovered.len,
            config.durability,
            Arc::clone(&shared),
        );
        let handle = std::thread::Builder::new()
            .name("auditlog-writer".into())
            .spawn(move || state.run(rx))
            .map_err(open_err)?;
        Ok(Store {
            shared,
            sender: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Appends `events` atomically and returns their receipts once durable.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Receipt>, StoreError> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(self.shared.poison_error());
        }
        let sender = self
            .sender
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(writer::Append { events, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// The highest committed seq (0 for an empty log).
    pub fn head(&self) -> u64 {
        self.index().last().map_or(0, |m| m.seq)
    }

    /// Positions of up to `limit` records matching `filter`; see
    /// [`Index::select`].
    pub fn select(
        &self,
        filter: &Filter,
        order: Order,
        cursor: Option<u64>,
        max_seq: u64,
        limit: usize,
    ) -> Vec<Meta> {
        self.index().select(filter, order, cursor, max_seq, limit)
    }

    /// Reads the records at `metas` from the file. Blocking.
    pub fn read(&self, metas: &[Meta]) -> Result<Vec<Record>, StoreError> {
        metas.iter().map(|m| self.shared.read_record(m)).collect()
    }

    /// Aggregates for GetStats.
    pub fn stats(&self, workflow: Option<&str>) -> Stats {
        self.index().stats(workflow)
    }

    /// A receiver of every group committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.shared.hub.subscribe()
    }

    /// Whether the store refuses writes after an fsync failure.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// Re-reads the log and checks every record between `from_seq` and
    /// `to_seq` (0: the head), and each checkpoint. Blocking.
    pub fn verify(
        &self,
        from_seq: u64,
        to_seq: u64,
        checkpoints: &[Checkpoint],
    ) -> Result<Report, StoreError> {
        let (head, start, end) = {
            let index = self.index();
            let head = index.last().map_or(0, |m| m.seq);
            let to = if to_seq == 0 { head } else { to_seq.min(head) };
            let end = index.get(to).map_or(0, |m| m.offset + u64::from(m.len));
            let start = match from_seq {
                0 | 1 => None,
                s => index.get(s - 1).copied(),
            };
            (to, start, end)
        };
        let keyring = &self.shared.keyring;
        let (mut verifier, offset, first_line) = match start {
            None => (Verifier::from_genesis(keyring), 0, 1),
            Some(before) => {
                let rec = self.shared.read_record(&before)?;
                let line = line_number(&self.shared.reader, before.offset)?;
                (
                    Verifier::new(keyring, before.seq + 1, &rec.signature),
                    before.offset + u64::from(before.len),
                    line + 1,
                )
            }
        };
        // Read the file by its path rather than through the open handle, so a
        // log replaced behind the server's back (an editor's save) is what is
        // checked.
        let mut file = File::open(self.shared.dir.join(LOG_FILE)).map_err(StoreError::Read)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))
            .map_err(StoreError::Read)?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut pos = offset;
        let mut buf = Vec::with_capacity(4096);
        let mut line_no = first_line;
        let mut checkpoint_found = vec![false; checkpoints.len()];
        loop {
            buf.clear();
            let n = std::io::BufRead::read_until(&mut reader, b'\n', &mut buf)
                .map_err(StoreError::Read)?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            if buf.last() != Some(&b'\n') {
                // Past the committed end this is a write in progress, not damage.
                if pos <= end {
                    verifier.torn_tail(LOG_FILE, line_no, buf.len());
                }
                break;
            }
            buf.pop();
            if let Some(record) = verifier.check_line(LOG_FILE, line_no, &buf) {
                for (i, c) in checkpoints.iter().enumerate() {
                    if c.seq == record.seq && c.signature == record.signature {
                        checkpoint_found[i] = true;
                    }
                }
                if record.seq >= head && verifier.expected() > head {
                    break;
                }
            }
            line_no += 1;
        }
        let mut report = verifier.finish(head, LOG_FILE);
        for (c, found) in checkpoints.iter().zip(checkpoint_found) {
            if !found {
                report.findings.push(crate::integrity::Finding {
                    kind: crate::integrity::FindingKind::CheckpointMismatch,
                    seq: c.seq,
                    line: 0,
                    file: LOG_FILE.to_owned(),
                    message: format!(
                        "checkpoint seq {} with signature {} is not in the log as given: the \
                         record was modified, removed, or the receipt is not from this log",
                        c.seq, c.signature
                    ),
                });
            }
        }
        Ok(report)
    }

    /// Stops the writer after it has committed every request already queued,
    /// and waits for it. Appends after this fail with [`StoreError::Closed`].
    pub fn shutdown(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("the writer thread panicked");
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn index(&self) -> RwLockReadGuard<'_, Index> {
        // A poisoned lock means a reader panicked mid-read; the index itself
        // is only changed by the writer between whole records, so it is sound.
        self.shared.index.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn read_record(&self, meta: &Meta) -> Result<Record, StoreError> {
        let mut buf = vec![0u8; meta.len as usize];
        self.reader
            .read_exact_at(&mut buf, meta.offset)
            .map_err(StoreError::Read)?;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        let record = Record::parse(&buf).map_err(|e| StoreError::Corrupt {
            seq: meta.seq,
            reason: format!("{e}; run VerifyIntegrity to locate the damage"),
        })?;
        if record.seq != meta.seq {
            return Err(StoreError::Corrupt {
                seq: meta.seq,
                reason: format!(
                    "the record at its position has seq {}; the file was changed outside the \
                     server, run VerifyIntegrity",
                    record.seq
                ),
            });
        }
        Ok(record)
    }

    fn poison(&self, reason: String) {
        tracing::error!(%reason, "store refuses further writes");
        if let Ok(mut r) = self.poison_reason.lock() {
            *r = reason;
        }
        self.poisoned.store(true, Ordering::Release);
    }

    fn poison_error(&self) -> StoreError {
        let reason = self
            .poison_reason
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        StoreError::Poisoned(reason)
    }
}

/// The 1-based line number of the line starting at `offset`. Blocking.
fn line_number(file: &File, offset: u64) -> Result<u64, StoreError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let mut lines = 1u64;
    while pos < offset {
        let want = buf.len().min((offset - pos) as usize);
        let n = file
            .read_at(&mut buf[..want], pos)
            .map_err(StoreError::Read)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        pos += n as u64;
    }
    Ok(lines)
}

/// Makes a directory entry change (a created or renamed file) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
