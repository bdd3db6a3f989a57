//! The single writer: the only code that appends to the log.
//!
//! It runs on its own thread, fed by a bounded channel. Each turn it takes
//! every request waiting (group commit), assigns seqs, timestamps, `prev` and
//! signatures, and writes the whole group with one `pwrite` into the zeros
//! kept ahead of the log's end (`space.rs`). It then hands the
//! group to the syncer thread and goes on with the next one: the syncer makes
//! every group written so far durable with one `fdatasync`, then updates the
//! index, publishes to subscribers and answers the callers, group by group in
//! seq order. So building and writing group N+1 overlaps the sync of group N
//! (a pipelined group commit), and one fsync serves everyone who arrived while
//! the previous one ran. Nothing is visible to readers or acknowledged before
//! it is durable.
//!
//! A caller alone: when no request is waiting, nothing is in the syncer's
//! hands and the writer is free, `Store::append` commits the caller's
//! request itself, on its own thread ([`Writer::commit_alone`], under the
//! writer's lock), the same code the writer thread runs for a lone group.
//! Handing it to this thread and the answer back costs a single caller
//! two thread wakes (on the bench's VM its median went from 1.11–1.18 to
//! 1.06–1.07 times the durable floor's; issue 20). Under load nothing
//! changes: a caller who finds the lock taken, a request queued, a group
//! being synced, or callers lately arriving together ([`Callers`]) queues
//! its request as before, and the writer thread takes whatever waits once
//! the lock is free. Only an append goes that way; a replica's applies,
//! rotations and the idle checks stay on the writer thread.
//!
//! Rotation: after a commit leaves the active segment at or past the size
//! limit, once its first record is older than the segment age limit, or on
//! request, the writer seals it (renames `audit.log` to
//! `audit.<UTC time>.log`, creates a new `audit.log`, syncs the directory)
//! and hands the sealed file to the sealer thread to compress. Callers wait
//! only for the renames, never for the compression. An empty active segment
//! is never sealed.
//!
//! The age of the active segment is the age of its first record (after a
//! restart, the first record recovery indexed in `audit.log`). It is checked
//! before every wait for requests, and an idle writer waits no longer than
//! until the segment falls due (a timed receive on a clock of its own), so a
//! log that nobody writes to is sealed on time too: retention deletes only
//! sealed, compressed segments, and this is what bounds how long an event
//! can outlive the retention period. A seal by size or by age that fails is
//! tried again `SEAL_RETRY` later rather than on every turn (`rotation.rs`),
//! and a failed seal never leaves the writer writing to a file that is not
//! at `audit.log` (see `sealer::seal`).
//!
//! The file must stay at `audit.log`: the syncer checks it at each sync,
//! and an idle writer every `IDLE_CHECK`; a file deleted, moved or replaced
//! under the server poisons the store, so nothing written after it is
//! acknowledged.
//!
//! Failure rules: a failed `write` is cut back off the file (`set_len`) and
//! fails the group with nothing written and no seq consumed (groups written
//! before it and still being synced are whole and unaffected). A failed
//! `fdatasync` poisons the store: after it the page cache cannot be trusted,
//! so the data is never re-synced as if nothing happened; every later write
//! fails until a restart recovers from what is on disk. Refused appends are
//! logged rate limited (`refusals.rs`), not one line each.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Receipt;
use super::error::{StoreError, is_disk_full};
use super::record::{Name, NewEvent};
use super::sealer::{Job, Sealed};
use super::shared::Shared;
use super::signer::{Signer, receipt_of};
use super::syncer::{Staged, ToSync, Written};

mod apply;
mod rotation;
mod space;
mod start;
mod turns;

pub(super) use apply::Apply;
pub(crate) use apply::retired_after_signing;

/// What the writer is asked to do.
pub(super) enum Command {
    Append(Append),
    /// Append a group signed elsewhere (a replica's `Store::apply`).
    #[allow(dead_code, reason = "cluster mode (issue 16) applies")]
    Apply(Apply),
    /// Seal the active segment now; with `wait`, answer once it is
    /// compressed.
    Rotate {
        wait: bool,
        reply: oneshot::Sender<Result<Option<Sealed>, StoreError>>,
    },
    /// Take a turn: a request committed on its caller's thread left the
    /// active segment full, and the writer thread seals it.
    Turn,
}

