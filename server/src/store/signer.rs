//! The signer: the one code path that turns events into signed records. It
//! holds where the chain stands (the next seq, the last signature as the
//! next `prev`, the last timestamp) and gives each event of a group its seq,
//! id, timestamp, `prev` and HMAC. The local writer signs through it, and a
//! cluster leader signs with one continued from the stream's tail
//! ([`Signer::after`]), so a record means the same whichever node signed it.
//!
//! Invariants: seqs follow each other with no gap, each `prev` is the
//! signature before it, and a group's one timestamp is never earlier than the
//! last one given (the clock may step back; the log's time may not).

use super::Receipt;
use super::record::{GENESIS, NewEvent, Record, Short};
use crate::clock::now_micros;
use crate::keys::Keyring;

/// Where a chain stands: its last record's seq, signature and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub(crate) seq: u64,
    pub(crate) signature: String,
    /// µs since the epoch; 0 when not known (after a purge of everything).
    pub(crate) timestamp: i64,
}

/// Signs groups of events, continuing one chain.
pub(crate) struct Signer {
    keyring: Keyring,
    next_seq: u64,
    prev: Short,
    last_timestamp: i64,
    /// Randomness for event ids: a user-space CSPRNG seeded once, rather
    /// than a getrandom syscall per event.
    rng: rand::rngs::StdRng,
}

/// A signer's position, to go back to when a group was not kept.
#[derive(Debug, Clone)]
pub(crate) struct Mark {
    next_seq: u64,
    prev: Short,
    last_timestamp: i64,
}

impl Signer {
    /// Continues the chain after `last` (seq 1 after [`GENESIS`] for an
    /// empty log), signing with the keyring's active key.
    pub(crate) fn after(keyring: &Keyring, last: Option<ChainHead>) -> Signer {
        let (next_seq, prev, last_timestamp) = match last {
            Some(h) => (
                h.seq.saturating_add(1),
                Short::from(h.signature),
                h.timestamp,
            ),
            None => (1, Short::from(GENESIS), 0),
        };
        Signer {
            keyring: keyring.clone(),
            next_seq,
            prev,
            last_timestamp,
            rng: rand::SeedableRng::from_os_rng(),
        }
    }

    /// Signs a group as one batch (see [`Signer::sign_batch`]).
    #[cfg(test)]
    pub(crate) fn sign_group(&mut self, events: Vec<NewEvent>) -> (Vec<u8>, Vec<Receipt>) {
        let timestamp = self.stamp();
        self.sign_batch(events, timestamp)
    }

    /// Signs one caller's batch at `timestamp` (the group's, from
    /// [`Signer::stamp`]): the lines (each ending in `\n`, ready to append)
    /// and one receipt per event. A batch of more than one event carries
    /// `batch` on its first record, so recovery (and a replica) takes it
    /// whole or not at all. A cluster leader signs a gathered group as one
    /// batch per caller, all with one timestamp.
    pub(crate) fn sign_batch(
        &mut self,
        events: Vec<NewEvent>,
        timestamp: i64,
    ) -> (Vec<u8>, Vec<Receipt>) {
        let batch = u32::try_from(events.len()).ok().filter(|&n| n > 1);
        let mut lines = Vec::with_capacity(events.len() * 512);
        let mut receipts = Vec::with_capacity(events.len());
        for (n, event) in events.into_iter().enumerate() {
            let batch = if n == 0 { batch } else { None };
            let record = self.sign_into(event, timestamp, batch, &mut lines);
            receipts.push(receipt_of(&record));
        }
        (lines, receipts)
    }

    /// The timestamp of a new group: now, or the last one given if the
    /// clock stepped back.
    pub(crate) fn stamp(&mut self) -> i64 {
        let timestamp = now_micros().max(self.last_timestamp);
        self.last_timestamp = timestamp;
        timestamp
    }

    /// Signs one event at the next seq, with `batch` when it opens a
    /// multi-event batch, and moves the chain on.
    /// The line (ending in `\n`) is appended to `lines`.
    pub(super) fn sign_into(
        &mut self,
        event: NewEvent,
        timestamp: i64,
        batch: Option<u32>,
        lines: &mut Vec<u8>,
    ) -> Record {
        let id = event_id(timestamp, &mut self.rng);
        let record = Record::seal_into(
            event,
            self.next_seq,
            id,
            timestamp,
            batch,
            &self.prev,
            &self.keyring,
            lines,
        );
        self.next_seq += 1;
        self.prev.clone_from(&record.signature);
        self.last_timestamp = self.last_timestamp.max(timestamp);
        record
    }

    /// Moves the chain on past a record signed elsewhere (a replica's
    /// applied line), already checked to continue it.
    pub(super) fn follow(&mut self, seq: u64, signature: &str, timestamp: i64) {
        self.next_seq = seq.saturating_add(1);
        self.prev = Short::from(signature);
        self.last_timestamp = self.last_timestamp.max(timestamp);
    }

    /// The seq the next record gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The signature the next record's `prev` must be.
    pub(super) fn prev(&self) -> &str {
        &self.prev
    }

