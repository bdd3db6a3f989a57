//! The store: the log's segment files, their single writer, the index over
//! them, recovery, rotation and retention.
//!
//! Layout of the data directory:
//!
//! - `audit.log`: the active segment, one record per line (format in
//!   `record`).
//! - `audit.<UTC time>.log`: a sealed segment waiting to be compressed.
//! - `audit.<UTC time>.log.gz` + `audit.<UTC time>.idx`: a compressed
//!   segment and its index (see `segment`).
//! - `manifest.json`: the signed list of compressed segments (`manifest`).
//! - `audit.log.quarantine`: bytes recovery cut from the end of the log (a
//!   torn last line, a half-written batch), kept for inspection.
//! - `hmac.key`: the generated HMAC key, when none is configured.
//! - `head`: the last acknowledged seq and signature, signed, and the cuts
//!   a start found (`head`).
//! - `tree/`: the Merkle tree over the log, derived from it (`tree`).
//!
//! Invariants: only the writer appends (its thread, or a caller alone
//! holding its lock: `writer`), and only to `audit.log`; a
//! record enters the index, reaches subscribers and is acknowledged only
//! after it is durable (under the default [`Durability::Fsync`]); a failed
//! write leaves the file as it was before the write; the chain runs on
//! across segments (the first record of a segment has as `prev` the last
//! signature of the one before). The store never sees protobuf types: a
//! reader chooses the form of `details` it decodes lines into
//! ([`Store::page`]).
//!
//! This module is the handle ([`Store`]); the rest of the store is private:
//! the state its threads share (`shared`), its errors (`error`), the read
//! path (`read`), the record format (`record`), the writer and syncer, the
//! sealer, the segment files and their lead copies, the in-memory index,
//! the manifest, recovery, retention, and verification (`verify` walks the
//! files, `chain` the lines; `verify/handle.rs` is this handle's calls).

mod backup;
mod cache;
pub(crate) mod chain;
mod error;
mod head;
pub(crate) mod index;
pub(crate) mod leads;
pub(crate) mod manifest;
mod priority;
mod read;
pub(crate) mod record;
mod recovery;
mod refusals;
mod replica;
mod retention;
mod sealer;
pub(crate) mod segment;
mod shared;
pub(crate) mod signer;
mod spans;
mod syncer;
pub(crate) mod tree;
mod trust;
mod turns;
mod verify;
mod writer;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub(crate) use backup::{BackupPlan, Content, Held};
pub(crate) use chain::{FindingKind, Report};
pub(crate) use error::StoreError;
pub(crate) use index::{Filter, Order, Stats, StatsQuery, TooManyBuckets};
pub(crate) use read::Page;
pub(crate) use record::{Decoded, Details, DetailsForm, Name, NewEvent, Record, Short};
pub(crate) use retention::Purge;
pub(crate) use sealer::Sealed;
#[cfg(test)]
pub(crate) use shared::Group;
pub(crate) use shared::{Committed, LOG_FILE, QUARANTINE_FILE};
#[allow(
    unused_imports,
    reason = "the cluster's leader signs with these (issue 16)"
)]
pub(crate) use signer::{ChainHead, Signer};
pub(crate) use trust::{check_before_start, holds_log};
pub(crate) use turns::Verifications;
pub(crate) use verify::Checkpoint;
pub(crate) use writer::retired_after_signing;
// Reached only by `crate::fuzzing`.
pub(crate) use recovery::recover_summary;
pub(crate) use verify::{check_gzip_bytes, check_log_bytes};

use crate::keys::Keyring;
use crate::metrics::Metrics;
use cache::ChunkCache;
use read::Readers;
use refusals::Refusals;
use shared::Shared;

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
    /// Seal the active segment once it holds at least this many bytes.
    pub max_segment_bytes: u64,
    /// Seal the active segment once its first record is this old, written
    /// to or not; `None`: never by age.
    pub max_segment_age: Option<std::time::Duration>,
    /// Write a lead copy (`leads.rs`) beside each compressed segment.
    pub lead_copies: bool,
    /// A cluster node's replica: it appends only groups signed by the
    /// leader ([`Store::apply`]), and [`Store::append`] is refused.
    pub replica: bool,
}

