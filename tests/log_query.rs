//! Writing and reading the log through the real client: `Log`, `LogBatch`,
//! `Query` (filters, order, pages), `GetStats`, and idempotency keys.
//!
//! Filter tests log a varied sample one event at a time and keep a model of
//! what they logged; each query must return exactly the model's matching
//! seqs, in the requested order. Every page-token, batch and idempotency
//! test checks what was written (head, totals, the chain), not only what the
//! call answered.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use auditlog_client::{Client, Error, NewEvent, Query, pb};
use common::{TestServer, seqs, wait_until};
use prost_types::Timestamp;
use tonic::Code;

/// `prev` of the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a test knows about an event it logged, as the server should store it.
#[derive(Debug, Clone)]
struct Logged {
    seq: u64,
    micros: i64,
    event_type: String,
    lead: String,
    workflow: String,
    actor: String,
}

/// A timestamp in microseconds since the epoch.
fn micros(ts: &Option<Timestamp>) -> i64 {
    let ts = ts.as_ref().expect("a timestamp");
    ts.seconds * 1_000_000 + i64::from(ts.nanos / 1000)
}

/// A receipt's timestamp as the `SystemTime` the client's filters take.
fn time_of(receipt: &pb::Receipt) -> SystemTime {
    SystemTime::try_from(receipt.timestamp.unwrap()).unwrap()
}

