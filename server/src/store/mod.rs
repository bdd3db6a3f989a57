//! The store: the log's segment files, their single writer, the index over
//! them, recovery, rotation and retention.
//!
//! Layout of the data directory:
//!
//! - `audit.log`: the active segment, one record per line (format in
//!   [`record`]).
//! - `audit.<UTC time>.log`: a sealed segment waiting to be compressed.
//! - `audit.<UTC time>.log.gz` + `audit.<UTC time>.idx`: a compressed
//!   segment and its index (see [`segment`]).
//! - `manifest.json`: the signed list of compressed segments ([`manifest`]).
//! - `audit.log.quarantine`: bytes recovery cut from the end of the log (a
//!   torn last line, a half-written batch), kept for inspection.
//! - `hmac.key`: the generated HMAC key, when none is configured.
//!
//! Invariants: only the writer thread appends, and only to `audit.log`; a
//! record enters the index, reaches subscribers and is acknowledged only
//! after it is durable (under the default [`Durability::Fsync`]); a failed
//! write leaves the file as it was before the write; the chain runs on
//! across segments (the first record of a segment has as `prev` the last
//! signature of the one before). The store never sees protobuf types.

pub mod index;
pub(crate) mod leads;
pub mod manifest;
pub mod record;
mod recovery;
mod retention;
mod sealer;
pub mod segment;
mod verify;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use index::{Bucket, Filter, MAX_BUCKETS, Meta, Order, Stats, StatsQuery, TooManyBuckets};
use record::{MacCheck, RecordHead};
pub use record::{NewEvent, Record, Row};
pub use retention::{PURGE_EVENT_TYPE, Purge};
pub use sealer::Sealed;
pub use verify::Checkpoint;
// Reached only by `crate::fuzzing`.
pub(crate) use recovery::recover_summary;
pub(crate) use verify::{check_gzip_bytes, check_log_bytes};

use crate::integrity::{Keyring, Report};
use index::Index;
use manifest::Manifest;
use segment::SegmentFile;

/// The active segment's name in the data directory.
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
    /// Seal the active segment once it holds at least this many bytes.
    pub max_segment_bytes: u64,
    /// Write a lead copy (`leads.rs`) beside each compressed segment.
    pub lead_copies: bool,
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
    #[error("rotating the log failed: {0}")]
    Rotate(String),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Key(#[from] crate::integrity::KeyError),
}

/// One group of records the writer committed, in seq order.
pub type Committed = Arc<Vec<Record>>;

/// The public handle of the store; cheap to share behind an `Arc`.
pub struct Store {
    shared: Arc<Shared>,
    /// Taken on shutdown, which ends the writer once it has drained.
    sender: Mutex<Option<mpsc::Sender<writer::Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    syncer: Mutex<Option<JoinHandle<()>>>,
    sealer: Mutex<Option<JoinHandle<()>>>,
    readers: Readers,
}

/// State the writer, the sealer and the readers share.
struct Shared {
    dir: PathBuf,
    index: RwLock<Index>,
    /// Open segment files by id. Lock order: `index` before `segments`. A
    /// segment is added before any meta points at it and removed only after
    /// none does.
    segments: RwLock<HashMap<u32, Arc<SegmentFile>>>,
    next_segment: AtomicU32,
    keyring: Keyring,
    hub: broadcast::Sender<Committed>,
    /// Set when an fsync failed: the page cache can no longer be trusted, so
    /// no further write is accepted until a restart recovers from disk.
    poisoned: AtomicBool,
    poison_reason: Mutex<String>,
    /// The manifest as last written; every change goes through this lock.
    manifest: Mutex<Manifest>,
    cache: Mutex<ChunkCache>,
    /// Tells the sealer to stop between chunks (shutdown).
    stop: AtomicBool,
    /// Whether compression writes lead copies.
    lead_copies: bool,
    /// The committed length of the active file, kept by the syncer.
    active_len: AtomicU64,
    /// The highest seq in the index, kept by the syncer.
    indexed_seq: AtomicU64,
}

/// How many committed groups a slow subscriber may fall behind before it
/// reads from the file instead.
const HUB_CAPACITY: usize = 1024;
/// How many append requests may wait for the writer.
const QUEUE_DEPTH: usize = 4096;
/// How many bytes of decompressed chunks reads keep.
const CACHE_BYTES: usize = 32 << 20;
/// Marks a lead copy's members in the chunk cache (segment ids stay far below).
const LEAD_COPY: u32 = 1 << 31;