/// One caller's request: its events are written together or not at all.
pub(super) struct Append {
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
    /// The caller's span, the parent of its group's (`spans.rs`); none with
    /// tracing off.
    pub trace: tracing::Span,
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

/// How often an idle writer checks that its file is still `audit.log` (the
/// syncer checks at every sync), so a file deleted under an idle server is
/// reported before anyone writes.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// The most events one group commit takes.
const MAX_GROUP_EVENTS: usize = 16 * 1024;
/// The most bytes one group commit writes, checked between requests.
const MAX_GROUP_BYTES: usize = 16 << 20;

pub(super) struct Writer {
    file: Arc<File>,
    /// The length of the written part of the file (durable, or being synced).
    len: u64,
    /// The zeros written past `len` (`space.rs`).
    ahead: space::Ahead,
    segment: u32,
    /// The seq of the active segment's first record; 0 while it is empty.
    segment_first: u64,
    /// The timestamp of the active segment's first record; `None` while it
    /// is empty.
    segment_first_timestamp: Option<i64>,
    max_segment_bytes: u64,
    /// Seal the active segment once its first record is this old; `None`:
    /// never by age.
    max_segment_age: Option<Duration>,
    /// After a failed seal (by size or by age), not before this.
    seal_retry_at: Option<Instant>,
    sealer: std::sync::mpsc::Sender<Job>,
    syncer: ToSync,
    /// No request was waiting when the group being committed was taken:
    /// the syncer may complete it on this thread (`ToSync::group`).
    alone: bool,
    shared: Arc<Shared>,
    /// Idempotency keys written in groups the syncer has not indexed yet: a
    /// repeat must find them although the index does not have them yet.
    pending_keys: HashMap<Name, Receipt>,
    /// Where the chain stands: what the next record continues.
    signer: Signer,
    /// A replica appends only groups signed elsewhere (`apply`), never its
    /// own.
    replica: bool,
    /// How many requests a group commit has served lately, a moving average
    /// in 256ths ([`Callers`]): when callers arrive together, one who
    /// finds the writer idle queues its request rather than commit it
    /// itself (`commit_alone`).
    callers: turns::Callers,
}

impl Writer {
    pub(super) fn new(
        active: Active,
        max_segment_bytes: u64,
        max_segment_age: Option<Duration>,
        sealer: std::sync::mpsc::Sender<Job>,
        syncer: ToSync,
        shared: Arc<Shared>,
        replica: bool,
    ) -> Writer {
        let mut signer = Signer::after(&shared.keyring, start::head(&shared, &active, replica));
        // After a cut found at start (`head`), a writer's seqs go on after
        // the last one acknowledged, so none is given twice. A replica
        // continues its own file: the stream gives it what it lacks.
        if !replica {
            let acknowledged = shared.head.lock().map_or(0, |h| h.seq);
            signer.skip_to(acknowledged.saturating_add(1));
        }
        // After a restart the active segment's age is that of its first
        // record, not of this start.
        let segment_first_timestamp = match active.first_seq {
            0 => None,
            seq => shared.index().get(seq).map(|m| m.timestamp),
        };
        Writer {
            file: Arc::new(active.file),
            len: active.len,
            ahead: space::Ahead::at(active.len),
            segment: active.segment,
            segment_first: active.first_seq,
            segment_first_timestamp,
            max_segment_bytes,
            max_segment_age,
            seal_retry_at: None,
            sealer,
            syncer,
            alone: false,
            shared,
            pending_keys: HashMap::new(),
            signer,
            replica,
            callers: turns::Callers::default(),
        }
    }

    /// Waits until every group written is durable and acknowledged.
    fn flush(&mut self) {
        self.syncer.flush();
        self.prune_pending();
    }

    /// Forgets pending idempotency keys the index now holds.
    fn prune_pending(&mut self) {
        if self.pending_keys.is_empty() {
            return;
        }
        let indexed = self.shared.indexed_seq.load(Ordering::Acquire);
        self.pending_keys.retain(|_, r| r.seq > indexed);
    }