/// Sample event `i` of the filter tests: four types, two leads and none,
/// two workflows and none, two actors (one of them the default).
fn sample(i: usize) -> NewEvent {
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
async fn log_samples(client: &Client, n: usize) -> (Vec<pb::Receipt>, Vec<Logged>) {
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
fn expected(model: &[Logged], matches: impl Fn(&Logged) -> bool) -> Vec<u64> {
    model.iter().filter(|e| matches(e)).map(|e| e.seq).collect()
}

/// Reads `query` page by page, checking the token rules: every page but the
/// last is full and has a token, the last has none. Returns the pages' seqs.
async fn pages(client: &Client, mut query: Query) -> Vec<Vec<u64>> {
    let limit = query.request.limit as usize;
    let mut out = Vec::new();
    loop {
        let page = client.query(query.clone()).await.unwrap();
        assert!(page.events.len() <= limit, "page longer than the limit");
        let done = page.next_page_token.is_empty();
        if !done {
            assert_eq!(page.events.len(), limit, "a page before the last is short");
        }
        out.push(seqs(&page.events));
        if done {
            return out;
        }
        query = query.page_token(page.next_page_token);
    }
}

fn assert_invalid_argument(err: &Error, field: &str) {
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    let fields: Vec<String> = err.field_violations().into_iter().map(|v| v.0).collect();
    assert_eq!(fields, [field], "{err}");
}

#[tokio::test]
async fn filters_select_exactly_the_matching_events_in_both_orders() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let (receipts, model) = log_samples(&client, 30).await;
    let (t10, t20) = (&receipts[10], &receipts[20]);
    let (m10, m20) = (micros(&t10.timestamp), micros(&t20.timestamp));

    type Case = (&'static str, Query, Box<dyn Fn(&Logged) -> bool>);
    let cases: Vec<Case> = vec![
        ("no filter", Query::new(), Box::new(|_| true)),
        (
            "lead",
            Query::new().lead("LEAD-A"),
            Box::new(|e| e.lead == "LEAD-A"),
        ),
        (
            "one type",
            Query::new().event_type("error"),
            Box::new(|e| e.event_type == "error"),
        ),
        (
            "several types",
            Query::new().event_type("error").event_type("email_sent"),
            Box::new(|e| e.event_type == "error" || e.event_type == "email_sent"),
        ),
        (
            "a known and an unknown type",
            Query::new().event_type("error").event_type("never_logged"),
            Box::new(|e| e.event_type == "error"),
        ),
        (
            "workflow",
            Query::new().workflow("sales"),
            Box::new(|e| e.workflow == "sales"),
        ),
        (
            "actor",
            Query::new().actor("mailer"),
            Box::new(|e| e.actor == "mailer"),
        ),
        (
            "default actor",
            Query::new().actor("system"),
            Box::new(|e| e.actor == "system"),
        ),
        (
            "since (inclusive)",
            Query::new().since(time_of(t10)),
            Box::new(move |e| e.micros >= m10),
        ),
        (
            "until (exclusive)",
            Query::new().until(time_of(t20)),
            Box::new(move |e| e.micros < m20),
        ),
        (
            "since and until",
            Query::new().since(time_of(t10)).until(time_of(t20)),
            Box::new(move |e| e.micros >= m10 && e.micros < m20),
        ),
        (
            "lead, type and workflow",
            Query::new()
                .lead("LEAD-B")
                .event_type("email_sent")
                .workflow("sales"),
            Box::new(|e| {
                e.lead == "LEAD-B" && e.event_type == "email_sent" && e.workflow == "sales"
            }),
        ),
        (
            "actor, several types and a time range",
            Query::new()
                .actor("system")
                .event_type("crm_update")
                .event_type("lead_ingested")
                .since(time_of(t10)),
            Box::new(move |e| {
                e.actor == "system"
                    && (e.event_type == "crm_update" || e.event_type == "lead_ingested")
                    && e.micros >= m10
            }),
        ),
        (
            "unknown lead",
            Query::new().lead("nobody"),
            Box::new(|_| false),
        ),
        (
            "unknown workflow",
            Query::new().workflow("nowhere"),
            Box::new(|_| false),
        ),
    ];
    for (name, query, matches) in cases {
        let want = expected(&model, matches);
        // Only the unknown values may match nothing, and no filter but the
        // empty one everything; otherwise the case would prove little.
        assert_eq!(want.is_empty(), name.starts_with("unknown"), "{name}");
        assert_eq!(want.len() == model.len(), name == "no filter", "{name}");
        let oldest = client
            .query_all(query.clone().oldest_first())
            .await
            .unwrap();
        assert_eq!(seqs(&oldest), want, "{name}, oldest first");
        let newest = client.query_all(query).await.unwrap();
        let mut want_newest = want.clone();
        want_newest.reverse();
        assert_eq!(
            seqs(&newest),
            want_newest,
            "{name}, newest first (the default)"
        );
    }
    // The range ends are the receipts' own events: since takes it, until not.
    let range = client
        .query_all(Query::new().since(time_of(t10)).until(time_of(t20)))
        .await
        .unwrap();
    assert!(seqs(&range).contains(&t10.seq));
    assert!(!seqs(&range).contains(&t20.seq));
}

#[tokio::test]
async fn pages_visit_every_match_once_in_order() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let (_, model) = log_samples(&client, 30).await;
    let all = expected(&model, |_| true);
    let lead_a = expected(&model, |e| e.lead == "LEAD-A");
    let reversed = |v: &[u64]| v.iter().rev().copied().collect::<Vec<_>>();

    let cases = [
        ("newest first by 7", Query::new().limit(7), reversed(&all)),
        (
            "oldest first by 7",
            Query::new().limit(7).oldest_first(),
            all.clone(),
        ),
        (
            "a multiple of the limit",
            Query::new().limit(10).oldest_first(),
            all.clone(),
        ),
        ("a page of one", Query::new().limit(1), reversed(&all)),
        (
            "one lead by 3",
            Query::new().lead("LEAD-A").limit(3).oldest_first(),
            lead_a.clone(),
        ),
        (
            "one lead newest first by 4",
            Query::new().lead("LEAD-A").limit(4),
            reversed(&lead_a),
        ),
        (
            "everything on one page",
            Query::new().limit(1000),
            reversed(&all),
        ),
    ];
    for (name, query, want) in cases {
        let limit = query.request.limit as usize;
        let got = pages(&client, query).await;
        assert_eq!(got.concat(), want, "{name}");
        assert_eq!(
            got.len(),
            want.len().div_ceil(limit).max(1),
            "{name}: page count"
        );
    }
}

#[tokio::test]
async fn limit_zero_means_a_page_of_one_hundred() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .log_batch((0..150).map(|i| NewEvent::new("email_sent").detail("i", i)))
        .await
        .unwrap();
    let page = client.query(Query::new()).await.unwrap();
    assert_eq!(page.events.len(), 100);
    assert_eq!(page.events[0].seq, 150);
    assert!(!page.next_page_token.is_empty());
    let rest = client
        .query(Query::new().page_token(page.next_page_token))
        .await
        .unwrap();
    assert_eq!(seqs(&rest.events), (1..=50).rev().collect::<Vec<_>>());
    assert!(rest.next_page_token.is_empty());
}