#[cfg(test)]
impl StoreConfig {
    /// The store of a unit test: in `dir`, synced before every answer,
    /// sealed only on request, never a replica.
    pub(crate) fn for_test(dir: &std::path::Path, lead_copies: bool) -> StoreConfig {
        StoreConfig {
            data_dir: dir.to_path_buf(),
            durability: Durability::Fsync,
            max_segment_bytes: u64::MAX,
            max_segment_age: None,
            lead_copies,
            replica: false,
        }
    }
}

/// What the server returns for a durably written event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub id: Short,
    pub timestamp: i64,
    pub signature: Short,
    /// True when an idempotency key matched an earlier event.
    pub duplicate: bool,
}

/// The public handle of the store; cheap to share behind an `Arc`.
pub struct Store {
    shared: Arc<Shared>,
    /// Taken on shutdown, which ends the writer once it has drained.
    sender: Mutex<Option<mpsc::Sender<writer::Command>>>,
    /// The writer's state: its thread's, and a lone caller's
    /// (`Writer::commit_alone`).
    writing: Arc<Mutex<Option<writer::Writer>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    syncer: Mutex<Option<JoinHandle<()>>>,
    sealer: Mutex<Option<JoinHandle<()>>>,
    /// The thread that persists the head (`head`), and what ends it.
    head: Mutex<Option<JoinHandle<()>>>,
    head_wake: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    tree: Mutex<Option<JoinHandle<()>>>,
    readers: Readers,
    /// Opened as a replica (`StoreConfig::replica`).
    replica: bool,
}

/// How many committed groups a slow subscriber may fall behind before it
/// reads from the file instead.
pub(crate) const HUB_CAPACITY: usize = 1024;
/// How many append requests may wait for the writer.
const QUEUE_DEPTH: usize = 4096;
/// Free bytes on the data directory's disk after which a store that found
/// it full counts as able to write again: a few large group commits.
pub(crate) const FREE_TO_RESUME: u64 = 64 * 1024;
/// Records per page of [`Store::scan`]: enough that a page is split over
/// the reader threads, few enough that a page's records are held briefly.
pub(crate) const SCAN_PAGE: usize = 1000;

impl Store {
    /// Opens (or creates) the store in `config.data_dir`: recovers the
    /// segments and the active file, rebuilds the index, starts the writer
    /// and the sealer (which finishes any rotation a crash interrupted).
    pub fn open(config: StoreConfig, keyring: Keyring) -> Result<Store, StoreError> {
        Store::open_with(config, keyring, Arc::new(Metrics::new()), true)
    }

