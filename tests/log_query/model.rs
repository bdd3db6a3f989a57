//! The model the tests check against: what a test logged (`Logged`), the
//! sample events of the filter and page tests, and the shared checks (a
//! field refused as invalid, one unbroken chain).

use std::time::SystemTime;

use auditlog_client::{Client, Error, NewEvent, pb};
use prost_types::Timestamp;
use tonic::Code;

/// `prev` of the first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a test knows about an event it logged, as the server should store it.
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    pub(crate) seq: u64,
    pub(crate) micros: i64,
    pub(crate) event_type: String,
    pub(crate) lead: String,
    pub(crate) workflow: String,
    pub(crate) actor: String,
}

/// A timestamp in microseconds since the epoch.
pub(crate) fn micros(ts: &Option<Timestamp>) -> i64 {
    let ts = ts.as_ref().expect("a timestamp");
    ts.seconds * 1_000_000 + i64::from(ts.nanos / 1000)
}

/// A receipt's timestamp as the `SystemTime` the client's filters take.
pub(crate) fn time_of(receipt: &pb::Receipt) -> SystemTime {
    SystemTime::try_from(receipt.timestamp.unwrap()).unwrap()
}

/// Sample event `i` of the filter tests: four types, two leads and none,
/// two workflows and none, two actors (one of them the default).
pub(crate) fn sample(i: usize) -> NewEvent {
    const TYPES: [&str; 4] = ["lead_ingested", "email_sent", "crm_update", "error"];
    const LEADS: [&str; 3] = ["LEAD-A", "LEAD-B", ""];
    const WORKFLOWS: [&str; 5] = ["sales", "onboarding", "", "sales", ""];
    let actor = if i % 7 < 3 { "mailer" } else { "" };
    NewEvent::new(TYPES[i % 4])
        .lead(LEADS[i % 3])
        .workflow(WORKFLOWS[i % 5])
        .actor(actor)
        .detail("i", i as u64)
}

/// Logs `n` sample events one call at a time (so they get distinct
/// timestamps) and returns their receipts and the model of what was stored.
pub(crate) async fn log_samples(client: &Client, n: usize) -> (Vec<pb::Receipt>, Vec<Logged>) {
    let mut receipts = Vec::new();
    let mut model = Vec::new();
    for i in 0..n {
        let event = sample(i);
        let input = event.clone().into_input().unwrap();
        let receipt = client.log(event).await.unwrap();
        model.push(Logged {
            seq: receipt.seq,
            micros: micros(&receipt.timestamp),
            event_type: input.event_type,
            lead: input.lead_id,
            workflow: input.workflow,
            actor: if input.actor.is_empty() {
                "system".into()
            } else {
                input.actor
            },
        });
        receipts.push(receipt);
    }
    (receipts, model)
}

/// The seqs of the model's events that `matches`, oldest first.
pub(crate) fn expected(model: &[Logged], matches: impl Fn(&Logged) -> bool) -> Vec<u64> {
    model.iter().filter(|e| matches(e)).map(|e| e.seq).collect()
}

pub(crate) fn assert_invalid_argument(err: &Error, field: &str) {
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    let fields: Vec<String> = err.field_violations().into_iter().map(|v| v.0).collect();
    assert_eq!(fields, [field], "{err}");
}

/// Every event's `prev` is the signature of the one before it.
pub(crate) fn assert_chained(events: &[pb::Event]) {
    let mut prev = GENESIS.to_owned();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "gapless seqs");
        assert_eq!(e.prev, prev, "prev of seq {}", e.seq);
        prev.clone_from(&e.signature);
    }
}