#[tokio::test]
async fn a_page_token_only_continues_its_own_query() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_samples(&client, 30).await;
    let first = client.query(Query::new().limit(5)).await.unwrap();
    let token = first.next_page_token;
    assert!(!token.is_empty());

    let misuses = [
        ("another filter", Query::new().lead("LEAD-A").limit(5)),
        (
            "another type filter",
            Query::new().event_type("error").limit(5),
        ),
        ("the other order", Query::new().limit(5).oldest_first()),
    ];
    for (name, query) in misuses {
        let err = client.query(query.page_token(&token)).await.unwrap_err();
        assert_invalid_argument(&err, "page_token");
        assert!(err.to_string().contains("page_token"), "{name}: {err}");
    }
    for garbage in [
        "garbage",
        "p1",
        "p1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        &token[..token.len() - 1],
    ] {
        let err = client
            .query(Query::new().limit(5).page_token(garbage))
            .await
            .unwrap_err();
        assert_invalid_argument(&err, "page_token");
    }
    // The same filter and order may continue with another page size.
    let next = client
        .query(Query::new().limit(10).page_token(&token))
        .await
        .unwrap();
    assert_eq!(seqs(&next.events), (16..=25).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn lead_history_is_the_whole_timeline_oldest_first_across_pages() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // Four batches of 500; three events in four are LEAD-BIG's: 1,500 in all.
    let mut want = Vec::new();
    for batch in 0..4u64 {
        let events = (0..500u64).map(|i| {
            let n = batch * 500 + i;
            let lead = if n % 4 == 3 { "LEAD-OTHER" } else { "LEAD-BIG" };
            NewEvent::crm_update(lead, "hubspot", &n.to_string(), &["stage"]).detail("n", n)
        });
        let receipts = client.log_batch(events).await.unwrap();
        want.extend(
            receipts
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 4 != 3)
                .map(|(_, r)| r.seq),
        );
    }
    let history = client.lead_history("LEAD-BIG").await.unwrap();
    assert_eq!(history.len(), 1500);
    assert_eq!(seqs(&history), want);
    assert!(history.iter().all(|e| e.lead_id == "LEAD-BIG"));
    let other = client.lead_history("LEAD-OTHER").await.unwrap();
    assert_eq!(other.len(), 500);
    assert!(client.lead_history("LEAD-NONE").await.unwrap().is_empty());
    // An empty id would be no filter at all: every event, not a history.
    for empty in ["", "  "] {
        let e = client.lead_history(empty).await.unwrap_err();
        assert!(
            matches!(e, auditlog_client::Error::EmptyLeadId),
            "{empty:?}: {e}"
        );
    }
}

/// The most bytes a gRPC client receives in one message by default (tonic,
/// grpc-go, grpc-python, grpc-java alike).
const CLIENT_RECEIVE_LIMIT: usize = 4 * 1024 * 1024;

/// An event of type `big` with about 60 KiB of details: 100 of them are
/// some 6 MB, past what a client receives in one message by default.
fn big_event(lead: &str, i: u64) -> NewEvent {
    NewEvent::new("big")
        .lead(lead)
        .detail("i", i)
        .detail("blob", "x".repeat(60 * 1024))
}

