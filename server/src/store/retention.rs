//! Retention: deleting compressed segments whose newest event is older than
//! the retention period, in a way verification can tell from tampering.
//!
//! A purge always takes the oldest segments, contiguously, and goes:
//!
//! 1. **Log it.** An event of type `auditlog.purge` (a type no caller can
//!    write: callers' types are lower_snake_case, without dots) names the
//!    segments, their seq range, and the signature of the last record
//!    purged. It is signed and chained like every event, and written with an
//!    idempotency key derived from the range, so a purge redone after a
//!    crash is logged once.
//! 2. **Manifest.** The segments leave the manifest, which records the purge.
//! 3. **Index.** The purged records leave the in-memory index.
//! 4. **Delete** the `.gz` and `.idx` files, and the segment's lead copy.
//!
//! Verification starts after the newest purge event: at `through_seq + 1`,
//! whose `prev` must be `last_signature`.
//!
//! **A replica (cluster mode)** never decides a purge: the leader does, as
//! above, and publishes the purge event through the stream like any group.
//! Segment boundaries are each node's own (sealing by age runs on each
//! node's clock), so a replica applying a purge event acts on its seq range,
//! not on the leader's file names ([`settle`]): it deletes its sealed
//! segments that end at or before `through_seq`, forgets every record up to
//! `through_seq` from its index, and records in its manifest the end of the
//! last segment it deleted. A segment of its own that straddles
//! `through_seq` stays on disk, unserved, until a later purge covers it
//! whole; verification then starts at the manifest's point, before the
//! event's, so those records are still checked. `settle` is idempotent and
//! runs after every applied group holding a purge event and at start, so a
//! crash between the event and the deletes is finished later.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::Store;
use super::error::StoreError;
use super::index::{Filter, Order};
use super::leads;
use super::manifest::{Purged, SegmentEntry};
use super::read::Page;
use super::record::{GENESIS, NewEvent};
use super::segment::SegmentFile;
use super::shared::Shared;
use crate::clock::now_micros;
use crate::durable::sync_dir;

/// The event type of a purge record.
pub(crate) const PURGE_EVENT_TYPE: &str = "auditlog.purge";

/// What a purge removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    pub segments: Vec<String>,
    pub first_seq: u64,
    pub through_seq: u64,
    pub last_signature: String,
    /// The seq of the purge event in the log.
    pub event_seq: u64,
}

/// The purge retention calls for now, and the event that logs it: the
/// oldest sealed segments whose newest event is older than `max_age`, or
/// `None`.
pub(super) fn due(
    shared: &Shared,
    max_age: Duration,
) -> Result<Option<(Purge, NewEvent)>, StoreError> {
    let cutoff =
        now_micros().saturating_sub(i64::try_from(max_age.as_micros()).unwrap_or(i64::MAX));
    let expired: Vec<SegmentEntry> = {
        let manifest = shared.manifest.lock().map_err(|_| StoreError::Closed)?;
        manifest
            .segments
            .iter()
            .take_while(|s| s.last_micros().is_some_and(|t| t < cutoff))
            .cloned()
            .collect()
    };
    let (Some(first), Some(last)) = (expired.first(), expired.last()) else {
        return Ok(None);
    };
    let names: Vec<String> = expired.iter().map(|s| s.file.clone()).collect();
    let purge = Purge {
        segments: names.clone(),
        first_seq: first.first_seq,
        through_seq: last.last_seq,
        last_signature: last.last_signature.clone(),
        event_seq: 0,
    };
    let Value::Object(details) = json!({
        "segments": names,
        "first_seq": purge.first_seq,
        "through_seq": purge.through_seq,
        "last_signature": purge.last_signature,
        "events": expired.iter().map(|s| s.events).sum::<u64>(),
        "retention_secs": max_age.as_secs(),
    }) else {
        unreachable!("json! of an object literal is an object")
    };
    let event = NewEvent {
        event_type: PURGE_EVENT_TYPE.into(),
        actor: "auditlog".into(),
        caller: None,
        lead_id: None,
        workflow: None,
        details: details.into(),
        idempotency_key: Some(format!("{PURGE_EVENT_TYPE}.{}", purge.through_seq).into()),
    };
    Ok(Some((purge, event)))
}

pub(super) async fn apply(store: &Store, max_age: Duration) -> Result<Option<Purge>, StoreError> {
    let Some((purge, event)) = due(&store.shared, max_age)? else {
        return Ok(None);
    };
    let receipt = store.append(vec![event]).await?;
    let event_seq = receipt.first().map_or(0, |r| r.seq);
    let shared = Arc::clone(&store.shared);
    let done = purge.clone();
    tokio::task::spawn_blocking(move || {
        let cut = Purged {
            through_seq: done.through_seq,
            last_signature: done.last_signature.clone(),
        };
        remove(&shared, &done.segments, Some(cut), done.through_seq)
    })
    .await
    .map_err(|e| StoreError::Rotate(format!("purge task failed: {e}")))??;
    tracing::info!(
        segments = purge.segments.len(),
        through_seq = purge.through_seq,
        event_seq,
        "retention purged old segments"
    );
    Ok(Some(Purge { event_seq, ..purge }))
}

impl Store {
    /// The purge retention calls for now and the event that logs it, for
    /// a cluster leader to publish (see the module doc); `None` when
    /// nothing is old enough. Blocking (reads the manifest).
    pub(crate) fn retention_due(
        &self,
        max_age: Duration,
    ) -> Result<Option<(Purge, NewEvent)>, StoreError> {
        due(&self.shared, max_age)
    }