    /// The last timestamp given; the next is never earlier.
    pub(super) fn last_timestamp(&self) -> i64 {
        self.last_timestamp
    }

    /// Skips seqs up to `seq` (after a cut found at start, seqs go on after
    /// the last one acknowledged, so none is given twice).
    pub(super) fn skip_to(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq);
    }

    /// Where the chain stands now.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            next_seq: self.next_seq,
            prev: self.prev.clone(),
            last_timestamp: self.last_timestamp,
        }
    }

    /// Back to `mark`: what was signed since was not kept.
    pub(crate) fn reset(&mut self, mark: Mark) {
        self.next_seq = mark.next_seq;
        self.prev = mark.prev;
        self.last_timestamp = mark.last_timestamp;
    }
}

/// The receipt of a record just signed.
pub(super) fn receipt_of(record: &Record) -> Receipt {
    Receipt {
        seq: record.seq,
        id: record.id.clone(),
        timestamp: record.timestamp,
        signature: record.signature.clone(),
        duplicate: false,
    }
}

/// A UUIDv7 for an event accepted at `timestamp` (µs since the epoch).
fn event_id(timestamp: i64, rng: &mut rand::rngs::StdRng) -> Short {
    let mut random = [0u8; 10];
    rand::RngCore::fill_bytes(rng, &mut random);
    let millis = u64::try_from(timestamp / 1000).unwrap_or(0);
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    // Into a fixed buffer, then inline: no allocation.
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    Short::from(&*uuid.hyphenated().encode_lower(&mut text))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::store::chain::Verifier;

    fn keyring() -> Keyring {
        Keyring::new("k1", vec![9; 32])
    }

    fn event(n: usize) -> NewEvent {
        NewEvent {
            event_type: "email_sent".into(),
            actor: format!("a{n}").into(),
            caller: Some("crm".into()),
            lead_id: None,
            workflow: None,
            details: Default::default(),
            idempotency_key: None,
        }
    }

    /// Verifies `lines` as one stretch starting at `first` after `prev`.
    fn findings(lines: &[u8], first: u64, prev: &str) -> Vec<String> {
        let keys = keyring();
        let none = HashMap::new();
        let mut v = Verifier::new(&keys, &none, first, prev);
        for (i, line) in lines
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            v.check_line("group", i as u64 + 1, line);
        }
        v.finish()
            .findings
            .iter()
            .map(|f| f.message.clone())
            .collect()
    }

    #[test]
    fn a_signed_group_verifies_as_a_chain_from_genesis() {
        let mut signer = Signer::after(&keyring(), None);
        let (lines, receipts) = signer.sign_group((0..3).map(event).collect());
        let (more, next) = signer.sign_group(vec![event(3)]);
        assert_eq!(
            receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(next[0].seq, 4);
        assert!(next[0].timestamp >= receipts[2].timestamp);
        let all = [lines.clone(), more].concat();
        assert!(findings(&all, 1, GENESIS).is_empty());
        // The group is one batch: its first record says how many.
        let first = Record::parse(lines.split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!(first.batch, Some(3));
        assert_eq!(first.caller.as_deref(), Some("crm"));
    }

    #[test]
    fn batches_signed_at_one_timestamp_are_one_chain_each_batch_marked() {
        let mut signer = Signer::after(&keyring(), None);
        let timestamp = signer.stamp();
        let mut lines = Vec::new();
        let mut seqs = Vec::new();
        for batch in [
            (0..3).map(event).collect(),
            vec![event(3)],
            vec![event(4), event(5)],
        ] {
            let (l, receipts) = signer.sign_batch(batch, timestamp);
            lines.extend(l);
            assert!(receipts.iter().all(|r| r.timestamp == timestamp));
            seqs.push(receipts.iter().map(|r| r.seq).collect::<Vec<_>>());
        }
        assert_eq!(seqs, [vec![1, 2, 3], vec![4], vec![5, 6]]);
        assert!(findings(&lines, 1, GENESIS).is_empty());
        let batches: Vec<Option<u32>> = lines
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| Record::parse(l).unwrap().batch)
            .collect();
        assert_eq!(batches, [Some(3), None, None, None, Some(2), None]);
    }

    #[test]
    fn a_signer_continues_a_chain_after_a_given_head() {
        let mut writer = Signer::after(&keyring(), None);
        let (_, receipts) = writer.sign_group((0..5).map(event).collect());
        let last = receipts.last().unwrap();
        let head = ChainHead {
            seq: last.seq,
            signature: last.signature.to_string(),
            timestamp: last.timestamp,
        };
        let mut next = Signer::after(&keyring(), Some(head));
        let (lines, receipts) = next.sign_group(vec![event(5), event(6)]);
        assert_eq!(receipts[0].seq, 6);
        assert!(receipts[0].timestamp >= last.timestamp);
        assert!(findings(&lines, 6, &last.signature).is_empty());
        // The same lines do not continue another chain.
        assert!(!findings(&lines, 6, GENESIS).is_empty());
    }
}