/// Logs `n` [`big_event`]s of `lead`, ten a call (a batch of 600 KB, under
/// the server's own receive limit), with a small event of another lead
/// after each call; returns the big events' seqs, oldest first.
async fn log_big(client: &Client, lead: &str, n: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    for start in (0..n).step_by(10) {
        let receipts = client
            .log_batch((start..n.min(start + 10)).map(|i| big_event(lead, i)))
            .await
            .unwrap();
        seqs.extend(receipts.iter().map(|r| r.seq));
        client
            .log(NewEvent::new("small").lead("LEAD-SMALL"))
            .await
            .unwrap();
    }
    seqs
}

/// Reads `query` page by page, as a client that follows `next_page_token`
/// does, checking that each page fits a client's default receive limit, is
/// never empty, and is at most `limit` long. Returns the pages' seqs.
async fn capped_pages(client: &Client, mut query: Query) -> Vec<Vec<u64>> {
    use prost::Message as _;
    let limit = query.request.limit as usize;
    let mut out = Vec::new();
    loop {
        let page = client.query(query.clone()).await.unwrap();
        let size = page.encoded_len();
        assert!(size < CLIENT_RECEIVE_LIMIT, "a page of {size} bytes");
        assert!(!page.events.is_empty(), "an empty page");
        assert!(page.events.len() <= limit, "page longer than the limit");
        out.push(seqs(&page.events));
        if page.next_page_token.is_empty() {
            return out;
        }
        assert!(out.len() <= 100, "paging does not end");
        query = query.page_token(page.next_page_token);
    }
}

/// Events too large for `limit` of them to fit one message: the server ends
/// the page early, under a client's receive limit, with a token that
/// continues right after its last event, so paging returns every event once,
/// in order, in both orders.
#[tokio::test]
async fn a_page_of_large_events_stops_short_and_its_token_continues_it() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let logged = log_big(&client, "BIG", 100).await;
    let newest_first: Vec<u64> = logged.iter().rev().copied().collect();
    for (name, query, want) in [
        (
            "newest first",
            Query::new().event_type("big").limit(100),
            newest_first.clone(),
        ),
        (
            "oldest first",
            Query::new().event_type("big").limit(100).oldest_first(),
            logged.clone(),
        ),
        (
            "every type, newest first (the small events too)",
            Query::new().limit(1000),
            (1..=110).rev().collect::<Vec<u64>>(),
        ),
    ] {
        let pages = capped_pages(&client, query).await;
        assert!(pages.len() >= 2, "{name}: one page of {}", pages[0].len());
        assert!(pages[0].len() < 100, "{name}: a first page of 100");
        assert_eq!(pages.concat(), want, "{name}");
    }
    // The client's helper that follows tokens gets them all.
    let all = client
        .query_all(Query::new().event_type("big").limit(100))
        .await
        .unwrap();
    assert_eq!(seqs(&all), newest_first);
}

/// The same for a lead's history, read from sealed segments' lead copies
/// (a small `max_file_size_mb` seals a segment every few events) and from
/// the active file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_history_of_large_events_pages_under_the_limit_through_lead_copies() {
    let server = TestServer::start_with(|c| c.max_file_size_mb = 0.25).await;
    let client = server.client().await;
    let mut logged = log_big(&client, "BIG", 90).await;
    client.rotate(true).await.unwrap();
    let dir = server.data_dir.clone();
    wait_until("every sealed segment compressed", || {
        let dir = dir.clone();
        async move {
            let plain = common::plain_sealed(&dir);
            if plain.is_empty() {
                Ok(())
            } else {
                Err(format!("{plain:?}"))
            }
        }
    })
    .await;
    let lead_copies = common::files(&dir)
        .iter()
        .filter(|f| f.ends_with(".leads.zst"))
        .count();
    assert!(lead_copies >= 10, "{lead_copies} lead copies");
    // The last ten in the active file.
    let receipts = client
        .log_batch((90..100).map(|i| big_event("BIG", i)))
        .await
        .unwrap();
    logged.extend(receipts.iter().map(|r| r.seq));

    let reversed: Vec<u64> = logged.iter().rev().copied().collect();
    for (name, query, want) in [
        (
            "oldest first",
            Query::new().lead("BIG").limit(100).oldest_first(),
            logged.clone(),
        ),
        (
            "newest first",
            Query::new().lead("BIG").limit(100),
            reversed,
        ),
    ] {
        let pages = capped_pages(&client, query).await;
        assert!(pages.len() >= 2, "{name}: one page of {}", pages[0].len());
        assert_eq!(pages.concat(), want, "{name}");
    }
    let history = client.lead_history("BIG").await.unwrap();
    assert_eq!(seqs(&history), logged);
    assert!(history.iter().all(|e| e.lead_id == "BIG"));
}

