//! Invalid input is refused with INVALID_ARGUMENT, naming the offending
//! field in a `google.rpc.BadRequest` violation and in the status message;
//! a refused call writes nothing; values at the limits are accepted; and the
//! server keeps serving after every refusal. `details_json` (details as JSON
//! text) is refused unless it is one JSON object within the limits
//! `details` has, and never beside `details`.
//!
//! The cases are tables of raw requests (built with the client's `NewEvent`
//! where it can express them, by hand where it cannot, e.g. a missing event or
//! a NaN) sent through `client.raw()`. Each table test checks every case and
//! reports all the ones that failed at once.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use auditlog_client::{Client, Error, NewEvent, pb};
use common::TestServer;
use futures::StreamExt as _;
use prost_types::value::Kind;
use prost_types::{Timestamp, Value};
use serde_json::json;
use tonic::Code;

/// One request to any RPC that validates its input.
enum Call {
    Log(pb::LogRequest),
    Batch(pb::LogBatchRequest),
    Query(pb::QueryRequest),
    Stream(pb::StreamEventsRequest),
}

/// Sends `call`; the number of events it wrote, or the error.
async fn send(client: &Client, call: Call) -> Result<usize, Error> {
    let mut raw = client.raw();
    match call {
        Call::Log(r) => raw.log(r).await.map(|_| 1),
        Call::Batch(r) => raw
            .log_batch(r)
            .await
            .map(|r| r.into_inner().receipts.len()),
        Call::Query(r) => raw.query(r).await.map(|_| 0),
        Call::Stream(r) => match raw.stream_events(r).await {
            // Drain it, so an error sent as the first item counts too.
            Ok(s) => match s.into_inner().next().await {
                Some(Err(status)) => Err(status),
                _ => Ok(0),
            },
            Err(status) => Err(status),
        },
    }
    .map_err(Error::from)
}

/// A valid event to start a case from.
fn valid() -> NewEvent {
    NewEvent::lead_ingested("LEAD-1", "webform")
        .workflow("sales")
        .actor("tests")
}

fn input(event: NewEvent) -> pb::EventInput {
    event.into_input().unwrap()
}

fn log(event: NewEvent) -> Call {
    log_input(input(event))
}

fn log_input(event: pb::EventInput) -> Call {
    Call::Log(pb::LogRequest {
        event: Some(event),
        with_proof: false,
    })
}

fn batch(events: impl IntoIterator<Item = NewEvent>) -> Call {
    Call::Batch(pb::LogBatchRequest {
        events: events.into_iter().map(input).collect(),
        with_proof: false,
    })
}

/// `n` valid events in one batch, with the event at each of `bad` replaced by
/// `bad_event`.
fn batch_with(n: usize, bad: &[usize], bad_event: impl Fn() -> NewEvent) -> Call {
    batch((0..n).map(|i| {
        if bad.contains(&i) {
            bad_event()
        } else {
            valid()
        }
    }))
}

fn query(limit: u32, filter: pb::EventFilter, page_token: &str) -> Call {
    Call::Query(pb::QueryRequest {
        filter: Some(filter),
        limit,
        oldest_first: false,
        page_token: page_token.into(),
        ..Default::default()
    })
}

fn stream(filter: pb::EventFilter) -> Call {
    Call::Stream(pb::StreamEventsRequest {
        filter: Some(filter),
        from_seq: 1,
        ..Default::default()
    })
}