    /// [`Store::open`], counting into `metrics`; without a Merkle tree
    /// builder unless `tree` (off only in a benchmark: `bench::Switches`).
    pub(crate) fn open_with(
        config: StoreConfig,
        keyring: Keyring,
        metrics: Arc<Metrics>,
        tree: bool,
    ) -> Result<Store, StoreError> {
        let dir = config.data_dir.clone();
        let open_err = |source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(open_err)?;
        let recovered = recovery::recover(&dir, &keyring)?;
        let indexed_seq = recovered.index.last().map_or(0, |m| m.seq);
        let (hub, _) = broadcast::channel(HUB_CAPACITY);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            index: RwLock::new(recovered.index),
            segments: RwLock::new(recovered.segments),
            next_segment: AtomicU32::new(recovered.next_segment),
            keyring,
            hub,
            poisoned: AtomicBool::new(false),
            poison_cause: Mutex::new(None),
            refusals: Refusals::default(),
            manifest: Mutex::new(recovered.manifest),
            cache: Mutex::new(ChunkCache::default()),
            stop: AtomicBool::new(false),
            lead_copies: config.lead_copies,
            active_len: AtomicU64::new(recovered.len),
            indexed_seq: AtomicU64::new(indexed_seq),
            committed: watch::Sender::new(indexed_seq),
            head: Mutex::new(head::Head::default()),
            durable_head: Mutex::new(None),
            head_stalled: AtomicBool::new(false),
            head_unwritten: Mutex::new((String::new(), false)),
            signed_active: AtomicBool::new(false),
            tree: tree::Tree::new(),
            metrics,
        });
        trust::check_key(&shared, recovered.manifest_authentic)?;
        if config.replica {
            // A purge event applied before a crash cut its deletes short.
            if let Err(e) = retention::settle(&shared) {
                tracing::error!(error = %e, "finishing the last retention purge failed; retried at the next purge event");
            }
        }
        let last = shared.index().last();
        let last = last.map(|m| {
            let record = shared.read_record(&m);
            if let Ok(r) = &record {
                let active = r.key_id.as_str() == shared.keyring.active().0;
                shared.signed_active.store(active, Ordering::Release);
            }
            let signature = record.map(|r| r.signature);
            (m.seq, signature.map(Short::into_string).unwrap_or_default())
        });
        let head = head::at_start(&dir, &shared.keyring, last, config.replica).map_err(open_err)?;
        *shared.head.lock().unwrap_or_else(|e| e.into_inner()) = head;
        let (head_wake, head_rx) = std::sync::mpsc::channel();
        let head_shared = Arc::clone(&shared);
        let head_thread = std::thread::Builder::new()
            .name("auditlog-head".into())
            .spawn(move || head::run(&head_shared, &head_rx))
            .map_err(open_err)?;
        let (jobs, job_rx) = std::sync::mpsc::channel();
        for pending in recovered.pending {
            // The receiver is alive: it is handed to the sealer below.
            let _ = jobs.send(pending);
        }
        let sealer_shared = Arc::clone(&shared);
        let sealer = std::thread::Builder::new()
            .name("auditlog-sealer".into())
            .spawn(move || sealer::run(&sealer_shared, &job_rx))
            .map_err(open_err)?;
        let (to_syncer, syncer, syncer_rx) =
            syncer::ToSync::new(Arc::clone(&shared), config.durability);
        let syncer = std::thread::Builder::new()
            .name("auditlog-syncer".into())
            .spawn(move || syncer.run(&syncer_rx))
            .map_err(open_err)?;
        let tree = if tree {
            let tree_shared = Arc::clone(&shared);
            let builder = std::thread::Builder::new()
                .name("auditlog-tree".into())
                .spawn(move || tree::run(&tree_shared))
                .map_err(open_err)?;
            Some(builder)
        } else {
            shared.tree.switch_off();
            None
        };
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writing = Arc::new(Mutex::new(Some(writer::Writer::new(
            writer::Active {
                file: recovered.file,
                len: recovered.len,
                segment: recovered.active_segment,
                first_seq: recovered.active_first_seq,
            },
            config.max_segment_bytes,
            config.max_segment_age,
            jobs,
            to_syncer,
            Arc::clone(&shared),
            config.replica,
        ))));
        let state = Arc::clone(&writing);
        let handle = std::thread::Builder::new()
            .name("auditlog-writer".into())
            .spawn(move || writer::Writer::run(&state, rx))
            .map_err(open_err)?;
        Ok(Store {
            shared,
            sender: Mutex::new(Some(tx)),
            writing,
            writer: Mutex::new(Some(handle)),
            syncer: Mutex::new(Some(syncer)),
            sealer: Mutex::new(Some(sealer)),
            head: Mutex::new(Some(head_thread)),
            head_wake: Mutex::new(Some(head_wake)),
            tree: Mutex::new(tree),
            readers: Readers::start(),
            replica: config.replica,
        })
    }

    fn sender(&self) -> Result<mpsc::Sender<writer::Command>, StoreError> {
        self.sender
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Appends `events` atomically and returns their receipts once durable.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Receipt>, StoreError> {
        let result = self.append_once(events).await;
        match &result {
            Ok(_) => self.shared.refusals.written(),
            Err(e) => self.shared.refusals.refused(e),
        }
        result
    }

    async fn append_once(&self, events: Vec<NewEvent>) -> Result<Vec<Receipt>, StoreError> {
        if self.replica {
            return Err(StoreError::WrongRole(
                "this node's store is a replica of the cluster's stream and signs nothing \
                 itself; send writes to the cluster leader",
            ));
        }
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(self.shared.poison_error());
        }
        if let Some(stalled) = self.shared.head_stall() {
            return Err(stalled);
        }
        let (reply, answer) = oneshot::channel();
        let sender = self.sender()?;
        let append = writer::Append {
            events,
            reply,
            // The caller's span, if tracing made one (no allocation).
            trace: tracing::Span::current(),
        };
        if let Err(append) = self.commit_here(&sender, append) {
            sender
                .send(writer::Command::Append(append))
                .await
                .map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Commits `append` on this thread when the writer has nothing else to
    /// do (`Writer::commit_alone`); `Err` gives it back to be queued. Only
    /// on a runtime with another worker to serve other calls meanwhile: this
    /// one is held for the commit's `fdatasync`, as the writer thread would
    /// be.
    fn commit_here(
        &self,
        sender: &mpsc::Sender<writer::Command>,
        append: writer::Append,
    ) -> Result<(), writer::Append> {
        let queued = sender.capacity() < sender.max_capacity();
        let spare_worker = tokio::runtime::Handle::try_current()
            .is_ok_and(|runtime| runtime.metrics().num_workers() > 1);
        if queued || !spare_worker {
            return Err(append);
        }
        let full = {
            let Ok(mut writer) = self.writing.try_lock() else {
                return Err(append);
            };
            match writer.as_mut() {
                Some(writer) => writer.commit_alone(append)?,
                // The writer thread has stopped.
                None => return Err(append),
            }
        };
        if full {
            // A full queue means the writer thread has a turn coming anyway.
            let _ = sender.try_send(writer::Command::Turn);
        }
        Ok(())
    }

    /// Seals the active segment now (if it holds anything) and has it
    /// compressed. With `wait`, returns once the segment is compressed and in
    /// the manifest; otherwise once it is sealed.
    pub async fn rotate(&self, wait: bool) -> Result<Option<Sealed>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender()?
            .send(writer::Command::Rotate { wait, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Whether the log's newest record is signed with the signing key (a
    /// replica then takes no record under a retired key).
    pub(crate) fn signed_active(&self) -> bool {
        self.shared.signed_active.load(Ordering::Acquire)
    }

    /// The highest committed seq (0 for an empty log).
    pub fn head(&self) -> u64 {
        self.shared.index().last().map_or(0, |m| m.seq)
    }

    /// The highest seq this log has acknowledged: the committed head, or
    /// past it the head a start found cut from the log (kept in the head
    /// file), whose seqs verification still reports.
    pub(crate) fn acknowledged_head(&self) -> u64 {
        let kept = self
            .shared
            .head
            .lock()
            .map_or(0, |h| h.cuts.iter().map(|c| c.last).fold(h.seq, u64::max));
        self.head().max(kept)
    }

    /// One page of the records matching `filter`, in `order`, after
    /// `cursor` (a seq: records after it oldest first, before it newest
    /// first), never above `max_seq`, at most `limit` and at most
    /// `read::PAGE_LINE_BYTES` of stored lines (always one record), each
    /// decoded as `T` straight from its line (a [`Record`], or a reader's
    /// own form); `next` is set whenever the page was cut short. Blocking. When `filter` names a lead, each sealed segment's lead copy
    /// is read where it has one, which inflates a few KiB per segment instead
    /// of one member per record; a large page is split over a few reader
    /// threads.
    pub fn page<T: Decoded>(
        &self,
        filter: &Filter,
        order: Order,
        cursor: Option<u64>,
        max_seq: u64,
        limit: usize,
    ) -> Result<Page<T>, StoreError> {
        self.page_within(filter, order, cursor, max_seq, limit, read::PAGE_LINE_BYTES)
    }

    /// [`Store::page`] with at most `max_bytes` of stored lines (always one
    /// record) instead of `read::PAGE_LINE_BYTES`.
    pub fn page_within<T: Decoded>(
        &self,
        filter: &Filter,
        order: Order,
        cursor: Option<u64>,
        max_seq: u64,
        limit: usize,
        max_bytes: u64,
    ) -> Result<Page<T>, StoreError> {
        let (metas, next) = self
            .shared
            .select_served(filter, order, cursor, max_seq, limit, max_bytes);
        let records = self
            .readers
            .read(&self.shared, filter.lead_id.as_deref(), &metas)?;
        Ok(Page { records, next })
    }

    /// Every record matching `filter` after `from` (as `cursor` in
    /// [`Store::page`]) and never above `max_seq`, read as [`Store::page`]
    /// reads them, a page of [`SCAN_PAGE`] at a time, each page handed to
    /// `each` until it breaks or none is left. Blocking.
    pub fn scan<D: DetailsForm>(
        &self,
        filter: &Filter,
        order: Order,
        from: Option<u64>,
        max_seq: u64,
        mut each: impl FnMut(Vec<Record<D>>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let mut cursor = from;
        loop {
            let Page { records, next } = self.page(filter, order, cursor, max_seq, SCAN_PAGE)?;
            if records.is_empty() || each(records).is_break() {
                return Ok(());
            }
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Aggregates for GetStats.
    pub fn stats(&self, query: &StatsQuery) -> Result<Stats, TooManyBuckets> {
        self.shared.index().stats(query)
    }

    /// A receiver of every group committed from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.shared.hub.subscribe()
    }

    /// How many published groups some receiver has not seen yet (and so
    /// are kept in memory).
    #[cfg(test)]
    pub(crate) fn live_backlog(&self) -> usize {
        self.shared.hub.len()
    }

    /// Whether the store refuses writes after an fsync failure.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// Why the store cannot write now, if it cannot: it refuses writes
    /// until a restart (a failed fsync, the active file gone, a broken
    /// seal), or its last append found the disk full and there is still
    /// less than [`FREE_TO_RESUME`] free (so health turns back once space is
    /// freed, before anyone writes again).
    pub fn write_refusal(&self) -> Option<String> {
        if self.is_poisoned() {
            return Some(self.shared.poison_error().to_string());
        }
        if let Some(stalled) = self.shared.head_stall() {
            return Some(stalled.to_string());
        }
        let full = self.shared.refusals.disk_full()?;
        match rustix::fs::statvfs(&self.shared.dir) {
            Ok(fs) if fs.f_bavail.saturating_mul(fs.f_frsize) >= FREE_TO_RESUME => None,
            _ => Some(full),
        }
    }

    /// The server's metrics.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Purges every sealed segment whose newest event is older than `max_age`
    /// (logging the purge as an event first). Returns what was purged.
    pub async fn apply_retention(
        &self,
        max_age: std::time::Duration,
    ) -> Result<Option<Purge>, StoreError> {
        retention::apply(self, max_age).await
    }

    /// Stops the writer after it has committed every request already queued,
    /// then the sealer (an interrupted compression is redone at the next
    /// start), and waits for both. Appends after this fail with
    /// [`StoreError::Closed`].
    pub fn shutdown(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let join = |slot: &Mutex<Option<JoinHandle<()>>>, what: &str| {
            let handle = slot.lock().ok().and_then(|mut w| w.take());
            if let Some(handle) = handle
                && handle.join().is_err()
            {
                tracing::error!("the {what} thread panicked");
            }
        };
        join(&self.writer, "writer");
        join(&self.syncer, "syncer");
        // Every group is published now: the head thread writes the last.
        if let Ok(mut wake) = self.head_wake.lock() {
            wake.take();
        }
        join(&self.head, "head");
        self.shared.tree.stop();
        join(&self.tree, "tree");
        self.readers.stop();
        self.shared.stop.store(true, Ordering::Relaxed);
        join(&self.sealer, "sealer");
    }

    /// The Merkle tree over the log (`tree`).
    pub(crate) fn tree(&self) -> &tree::Tree {
        &self.shared.tree
    }

    /// The stored line of `seq` without its newline, checked to be the
    /// record the server wrote; `None` when the log no longer holds it.
    /// Blocking.
    pub(crate) fn stored_line(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        tree::stored_line(&self.shared, seq)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}