#[tokio::test]
async fn actor_defaults_to_system_and_absent_fields_stay_empty() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log(NewEvent::new("workflow_started")).await.unwrap();
    // A raw request without details at all.
    let raw = pb::LogRequest {
        event: Some(pb::EventInput {
            event_type: "workflow_stopped".into(),
            ..Default::default()
        }),
        with_proof: false,
    };
    client.raw().log(raw).await.unwrap();
    let events = client.query_all(Query::new().oldest_first()).await.unwrap();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e.actor, "system", "seq {}", e.seq);
        assert_eq!((e.lead_id.as_str(), e.workflow.as_str()), ("", ""));
        assert_eq!(e.idempotency_key, "");
        assert!(e.details.as_ref().is_none_or(|d| d.fields.is_empty()));
        assert_eq!(e.id.len(), 36, "a UUID: {}", e.id);
        assert_eq!(e.key_id, "k1");
    }
    let explicit = client
        .log(
            NewEvent::new("email_sent")
                .actor("mailer")
                .lead("L1")
                .workflow("sales"),
        )
        .await
        .unwrap();
    let e = &client.query(Query::new().limit(1)).await.unwrap().events[0];
    assert_eq!(e.seq, explicit.seq);
    assert_eq!(
        (e.actor.as_str(), e.lead_id.as_str(), e.workflow.as_str()),
        ("mailer", "L1", "sales")
    );
}

#[tokio::test]
async fn a_batch_with_one_invalid_event_writes_nothing() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_samples(&client, 2).await;
    let before = client.stats(None).await.unwrap();
    let head = client.verify().await.unwrap();

    let events = (0..6).map(|i| {
        if i == 3 {
            NewEvent::new("Not-Snake-Case")
        } else {
            sample(i)
        }
    });
    let err = client.log_batch(events).await.unwrap_err();
    assert_invalid_argument(&err, "events[3].event_type");

    let after = client.stats(None).await.unwrap();
    assert_eq!((after.total_events, after.head_seq), (2, 2));
    assert_eq!(after, before);
    let verified = client.verify().await.unwrap();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(
        (verified.head_seq, &verified.head_signature),
        (head.head_seq, &head.head_signature)
    );
    // The next write continues the log where it was.
    assert_eq!(client.log(sample(0)).await.unwrap().seq, 3);
}

#[tokio::test]
async fn a_batch_gets_consecutive_seqs_in_order_and_matches_what_is_stored() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_samples(&client, 2).await;
    let inputs: Vec<NewEvent> = (0..10).map(sample).collect();
    let receipts = client.log_batch(inputs.clone()).await.unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (3..=12).collect::<Vec<_>>()
    );
    assert!(
        receipts
            .iter()
            .all(|r| !r.duplicate && r.signature.len() == 64)
    );
    let ids: HashSet<&str> = receipts.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 10, "ids are unique");
    assert!(
        receipts
            .windows(2)
            .all(|w| micros(&w[0].timestamp) <= micros(&w[1].timestamp))
    );

    let stored = client.query_all(Query::new().oldest_first()).await.unwrap();
    assert_eq!(seqs(&stored), (1..=12).collect::<Vec<_>>());
    for ((receipt, event), input) in receipts.iter().zip(&stored[2..]).zip(inputs) {
        let input = input.into_input().unwrap();
        assert_eq!(
            (
                receipt.seq,
                &receipt.id,
                &receipt.timestamp,
                &receipt.signature
            ),
            (event.seq, &event.id, &event.timestamp, &event.signature)
        );
        assert_eq!(
            (&event.event_type, &event.lead_id),
            (&input.event_type, &input.lead_id)
        );
    }
    assert_chained(&stored);
}