    /// The seq the newest purge event in the log purged through, `None`
    /// if nothing was ever purged. Blocking (reads that event).
    pub(crate) fn purged_through(&self) -> Result<Option<u64>, StoreError> {
        Ok(purge_point(&self.shared)?.map(|(start, _)| start - 1))
    }
}

/// Whether a group of record lines may hold a purge event: then the
/// replica settles after applying it.
pub(super) fn may_hold_purge(lines: &[u8]) -> bool {
    let needle = format!("\"{PURGE_EVENT_TYPE}\"");
    lines.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Steps 2 to 4: `segments` leave the manifest (which records `cut`, when
/// it is later than the one there), the index forgets every record up to
/// `hide_through`, and the files go.
fn remove(
    shared: &Shared,
    segments: &[String],
    cut: Option<Purged>,
    hide_through: u64,
) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Rotate(format!("purge: {e}"));
    let indexes: Vec<String> = {
        let mut manifest = shared.manifest.lock().map_err(|_| StoreError::Closed)?;
        let (gone, kept): (Vec<SegmentEntry>, Vec<SegmentEntry>) = manifest
            .segments
            .drain(..)
            .partition(|s| segments.contains(&s.file));
        manifest.segments = kept;
        let before = manifest.purged.as_ref().map_or(0, |p| p.through_seq);
        if let Some(cut) = cut.filter(|c| c.through_seq > before) {
            manifest.purged = Some(cut);
        }
        manifest.store(&shared.dir, &shared.keyring).map_err(io)?;
        gone.into_iter().map(|s| s.index).collect()
    };
    shared
        .index
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .purge_through(hide_through);
    shared
        .segments
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .retain(
            |_, seg| !matches!(&**seg, SegmentFile::Gzip { name, .. } if segments.contains(name)),
        );
    let copies: Vec<String> = segments
        .iter()
        .flat_map(|s| <[String; 2]>::from(leads::names(s)))
        .collect();
    for name in segments.iter().chain(&indexes).chain(&copies) {
        match std::fs::remove_file(shared.dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    sync_dir(&shared.dir).map_err(io)
}

/// A replica's side of the newest purge event in its log (see the module
/// doc): its own sealed segments ending at or before the event's
/// `through_seq` deleted, every record up to it forgotten by the index.
/// Returns the seq the event purged through, `None` without one. Nothing to
/// do is cheap: one indexed lookup.
pub(super) fn settle(shared: &Shared) -> Result<Option<u64>, StoreError> {
    let Some((start, _)) = purge_point(shared)? else {
        return Ok(None);
    };
    let through = start - 1;
    let (segments, cut): (Vec<String>, Option<Purged>) = {
        let manifest = shared.manifest.lock().map_err(|_| StoreError::Closed)?;
        let gone: Vec<&SegmentEntry> = manifest
            .segments
            .iter()
            .take_while(|s| s.last_seq <= through)
            .collect();
        let cut = gone.last().map(|s| Purged {
            through_seq: s.last_seq,
            last_signature: s.last_signature.clone(),
        });
        (gone.iter().map(|s| s.file.clone()).collect(), cut)
    };
    let indexed_first = shared.index().first().map(|m| m.seq);
    if segments.is_empty() && indexed_first.is_none_or(|f| f > through) {
        return Ok(Some(through));
    }
    remove(shared, &segments, cut, through)?;
    tracing::info!(
        segments = segments.len(),
        through_seq = through,
        "applied the leader's retention purge to this replica"
    );
    Ok(Some(through))
}

/// Where verification starts: the newest purge event's point, or the
/// manifest's when that is earlier (a replica keeping a segment that
/// straddles the event's `through_seq`, or a purge whose deletes a crash
/// interrupted): everything from there on is still on disk and checked.
pub(super) fn verify_start(shared: &Shared) -> Result<Option<(u64, String)>, StoreError> {
    let Some((start, signature)) = purge_point(shared)? else {
        return Ok(None);
    };
    let kept = shared
        .manifest
        .lock()
        .map_err(|_| StoreError::Closed)?
        .purged
        .clone()
        .map_or((1, GENESIS.to_owned()), |p| {
            (p.through_seq.saturating_add(1), p.last_signature)
        });
    Ok(Some(if kept.0 < start {
        kept
    } else {
        (start, signature)
    }))
}

/// Where the log now starts: `(through_seq + 1, last_signature)` of the
/// newest purge event, or `None` if nothing was ever purged.
pub(super) fn purge_point(shared: &Shared) -> Result<Option<(u64, String)>, StoreError> {
    let filter = Filter {
        event_types: vec![PURGE_EVENT_TYPE.to_owned()],
        ..Filter::default()
    };
    let newest: Page = shared.page(&filter, Order::NewestFirst, None, u64::MAX, 1)?;
    let Some(record) = newest.records.into_iter().next() else {
        return Ok(None);
    };
    let details = record.details.to_map();
    let through = details.get("through_seq").and_then(Value::as_u64);
    let signature = details
        .get("last_signature")
        .and_then(|v| v.as_str().map(str::to_owned));
    match (through, signature) {
        (Some(t), Some(s)) => Ok(Some((t.saturating_add(1), s))),
        _ => Err(StoreError::Corrupt {
            seq: record.seq,
            reason: "a purge record lacks through_seq or last_signature".into(),
        }),
    }
}
