//! The single writer: the only code that appends to the log.
//!
//! It runs on its own thread, fed by a bounded channel. Each turn it takes
//! every request waiting (group commit), assigns seqs, timestamps, `prev` and
//! signatures, writes the whole group with one `write`, makes it durable with
//! one `fdatasync`, then updates the index, publishes to subscribers and
//! answers every caller. One fsync serves everyone who arrived while the
//! previous one ran, so durability costs little under load.
//!
//! Rotation: after a commit leaves the active segment at or past the size
//! limit (or on request), the writer seals it (renames `audit.log` to
//! `audit.<UTC time>.log`, creates a new `audit.log`, syncs the directory)
//! and hands the sealed file to the sealer thread to compress. Callers wait
//! only for the renames, never for the compression.
//!
//! Failure rules: a failed `write` is cut back off the file (`set_len`) and
//! fails the group with nothing written and no seq consumed. A failed
//! `fdatasync` poisons the store: after it the page cache cannot be trusted,
//! so the data is never re-synced as if nothing happened; every later write
//! fails until a restart recovers from what is on disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};

use super::record::{GENESIS, NewEvent, Record, now_micros};
use super::sealer::{self, Job, Sealed};
use super::segment::SegmentFile;
use super::{Durability, LOG_FILE, Receipt, Shared, StoreError};

/// What the writer is asked to do.
pub(super) enum Command {
    Append(Append),
    /// Seal the active segment now; with `wait`, answer once it is
    /// compressed.
    Rotate {
        wait: bool,
        reply: oneshot::Sender<Result<Option<Sealed>, StoreError>>,
    },
}

/// One caller's request: its events are written together or not at all.
pub(super) struct Append {
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
}

/// The active segment as the writer holds it.
pub(super) struct Active {
    pub file: File,
    /// The length of its durable part.
    pub len: u64,
    /// Its id in the segment table.
    pub segment: u32,
    /// The seq of its first record; 0 while it is empty.
    pub first_seq: u64,
}

/// The most events one group commit takes.
const MAX_GROUP_EVENTS: usize = 16 * 1024;
/// The most bytes one group commit writes, checked between requests.
const MAX_GROUP_BYTES: usize = 16 << 20;

pub(super) struct Writer {
    file: File,
    /// The length of the durable part of the file.
    len: u64,
    segment: u32,
    /// The seq of the active segment's first record; 0 while it is empty.
    segment_first: u64,
    durability: Durability,
    max_segment_bytes: u64,
    sealer: std::sync::mpsc::Sender<Job>,
    shared: Arc<Shared>,
    next_seq: u64,
    prev: String,
    last_timestamp: i64,
    /// Randomness for event ids: a user-space CSPRNG seeded once, rather
    /// than a getrandom syscall per event.
    rng: rand::rngs::StdRng,
}

/// A request's outcome while its group is being built.
struct Staged {
    reply: oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
    receipts: Vec<Receipt>,
}

impl Writer {
    pub fn new(
        active: Active,
        durability: Durability,
        max_segment_bytes: u64,
        sealer: std::sync::mpsc::Sender<Job>,
        shared: Arc<Shared>,
    ) -> Writer {
        let last = shared.index().last().copied();
        let (next_seq, prev, last_timestamp) = match last {
            Some(m) => {
                let prev = shared
                    .read_record(&m)
                    .map(|r| r.signature)
                    .unwrap_or_else(|_| GENESIS.to_owned());
                (m.seq + 1, prev, m.timestamp)
            }
            // After a purge of everything sealed, the chain continues from
            // the last purged record.
            None => {
                let purged = shared.manifest.lock().ok().and_then(|m| m.purged.clone());
                match purged {
                    Some(p) => (p.through_seq + 1, p.last_signature, 0),
                    None => (1, GENESIS.to_owned(), 0),
                }
            }
        };
        Writer {
            file: active.file,
            len: active.len,
            segment: active.segment,
            segment_first: active.first_seq,
            durability,
            max_segment_bytes,
            sealer,
            shared,
            next_seq,
            prev,
            last_timestamp,
            rng: rand::SeedableRng::from_os_rng(),
        }
    }

