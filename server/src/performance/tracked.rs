//! Durations callers report, as `performance` events in the log: checking
//! them, recording them once written, and reading them back for a time
//! range.
//!
//! An event's duration is `details.duration_ms`, or, when that is absent,
//! `details.duration` in seconds: the field the Python logger this service
//! replaces wrote. Both are read the same way when an event is written and
//! when the windows are rebuilt from the log, so events a migrated service
//! logged before (or still logs) count as soon as they are read.

use super::{EVENT_TYPE, OperationStats, Performance, Source, summarize};
use crate::store::{Filter, NewEvent, Order, Receipt, Record, Store};

/// The longest operation name.
const MAX_OPERATION_LEN: usize = 128;

/// The operation and duration a `performance` event carries.
pub(crate) fn measurement(record: &Record) -> Option<(String, f64)> {
    if record.event_type != EVENT_TYPE {
        return None;
    }
    let details = record.details.to_map();
    let op = details.get("operation")?.as_str()?;
    let ms = duration_ms(&details)?;
    // A name longer than TrackPerformance accepts is no operation: kept, it
    // would hold up to 64 KiB a window.
    let named = !op.is_empty() && op.len() <= MAX_OPERATION_LEN;
    (ms.is_finite() && ms >= 0.0 && named).then(|| (op.to_owned(), ms))
}

/// The duration `details` give, in milliseconds: `duration_ms`, or else
/// `duration` in seconds (the old logger's field).
fn duration_ms(details: &serde_json::Map<String, serde_json::Value>) -> Option<f64> {
    match details.get("duration_ms") {
        Some(ms) => ms.as_f64(),
        None => details.get("duration")?.as_f64().map(|s| s * 1000.0),
    }
}

/// Figures per tracked operation from the `performance` events of a time
/// range (every one of them, not a window), sorted by operation.
pub(crate) fn stats_from_log(
    store: &Store,
    operation: Option<&str>,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<OperationStats>, crate::store::StoreError> {
    let filter = Filter {
        event_types: vec![EVENT_TYPE.to_owned()],
        since,
        until,
        ..Filter::default()
    };
    let mut samples: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let page = |records: Vec<Record>| {
        for (op, ms) in records.iter().filter_map(measurement) {
            if operation.is_none_or(|o| o == op) {
                samples.entry(op.to_owned()).or_default().push(ms);
            }
        }
        std::ops::ControlFlow::Continue(())
    };
    store.scan(&filter, Order::OldestFirst, None, u64::MAX, page)?;
    Ok(samples
        .into_iter()
        .filter_map(|(operation, mut v)| {
            summarize(&mut v).map(|summary| OperationStats {
                operation,
                source: Source::Tracked,
                summary,
            })
        })
        .collect())
}

/// The longest duration TrackPerformance accepts: a day.
const MAX_DURATION_MS: f64 = 86_400_000.0;

/// An operation name: 1 to 128 of letters, digits and `_ . : / -`.
pub(crate) fn check_operation(op: &str) -> Result<(), String> {
    if op.is_empty() {
        return Err("is required, e.g. crm.create_record".into());
    }
    if op.len() > MAX_OPERATION_LEN {
        return Err(format!(
            "is {} characters; at most {MAX_OPERATION_LEN}",
            op.len()
        ));
    }
    if let Some(c) = op
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-')))
    {
        return Err(format!(
            "{op:?} contains {c:?}; use letters, digits and _ . : / -"
        ));
    }
    Ok(())
}

/// A duration TrackPerformance accepts: 0 to a day, in milliseconds.
pub(crate) fn check_duration(ms: f64) -> Result<(), String> {
    if ms.is_finite() && (0.0..=MAX_DURATION_MS).contains(&ms) {
        Ok(())
    } else {
        Err(format!(
            "is {ms}; it must be a number of milliseconds from 0 to 86400000 (a day)"
        ))
    }
}

/// What the `performance` events of a group about to be appended measure,
/// one entry per event; recorded only once the group is written, and not
/// for an event that was a duplicate of one already counted.
pub(crate) struct Measurements(Vec<Option<(String, f64)>>);

impl Measurements {
    pub(crate) fn of(events: &[NewEvent]) -> Measurements {
        if !events.iter().any(|e| e.event_type == EVENT_TYPE) {
            return Measurements(Vec::new());
        }
        Measurements(events.iter().map(Self::measurement_of).collect())
    }

    /// Records what the written events measure.
    pub(crate) fn written(self, performance: &Performance, receipts: &[Receipt]) {
        for (m, r) in self.0.into_iter().zip(receipts) {
            if let (Some((op, ms)), false) = (m, r.duplicate) {
                performance.record(Source::Tracked, &op, ms);
            }
        }
    }

    fn measurement_of(event: &NewEvent) -> Option<(String, f64)> {
        if event.event_type != EVENT_TYPE {
            return None;
        }
        let details = event.details.to_map();
        let op = details.get("operation")?.as_str()?;
        let ms = duration_ms(&details)?;
        (ms.is_finite() && ms >= 0.0 && check_operation(op).is_ok()).then(|| (op.to_owned(), ms))
    }
}
