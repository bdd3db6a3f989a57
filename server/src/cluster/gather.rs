//! The leader's group commit: appends that arrive while a publish is in
//! flight wait in a [`Queue`]; the next publish takes every caller waiting
//! (whole callers, up to [`MAX_GROUP_EVENTS`]) as one signed group, one
//! timestamp for all of it.
//!
//! Per event, not per call, as the single-node writer does
//! (`store/writer/mod.rs`): an event whose idempotency key is already
//! written (in the replica's index, among the keys published in this term,
//! or earlier in this same group) is answered with the original receipt,
//! marked duplicate, and not signed again; a key repeated inside one
//! caller's batch is signed once and its repeats get that receipt. Only the
//! new events are signed, each caller's as one batch (its first record
//! says how many), so a group can be cut into messages between callers and
//! a replica takes every batch whole.
//!
//! A caller whose new events take more than one message
//! ([`super::leader::MAX_MESSAGE`]) is refused alone and nothing of it is
//! signed: a batch split over two messages would be half in the stream if
//! the second publish failed, and a replica refuses a message that ends
//! inside a batch.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::ClusterError;
use super::leader::MAX_MESSAGE;
use crate::store::{Name, NewEvent, Receipt, Signer, StoreError};

/// The most events one group takes (it always takes at least one caller,
/// whose batch is never split).
pub(super) const MAX_GROUP_EVENTS: usize = 8 * 1024;

/// Where a caller's answer goes.
pub(super) type Reply = oneshot::Sender<Result<Vec<Receipt>, ClusterError>>;

/// One caller waiting for the next publish.
pub(super) struct Waiting {
    pub(super) events: Vec<NewEvent>,
    pub(super) reply: Reply,
}

/// The callers waiting for the next publish, and whether a round of
/// publishes is running to take them.
#[derive(Default)]
pub(crate) struct Queue(Mutex<Pending>);

#[derive(Default)]
struct Pending {
    waiting: VecDeque<Waiting>,
    /// A round is running: it takes what is queued before it ends.
    running: bool,
}

/// A signed group ready to publish, and who waits for it.
pub(super) struct Group {
    /// The new records' lines, each ending in `\n`.
    pub(super) lines: Vec<u8>,
    /// Where each caller's batch ends in `lines` (where a message may end).
    pub(super) batch_ends: Vec<usize>,
    /// The seqs of the first and last new record; `None` when every event
    /// of the group was already written.
    pub(super) seqs: Option<(u64, u64)>,
    /// The keys first written by this group, with their receipts.
    pub(super) new_keys: HashMap<Name, Receipt>,
    /// Each caller and its receipts, in the order of its events.
    pub(super) answers: Vec<(Reply, Vec<Receipt>)>,
}

/// Where one event's receipt comes from.
enum Slot {
    /// Already written: the original receipt, marked duplicate.
    Known(Receipt),
    /// The `n`th new event of this caller.
    New(usize),
    /// The same key as the caller's event at this position.
    Repeat(usize),
}

impl Queue {
    /// Queues `waiting`; `true` when no round is running, so the caller
    /// must start one.
    pub(super) fn push(&self, waiting: Waiting) -> bool {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        pending.waiting.push_back(waiting);
        !std::mem::replace(&mut pending.running, true)
    }

    /// The next group's callers: whole callers in arrival order, at least
    /// one, no more than [`MAX_GROUP_EVENTS`] events unless the first
    /// alone has more. `None` when nobody waits, which ends the round (the
    /// next push starts another).
    pub(super) fn take(&self) -> Option<Vec<Waiting>> {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut group = Vec::new();
        let mut events = 0;
        while let Some(next) = pending.waiting.front() {
            if !group.is_empty() && events + next.events.len() > MAX_GROUP_EVENTS {
                break;
            }
            events += next.events.len();
            group.extend(pending.waiting.pop_front());
        }
        if group.is_empty() {
            pending.running = false;
            return None;
        }
        Some(group)
    }
}

