//! The syncer: the second half of the pipelined group commit (see
//! `writer`). It makes every group written so far durable with one
//! `fdatasync`, then adds the groups to the index, publishes them to
//! subscribers and answers their callers, group by group in seq order;
//! meanwhile the writer builds and writes the next group.
//!
//! A lone group is completed on the writer's thread ([`ToSync::group`]):
//! when the syncer holds nothing and no request is waiting behind the group,
//! there is nothing to overlap its sync with, and handing it over would
//! only add a thread wake to the caller's wait. Under load every group goes
//! through the syncer as before, so the pipeline is unchanged.
//!
//! Invariant: nothing is indexed, published or acknowledged before its
//! `fdatasync` returned (under the default durability) and the file it
//! went to was found still at `audit.log` (same device and inode, not
//! unlinked); a failed fsync or a file gone poisons the store, and every
//! group waiting fails with it.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SendError, SyncSender};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::error::StoreError;
use super::record::Record;
use super::shared::{DurableHead, Group, Poison, Shared};
use super::spans;
use super::{Durability, Receipt};

/// How many written groups may wait for the syncer before the writer waits.
const SYNC_QUEUE: usize = 2;

/// What the writer hands the syncer.
pub(super) enum ToSyncer {
    /// A group written to `file`, to be made durable and then acknowledged.
    Group(Written),
    /// Answer once every group sent before is durable and acknowledged.
    Flush(std::sync::mpsc::Sender<()>),
}

/// A group commit written but not yet durable.
pub(super) struct Written {
    pub(super) file: Arc<File>,
    /// The active file's length once this group is in it.
    pub(super) end: u64,
    pub(super) segment: u32,
    pub(super) records: Vec<Record>,
    pub(super) positions: Vec<(u64, u32)>,
    /// The records' lines as written, each ending in a newline: handed to
    /// the tree's builder once durable, so it need not read them back.
    pub(super) lines: Vec<u8>,
    pub(super) staged: Vec<Staged>,
    /// The group's `commit` span (`spans.rs`), ended once it is indexed.
    pub(super) span: tracing::Span,
}

/// A request's outcome while its group is being built.
pub(super) struct Staged {
    pub(super) reply: oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
    pub(super) receipts: Vec<Receipt>,
}

/// The syncer: makes written groups durable, then indexes, publishes and
/// acknowledges them, in the order they were written.
#[derive(Clone)]
pub(super) struct Syncer {
    shared: Arc<Shared>,
    durability: Durability,
    /// Groups handed to the syncer thread and not yet completed.
    in_hand: Arc<AtomicUsize>,
}

/// The writer's end of the syncer.
pub(super) struct ToSync {
    tx: SyncSender<ToSyncer>,
    /// The same syncer, for a lone group completed on the writer's thread.
    inline: Syncer,
}

impl ToSync {
    /// A syncer for `shared` and the writer's end of it; the syncer thread
    /// serves `rx`.
    pub(super) fn new(
        shared: Arc<Shared>,
        durability: Durability,
    ) -> (ToSync, Syncer, Receiver<ToSyncer>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(SYNC_QUEUE);
        let syncer = Syncer {
            shared,
            durability,
            in_hand: Arc::new(AtomicUsize::new(0)),
        };
        let inline = syncer.clone();
        (ToSync { tx, inline }, syncer, rx)
    }

    /// Has `written` made durable, indexed, published and answered after
    /// every group before it. `alone`: no request is waiting behind it; if
    /// the syncer thread holds nothing either, that is done here and now
    /// (in order: everything handed over before is complete).
    pub(super) fn group(&self, written: Written, alone: bool) {
        if alone && self.inline.in_hand.load(Ordering::Acquire) == 0 {
            self.inline.complete(vec![written]);
            return;
        }
        self.inline.in_hand.fetch_add(1, Ordering::AcqRel);
        if let Err(SendError(ToSyncer::Group(w))) = self.tx.send(ToSyncer::Group(written)) {
            self.inline.in_hand.fetch_sub(1, Ordering::AcqRel);
            for s in w.staged {
                let _ = s.reply.send(Err(StoreError::Closed));
            }
        }
    }

    /// Whether the syncer thread holds a group not yet completed.
    pub(super) fn busy(&self) -> bool {
        self.inline.in_hand.load(Ordering::Acquire) > 0
    }

    /// Waits until every group handed over is durable and acknowledged.
    pub(super) fn flush(&self) {
        let (ack, done) = std::sync::mpsc::channel();
        if self.tx.send(ToSyncer::Flush(ack)).is_ok() {
            // An error means the syncer is gone, so nothing is pending.
            let _ = done.recv();
        }
    }
}

