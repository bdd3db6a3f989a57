//! The acknowledged head, kept outside the log: `<data_dir>/head`.
//!
//! Format: one line of JSON, `{"seq":N,"signature":"<64 hex>","cuts":[…],
//! "edited":false,"key_id":"k1","mac":"<64 hex>"}`, signed like the
//! manifest: the MAC is an HMAC-SHA256 under `key_id` of the canonical
//! (compact) form without its closing brace. `seq` and `signature` are those
//! of a record the server acknowledged; `cuts` the ranges of acknowledged
//! seqs that a start found missing from the log; `edited` that a start found
//! this file changed outside the server. The file is only ever replaced
//! whole (`durable`).
//!
//! When it is written: at start, when it is absent, behind the log, or a
//! start found something; then by the head thread, at most once every
//! [`EVERY`], with the newest record the syncer indexed (that is, made
//! durable; it is acknowledged at once), from the seq and signature the
//! syncer keeps in memory (never read back from the log, which may be
//! damaged), and once more at shutdown. Never on the write
//! path: a group commit does not wait for it.
//!
//! What a start does with it: when the log ends before `seq` (its tail was
//! cut, or `audit.log` deleted, while the server was down), the missing
//! range joins `cuts`, the file is rewritten at once, and the writer goes on
//! after `seq`, chained to the last record present, so no acknowledged seq
//! is ever given twice. `cuts` and `edited` are only ever added to, so a
//! finding is reported by every verification after it, across restarts,
//! and no later write of the head heals it.
//!
//! The bound: a cut made while the server is down is detected down to the
//! last head written, so it can hide at most the events acknowledged in the
//! last [`EVERY`] before a crash (none after a clean shutdown), and, if the
//! head file itself is deleted or replaced by an older signed copy, the
//! events after the head that copy holds. Only a receipt kept by the caller
//! (a checkpoint) proves more.
//!
//! To keep that bound, appends are refused while the head cannot be
//! written (`Shared::head_stall`, which `Store::append` and the health of
//! writes read): the thread tries again every [`EVERY`] and lifts the
//! refusal once a write succeeds.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::record::MAX_SEQ;
use super::shared::Shared;
use crate::durable;
use crate::keys::Keyring;

/// The head file's name in the data directory.
pub(crate) const HEAD_FILE: &str = "head";
/// How often at most the head thread replaces the head file.
pub(super) const EVERY: Duration = Duration::from_secs(1);

/// The persisted head.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Head {
    pub seq: u64,
    pub signature: String,
    /// Acknowledged seqs a start found missing from the log, oldest first.
    #[serde(default)]
    pub cuts: Vec<Cut>,
    /// A start found this file changed outside the server.
    #[serde(default)]
    pub edited: bool,
    #[serde(default)]
    pub key_id: String,
}

/// Seqs `first..=last`, acknowledged and then missing at a start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cut {
    pub first: u64,
    pub last: u64,
}

impl Head {
    /// Reads the head file in `dir`: `None` when there is none (or it names
    /// a key this server does not hold); `Err` with a reason when it cannot
    /// be read or does not match its MAC.
    fn load(dir: &Path, keyring: &Keyring) -> Result<Option<Head>, String> {
        let bytes = match std::fs::read(dir.join(HEAD_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot be read ({e})")),
        };
        let mut value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("is not JSON ({e})"))?;
        let mac = value
            .as_object_mut()
            .and_then(|m| m.remove("mac"))
            .and_then(|m| m.as_str().and_then(|m| hex::decode(m).ok()))
            .ok_or("has no mac")?;
        let head: Head =
            serde_json::from_value(value).map_err(|e| format!("is not a head ({e})"))?;
        let Some(key) = keyring.get(&head.key_id) else {
            // Signed with a key this server does not hold (`hmac_key_id`
            // changed): no evidence either way, like no head at all; the
            // records say the same as UNKNOWN_KEY.
            tracing::warn!(
                key_id = %head.key_id,
                "{HEAD_FILE} is signed with a key this server does not hold; starting a new one"
            );
            return Ok(None);
        };
        if !key.verify(&head.content(), &mac) || head.seq > MAX_SEQ {
            return Err("does not match its MAC".into());
        }
        Ok(Some(head))
    }

    /// The canonical bytes the MAC covers: the compact JSON without its
    /// closing brace.
    fn content(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.pop();
        bytes
    }

    /// Replaces the head file in `dir`, signed with the active key.
    fn store(&mut self, dir: &Path, keyring: &Keyring) -> std::io::Result<()> {
        let (key_id, key) = keyring.active();
        key_id.clone_into(&mut self.key_id);
        let mut bytes = self.content();
        let mac = hex::encode(key.sign(&bytes));
        bytes.extend_from_slice(format!(",\"mac\":\"{mac}\"}}\n").as_bytes());
        durable::replace(&dir.join(HEAD_FILE), &bytes)
    }
}