/// Reads of at least this many records are split over threads.
const PARALLEL_READ_MIN: usize = 48;
/// The most threads one read uses, the caller's included.
const MAX_READ_THREADS: usize = 4;

/// A few long-lived threads that read parts of large reads (long-lived, so
/// the allocator's per-thread arenas are reused rather than multiplied).
struct Readers {
    jobs: Mutex<Option<std::sync::mpsc::Sender<ReadJob>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    count: usize,
}

type ReadAnswer<T> = std::sync::mpsc::Receiver<Result<Vec<T>, StoreError>>;

/// A part of a read, run on a reader thread; it sends its own answer.
type ReadJob = Box<dyn FnOnce() + Send>;

/// How one part of a read is read.
type PartReader<T> = Arc<dyn Fn(&Shared, &[Meta]) -> Result<Vec<T>, StoreError> + Send + Sync>;

impl Readers {
    fn start() -> Readers {
        let count = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_READ_THREADS)
            - 1;
        let (tx, rx) = std::sync::mpsc::channel::<ReadJob>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        for i in 0..count {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("auditlog-reader-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        job();
                    }
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => tracing::warn!(error = %e, "could not start a reader thread"),
            }
        }
        Readers {
            count: threads.len(),
            jobs: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        }
    }

    fn len(&self) -> usize {
        self.count
    }

    /// Hands `metas` to a reader thread; the answer comes on the receiver.
    fn read<T: Row>(
        &self,
        shared: &Arc<Shared>,
        metas: Vec<Meta>,
        part: PartReader<T>,
    ) -> ReadAnswer<T> {
        let (reply, answer) = std::sync::mpsc::channel();
        let shared = Arc::clone(shared);
        let job: ReadJob = Box::new(move || {
            let _ = reply.send(part(&shared, &metas));
        });
        let sent = self
            .jobs
            .lock()
            .ok()
            .and_then(|jobs| jobs.as_ref().map(|tx| tx.send(job)));
        match sent {
            Some(Ok(())) => {}
            // No reader left: answer on this thread.
            Some(Err(std::sync::mpsc::SendError(job))) => job(),
            None => {}
        }
        answer
    }

    fn stop(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let threads = self.threads.lock().map(|mut t| std::mem::take(&mut *t));
        for t in threads.unwrap_or_default() {
            let _ = t.join();
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `config.data_dir`: recovers the
    /// segments and the active file, rebuilds the index, starts the writer
    /// and the sealer (which finishes any rotation a crash interrupted).
    pub fn open(config: StoreConfig, keyring: Keyring) -> Result<Store, StoreError> {
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
            poison_reason: Mutex::new(String::new()),
            manifest: Mutex::new(recovered.manifest),
            cache: Mutex::new(ChunkCache::default()),
            stop: AtomicBool::new(false),
            lead_copies: config.lead_copies,
            active_len: AtomicU64::new(recovered.len),
            indexed_seq: AtomicU64::new(indexed_seq),
        });
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
        let (to_syncer, syncer_rx) = std::sync::mpsc::sync_channel(writer::SYNC_QUEUE);
        let syncer = writer::Syncer::new(Arc::clone(&shared), config.durability);
        let syncer = std::thread::Builder::new()
            .name("auditlog-syncer".into())
            .spawn(move || syncer.run(&syncer_rx))
            .map_err(open_err)?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let state = writer::Writer::new(
            writer::Active {
                file: recovered.file,
                len: recovered.len,
                segment: recovered.active_segment,
                first_seq: recovered.active_first_seq,
            },
            config.max_segment_bytes,
            jobs,
            to_syncer,
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
            syncer: Mutex::new(Some(syncer)),
            sealer: Mutex::new(Some(sealer)),
            readers: Readers::start(),
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
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(self.shared.poison_error());
        }
        let (reply, answer) = oneshot::channel();
        self.sender()?
            .send(writer::Command::Append(writer::Append { events, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
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

    /// Reads the records at `metas`, in their order. Blocking. A large read
    /// is split over a few threads: a lead's history in sealed segments
    /// touches one compressed chunk per record, and inflating them is most
    /// of its cost.
    pub fn read(&self, metas: &[Meta]) -> Result<Vec<Record>, StoreError> {
        self.read_as(metas)
    }

    /// [`Store::read`] into another form of the record, decoded straight
    /// from each line.
    pub fn read_as<T: Row>(&self, metas: &[Meta]) -> Result<Vec<T>, StoreError> {
        self.read_parts(metas, Arc::new(|shared, part| shared.read_records(part)))
    }

    /// The records `select(filter, ..)` returned, as `T`: through the lead
    /// copies when `filter` names a lead, as [`Store::read_as`] otherwise.
    pub fn read_selected<T: Row>(
        &self,
        filter: &Filter,
        metas: &[Meta],
    ) -> Result<Vec<T>, StoreError> {
        match &filter.lead_id {
            Some(lead) => self.read_lead_as(lead, metas),
            None => self.read_as(metas),
        }
    }

    /// [`Store::read_as`] for records that all name `lead` (a page of its
    /// history): each segment's lead copy is read where it has one, which
    /// inflates a few KiB per segment instead of one member per record.
    pub fn read_lead_as<T: Row>(&self, lead: &str, metas: &[Meta]) -> Result<Vec<T>, StoreError> {
        let lead: Arc<str> = lead.into();
        self.read_parts(
            metas,
            Arc::new(move |shared, part| shared.read_lead_records(&lead, part)),
        )
    }

    /// Reads `metas` with `read`, split over the reader threads when large.
    fn read_parts<T: Row>(
        &self,
        metas: &[Meta],
        read: PartReader<T>,
    ) -> Result<Vec<T>, StoreError> {
        let helpers = self.readers.len();
        if helpers == 0 || metas.len() < PARALLEL_READ_MIN {
            return read(&self.shared, metas);
        }
        let per_part = metas.len().div_ceil(helpers + 1);
        let mut parts = metas.chunks(per_part);
        let mine = parts.next().unwrap_or_default();
        let handed: Vec<_> = parts
            .map(|part| {
                self.readers
                    .read(&self.shared, part.to_vec(), Arc::clone(&read))
            })
            .collect();
        let mut records = read(&self.shared, mine)?;
        for answer in handed {
            let part = answer.recv().map_err(|_| {
                StoreError::Read(std::io::Error::other("a reader thread stopped"))
            })??;
            records.extend(part);
        }
        Ok(records)
    }

    /// Aggregates for GetStats.
    pub fn stats(&self, query: &StatsQuery) -> Result<Stats, TooManyBuckets> {
        self.index().stats(query)
    }

    /// A receiver of every group committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.shared.hub.subscribe()
    }

    /// Whether the store refuses writes after an fsync failure.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// Re-reads every segment and checks every record, the chain across
    /// segments, the manifest, and each checkpoint. Blocking.
    pub fn verify(
        &self,
        from_seq: u64,
        to_seq: u64,
        checkpoints: &[Checkpoint],
    ) -> Result<Report, StoreError> {
        verify::verify(&self.shared, from_seq, to_seq, checkpoints)
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
        self.readers.stop();
        self.shared.stop.store(true, Ordering::Relaxed);
        join(&self.sealer, "sealer");
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn index(&self) -> RwLockReadGuard<'_, Index> {
        self.shared.index()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn index(&self) -> RwLockReadGuard<'_, Index> {
        // A poisoned lock means a reader panicked mid-read; the index itself
        // is only changed between whole records, so it is sound.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn segments(&self) -> RwLockReadGuard<'_, HashMap<u32, Arc<SegmentFile>>> {
        self.segments.read().unwrap_or_else(|e| e.into_inner())
    }

    fn add_segment(&self, segment: SegmentFile) -> u32 {
        let id = self.next_segment.fetch_add(1, Ordering::Relaxed);
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::new(segment));
        id
    }

    /// The segment holding `meta`, and `meta` as it is now: the sealer may
    /// have moved the record into a compressed segment since `meta` was read.
    fn locate(&self, meta: &Meta) -> Result<(Arc<SegmentFile>, Meta), StoreError> {
        if let Some(seg) = self.segments().get(&meta.segment) {
            return Ok((Arc::clone(seg), *meta));
        }
        let current = self.index().get(meta.seq).copied();
        current
            .and_then(|m| self.segments().get(&m.segment).map(|s| (Arc::clone(s), m)))
            .ok_or_else(|| {
                StoreError::Read(std::io::Error::other(format!(
                    "seq {} is no longer stored (purged by retention)",
                    meta.seq
                )))
            })
    }

    /// The records at `metas`, in order, on this thread. Each compressed
    /// chunk is inflated once, only as far as the last record read from it.
    fn read_records<T: Row>(&self, metas: &[Meta]) -> Result<Vec<T>, StoreError> {
        let located = metas
            .iter()
            .map(|m| self.locate(m))
            .collect::<Result<Vec<_>, _>>()?;
        let mut reach: HashMap<(u32, u32), usize> = HashMap::new();
        for (segment, meta) in &located {
            if let SegmentFile::Gzip { .. } = **segment {
                let (chunk, end) = chunk_reach(meta);
                let r = reach.entry((meta.segment, chunk)).or_default();
                *r = (*r).max(end);
            }
        }
        located
            .iter()
            .map(|(segment, meta)| {
                let need = reach
                    .get(&(meta.segment, chunk_reach(meta).0))
                    .copied()
                    .unwrap_or(0);
                self.parse_in(segment, meta, need)
            })
            .collect()
    }

    /// The records at `metas`, all of lead `lead`, in order, on this
    /// thread: from each segment's lead copy where it has one and the line
    /// there passes its MAC and seq checks, from the segment otherwise.
    fn read_lead_records<T: Row>(&self, lead: &str, metas: &[Meta]) -> Result<Vec<T>, StoreError> {
        let located = metas
            .iter()
            .map(|m| self.locate(m))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rows: Vec<Option<T>> = std::iter::repeat_with(|| None).take(metas.len()).collect();
        // Positions in `metas`, by segment, for segments with a copy of
        // `lead`, with that copy and `lead`'s span in it.
        let mut by_segment: Vec<(u32, &leads::LeadCopy, leads::Span, Vec<usize>)> = Vec::new();
        for (i, (segment, meta)) in located.iter().enumerate() {
            let SegmentFile::Gzip {
                leads: Some(copy), ..
            } = &**segment
            else {
                continue;
            };
            let Some(&span) = copy.spans.get(lead) else {
                continue;
            };
            match by_segment.last_mut() {
                Some((id, .., positions)) if *id == meta.segment => positions.push(i),
                _ => by_segment.push((meta.segment, copy, span, vec![i])),
            }
        }
        for (id, copy, span, positions) in by_segment {
            let segment = &located[positions[0]].0;
            let (chunk, range) = match self.lead_lines(id, copy, span) {
                Ok(lines) => lines,
                Err(e) => {
                    tracing::warn!(segment = %segment.name(), error = %e, "lead copy unreadable; reading the segment");
                    continue;
                }
            };
            let by_seq: HashMap<u64, (RecordHead<'_>, &[u8])> = chunk[range]
                .split(|b| *b == b'\n')
                .filter_map(|line| RecordHead::peek(line).map(|head| (head.seq, (head, line))))
                .collect();
            let mut failed = Vec::new();
            for i in positions {
                let meta = &located[i].1;
                let checked = by_seq
                    .get(&meta.seq)
                    .filter(|(head, line)| head.check_mac(line, &self.keyring) == MacCheck::Valid);
                match checked.map(|(_, line)| parse_at::<T>(line, meta)) {
                    Some(Ok(row)) => rows[i] = Some(row),
                    _ => failed.push(meta.seq),
                }
            }
            if let Some(first) = failed.first() {
                tracing::warn!(
                    segment = %segment.name(),
                    records = failed.len(),
                    first_seq = first,
                    "lines in the lead copy are missing or fail their MAC or seq check; reading them from the segment"
                );
            }
        }
        let missing: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].is_none()).collect();
        if !missing.is_empty() {
            let metas: Vec<Meta> = missing.iter().map(|&i| metas[i]).collect();
            for (i, row) in missing.into_iter().zip(self.read_records::<T>(&metas)?) {
                rows[i] = Some(row);
            }
        }
        Ok(rows.into_iter().flatten().collect())
    }

    /// The inflated member of `copy` holding a lead's lines, at `span`, and
    /// where they are in it.
    fn lead_lines(
        &self,
        segment: u32,
        copy: &leads::LeadCopy,
        span: leads::Span,
    ) -> Result<(Arc<Vec<u8>>, std::ops::Range<usize>), StoreError> {
        let start = span.offset as usize;
        let end = start + span.bytes as usize;
        // Cached beside the segment's own chunks, under a key they never use.
        let chunk = self.chunk(
            segment | LEAD_COPY,
            span.chunk,
            &copy.file,
            &copy.chunks,
            end,
        )?;
        if chunk.len() < end {
            return Err(StoreError::Read(std::io::Error::other(
                "the lead copy's member is shorter than its index says",
            )));
        }
        Ok((chunk, start..end))
    }

    /// The record at `meta` in `segment`, decoded as `T`.
    fn parse_in<T: Row>(
        &self,
        segment: &SegmentFile,
        meta: &Meta,
        need: usize,
    ) -> Result<T, StoreError> {
        self.with_line(segment, meta, need, |line| parse_at(line, meta))
    }

    /// Calls `f` with the line of the record at `meta` in `segment` (without
    /// its newline); for a compressed segment, its chunk is inflated to at
    /// least `need` bytes.
    fn with_line<R>(
        &self,
        segment: &SegmentFile,
        meta: &Meta,
        need: usize,
        f: impl FnOnce(&[u8]) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let strip =
            |line: &[u8]| -> Result<R, StoreError> { f(line.strip_suffix(b"\n").unwrap_or(line)) };
        match segment {
            SegmentFile::Plain { file, .. } => {
                let mut buf = vec![0u8; meta.len as usize];
                file.read_exact_at(&mut buf, meta.offset)
                    .map_err(StoreError::Read)?;
                strip(&buf)
            }
            SegmentFile::Gzip { file, chunks, .. } => {
                let (chunk_no, end) = chunk_reach(meta);
                let inner = end - meta.len as usize;
                let chunk = self.chunk(meta.segment, chunk_no, file, chunks, need.max(end))?;
                strip(chunk.get(inner..end).ok_or_else(|| StoreError::Corrupt {
                    seq: meta.seq,
                    reason: "the segment index points outside its chunk".into(),
                })?)
            }
        }
    }

    /// A decompressed chunk, at least its first `need` bytes, from the cache
    /// or the file.
    fn chunk(
        &self,
        segment: u32,
        chunk_no: u32,
        file: &File,
        chunks: &[segment::Chunk],
        need: usize,
    ) -> Result<Arc<Vec<u8>>, StoreError> {
        let key = (segment, chunk_no);
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(key, need)) {
            return Ok(hit);
        }
        let chunk = chunks
            .get(chunk_no as usize)
            .ok_or_else(|| StoreError::Read(std::io::Error::other("chunk out of range")))?;
        let plain =
            Arc::new(segment::read_chunk_prefix(file, chunk, need).map_err(StoreError::Read)?);
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(key, Arc::clone(&plain));
        }
        Ok(plain)
    }

    fn read_record(&self, meta: &Meta) -> Result<Record, StoreError> {
        let (segment, meta) = self.locate(meta)?;
        // `need` 0: inflate only as far as this record's own line.
        self.parse_in(&segment, &meta, 0)
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

/// Decompressed chunks, evicted oldest first past [`CACHE_BYTES`].
#[derive(Default)]
struct ChunkCache {
    map: HashMap<(u32, u32), Arc<Vec<u8>>>,
    order: VecDeque<(u32, u32)>,
    bytes: usize,
}

impl ChunkCache {
    /// The cached chunk, if it holds at least its first `need` bytes.
    fn get(&self, key: (u32, u32), need: usize) -> Option<Arc<Vec<u8>>> {
        self.map.get(&key).filter(|c| c.len() >= need).cloned()
    }

    fn put(&mut self, key: (u32, u32), chunk: Arc<Vec<u8>>) {
        self.bytes += chunk.len();
        match self.map.insert(key, chunk) {
            Some(old) => self.bytes -= old.len(),
            None => self.order.push_back(key),
        }
        while self.bytes > CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(c) = self.map.remove(&old) {
                self.bytes -= c.len();
            }
        }
    }
}

/// For a record in a compressed segment: its chunk and where its line ends
/// in it.
fn chunk_reach(meta: &Meta) -> (u32, usize) {
    let chunk = (meta.offset >> 32) as u32;
    let inner = (meta.offset & 0xffff_ffff) as usize;
    (chunk, inner + meta.len as usize)
}

/// Decodes the line read for `meta` and checks it is the record expected.
fn parse_at<T: Row>(line: &[u8], meta: &Meta) -> Result<T, StoreError> {
    let record: T = record::parse_row(line).map_err(|e| StoreError::Corrupt {
        seq: meta.seq,
        reason: format!("{e}; run VerifyIntegrity to locate the damage"),
    })?;
    if record.seq() != meta.seq {
        return Err(StoreError::Corrupt {
            seq: meta.seq,
            reason: format!(
                "the record at its position has seq {}; the file was changed outside the \
                 server, run VerifyIntegrity",
                record.seq()
            ),
        });
    }
    Ok(record)
}

/// Makes a directory entry change (a created or renamed file) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
