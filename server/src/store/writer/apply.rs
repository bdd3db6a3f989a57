//! A replica's append: a group of lines signed by the cluster leader,
//! checked whole before a byte of it is written, then written and handed
//! to the syncer like a group the writer signed itself (one `write`, one
//! `fdatasync`, then the index, the broadcast and the tree).
//!
//! The checks, line by line: it is a record; its MAC verifies with a key of
//! the keyring; its seq follows the line before it; a seq the log already
//! has must be the stored line byte for byte (a re-delivered group), and
//! is skipped; a new seq must be the next one, its `prev` the last
//! signature and its timestamp no earlier than the last; and once the log
//! holds a record under the signing key, none under a retired key follows
//! (no leader signs with one any more). The line is kept
//! exactly as signed, `caller` included. The group must end where a batch
//! ends (a batch's first record says how many it holds): recovery cuts an
//! incomplete batch at the end of the log, which would take an applied,
//! acknowledged tail away. The first line that fails refuses the whole group with [`StoreError::Refused`], naming its seq and what is
//! wrong.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::Writer;
use crate::store::Receipt;
use crate::store::error::StoreError;
use crate::store::record::{MAX_SEQ, MacCheck, Record, Short};
use crate::store::signer::receipt_of;
use crate::store::syncer::{Staged, Written};
use crate::store::tree;

/// A group of signed lines for a replica to append.
pub(in crate::store) struct Apply {
    pub(in crate::store) lines: Vec<u8>,
    pub(in crate::store) reply: oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
}

/// A group that passed every check: where the bytes to append (the lines
/// the log did not have yet) start in it, and their records.
struct Checked {
    fresh_from: usize,
    /// Whether the group's last new record is signed with the signing key.
    signed_active: bool,
    records: Vec<Record>,
    /// Each new line's offset among the fresh bytes and its length with the
    /// newline.
    spans: Vec<(u64, u32)>,
}