/// The last seq the head file in `dir` says was acknowledged; 0 when there
/// is none or it cannot be trusted (no evidence either way).
pub(super) fn acknowledged(dir: &Path, keyring: &Keyring) -> u64 {
    Head::load(dir, keyring).ok().flatten().map_or(0, |h| h.seq)
}

/// Whether the head file in `dir` says that every seq before `seq` was cut
/// (acknowledged, then found missing by a start): a log whose first record
/// is `seq` then began there for a reason the head records. False when
/// there is no head, or none to trust.
pub(super) fn cut_before(dir: &Path, keyring: &Keyring, seq: u64) -> bool {
    let Ok(Some(head)) = Head::load(dir, keyring) else {
        return false;
    };
    let mut cuts = head.cuts;
    cuts.sort_by_key(|c| c.first);
    // The seqs 1..=covered all lie in cuts.
    let mut covered = 0u64;
    for cut in cuts {
        if cut.first > covered.saturating_add(1) {
            break;
        }
        covered = covered.max(cut.last);
    }
    covered.saturating_add(1) >= seq
}

/// Compares the head file with the log recovery found, whose newest record
/// is `last` (seq and signature): records a cut or an edited file, rewrites
/// the file when it is absent, behind or has news, and returns the head the
/// store goes on from.
///
/// A cluster node's `replica` records no cut: the records its log lost are
/// in the stream, which the follower takes in again from the first one
/// missing (`cluster/follower.rs`), byte for byte and checked as any
/// applied group. The head keeps the seq it had, so until they are back
/// verification reports them missing (`verify/findings.rs`) and reads wait for
/// them; if the stream no longer holds them, the follower stops and says
/// to seed the node.
pub(super) fn at_start(
    dir: &Path,
    keyring: &Keyring,
    last: Option<(u64, String)>,
    replica: bool,
) -> std::io::Result<Head> {
    let end = last.as_ref().map_or(0, |l| l.0);
    let (mut head, mut dirty) = match Head::load(dir, keyring) {
        Ok(Some(head)) => (head, false),
        Ok(None) => (Head::default(), true),
        Err(reason) => {
            tracing::error!(
                "{HEAD_FILE} {reason}: it was changed outside the server, so a cut of the log's \
                 tail cannot be ruled out; VerifyIntegrity reports it"
            );
            let head = Head {
                edited: true,
                ..Head::default()
            };
            (head, true)
        }
    };
    if replica && end < head.seq {
        tracing::error!(
            first = end + 1,
            last = head.seq,
            "the log ends at seq {end} but this replica had applied records up to seq {}: they \
             were cut while the server was down, or under it; they are taken in again from the \
             stream",
            head.seq
        );
    } else if end < head.seq {
        let cut = Cut {
            first: end + 1,
            last: head.seq,
        };
        tracing::error!(
            first = cut.first,
            last = cut.last,
            "the log ends at seq {end} but the server acknowledged events up to seq {}: they were \
             cut while the server was down, or under it; VerifyIntegrity reports it, and new \
             events go on after seq {}",
            head.seq,
            head.seq
        );
        // A cut already known at this head (a restart without writes since)
        // only grows.
        match head.cuts.last_mut() {
            Some(known) if known.last == cut.last => known.first = known.first.min(cut.first),
            _ => head.cuts.push(cut),
        }
        dirty = true;
    } else if let Some((seq, signature)) = last
        && seq > head.seq
    {
        head.seq = seq;
        head.signature = signature;
        dirty = true;
    }
    if dirty {
        head.store(dir, keyring)?;
    }
    Ok(head)
}

