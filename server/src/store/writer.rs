//! The single writer: the only code that appends to the log.
//!
//! It runs on its own thread, fed by a bounded channel. Each turn it takes
//! every request waiting (group commit), assigns seqs, timestamps, `prev` and
//! signatures, writes the whole group with one `write`, makes it durable with
//! one `fdatasync`, then updates the index, publishes to subscribers and
//! answers every caller. One fsync serves everyone who arrived while the
//! previous one ran, so durability costs little under load.
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
use super::{Durability, Receipt, Shared, StoreError};

/// One caller's request: its events are written together or not at all.
pub(super) struct Append {
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
}

/// The most events one group commit takes.
const MAX_GROUP_EVENTS: usize = 16 * 1024;
/// The most bytes one group commit writes, checked between requests.
const MAX_GROUP_BYTES: usize = 16 << 20;

pub(super) struct Writer {
    file: File,
    /// The length of the durable part of the file.
    len: u64,
    durability: Durability,
    shared: Arc<Shared>,
    next_seq: u64,
    prev: String,
    last_timestamp: i64,
}

/// A request's outcome while its group is being built.
struct Staged {
    reply: oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
    receipts: Vec<Receipt>,
}

impl Writer {
    pub fn new(file: File, len: u64, durability: Durability, shared: Arc<Shared>) -> Writer {
        let (next_seq, prev, last_timestamp) = {
            let index = shared.index.read().unwrap_or_else(|e| e.into_inner());
            match index.last() {
                Some(m) => {
                    let prev = shared
                        .read_record(m)
                        .map(|r| r.signature)
                        .unwrap_or_else(|_| GENESIS.to_owned());
                    (m.seq + 1, prev, m.timestamp)
                }
                None => (1, GENESIS.to_owned(), 0),
            }
        };
        Writer {
            file,
            len,
            durability,
            shared,
            next_seq,
            prev,
            last_timestamp,
        }
    }

    /// Serves requests until every sender is gone, then returns.
    pub fn run(mut self, mut rx: mpsc::Receiver<Append>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            let mut events = group[0].events.len();
            while events < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(next) => {
                        events += next.events.len();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
        if let Err(e) = self.file.sync_data() {
            tracing::error!(error = %e, "final sync of the log failed");
        }
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
            for (i, event) in events.into_iter().enumerate() {
                match self.duplicate_of(event.idempotency_key.as_deref(), &new_keys) {
                    Ok(Some(receipt)) => receipts.push(Some(receipt)),
                    Ok(None) => {
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
                    uuid::Uuid::now_v7().to_string(),
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
                        index.add(record, *offset, *len);
                    }
                }
                self.len += buf.len() as u64;
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
            && let Err(e) = self.file.sync_data()
        {
            let reason = format!("fdatasync of the log failed: {e}");
            self.shared.poison(reason.clone());
            return Err(StoreError::Poisoned(reason));
        }
        Ok(())
    }
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