    /// Serves requests until every sender is gone, then returns.
    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = Vec::new();
            let mut rotations = Vec::new();
            let mut events = 0;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append(a) => {
                        events += a.events.len();
                        group.push(a);
                    }
                    Command::Rotate { wait, reply } => rotations.push((wait, reply)),
                }
                if events < MAX_GROUP_EVENTS {
                    next = rx.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.commit(group);
            }
            if self.len >= self.max_segment_bytes
                && let Err(e) = self.rotate(None)
            {
                tracing::error!(error = %e, "automatic rotation failed; writing on");
            }
            for (wait, reply) in rotations {
                self.rotate_on_request(wait, reply);
            }
        }
        if let Err(e) = self.file.sync_data() {
            tracing::error!(error = %e, "final sync of the log failed");
        }
    }

    fn rotate_on_request(
        &mut self,
        wait: bool,
        reply: oneshot::Sender<Result<Option<Sealed>, StoreError>>,
    ) {
        if self.len == 0 {
            let _ = reply.send(Ok(None));
            return;
        }
        if wait {
            if let Err(e) = self.rotate(Some(reply)) {
                tracing::error!(error = %e, "requested rotation failed");
            }
        } else {
            let sealed = self.rotate(None);
            let _ = reply.send(sealed.map(Some));
        }
    }

    /// Seals the active segment and starts a new one; the sealer compresses
    /// the sealed file and, if given, answers `done` when it has.
    fn rotate(
        &mut self,
        done: Option<oneshot::Sender<Result<Option<Sealed>, StoreError>>>,
    ) -> Result<Sealed, StoreError> {
        let (first_seq, last_seq) = (self.segment_first, self.next_seq - 1);
        let dir = self.shared.dir.clone();
        let result = sealer::seal(&dir).and_then(|(plain_name, file)| {
            let segment = self.shared.add_segment(SegmentFile::Plain {
                name: LOG_FILE.to_owned(),
                file: file.try_clone()?,
            });
            Ok((plain_name, file, segment))
        });
        let (plain_name, file, segment) = match result {
            Ok(r) => r,
            Err(e) => {
                let err = StoreError::Rotate(e.to_string());
                if let Some(done) = done {
                    let _ = done.send(Err(StoreError::Rotate(e.to_string())));
                }
                return Err(err);
            }
        };
        let sealed = Sealed {
            file: plain_name.clone(),
            first_seq,
            last_seq,
        };
        let job = Job {
            segment: self.segment,
            plain: plain_name,
            done,
        };
        self.file = file;
        self.len = 0;
        self.shared.active_len.store(0, Ordering::Release);
        self.segment = segment;
        self.segment_first = 0;
        tracing::info!(file = %sealed.file, first_seq, last_seq, "sealed a segment");
        if let Err(e) = self.sealer.send(job) {
            // The sealer only stops at shutdown; the next start compresses it.
            tracing::warn!(error = %e, "sealer is gone; compression left for the next start");
        }
        Ok(sealed)
    }

    fn commit(&mut self, group: Vec<Append>) {
        if self.shared.poisoned.load(Ordering::Acquire) {
            for req in group {
                let _ = req.reply.send(Err(self.shared.poison_error()));
            }
            return;
        }
        let timestamp = now_micros().max(self.last_timestamp);
        let mut buf = Vec::with_capacity(group.len() * 512);
        let mut records = Vec::with_capacity(group.len());
        let mut positions = Vec::with_capacity(group.len());
        let mut staged = Vec::with_capacity(group.len());
        // Keys first written in this group, so a repeat inside it is also a
        // duplicate.
        let mut new_keys: HashMap<String, Receipt> = HashMap::new();
        let mut seq = self.next_seq;
        let mut prev = self.prev.clone();
        let mut deferred = Vec::new();

        'requests: for Append { events, reply } in group {
            if buf.len() > MAX_GROUP_BYTES {
                // Past the size cap: leave the rest to the next turn.
                deferred.push(Append { events, reply });
                continue;
            }
            let mut receipts = Vec::with_capacity(events.len());
            // Which events of this request are new; duplicates are answered
            // with the original receipt and not written.
            let mut fresh = Vec::with_capacity(events.len());
            // A key repeated within this request: (position, position of its
            // first use), answered once the first is sealed.
            let mut repeats = Vec::new();
            let mut keys_here: HashMap<String, usize> = HashMap::new();
            for (i, event) in events.into_iter().enumerate() {
                if let Some(key) = &event.idempotency_key
                    && let Some(&first) = keys_here.get(key)
                {
                    receipts.push(None);
                    repeats.push((i, first));
                    continue;
                }
                match self.duplicate_of(event.idempotency_key.as_deref(), &new_keys) {
                    Ok(Some(receipt)) => receipts.push(Some(receipt)),
                    Ok(None) => {
                        if let Some(key) = &event.idempotency_key {
                            keys_here.insert(key.clone(), i);
                        }
                        receipts.push(None);
                        fresh.push((i, event));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        continue 'requests;
                    }
                }
            }
            let batch = u32::try_from(fresh.len()).ok().filter(|&n| n > 1);
            for (n, (i, event)) in fresh.into_iter().enumerate() {
                let key = event.idempotency_key.clone();
                let (record, line) = Record::seal(
                    event,
                    seq,
                    event_id(timestamp, &mut self.rng),
                    timestamp,
                    if n == 0 { batch } else { None },
                    &prev,
                    &self.shared.keyring,
                );
                let receipt = Receipt {
                    seq,
                    id: record.id.clone(),
                    timestamp,
                    signature: record.signature.clone(),
                    duplicate: false,
                };
                if let Some(key) = key {
                    new_keys.insert(
                        key,
                        Receipt {
                            duplicate: true,
                            ..receipt.clone()
                        },
                    );
                }
                receipts[i] = Some(receipt);
                positions.push((self.len + buf.len() as u64, line.len() as u32));
                buf.extend_from_slice(&line);
                prev.clone_from(&record.signature);
                records.push(record);
                seq += 1;
            }
            for (i, first) in repeats {
                receipts[i] = receipts[first].clone().map(|r| Receipt {
                    duplicate: true,
                    ..r
                });
            }
            staged.push(Staged {
                reply,
                receipts: receipts.into_iter().flatten().collect(),
            });
        }

        let result = self.write_durably(&buf);
        match result {
            Ok(()) => {
                {
                    let mut index = self.shared.index.write().unwrap_or_else(|e| e.into_inner());

                    for (record, (offset, len)) in records.iter().zip(&positions) {
                        index.add(record, self.segment, *offset, *len);
                    }
                }
                self.len += buf.len() as u64;
                self.shared.active_len.store(self.len, Ordering::Release);
                if self.segment_first == 0 {
                    self.segment_first = records.first().map_or(0, |r| r.seq);
                }
                self.next_seq = seq;
                self.prev = prev;
                self.last_timestamp = timestamp;
                if !records.is_empty() {
                    // No subscriber is not an error.
                    let _ = self.shared.hub.send(records.into());
                }
                for s in staged {
                    let _ = s.reply.send(Ok(s.receipts));
                }
            }
            Err(e) => {
                // Nothing of this group was kept: seq and prev stay as they were.
                for s in staged {
                    let _ = s.reply.send(Err(clone_error(&e)));
                }
            }
        }
        if !deferred.is_empty() {
            self.commit(deferred);
        }
    }

    /// The receipt of the event first written with `key`, if any.
    fn duplicate_of(
        &self,
        key: Option<&str>,
        new_keys: &HashMap<String, Receipt>,
    ) -> Result<Option<Receipt>, StoreError> {
        let Some(key) = key else { return Ok(None) };
        if let Some(r) = new_keys.get(key) {
            return Ok(Some(r.clone()));
        }
        let meta = {
            let index = self.shared.index.read().unwrap_or_else(|e| e.into_inner());
            match index
                .idempotent_seq(key)
                .and_then(|s| index.get(s).copied())
            {
                Some(m) => m,
                None => return Ok(None),
            }
        };
        let record = self.shared.read_record(&meta)?;
        Ok(Some(Receipt {
            seq: record.seq,
            id: record.id,
            timestamp: record.timestamp,
            signature: record.signature,
            duplicate: true,
        }))
    }

    /// Writes `buf` at the end of the log and makes it durable per policy.
    fn write_durably(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        if buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(buf) {
            let err = if is_disk_full(&e) {
                StoreError::DiskFull(e)
            } else {
                StoreError::Write(e)
            };
            // Cut off whatever part of the group reached the file, so the log
            // stays valid for the next write.
            if let Err(cut) = self.file.set_len(self.len) {
                self.shared.poison(format!(
                    "a write failed ({err}) and cutting it back failed too ({cut})"
                ));
            }
            tracing::warn!(error = %err, "append failed");
            return Err(err);
        }
        if self.durability == Durability::Fsync
            && let Err(e) = self.sync()
        {
            let reason = format!("fdatasync of the log failed: {e}");
            self.shared.poison(reason.clone());
            return Err(StoreError::Poisoned(reason));
        }
        Ok(())
    }
}