/// The head thread: every [`EVERY`] at most, the newest durable record
/// (which the syncer notes once a group's `fdatasync` succeeded, as it
/// indexes it) becomes the head if it is past the one written; once `wake`
/// is closed (shutdown, after the syncer has published its last group), a
/// last write, then it returns.
///
/// It takes that record's seq and signature from memory
/// (`Shared::durable_head`), neither reading the record back from the log
/// nor subscribing to the published groups:
/// - a read fails once the log is damaged under the server (`audit.log`
///   truncated, say), and the head then stayed where it was: the next start
///   found nothing missing, called the log clean and gave the cut seqs to
///   new events (found by probing the server, 2026-12-05);
/// - a subscriber that looks once a second keeps every group of that second
///   alive in the hub's ring (each record with its `details`), so a second
///   of ingest stayed on the heap and was freed in one burst on this
///   thread, which cost the batch path as much CPU as the HMAC chain
///   (profile in docs/benchmarks.md).
pub(super) fn run(shared: &Shared, wake: &Receiver<()>) {
    // What the file holds already (`at_start` wrote it). A start that found
    // a cut holds a head past the last record present: it is only ever
    // replaced by a later seq.
    let mut written = shared.head.lock().unwrap_or_else(|e| e.into_inner()).seq;
    let mut failing = false;
    loop {
        let stopping = matches!(
            wake.recv_timeout(EVERY),
            Err(RecvTimeoutError::Disconnected)
        );
        let newest = shared
            .durable_head
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // While failing, the same head is tried again each tick: appends
        // are refused meanwhile, so no newer one comes.
        let stored = match newest {
            Some(newest) if newest.seq > written || failing => {
                let mut head = shared.head.lock().unwrap_or_else(|e| e.into_inner());
                head.seq = newest.seq;
                head.signature = newest.signature.into_string();
                head.store(&shared.dir, &shared.keyring)
                    .map(|()| written = newest.seq)
                    .map_err(|e| (e.to_string(), super::error::is_disk_full(&e)))
            }
            _ => Ok(()),
        };
        match stored {
            Ok(()) if failing => {
                failing = false;
                shared.head_stalled.store(false, Ordering::Release);
                tracing::info!("{HEAD_FILE} is written again: appends are taken again");
            }
            Ok(()) => {}
            // One line per run of failures; the next tick retries.
            Err(e) => {
                if let Ok(mut reason) = shared.head_unwritten.lock() {
                    reason.clone_from(&e);
                }
                let e = e.0;
                shared.head_stalled.store(true, Ordering::Release);
                if !failing {
                    failing = true;
                    tracing::error!(error = %e, "cannot write {HEAD_FILE}: appends are refused until it can be written again (retried every second)");
                }
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keyring {
        Keyring::new("k1", vec![3; 32])
    }

    #[test]
    fn a_cut_is_recorded_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys();
        let head = at_start(dir.path(), &k, Some((10, "s10".into())), false).unwrap();
        assert_eq!((head.seq, head.cuts.len()), (10, 0));
        // The tail was cut to seq 7 while the server was down.
        let head = at_start(dir.path(), &k, Some((7, "s7".into())), false).unwrap();
        assert_eq!(head.cuts, vec![Cut { first: 8, last: 10 }]);
        // Restarted again without writes, then cut further.
        let head = at_start(dir.path(), &k, Some((7, "s7".into())), false).unwrap();
        assert_eq!(head.cuts, vec![Cut { first: 8, last: 10 }]);
        let head = at_start(dir.path(), &k, Some((5, "s5".into())), false).unwrap();
        assert_eq!(head.cuts, vec![Cut { first: 6, last: 10 }]);
        // Writes went on after seq 10: the cut stays.
        let head = at_start(dir.path(), &k, Some((12, "s12".into())), false).unwrap();
        assert_eq!((head.seq, head.cuts.len()), (12, 1));
    }

    #[test]
    fn a_replica_records_no_cut_and_keeps_its_head_until_the_records_are_back() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys();
        at_start(dir.path(), &k, Some((10, "s10".into())), true).unwrap();
        // Cut to seq 7 while down: the head stays at 10, with no cut.
        let head = at_start(dir.path(), &k, Some((7, "s7".into())), true).unwrap();
        assert_eq!((head.seq, head.signature.as_str()), (10, "s10"));
        assert!(head.cuts.is_empty());
        let head = at_start(dir.path(), &k, Some((7, "s7".into())), true).unwrap();
        assert_eq!((head.seq, head.cuts.len()), (10, 0));
        // Taken in again from the stream, and past.
        let head = at_start(dir.path(), &k, Some((12, "s12".into())), true).unwrap();
        assert_eq!((head.seq, head.cuts.len()), (12, 0));
    }

    #[test]
    fn an_edited_head_is_noted_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys();
        at_start(dir.path(), &k, Some((10, "s10".into())), false).unwrap();
        let path = dir.path().join(HEAD_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"seq\":10", "\"seq\":3")).unwrap();
        let head = at_start(dir.path(), &k, Some((10, "s10".into())), false).unwrap();
        assert!(head.edited);
        assert!(
            at_start(dir.path(), &k, Some((10, "s10".into())), false)
                .unwrap()
                .edited
        );
    }

    /// A published group is freed as soon as the subscribers that exist have
    /// read it: the head thread holds no subscription of its own (which kept
    /// up to a second of groups alive), and still writes the newest head.
    #[tokio::test]
    async fn groups_are_not_held_for_the_head_and_the_head_follows() {
        use crate::store::{NewEvent, Store, StoreConfig};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::for_test(dir.path(), true), keys()).unwrap();
        let mut groups = store.subscribe();
        let events = (0..10)
            .map(|i| NewEvent::for_test(Some(format!("L{i}")), serde_json::json!({})))
            .collect();
        store.append(events).await.unwrap();
        let group = groups.recv().await.unwrap();
        let last = group
            .last()
            .map(|r| (r.seq, r.signature.to_string()))
            .unwrap();
        let weak = std::sync::Arc::downgrade(&group);
        drop(group);
        assert!(
            weak.upgrade().is_none(),
            "a group every subscriber has read is still held"
        );
        store.shutdown();
        let head = Head::load(dir.path(), &keys()).unwrap().unwrap();
        assert_eq!((head.seq, head.signature), last);
    }
}