/// A filter on the time range `[since, until)`, in seconds.
fn range(since: i64, until: i64) -> pb::EventFilter {
    pb::EventFilter {
        since: Some(Timestamp {
            seconds: since,
            nanos: 0,
        }),
        until: Some(Timestamp {
            seconds: until,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// `{"pad": "xxx…"}` taking exactly `bytes` bytes as JSON.
fn details_of_size(bytes: usize) -> serde_json::Value {
    let overhead = r#"{"pad":""}"#.len();
    json!({ "pad": "x".repeat(bytes - overhead) })
}

/// A valid event whose details hold `value` at `metrics.score`.
fn with_number(value: f64) -> pb::EventInput {
    let mut event = input(valid());
    let mut metrics = prost_types::Struct::default();
    metrics.fields.insert(
        "score".into(),
        Value {
            kind: Some(Kind::NumberValue(value)),
        },
    );
    event
        .details
        .get_or_insert_with(Default::default)
        .fields
        .insert(
            "metrics".into(),
            Value {
                kind: Some(Kind::StructValue(metrics)),
            },
        );
    event
}

/// A valid event with `text` as its `details_json` (and no `details`).
fn with_json(text: &str) -> pb::EventInput {
    pb::EventInput {
        details: None,
        details_json: text.to_owned(),
        ..input(valid())
    }
}

/// `text` nested in `levels` lists: `[[…text…]]`.
fn nested(levels: usize, text: &str) -> String {
    format!("{}{text}{}", "[".repeat(levels), "]".repeat(levels))
}

/// The head of the log.
async fn head(client: &Client) -> u64 {
    client.stats(None).await.unwrap().head_seq
}

/// Whether violation `field` names `want`: it is `want`, or a part of it
/// (`event.details.metrics.score` names `event.details`).
fn names(field: &str, want: &str) -> bool {
    field == want
        || field
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Sends `call` and checks that it is refused with INVALID_ARGUMENT, with
/// exactly one field violation naming each of `fields`, each also named in
/// the message, and that nothing was written. Err describes what differed.
async fn check_invalid(client: &Client, call: Call, fields: &[&str]) -> Result<(), String> {
    let before = head(client).await;
    let outcome = send(client, call).await;
    let after = head(client).await;
    if after != before {
        return Err(format!("the head moved from {before} to {after}"));
    }
    let err = match outcome {
        Ok(_) => return Err("accepted".into()),
        Err(e) => e,
    };
    if err.code() != Some(Code::InvalidArgument) {
        return Err(format!("answered {err}"));
    }
    let got: Vec<String> = err.field_violations().into_iter().map(|v| v.0).collect();
    let matched = got.len() == fields.len()
        && fields
            .iter()
            .all(|want| got.iter().filter(|f| names(f, want)).count() == 1);
    if !matched {
        return Err(format!("violations {got:?}, expected {fields:?}"));
    }
    let message = err.to_string();
    if let Some(missing) = fields.iter().find(|f| !message.contains(*f)) {
        return Err(format!("the message {message:?} does not name {missing}"));
    }
    Ok(())
}

/// Runs every case through [`check_invalid`]; fails listing every case that
/// did not hold, then checks the server still serves.
async fn check_all_invalid(client: &Client, cases: Vec<(&str, Call, &[&str])>) {
    let mut failures = Vec::new();
    for (name, call, fields) in cases {
        if let Err(why) = check_invalid(client, call, fields).await {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert_still_serving(client).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A valid call after the refusals is served and written.
async fn assert_still_serving(client: &Client) {
    let before = head(client).await;
    let receipt = client.log(valid()).await.unwrap();
    assert_eq!(receipt.seq, before + 1);
    let page = client
        .query(auditlog_client::Query::new().limit(1))
        .await
        .unwrap();
    assert_eq!(page.events[0].seq, receipt.seq);
}

#[tokio::test]
async fn invalid_events_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log(valid()).await.unwrap();
    let long = "x".repeat(257);
    let cases: Vec<(&str, Call, &[&str])> = vec![
        (
            "no event",
            Call::Log(pb::LogRequest {
                event: None,
                with_proof: false,
            }),
            &["event"],
        ),
        (
            "empty event_type",
            log(NewEvent::new("")),
            &["event.event_type"],
        ),
        (
            "uppercase event_type",
            log(NewEvent::new("Lead_ingested")),
            &["event.event_type"],
        ),
        (
            "event_type starting with a digit",
            log(NewEvent::new("1st_contact")),
            &["event.event_type"],
        ),
        (
            "event_type starting with _",
            log(NewEvent::new("_private")),
            &["event.event_type"],
        ),
        (
            "event_type with a dash",
            log(NewEvent::new("lead-ingested")),
            &["event.event_type"],
        ),
        (
            "event_type with a space",
            log(NewEvent::new("lead ingested")),
            &["event.event_type"],
        ),
        (
            "event_type with a non-ASCII letter",
            log(NewEvent::new("lead_é")),
            &["event.event_type"],
        ),
        (
            "event_type of 65 characters",
            log(NewEvent::new("a".repeat(65))),
            &["event.event_type"],
        ),
        (
            "actor of 257 characters",
            log(valid().actor(&long)),
            &["event.actor"],
        ),
        (
            "lead_id of 257 characters",
            log(valid().lead(&long)),
            &["event.lead_id"],
        ),
        (
            "workflow of 257 characters",
            log(valid().workflow(&long)),
            &["event.workflow"],
        ),
        (
            "idempotency_key of 257 characters",
            log(valid().idempotency_key(&long)),
            &["event.idempotency_key"],
        ),
        (
            "details one byte over 64 KiB",
            log(valid().details(details_of_size(64 * 1024 + 1))),
            &["event.details"],
        ),
        (
            "details holding NaN",
            log_input(with_number(f64::NAN)),
            &["event.details"],
        ),
        (
            "details holding infinity",
            log_input(with_number(f64::NEG_INFINITY)),
            &["event.details"],
        ),
        (
            "several bad fields in one event",
            log(NewEvent::new("Bad").actor(&long).workflow(&long)),
            &["event.event_type", "event.actor", "event.workflow"],
        ),
    ];
    check_all_invalid(&client, cases).await;
}

#[tokio::test]
async fn details_json_that_is_not_a_json_object_is_refused_naming_it() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log(valid()).await.unwrap();
    let both = pb::EventInput {
        details_json: r#"{"a":1}"#.into(),
        ..input(valid())
    };
    let too_big = serde_json::to_string(&details_of_size(64 * 1024 + 1)).unwrap();
    // The top object is the first level of 33.
    let too_deep = format!("{{\"a\":{}}}", nested(33, "1"));
    // Far deeper than any stack would take, were levels read by recursion
    // before being counted.
    let abyss = format!("{{\"a\":{}}}", nested(100_000, "1"));
    let field: &[&str] = &["event.details_json"];
    let mut cases: Vec<(&str, Call, &[&str])> = [
        ("not JSON", "{\"a\":"),
        ("an object and more", "{} {}"),
        ("a list", "[1,2]"),
        ("a string", "\"text\""),
        ("null", "null"),
        ("a number", "3"),
        ("a number JSON cannot hold as a double", r#"{"n":1e400}"#),
        ("a lone surrogate", r#"{"s":"\ud800"}"#),
        ("nested 34 levels", &too_deep),
        ("nested 100,001 levels", &abyss),
        ("one byte over 64 KiB stored", &too_big),
    ]
    .into_iter()
    .map(|(name, text)| (name, log_input(with_json(text)), field))
    .collect();
    cases.push(("beside details", log_input(both), field));
    cases.push((
        "in a batch, naming the event",
        Call::Batch(pb::LogBatchRequest {
            events: vec![input(valid()), with_json("[]")],
            with_proof: false,
        }),
        &["events[1].details_json"],
    ));
    check_all_invalid(&client, cases).await;
}

#[tokio::test]
async fn invalid_batches_are_refused_naming_each_bad_event() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log(valid()).await.unwrap();
    let bad_type = || NewEvent::new("Bad-Type");
    let cases: Vec<(&str, Call, &[&str])> = vec![
        ("an empty batch", batch([]), &["events"]),
        (
            "a batch of 1,001 events",
            batch_with(1001, &[], valid),
            &["events"],
        ),
        (
            "one bad event",
            batch_with(5, &[3], bad_type),
            &["events[3].event_type"],
        ),
        (
            "bad events at several indexes",
            batch_with(10, &[0, 4, 9], bad_type),
            &[
                "events[0].event_type",
                "events[4].event_type",
                "events[9].event_type",
            ],
        ),
        (
            "different faults in different events",
            batch([
                valid(),
                valid().lead("L".repeat(257)),
                valid(),
                valid().details(details_of_size(64 * 1024 + 1)),
            ]),
            &["events[1].lead_id", "events[3].details"],
        ),
    ];
    check_all_invalid(&client, cases).await;
}

#[tokio::test]
async fn invalid_queries_and_streams_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log(valid()).await.unwrap();
    let any = pb::EventFilter::default;
    let bad_nanos = pb::EventFilter {
        since: Some(Timestamp {
            seconds: 0,
            nanos: -1,
        }),
        ..Default::default()
    };
    let cases: Vec<(&str, Call, &[&str])> = vec![
        ("limit 1,001", query(1001, any(), ""), &["limit"]),
        (
            "since equal to until",
            query(0, range(1_000, 1_000), ""),
            &["filter.until"],
        ),
        (
            "since after until",
            query(0, range(2_000, 1_000), ""),
            &["filter.until"],
        ),
        (
            "since with negative nanos",
            query(0, bad_nanos.clone(), ""),
            &["filter.since"],
        ),
        (
            "a page_token the server never issued",
            query(10, any(), "not-a-token"),
            &["page_token"],
        ),
        (
            "a stream with since after until",
            stream(range(2_000, 1_000)),
            &["filter.until"],
        ),
        (
            "a stream with negative nanos",
            stream(bad_nanos),
            &["filter.since"],
        ),
    ];
    check_all_invalid(&client, cases).await;
}

#[tokio::test]
async fn values_at_the_limits_are_accepted() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // 256 two-byte characters: the limit counts characters, not bytes.
    let longest = "é".repeat(256);
    let cases: Vec<(&str, Call, usize)> = vec![
        (
            "event_type of 64 characters",
            log(NewEvent::new("a".repeat(64))),
            1,
        ),
        (
            "event_type with digits and underscores",
            log(NewEvent::new("a1_b2__c3")),
            1,
        ),
        (
            "actor, lead, workflow and key of 256 characters",
            log(valid()
                .actor(&longest)
                .lead(&longest)
                .workflow(&longest)
                .idempotency_key(&longest)),
            1,
        ),
        (
            "details of exactly 64 KiB",
            log(valid().details(details_of_size(64 * 1024))),
            1,
        ),
        (
            "details_json of exactly 64 KiB stored, with spaces around",
            log_input(with_json(&format!(
                "  {}\n",
                serde_json::to_string(&details_of_size(64 * 1024)).unwrap()
            ))),
            1,
        ),
        (
            "details_json nested 33 levels",
            log_input(with_json(&format!("{{\"a\":{}}}", nested(32, "1")))),
            1,
        ),
        ("a batch of 1,000", batch_with(1000, &[], valid), 1000),
        ("a batch of one", batch([valid()]), 1),
        (
            "limit 1,000",
            query(1000, pb::EventFilter::default(), ""),
            0,
        ),
        ("a time range of one second", query(0, range(1, 2), ""), 0),
    ];
    let mut failures = Vec::new();
    for (name, call, writes) in cases {
        let before = head(&client).await;
        match send(&client, call).await {
            Ok(n) if n == writes && head(&client).await == before + writes as u64 => {}
            Ok(n) => failures.push(format!("{name}: wrote {n}, expected {writes}")),
            Err(e) => failures.push(format!("{name}: refused: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let stored = client
        .query(auditlog_client::Query::new().actor(&longest))
        .await
        .unwrap();
    assert_eq!(stored.events.len(), 1);
    assert_eq!(stored.events[0].lead_id, longest);
}