impl Syncer {
    /// Serves the writer until it hangs up.
    pub(super) fn run(self, rx: &Receiver<ToSyncer>) {
        while let Ok(first) = rx.recv() {
            let mut groups = Vec::new();
            let mut flushes = Vec::new();
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    ToSyncer::Group(g) => groups.push(g),
                    ToSyncer::Flush(ack) => flushes.push(ack),
                }
                next = rx.try_recv().ok();
            }
            let count = groups.len();
            if count > 0 {
                self.complete(groups);
                // Only now: a writer that sees nothing in hand may complete
                // a group itself, after everything handed over.
                self.in_hand.fetch_sub(count, Ordering::AcqRel);
            }
            for ack in flushes {
                let _ = ack.send(());
            }
        }
    }

    /// One fsync for every group waiting, then their acknowledgements.
    fn complete(&self, groups: Vec<Written>) {
        let synced = if self.shared.poisoned.load(Ordering::Acquire) {
            Err(self.shared.poison_error())
        } else {
            let span = match self.durability {
                Durability::Fsync => spans::fsync(&groups),
                Durability::OsBuffered => tracing::Span::none(),
            };
            span.in_scope(|| self.sync_all(&groups))
                .and_then(|()| self.in_place(&groups))
        };
        if let Err(e) = synced {
            for s in groups.into_iter().flat_map(|g| g.staged) {
                let _ = s.reply.send(Err(e.duplicate()));
            }
            return;
        }
        let Some(end) = groups.last().map(|g| g.end) else {
            return;
        };
        {
            let mut index = self.shared.index.write().unwrap_or_else(|e| e.into_inner());
            for g in &groups {
                for (record, (offset, len)) in g.records.iter().zip(&g.positions) {
                    index.add(record, g.segment, *offset, *len);
                }
            }
        }
        self.shared.active_len.store(end, Ordering::Release);
        for g in groups.iter().filter(|g| !g.records.is_empty()) {
            // The group is one contiguous write ending at `end`.
            let bytes = g
                .positions
                .first()
                .map_or(0, |&(at, _)| g.end.saturating_sub(at));
            self.shared.metrics.store.committed(g.records.len(), bytes);
        }
        let mut published = Vec::new();
        let mut lines = Vec::with_capacity(groups.len());
        let mut replies = Vec::new();
        let mut fed = Vec::with_capacity(groups.len());
        for g in groups {
            if let (Some(first), Some(last)) = (g.records.first(), g.records.last()) {
                // One buffer, two owners: the tree hashes it, live readers
                // of stored lines send it.
                let written = Bytes::from(g.lines);
                fed.push((first.seq, last.seq, written.clone()));
                lines.push(written);
            }
            // Usually one group: its records are published without a copy.
            if published.is_empty() {
                published = g.records;
            } else {
                published.extend(g.records);
            }
            replies.extend(g.staged);
        }
        // Handed to the tree and published under one lock: the builder never
        // takes a group whose seqs are not published yet (so it never waits
        // for them), nor sees a seq published whose group is still to come
        // (so it never reads a live group back from the log).
        if let Some(newest) = published.last() {
            // Reused, not reallocated: this runs once per group commit.
            let mut head = self
                .shared
                .durable_head
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match &mut *head {
                Some(head) => {
                    head.seq = newest.seq;
                    head.signature.clone_from(&newest.signature);
                }
                None => {
                    *head = Some(DurableHead {
                        seq: newest.seq,
                        signature: newest.signature.clone(),
                    })
                }
            }
        }
        let last = published.last().map(|r| r.seq);
        self.shared.tree.feed(fed, || {
            if let Some(seq) = last {
                self.shared.indexed_seq.store(seq, Ordering::Release);
            }
        });
        if let Some(seq) = last {
            self.shared.committed.send_replace(seq);
        }
        // No subscriber is not an error: the group comes back, and is freed
        // only once every caller has its answer (freeing a group's records
        // is not free, and no caller should wait for it).
        let unsent = if published.is_empty() {
            None
        } else {
            self.shared
                .hub
                .send(Arc::new(Group::new(published, lines)))
                .err()
        };
        for s in replies {
            let _ = s.reply.send(Ok(s.receipts));
        }
        drop(unsent);
    }

    /// Makes every group durable per policy. A failure poisons the store:
    /// the page cache can no longer be trusted, so the data is never synced
    /// again as if nothing happened.
    fn sync_all(&self, groups: &[Written]) -> Result<(), StoreError> {
        if self.durability != Durability::Fsync {
            return Ok(());
        }
        let mut last: Option<&Arc<File>> = None;
        // Groups are in write order; a rotation flushes first, so they share
        // one file unless a flush raced ahead. Sync each file once.
        for g in groups.iter().rev() {
            if last.is_some_and(|f| Arc::ptr_eq(f, &g.file)) || g.records.is_empty() {
                continue;
            }
            last = Some(&g.file);
            let started = std::time::Instant::now();
            let synced = self.sync(&g.file);
            self.shared
                .metrics
                .store
                .synced(started.elapsed().as_secs_f64());
            if let Err(e) = synced {
                let reason = format!("fdatasync of the log failed: {e}");
                self.shared.poison(reason.clone());
                return Err(StoreError::Poisoned(reason));
            }
        }
        Ok(())
    }

    /// Whether the file the groups went to is still `audit.log`, whole: what
    /// is written to a file deleted, replaced or cut under the server is not
    /// on disk as the log, and is never acknowledged. A file gone poisons
    /// the store.
    fn in_place(&self, groups: &[Written]) -> Result<(), StoreError> {
        let Some(last) = groups.iter().rev().find(|g| !g.records.is_empty()) else {
            return Ok(());
        };
        self.shared
            .check_in_place(&last.file, last.end)
            .map_err(|reason| {
                self.shared.poison_with(Poison::FileGone(reason));
                self.shared.poison_error()
            })
    }

    fn sync(&self, file: &File) -> std::io::Result<()> {
        #[cfg(feature = "fault-injection")]
        {
            if crate::faults::hooks_on()
                && std::fs::remove_file(self.shared.dir.join("FAIL_NEXT_FSYNC")).is_ok()
            {
                return Err(std::io::Error::other(
                    "injected fsync failure (fault-injection)",
                ));
            }
        }
        file.sync_data()
    }
}