/// Every event's `prev` is the signature of the one before it.
fn assert_chained(events: &[pb::Event]) {
    let mut prev = GENESIS.to_owned();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "gapless seqs");
        assert_eq!(e.prev, prev, "prev of seq {}", e.seq);
        prev.clone_from(&e.signature);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_gapless_unique_seqs_and_one_chain() {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 500;
    let server = TestServer::start().await;
    let mut writers = Vec::new();
    for task in 0..TASKS {
        let client = server.client().await;
        writers.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for i in 0..PER_TASK {
                let event = NewEvent::new("email_sent")
                    .lead(format!("LEAD-{task}"))
                    .detail("i", i);
                receipts.push(client.log(event).await.unwrap());
            }
            receipts
        }));
    }
    let mut receipts = Vec::new();
    for w in writers {
        receipts.extend(w.await.unwrap());
    }
    let total = TASKS * PER_TASK;
    let mut got: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    got.sort_unstable();
    assert_eq!(got, (1..=total).collect::<Vec<_>>(), "no gap, no duplicate");

    let client = server.client().await;
    assert_eq!(client.stats(None).await.unwrap().total_events, total);
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, total);

    let stored = client
        .query_all(Query::new().oldest_first().limit(1000))
        .await
        .unwrap();
    assert_chained(&stored);
    let signatures: HashMap<u64, &str> = receipts
        .iter()
        .map(|r| (r.seq, r.signature.as_str()))
        .collect();
    assert!(stored.iter().all(|e| signatures[&e.seq] == e.signature));
    // Each writer's events are in the order it wrote them.
    for task in 0..TASKS {
        let history = client.lead_history(&format!("LEAD-{task}")).await.unwrap();
        let order: Vec<f64> = history
            .iter()
            .map(|e| match e.details.as_ref().unwrap().fields["i"].kind {
                Some(prost_types::value::Kind::NumberValue(n)) => n,
                ref other => panic!("detail i is {other:?}"),
            })
            .collect();
        assert_eq!(order, (0..PER_TASK).map(|i| i as f64).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_original_receipt() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let event = NewEvent::email_sent("LEAD-1", "a@example.com", "Hi").idempotency_key("mail-1");
    let first = client.log(event.clone()).await.unwrap();
    assert!(!first.duplicate);
    let again = client.log(event).await.unwrap();
    assert_eq!(
        again,
        pb::Receipt {
            duplicate: true,
            ..first.clone()
        }
    );
    // A different event under the same key is answered the same way.
    let other = client
        .log(NewEvent::new("error").idempotency_key("mail-1"))
        .await
        .unwrap();
    assert_eq!(other, again);

    let stats = client.stats(None).await.unwrap();
    assert_eq!((stats.total_events, stats.head_seq), (1, 1));
    let stored = client.query_all(Query::new()).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (
            stored[0].event_type.as_str(),
            stored[0].idempotency_key.as_str()
        ),
        ("email_sent", "mail-1")
    );
    // Another key is another event.
    assert_eq!(
        client
            .log(NewEvent::new("error").idempotency_key("mail-2"))
            .await
            .unwrap()
            .seq,
        2
    );
}

/// An event carrying idempotency key `key`, told apart by detail `i`.
fn keyed(key: &str, i: u64) -> NewEvent {
    NewEvent::new("crm_update")
        .detail("i", i)
        .idempotency_key(key)
}