impl Writer {
    fn sync(&self) -> std::io::Result<()> {
        #[cfg(feature = "fault-injection")]
        {
            let trigger = self.shared.dir.join("FAIL_NEXT_FSYNC");
            if std::fs::remove_file(&trigger).is_ok() {
                return Err(std::io::Error::other(
                    "injected fsync failure (fault-injection)",
                ));
            }
        }
        self.file.sync_data()
    }
}

/// A UUIDv7 for an event accepted at `timestamp` (µs since the epoch).
fn event_id(timestamp: i64, rng: &mut rand::rngs::StdRng) -> String {
    let mut random = [0u8; 10];
    rand::RngCore::fill_bytes(rng, &mut random);
    let millis = u64::try_from(timestamp / 1000).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .to_string()
}

fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
}

/// `StoreError` holds `io::Error`, which is not `Clone`; every caller of a
/// failed group gets an equivalent error.
fn clone_error(e: &StoreError) -> StoreError {
    let io = |src: &std::io::Error| std::io::Error::new(src.kind(), src.to_string());
    match e {
        StoreError::DiskFull(src) => StoreError::DiskFull(io(src)),
        StoreError::Write(src) => StoreError::Write(io(src)),
        StoreError::Poisoned(r) => StoreError::Poisoned(r.clone()),
        StoreError::Read(src) => StoreError::Read(io(src)),
        StoreError::Corrupt { seq, reason } => StoreError::Corrupt {
            seq: *seq,
            reason: reason.clone(),
        },
        other => StoreError::Write(std::io::Error::other(other.to_string())),
    }
}