/// Sorts each caller's events into known and new (see the module doc) and
/// signs the new ones, one batch per caller at one timestamp. `known` looks
/// a key up in the replica's index and among the keys published in this
/// term. A caller whose lookup fails or whose batch is too large for a
/// message is answered at once and left out.
pub(super) fn gather(
    signer: &mut Signer,
    callers: Vec<Waiting>,
    known: impl Fn(&str) -> Result<Option<Receipt>, StoreError>,
) -> Group {
    let timestamp = signer.stamp();
    let mut group = Group {
        lines: Vec::new(),
        batch_ends: Vec::with_capacity(callers.len()),
        seqs: None,
        new_keys: HashMap::new(),
        answers: Vec::with_capacity(callers.len()),
    };
    'callers: for Waiting { events, reply } in callers {
        let mut slots = Vec::with_capacity(events.len());
        let mut fresh = Vec::new();
        let mut keys_here: HashMap<&str, usize> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            let Some(key) = event.idempotency_key.as_deref() else {
                slots.push(Slot::New(fresh.len()));
                fresh.push(i);
                continue;
            };
            if let Some(&first) = keys_here.get(key) {
                slots.push(Slot::Repeat(first));
                continue;
            }
            let found = match group.new_keys.get(key) {
                Some(r) => Some(r.clone()),
                None => match known(key) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = reply.send(Err(ClusterError::Store(e)));
                        continue 'callers;
                    }
                },
            };
            match found {
                Some(receipt) => slots.push(Slot::Known(Receipt {
                    duplicate: true,
                    ..receipt
                })),
                None => {
                    keys_here.insert(key, i);
                    slots.push(Slot::New(fresh.len()));
                    fresh.push(i);
                }
            }
        }
        let mut events: Vec<Option<NewEvent>> = events.into_iter().map(Some).collect();
        let new_events: Vec<NewEvent> = fresh.iter().filter_map(|&i| events[i].take()).collect();
        let keys: Vec<Option<Name>> = new_events
            .iter()
            .map(|e| e.idempotency_key.clone())
            .collect();
        let mark = signer.mark();
        let (lines, signed) = signer.sign_batch(new_events, timestamp);
        if lines.len() > MAX_MESSAGE {
            signer.reset(mark);
            let _ = reply.send(Err(ClusterError::TooLarge(format!(
                "the batch's new events take {} bytes signed; in cluster mode a batch must \
                 fit one NATS message ({MAX_MESSAGE} bytes): split it into smaller batches",
                lines.len()
            ))));
            continue;
        }
        for (key, receipt) in keys.into_iter().zip(&signed) {
            if let Some(key) = key {
                group.new_keys.insert(key, receipt.clone());
            }
        }
        if let (Some(first), Some(last)) = (signed.first(), signed.last()) {
            let from = group.seqs.map_or(first.seq, |(from, _)| from);
            group.seqs = Some((from, last.seq));
        }
        group.lines.extend_from_slice(&lines);
        group.batch_ends.push(group.lines.len());
        let mut receipts: Vec<Receipt> = Vec::with_capacity(slots.len());
        for slot in slots {
            let receipt = match slot {
                Slot::Known(r) => r,
                Slot::New(n) => signed[n].clone(),
                Slot::Repeat(i) => Receipt {
                    duplicate: true,
                    ..receipts[i].clone()
                },
            };
            receipts.push(receipt);
        }
        group.answers.push((reply, receipts));
    }
    group
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keyring;

    fn event(key: Option<&str>, detail: usize) -> NewEvent {
        NewEvent {
            idempotency_key: key.map(Name::from),
            ..NewEvent::for_test(None, serde_json::json!({"pad": "x".repeat(detail)}))
        }
    }

    fn waiting(
        events: Vec<NewEvent>,
    ) -> (
        Waiting,
        oneshot::Receiver<Result<Vec<Receipt>, ClusterError>>,
    ) {
        let (reply, answer) = oneshot::channel();
        (Waiting { events, reply }, answer)
    }

    fn receipt(seq: u64) -> Receipt {
        Receipt {
            seq,
            id: format!("id-{seq}").into(),
            timestamp: 1,
            signature: format!("sig-{seq}").into(),
            duplicate: false,
        }
    }

    /// Callers in one group: a key repeated in one batch, a key another
    /// caller of the group wrote first, a key already written before, an
    /// unkeyed event; and a caller too large for a message, refused alone.
    #[test]
    fn a_gathered_group_signs_each_new_key_once_and_refuses_only_an_oversized_caller() {
        let mut signer = Signer::after(&Keyring::new("k1", vec![7; 32]), None);
        let (a, _) = waiting(vec![
            event(Some("a"), 0),
            event(None, 0),
            event(Some("a"), 0),
        ]);
        let (huge, huge_answer) = waiting(
            (0..20)
                .map(|i| event(Some(&format!("h{i}")), 60_000))
                .collect(),
        );
        let (b, _) = waiting(vec![
            event(Some("old"), 0),
            event(Some("a"), 0),
            event(Some("b"), 0),
        ]);
        let group = gather(&mut signer, vec![a, huge, b], |key| {
            Ok((key == "old").then(|| receipt(41)))
        });
        let got: Vec<Vec<(u64, bool)>> = group
            .answers
            .iter()
            .map(|(_, r)| r.iter().map(|r| (r.seq, r.duplicate)).collect())
            .collect();
        assert_eq!(
            got,
            [
                vec![(1, false), (2, false), (1, true)],
                vec![(41, true), (1, true), (3, false)],
            ]
        );
        assert_eq!(group.seqs, Some((1, 3)));
        assert_eq!(
            group.lines.iter().filter(|&&b| b == b'\n').count(),
            3,
            "only the new events are signed"
        );
        assert_eq!(group.batch_ends.len(), 2);
        assert_eq!(group.batch_ends[1], group.lines.len());
        let mut keys: Vec<&str> = group.new_keys.keys().map(Name::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["a", "b"], "the refused caller's keys are not taken");
        assert!(matches!(
            huge_answer.blocking_recv(),
            Ok(Err(ClusterError::TooLarge(_)))
        ));
        // The chain goes on after the last record kept.
        assert_eq!(signer.next_seq(), 4);
    }

    #[test]
    fn a_queue_gives_whole_callers_up_to_the_cap_and_ends_its_round_when_empty() {
        let queue = Queue::default();
        let (first, _) = waiting((0..MAX_GROUP_EVENTS - 1).map(|_| event(None, 0)).collect());
        assert!(queue.push(first), "the first push starts a round");
        for _ in 0..3 {
            let (w, _) = waiting(vec![event(None, 0), event(None, 0)]);
            assert!(!queue.push(w), "a round is running");
        }
        assert_eq!(queue.take().map(|g| g.len()), Some(1));
        assert_eq!(queue.take().map(|g| g.len()), Some(3));
        assert!(queue.take().is_none());
        let (w, _) = waiting(vec![event(None, 0)]);
        assert!(queue.push(w), "the round ended: the next push starts one");
    }
}