#[tokio::test]
async fn a_key_repeated_inside_one_batch_is_written_once() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let receipts = client
        .log_batch([
            keyed("a", 0),
            NewEvent::new("crm_create"),
            keyed("a", 2),
            keyed("b", 3),
        ])
        .await
        .unwrap();
    let stored = client.query_all(Query::new().oldest_first()).await.unwrap();
    let keys: Vec<&str> = stored.iter().map(|e| e.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["a", "", "b"], "the second \"a\" must not be written");
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 1, 3]
    );
    assert_eq!(
        receipts[2],
        pb::Receipt {
            duplicate: true,
            ..receipts[0].clone()
        }
    );
    assert!(!receipts[0].duplicate && !receipts[1].duplicate && !receipts[3].duplicate);
    assert_chained(&stored);
}

#[tokio::test]
async fn a_batch_naming_a_logged_key_writes_only_its_new_events() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let first = client.log(keyed("b", 0)).await.unwrap();
    let next = client
        .log_batch([keyed("b", 1), keyed("c", 2)])
        .await
        .unwrap();
    assert_eq!(
        next[0],
        pb::Receipt {
            duplicate: true,
            ..first
        }
    );
    assert_eq!((next[1].seq, next[1].duplicate), (2, false));

    let stored = client.query_all(Query::new().oldest_first()).await.unwrap();
    assert_eq!(seqs(&stored), [1, 2]);
    assert_chained(&stored);
    assert!(client.verify().await.unwrap().ok);
}

#[tokio::test]
async fn idempotency_keys_survive_a_restart() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let event = NewEvent::lead_ingested("LEAD-1", "webform").idempotency_key("ingest-LEAD-1");
    let first = client.log(event.clone()).await.unwrap();
    client.log(NewEvent::new("email_sent")).await.unwrap();

    let server = server.restart(|_| {}).await;
    let client = server.client().await;
    let again = client.log(event).await.unwrap();
    assert_eq!(
        again,
        pb::Receipt {
            duplicate: true,
            ..first
        }
    );
    assert_eq!(client.stats(None).await.unwrap().head_seq, 2);
    assert_eq!(
        client.log(NewEvent::new("email_sent")).await.unwrap().seq,
        3
    );
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