impl Writer {
    /// Checks and appends one group (see the module doc); answers once it
    /// is durable and indexed, or with why nothing of it was written.
    pub(super) fn apply(&mut self, Apply { lines, reply }: Apply) {
        if !self.replica {
            let _ = reply.send(Err(StoreError::WrongRole(
                "this store signs its own records and does not append groups signed \
                 elsewhere; open it as a replica to apply a cluster's stream",
            )));
            return;
        }
        if self.shared.poisoned.load(Ordering::Acquire) {
            let _ = reply.send(Err(self.shared.poison_error()));
            return;
        }
        let checked = match self.check_group(&lines) {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        // The group's own buffer goes on to the syncer and the tree: only a
        // re-delivered prefix is dropped, never a copy made.
        let mut fresh = lines;
        fresh.drain(..checked.fresh_from);
        if let Err(e) = self.write(&fresh) {
            let _ = reply.send(Err(e));
            return;
        }
        let positions = checked
            .spans
            .iter()
            .map(|&(at, len)| (self.len + at, len - 1))
            .collect();
        self.len += fresh.len() as u64;
        self.shared
            .signed_active
            .store(checked.signed_active, Ordering::Release);
        if let Some(last) = checked.records.last() {
            self.signer
                .follow(last.seq, &last.signature, last.timestamp);
        }
        if self.segment_first == 0
            && let Some(first) = checked.records.first()
        {
            self.segment_first = first.seq;
            self.segment_first_timestamp = Some(first.timestamp);
        }
        let receipts = checked.records.iter().map(receipt_of).collect();
        // Sent even when every line was already there: it is answered once
        // the groups before it are durable.
        let written = Written {
            file: Arc::clone(&self.file),
            end: self.len,
            segment: self.segment,
            lines: fresh,
            records: checked.records,
            positions,
            staged: vec![Staged { reply, receipts }],
            // Applied groups come from the stream, not from a caller here.
            span: tracing::Span::none(),
        };
        self.syncer.group(written, self.alone);
        self.seal_if_full();
    }

    /// Every check of the module doc over `lines`, writing nothing.
    fn check_group(&mut self, lines: &[u8]) -> Result<Checked, StoreError> {
        let next = self.signer.next_seq();
        let refuse = |seq: u64, reason: String| StoreError::Refused { seq, reason };
        if !lines.ends_with(b"\n") {
            return Err(refuse(
                next,
                "the group does not end with a newline (a torn last line)".into(),
            ));
        }
        let mut fresh_from = lines.len();
        let mut records = Vec::new();
        let mut spans = Vec::new();
        let mut expected: Option<u64> = None;
        let mut prev = Short::from(self.signer.prev());
        let mut last_timestamp = self.signer.last_timestamp();
        let shared = Arc::clone(&self.shared);
        let signing = shared.keyring.active().0;
        let mut signed_active = self.shared.signed_active.load(Ordering::Acquire);
        let mut at = 0usize;
        // The last seq of the batch the newest record belongs to.
        let mut batch_end = 0u64;
        for line in lines[..lines.len() - 1].split(|&b| b == b'\n') {
            let start = at;
            at += line.len() + 1;
            let seq_here = expected.unwrap_or(next);
            let record = Record::parse(line)
                .map_err(|e| refuse(seq_here, format!("the line is not a record: {e}")))?;
            let seq = record.seq;
            if let Some(want) = expected
                && seq != want
            {
                return Err(refuse(
                    seq,
                    format!(
                        "the group's seqs are not contiguous: seq {seq} follows {}",
                        want - 1
                    ),
                ));
            }
            if seq == 0 || seq > MAX_SEQ {
                return Err(refuse(seq, format!("seq {seq} is outside 1..=2^63-1")));
            }
            expected = Some(seq + 1);
            if seq < next {
                self.check_stored(seq, line)?;
                continue;
            }
            if seq != next + records.len() as u64 {
                return Err(refuse(
                    seq,
                    format!(
                        "the log's next seq is {}: the group leaves a gap",
                        next + records.len() as u64
                    ),
                ));
            }
            match record.check_mac(line, &self.shared.keyring) {
                MacCheck::Valid if record.key_id.as_str() == signing => signed_active = true,
                MacCheck::Valid if signed_active => {
                    return Err(refuse(seq, retired_after_signing(&record.key_id, signing)));
                }
                MacCheck::Valid => {}
                MacCheck::Invalid => {
                    return Err(refuse(
                        seq,
                        format!("its MAC does not verify with key {:?}", record.key_id),
                    ));
                }
                MacCheck::UnknownKey => {
                    return Err(refuse(
                        seq,
                        format!(
                            "it is signed with key {:?}, which this node's keyring does not \
                             hold; configure the cluster's HMAC key",
                            record.key_id
                        ),
                    ));
                }
            }
            if record.prev != prev {
                return Err(refuse(
                    seq,
                    format!(
                        "its prev {} is not the signature of seq {} ({prev}): it does not \
                         continue this log's chain",
                        record.prev,
                        seq - 1
                    ),
                ));
            }
            if record.timestamp < last_timestamp {
                return Err(refuse(
                    seq,
                    "its timestamp is earlier than the record before it".into(),
                ));
            }
            if let Some(n) = record.batch {
                batch_end = seq.saturating_add(u64::from(n).saturating_sub(1));
            }
            fresh_from = fresh_from.min(start);
            prev = record.signature.clone();
            last_timestamp = record.timestamp;
            spans.push(((start - fresh_from) as u64, (line.len() + 1) as u32));
            records.push(record);
        }
        if let Some(last) = records.last()
            && last.seq < batch_end
        {
            return Err(refuse(
                last.seq,
                format!(
                    "the group ends inside a batch that runs to seq {batch_end}: send whole \
                     batches (a batch's first record says how many it holds)"
                ),
            ));
        }
        Ok(Checked {
            fresh_from,
            signed_active,
            records,
            spans,
        })
    }

    /// A line for a seq the log already has must be the stored one.
    fn check_stored(&mut self, seq: u64, line: &[u8]) -> Result<(), StoreError> {
        // A seq still being synced is not in the index yet.
        if seq > self.shared.indexed_seq.load(Ordering::Acquire) {
            self.flush();
        }
        match tree::stored_line(&self.shared, seq)? {
            Some(stored) if stored == line => Ok(()),
            Some(_) => Err(StoreError::Refused {
                seq,
                reason: "it differs from the record this log holds at that seq: the log and \
                         the group's source diverged"
                    .into(),
            }),
            // Purged here: nothing left to compare it with.
            None => Ok(()),
        }
    }
}

/// Why a record under retired key `key_id` is refused after a record under
/// `signing`: no leader signs with a retired key.
pub(crate) fn retired_after_signing(key_id: &str, signing: &str) -> String {
    format!(
        "it is signed with retired key {key_id:?} after records signed with {signing:?}, the \
         key that signs now: no leader signs with a retired key, so whoever kept the old key \
         wrote it"
    )
}