    fn commit(&mut self, group: Vec<Append>) {
        if self.shared.poisoned.load(Ordering::Acquire) {
            for req in group {
                let _ = req.reply.send(Err(self.shared.poison_error()));
            }
            return;
        }
        self.prune_pending();
        self.callers.served(group.len());
        let span = super::spans::commit(&group);
        // Back to here if the write fails: nothing of the group is kept.
        let mark = self.signer.mark();
        let timestamp = self.signer.stamp();
        // Sized for the group's events (a line is some 500 bytes), so a
        // batch's lines are not copied again and again as the buffer grows.
        let event_count = group.iter().map(|a| a.events.len()).sum::<usize>();
        let mut buf = Vec::with_capacity(event_count * 512);
        let mut records = Vec::with_capacity(event_count);
        let mut positions = Vec::with_capacity(event_count);
        let mut staged = Vec::with_capacity(group.len());
        // Keys first written in this group, so a repeat inside it is also a
        // duplicate.
        let mut new_keys: HashMap<Name, Receipt> = HashMap::new();
        let mut deferred = Vec::new();

        'requests: for Append {
            events,
            reply,
            trace,
        } in group
        {
            if buf.len() > MAX_GROUP_BYTES {
                // Past the size cap: leave the rest to the next turn.
                deferred.push(Append {
                    events,
                    reply,
                    trace,
                });
                continue;
            }
            let mut receipts = Vec::with_capacity(events.len());
            // Which events of this request are new; duplicates are answered
            // with the original receipt and not written.
            let mut fresh = Vec::with_capacity(events.len());
            // A key repeated within this request: (position, position of its
            // first use), answered once the first is sealed.
            let mut repeats = Vec::new();
            let mut keys_here: HashMap<Name, usize> = HashMap::new();
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
                let start = buf.len();
                let record = self.signer.sign_into(
                    event,
                    timestamp,
                    if n == 0 { batch } else { None },
                    &mut buf,
                );
                let receipt = receipt_of(&record);
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
                positions.push((self.len + start as u64, (buf.len() - start) as u32));
                records.push(record);
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

        match self.write(&buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                if self.segment_first == 0
                    && let Some(first) = records.first()
                {
                    self.segment_first = first.seq;
                    self.segment_first_timestamp = Some(first.timestamp);
                }
                self.pending_keys.extend(new_keys);
                // Sent even when nothing was written: a duplicate may point
                // at an event still being synced, and is answered after it.
                let written = Written {
                    file: Arc::clone(&self.file),
                    end: self.len,
                    segment: self.segment,
                    records,
                    positions,
                    lines: buf,
                    staged,
                    span,
                };
                self.syncer
                    .group(written, self.alone && deferred.is_empty());
            }
            Err(e) => {
                // Nothing of this group was kept: seq and prev stay as they were.
                self.signer.reset(mark);
                for s in staged {
                    let _ = s.reply.send(Err(e.duplicate()));
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
        new_keys: &HashMap<Name, Receipt>,
    ) -> Result<Option<Receipt>, StoreError> {
        let Some(key) = key else { return Ok(None) };
        if let Some(r) = new_keys.get(key).or_else(|| self.pending_keys.get(key)) {
            return Ok(Some(r.clone()));
        }
        self.shared.idempotent_receipt(key)
    }

    /// Writes `buf` at the end of the log (not yet durable: the syncer does
    /// that).
    fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        if buf.is_empty() {
            return Ok(());
        }
        let err_of = |e: std::io::Error| {
            if is_disk_full(&e) {
                StoreError::DiskFull(e)
            } else {
                StoreError::Write(e)
            }
        };
        // Nothing is written yet: on failure there is nothing to cut (and
        // what someone else wrote is left in place, not cut unkept).
        self.keep_foreign_ahead(buf.len()).map_err(err_of)?;
        if let Err(e) = self.write_at_end(buf) {
            let err = err_of(e);
            // Cut off whatever part of the group reached the file, so the log
            // stays valid for the next write.
            match self.file.set_len(self.len) {
                Ok(()) => self.ahead = space::Ahead::at(self.len),
                Err(cut) => self.shared.poison(format!(
                    "a write failed ({err}) and cutting it back failed too ({cut})"
                )),
            }
            // Logged, rate limited, where the refusal is counted (`refusals`).
            return Err(err);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Map, Value};

    use crate::keys::Keyring;
    use crate::store::{Filter, NewEvent, Order, Store, StoreConfig};

    fn event(key: Option<String>) -> NewEvent {
        NewEvent {
            idempotency_key: key.map(crate::store::Name::from),
            ..NewEvent::for_test(None, serde_json::json!({}))
        }
    }

    /// The index finds idempotency keys by a 64-bit hash: a key whose hash
    /// another key has is a new event, not the other's duplicate, and each
    /// key repeated still finds its own first event. Every key hashes alike
    /// here.
    #[tokio::test]
    async fn a_key_whose_hash_another_key_has_is_not_its_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            StoreConfig::for_test(dir.path(), true),
            Keyring::new("k1", vec![7; 32]),
        )
        .unwrap();
        store.shared.index.write().unwrap().hash_keys_alike();
        let mut first = Vec::new();
        for key in ["a", "b", "c"] {
            let r = store.append(vec![event(Some(key.into()))]).await.unwrap();
            assert!(!r[0].duplicate, "{key} is new");
            first.push(r[0].clone());
        }
        assert_eq!(first.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        for (key, want) in ["c", "a", "b"]
            .iter()
            .zip([&first[2], &first[0], &first[1]])
        {
            let r = store
                .append(vec![event(Some((*key).into()))])
                .await
                .unwrap();
            assert!(r[0].duplicate, "{key} again");
            assert_eq!(
                (r[0].seq, &r[0].signature),
                (want.seq, &want.signature),
                "{key}"
            );
        }
    }

    /// With groups written while earlier ones are still being synced, a
    /// repeated key must still find its first event (not yet in the index)
    /// and be answered only once that event is durable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn repeated_keys_across_pipelined_groups_write_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open(
                StoreConfig::for_test(dir.path(), true),
                Keyring::new("k1", vec![7; 32]),
            )
            .unwrap(),
        );
        const KEYS: usize = 40;
        const CALLERS: usize = 16;
        let mut tasks = Vec::new();
        for caller in 0..CALLERS {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let mut receipts = Vec::new();
                for k in 0..KEYS {
                    // Unkeyed events between keep groups small and many.
                    store.append(vec![event(None)]).await.unwrap();
                    let key = format!("key-{}", (k + caller) % KEYS);
                    let r = store.append(vec![event(Some(key.clone()))]).await.unwrap();
                    receipts.push((key, r[0].clone()));
                }
                receipts
            }));
        }
        let mut by_key: std::collections::HashMap<String, (u64, String)> = Default::default();
        for task in tasks {
            for (key, r) in task.await.unwrap() {
                let first = by_key
                    .entry(key.clone())
                    .or_insert((r.seq, r.signature.to_string()));
                assert_eq!(*first, (r.seq, r.signature.to_string()), "{key}");
                // Answered only once durable, so it is already in the index.
                assert!(store.head() >= r.seq);
            }
        }
        assert_eq!(by_key.len(), KEYS);
        let total = CALLERS * KEYS + KEYS;
        assert_eq!(store.head(), total as u64);
        let keyed = store
            .page::<crate::store::Record<Map<String, Value>>>(
                &Filter::default(),
                Order::OldestFirst,
                None,
                u64::MAX,
                total,
            )
            .unwrap()
            .records
            .into_iter()
            .filter(|r| r.idempotency_key.is_some())
            .count();
        assert_eq!(keyed, KEYS);
        let report = store.verify(0, 0, &[]).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }

    /// A log changed under the server (a line damaged, a seq repeated):
    /// verification after a restart and a new record reports the damage
    /// where it is, and the server's own record adds no finding. The
    /// writer once chained to the first copy of a repeated seq, or to a
    /// damaged line verification cannot read as a record.
    #[tokio::test]
    async fn the_first_record_after_a_changed_log_chains_to_the_line_before_it() {
        let keys = Keyring::new("k1", vec![7; 32]);
        // A changed copy of seq 3 before it (its MAC fails, its signature
        // field seq 2's); seq 3's `prev` made unreadable.
        let repeated = |lines: &[&str]| {
            let changed = lines[2].replace(
                &lines[2][lines[2].len() - 66..lines[2].len() - 2],
                &lines[1][lines[1].len() - 66..lines[1].len() - 2],
            );
            [lines[0], lines[1], &changed, lines[2]].join("\n")
        };
        let unreadable = |lines: &[&str]| {
            [
                lines[0],
                lines[1],
                &lines[2].replacen("\"prev\":\"", "\"prev\":\":", 1),
            ]
            .join("\n")
        };
        for change in [&repeated as &dyn Fn(&[&str]) -> String, &unreadable] {
            let dir = tempfile::tempdir().unwrap();
            let config = || StoreConfig::for_test(dir.path(), true);
            let store = Store::open(config(), keys.clone()).unwrap();
            for _ in 0..3 {
                store.append(vec![event(None)]).await.unwrap();
            }
            store.shutdown();
            let path = dir.path().join(crate::store::LOG_FILE);
            let log = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = log.lines().collect();
            std::fs::write(&path, change(&lines) + "\n").unwrap();
            let store = Store::open(config(), keys.clone()).unwrap();
            let seq = store.append(vec![event(None)]).await.unwrap()[0].seq;
            assert_eq!(seq, 4);
            let report = store.verify(0, 0, &[]).unwrap();
            // The damage is on line 3 in both.
            assert!(
                report.findings.iter().any(|f| f.line == 3),
                "{:?}",
                report.findings
            );
            let ours: Vec<_> = report.findings.iter().filter(|f| f.seq == seq).collect();
            assert!(ours.is_empty(), "the server's own record: {ours:?}");
        }
    }
}