#[tokio::test]
async fn stats_count_the_whole_log_or_one_workflow() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let empty = client.stats(None).await.unwrap();
    assert_eq!(empty, pb::GetStatsResponse::default(), "an empty log");

    let events = [
        NewEvent::lead_ingested("L1", "webform").workflow("sales"),
        NewEvent::lead_qualified("L1", 0.9, true).workflow("sales"),
        NewEvent::crm_update("L3", "hubspot", "7", &["stage"]).workflow("support"),
        NewEvent::email_sent("L2", "b@example.com", "Hi").workflow("sales"),
        NewEvent::error("Timeout", "CRM did not answer").workflow("sales"),
        NewEvent::error("Bounce", "mailbox full")
            .lead("L1")
            .workflow("support"),
        NewEvent::email_sent("L2", "b@example.com", "Again"),
        NewEvent::lead_ingested("L4", "import"),
    ];
    let mut receipts = Vec::new();
    for e in events {
        receipts.push(client.log(e).await.unwrap());
    }
    let counts = |pairs: &[(&str, u64)]| -> HashMap<String, u64> {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    };

    let all = client.stats(None).await.unwrap();
    let want_all = pb::GetStatsResponse {
        total_events: 8,
        by_type: counts(&[
            ("lead_ingested", 2),
            ("lead_qualified", 1),
            ("crm_update", 1),
            ("email_sent", 2),
            ("error", 2),
        ]),
        by_workflow: counts(&[("sales", 4), ("support", 2)]),
        leads_processed: 4,
        error_count: 2,
        first_event: receipts[0].timestamp,
        last_event: receipts[7].timestamp,
        head_seq: 8,
        ..pb::GetStatsResponse::default()
    };
    assert_eq!(all, want_all);

    let sales = client.stats(Some("sales")).await.unwrap();
    let want_sales = pb::GetStatsResponse {
        total_events: 4,
        by_type: counts(&[
            ("lead_ingested", 1),
            ("lead_qualified", 1),
            ("email_sent", 1),
            ("error", 1),
        ]),
        by_workflow: counts(&[("sales", 4)]),
        leads_processed: 2,
        error_count: 1,
        first_event: receipts[0].timestamp,
        last_event: receipts[4].timestamp,
        head_seq: 8,
        ..pb::GetStatsResponse::default()
    };
    assert_eq!(sales, want_sales);

    let none = client.stats(Some("nowhere")).await.unwrap();
    assert_eq!(
        none,
        pb::GetStatsResponse {
            head_seq: 8,
            ..Default::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_for_a_time_range_with_timeline_error_types_and_funnel() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let events = vec![
        NewEvent::lead_ingested("L1", "web"),
        NewEvent::lead_ingested("L2", "web"),
        NewEvent::lead_ingested("L3", "web"),
        NewEvent::lead_qualified("L1", 0.9, true),
        NewEvent::lead_qualified("L1", 0.95, true),
        NewEvent::lead_qualified("L2", 0.7, true),
        NewEvent::email_sent("L1", "a@b.c", "Hi"),
        NewEvent::error("Timeout", "CRM did not answer"),
        NewEvent::error("Timeout", "again"),
        NewEvent::error("AuthError", "bad token"),
        NewEvent::new("error").detail("error_message", "no type"),
    ];
    let receipts = client.log_batch(events).await.unwrap();
    let at = receipts[0].timestamp.unwrap().seconds;
    let hour = at - at.rem_euclid(3600);
    let ts = |seconds: i64| Some(Timestamp { seconds, nanos: 0 });
    let stats = client
        .stats_with(pb::GetStatsRequest {
            since: ts(hour),
            until: ts(hour + 3600),
            bucket_seconds: 60,
            error_types: true,
            leads_by_type: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stats.total_events, 11);
    assert_eq!(
        stats.timeline.len(),
        60,
        "one bucket per minute of the hour"
    );
    assert_eq!(stats.timeline[0].start, ts(hour));
    assert_eq!(stats.timeline.iter().map(|b| b.events).sum::<u64>(), 11);
    assert_eq!(stats.timeline.iter().map(|b| b.errors).sum::<u64>(), 4);
    let minute = ((at - hour) / 60) as usize;
    assert!(stats.timeline[minute].events > 0);
    let counts = |pairs: &[(&str, u64)]| -> HashMap<String, u64> {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    };
    assert_eq!(
        stats.errors_by_type,
        counts(&[("Timeout", 2), ("AuthError", 1), ("unknown", 1)])
    );
    // Distinct leads, not events: L1 was qualified twice.
    assert_eq!(
        stats.leads_by_type,
        counts(&[
            ("lead_ingested", 3),
            ("lead_qualified", 2),
            ("email_sent", 1)
        ])
    );
    // A range before the events counts nothing, with every bucket present.
    let before = client
        .stats_with(pb::GetStatsRequest {
            since: ts(hour - 7200),
            until: ts(hour - 3600),
            bucket_seconds: 3600,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(before.total_events, 0);
    assert_eq!(before.timeline.len(), 1);
    assert_eq!(before.timeline[0].events, 0);
    // Refusals name the field.
    for (request, field) in [
        (
            pb::GetStatsRequest {
                since: ts(hour),
                until: ts(hour),
                ..Default::default()
            },
            "until",
        ),
        (
            pb::GetStatsRequest {
                since: ts(0),
                until: ts(hour),
                bucket_seconds: 60,
                ..Default::default()
            },
            "bucket_seconds",
        ),
    ] {
        let err = client.stats_with(request).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
        let fields: Vec<String> = err.field_violations().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, [field], "{err}");
    }
}
