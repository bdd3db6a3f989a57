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

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::Store;
use super::error::StoreError;
use super::index::{Filter, Order};
use super::leads;
use super::manifest::{Purged, SegmentEntry};
use super::read::Page;
use super::record::NewEvent;
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

pub(super) async fn apply(store: &Store, max_age: Duration) -> Result<Option<Purge>, StoreError> {
    let cutoff =
        now_micros().saturating_sub(i64::try_from(max_age.as_micros()).unwrap_or(i64::MAX));
    let expired: Vec<SegmentEntry> = {
        let manifest = store
            .shared
            .manifest
            .lock()
            .map_err(|_| StoreError::Closed)?;
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
    let receipt = store
        .append(vec![NewEvent {
            event_type: PURGE_EVENT_TYPE.to_owned(),
            actor: "auditlog".to_owned(),
            caller: None,
            lead_id: None,
            workflow: None,
            details,
            idempotency_key: Some(format!("{PURGE_EVENT_TYPE}.{}", purge.through_seq)),
        }])
        .await?;
    let event_seq = receipt.first().map_or(0, |r| r.seq);
    let shared = Arc::clone(&store.shared);
    let done = purge.clone();
    tokio::task::spawn_blocking(move || remove(&shared, &done))
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

/// Steps 2 to 4.
fn remove(shared: &Shared, purge: &Purge) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Rotate(format!("purge: {e}"));
    let indexes: Vec<String> = {
        let mut manifest = shared.manifest.lock().map_err(|_| StoreError::Closed)?;
        let (gone, kept): (Vec<SegmentEntry>, Vec<SegmentEntry>) = manifest
            .segments
            .drain(..)
            .partition(|s| purge.segments.contains(&s.file));
        manifest.segments = kept;
        manifest.purged = Some(Purged {
            through_seq: purge.through_seq,
            last_signature: purge.last_signature.clone(),
        });
        manifest.store(&shared.dir, &shared.keyring).map_err(io)?;
        gone.into_iter().map(|s| s.index).collect()
    };
    shared
        .index
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .purge_through(purge.through_seq);
    shared
        .segments
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|_, seg| !matches!(&**seg, SegmentFile::Gzip { name, .. } if purge.segments.contains(name)));
    let copies: Vec<String> = purge
        .segments
        .iter()
        .flat_map(|s| <[String; 2]>::from(leads::names(s)))
        .collect();
    for name in purge.segments.iter().chain(&indexes).chain(&copies) {
        match std::fs::remove_file(shared.dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    sync_dir(&shared.dir).map_err(io)
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
    let field = |map: &Map<String, Value>, key: &str| map.get(key).cloned();
    let through = field(&record.details, "through_seq").and_then(|v| v.as_u64());
    let signature =
        field(&record.details, "last_signature").and_then(|v| v.as_str().map(str::to_owned));
    match (through, signature) {
        (Some(t), Some(s)) => Ok(Some((t.saturating_add(1), s))),
        _ => Err(StoreError::Corrupt {
            seq: record.seq,
            reason: "a purge record lacks through_seq or last_signature".into(),
        }),
    }
}
