//! Events and writing: the same varied event for the same number, and the
//! mix of `LogBatch` and `Log` calls that logs them.

use std::ops::Range;

use auditlog_client::{Client, NewEvent, pb};
use serde_json::json;

use crate::segments::{ACTORS, TYPES, WORKFLOWS};

/// Event `i`: a type among eight (about one in eight an `error`), one of 50
/// leads (none for every 11th), one of three workflows or none, an actor, and
/// details with nested values. The same `i` always gives the same event.
pub(crate) fn varied(i: u64) -> NewEvent {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
    let ty = TYPES[(h % 8) as usize];
    let mut event = NewEvent::new(ty).actor(ACTORS[((h >> 3) % 4) as usize]);
    if !i.is_multiple_of(11) {
        event = event.lead(format!("LEAD-{:03}", (h >> 5) % 50));
    }
    if let w @ 1..=3 = (h >> 11) % 4 {
        event = event.workflow(WORKFLOWS[w as usize - 1]);
    }
    let pick = (i % 3) as usize;
    let (error_type, source) = (
        ["Timeout", "RateLimited", "BadGateway"][pick],
        ["webform", "import", "api"][pick],
    );
    let details = if ty == "error" {
        json!({
            "error_type": error_type,
            "error_message": format!("the CRM did not answer call {i}"),
            "traceback": format!("Traceback (most recent call last):\n  File \"sync.py\", line {}", i % 300),
            "attempt": i % 5,
        })
    } else {
        json!({
            "n": i,
            "source": source,
            "nested": {
                "score": (i % 100) as f64 / 10.0,
                "tags": ["auto", format!("t{}", i % 7)],
                "ok": i.is_multiple_of(2),
                "none": null,
                "deeper": {"list": [1, 2, {"k": format!("v{i}")}]},
            },
        })
    };
    event.details(details)
}

/// How `first..first + n` is logged: `LogBatch`es of 50 to 100 events with a
/// single `Log` after every third batch.
pub(crate) fn plan(first: u64, n: u64) -> Vec<Range<u64>> {
    let mut calls = Vec::new();
    let (mut next, mut k) = (first, 0u64);
    while next < first + n {
        let size = if k % 4 == 3 { 1 } else { 50 + (k * 37) % 51 };
        let end = (next + size).min(first + n);
        calls.push(next..end);
        next = end;
        k += 1;
    }
    calls
}

/// Logs the events of `calls` in order, one call at a time.
pub(crate) async fn write(client: &Client, calls: &[Range<u64>]) -> Vec<pb::Receipt> {
    let mut receipts = Vec::new();
    for call in calls {
        if call.end - call.start == 1 {
            receipts.push(client.log(varied(call.start)).await.unwrap());
        } else {
            receipts.extend(client.log_batch(call.clone().map(varied)).await.unwrap());
        }
    }
    let first = calls.first().map_or(0, |c| c.start);
    let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>());
    receipts
}
