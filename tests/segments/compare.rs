//! Comparing answers: what a server answers to queries, lead histories,
//! streams and statistics, against the whole log and against another server.

use std::collections::BTreeMap;
use std::ops::Range;

use auditlog_client::{Client, Query, pb};
use futures::StreamExt as _;
use serde_json::Value;
use tokio::time::timeout;

use crate::common::{all_events, seqs};
use crate::segments::writing::varied;
use crate::segments::{GENESIS, PATIENCE, WORKFLOWS};

/// What the same inputs in the same order give on any server: everything but
/// the id, timestamp, prev and signature.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Same {
    seq: u64,
    event_type: String,
    actor: String,
    pub(crate) lead_id: String,
    workflow: String,
    idempotency_key: String,
    pub(crate) details: Value,
}

pub(crate) fn same(e: &pb::Event) -> Same {
    Same {
        seq: e.seq,
        event_type: e.event_type.clone(),
        actor: e.actor.clone(),
        lead_id: e.lead_id.clone(),
        workflow: e.workflow.clone(),
        idempotency_key: e.idempotency_key.clone(),
        details: e.details.as_ref().map_or(Value::Null, |d| {
            Value::Object(auditlog_proto::json::struct_to_json(d).unwrap())
        }),
    }
}

/// Event `seq` exactly as `varied(seq)` logged it.
pub(crate) fn logged(seq: u64) -> Same {
    let input = varied(seq).into_input().unwrap();
    Same {
        seq,
        event_type: input.event_type,
        actor: input.actor,
        lead_id: input.lead_id,
        workflow: input.workflow,
        idempotency_key: input.idempotency_key,
        details: Value::Object(
            auditlog_proto::json::struct_into_json(input.details.unwrap()).unwrap(),
        ),
    }
}

/// Asserts two answers are equal, showing the first difference (not two
/// lists of thousands of events).
#[track_caller]
pub(crate) fn assert_same(label: &str, a: &[Same], b: &[Same]) {
    if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
        panic!(
            "{label}: first difference at position {i}:\n  {:?}\nvs\n  {:?}",
            a[i], b[i]
        );
    }
    assert_eq!(a.len(), b.len(), "{label}: different lengths");
}

/// Reads the next `n` events of a stream, failing on a hang or an error.
pub(crate) async fn next_n(stream: &mut auditlog_client::EventStream, n: usize) -> Vec<pb::Event> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let item = timeout(PATIENCE, stream.next())
            .await
            .unwrap_or_else(|_| panic!("stream stalled after {} events", out.len()))
            .unwrap_or_else(|| panic!("stream ended after {} events", out.len()));
        out.push(item.unwrap());
    }
    out
}

/// All events of a stream without `follow`.
pub(crate) async fn streamed(client: &Client, query: Query, from_seq: u64) -> Vec<pb::Event> {
    let stream = client.stream(query, from_seq, false).await.unwrap();
    timeout(PATIENCE, stream.map(|e| e.unwrap()).collect::<Vec<_>>())
        .await
        .unwrap()
}

type Keep = Box<dyn Fn(&pb::Event) -> bool>;

/// A query, and which events of the whole log it must return.
struct Ask {
    label: String,
    query: Query,
    keep: Keep,
}

fn ask(label: impl Into<String>, query: Query, keep: impl Fn(&pb::Event) -> bool + 'static) -> Ask {
    Ask {
        label: label.into(),
        query,
        keep: Box::new(keep),
    }
}

fn micros(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1_000_000 + i64::from(t.nanos / 1000)
}

/// The answers of `client` to every question of the comparison, labelled,
/// each first checked against `all` (the server's whole log, streamed).
/// `calls` is how the first events were logged: the time range runs from the
/// start of the 10th call to the start of the 25th.
async fn answers(
    client: &Client,
    all: &[pb::Event],
    calls: &[Range<u64>],
) -> Vec<(String, Vec<Same>)> {
    let at = |seq: u64| {
        all.iter()
            .find(|e| e.seq == seq)
            .unwrap()
            .timestamp
            .unwrap()
    };
    let (since, until) = (at(calls[10].start), at(calls[25].start));
    let mut asks = Vec::new();
    for lead in ["LEAD-000", "LEAD-007", "LEAD-023", "LEAD-049"] {
        asks.push(ask(
            format!("{lead}, newest first, pages of 9"),
            Query::new().lead(lead).limit(9),
            move |e| e.lead_id == lead,
        ));
    }
    asks.push(ask(
        "errors, pages of 50",
        Query::new().event_type("error").limit(50),
        |e| e.event_type == "error",
    ));
    asks.push(ask(
        "email_sent or crm_update, oldest first, pages of 100",
        Query::new()
            .event_type("email_sent")
            .event_type("crm_update")
            .oldest_first()
            .limit(100),
        |e| e.event_type == "email_sent" || e.event_type == "crm_update",
    ));
    for w in WORKFLOWS {
        asks.push(ask(
            format!("workflow {w}, pages of 250"),
            Query::new().workflow(w).limit(250),
            move |e| e.workflow == w,
        ));
    }
    asks.push(ask(
        "sales lead_routed by mailer, pages of 3",
        Query::new()
            .workflow("sales")
            .event_type("lead_routed")
            .actor("mailer")
            .limit(3),
        |e| e.workflow == "sales" && e.event_type == "lead_routed" && e.actor == "mailer",
    ));
    let mut range = Query::new().oldest_first().limit(100);
    range
        .request
        .filter
        .get_or_insert_with(Default::default)
        .since = Some(since);
    range
        .request
        .filter
        .get_or_insert_with(Default::default)
        .until = Some(until);
    let (from, to) = (micros(&since), micros(&until));
    asks.push(ask("time range, oldest first", range.clone(), move |e| {
        (from..to).contains(&micros(&e.timestamp.unwrap()))
    }));
    let mut range_errors = range.event_type("error");
    range_errors.request.oldest_first = false;
    asks.push(ask("errors in the time range", range_errors, move |e| {
        e.event_type == "error" && (from..to).contains(&micros(&e.timestamp.unwrap()))
    }));

    let mut out = Vec::new();
    for a in asks {
        let got = client.query_all(a.query.clone()).await.unwrap();
        let mut want: Vec<pb::Event> = all.iter().filter(|e| (a.keep)(e)).cloned().collect();
        if !a.query.request.oldest_first {
            want.reverse();
        }
        assert!(!want.is_empty(), "{}: the sample matches nothing", a.label);
        let got: Vec<Same> = got.iter().map(same).collect();
        let want: Vec<Same> = want.iter().map(same).collect();
        assert_same(&a.label, &got, &want);
        out.push((a.label, got));
    }

    // The time range, in seqs: from the first event of call 10 up to the
    // last event before call 25.
    let range_seqs: Vec<u64> = out
        .iter()
        .find(|(l, _)| l == "time range, oldest first")
        .unwrap()
        .1
        .iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!(
        range_seqs,
        (calls[10].start..calls[25].start).collect::<Vec<_>>()
    );

    for lead in ["LEAD-000", "LEAD-007", "LEAD-031"] {
        let history = client.lead_history(lead).await.unwrap();
        let want: Vec<&pb::Event> = all.iter().filter(|e| e.lead_id == lead).collect();
        assert_eq!(
            seqs(&history),
            want.iter().map(|e| e.seq).collect::<Vec<_>>(),
            "history of {lead}"
        );
        out.push((
            format!("history of {lead}"),
            history.iter().map(same).collect(),
        ));
    }

    let page = client.query(Query::new().limit(25)).await.unwrap();
    assert_eq!(page.events.len(), 25);
    assert_eq!(page.events[0].seq, all.last().unwrap().seq);
    out.push((
        "first page, newest first".into(),
        page.events.iter().map(same).collect(),
    ));

    let middle = all[all.len() / 2].seq;
    let from_middle = streamed(client, Query::new(), middle).await;
    assert_eq!(
        seqs(&from_middle),
        (middle..=all.last().unwrap().seq).collect::<Vec<_>>(),
        "stream from seq {middle}"
    );
    out.push((
        format!("stream from {middle}"),
        from_middle.iter().map(same).collect(),
    ));
    // Filtered streams; the one for a lead reads the lead copies, as Query
    // does.
    type Wanted = fn(&pb::Event) -> bool;
    let filtered: [(&str, Query, u64, Wanted); 2] = [
        (
            "errors streamed from 500",
            Query::new().event_type("error"),
            500,
            |e| e.event_type == "error",
        ),
        (
            "LEAD-007 streamed from 1",
            Query::new().lead("LEAD-007"),
            1,
            |e| e.lead_id == "LEAD-007",
        ),
    ];
    for (name, query, from, wanted) in filtered {
        let got = streamed(client, query, from).await;
        let want: Vec<u64> = all
            .iter()
            .filter(|e| e.seq >= from && wanted(e))
            .map(|e| e.seq)
            .collect();
        assert!(!want.is_empty(), "{name}: the log holds nothing to stream");
        assert_eq!(seqs(&got), want, "{name}");
        out.push((name.into(), got.iter().map(same).collect()));
    }
    out
}

/// The parts of GetStats that do not depend on when events were logged.
type StatsKey = (
    u64,
    BTreeMap<String, u64>,
    BTreeMap<String, u64>,
    u64,
    u64,
    u64,
);

async fn stats(client: &Client, workflow: Option<&str>) -> StatsKey {
    let s = client.stats(workflow).await.unwrap();
    (
        s.total_events,
        s.by_type.into_iter().collect(),
        s.by_workflow.into_iter().collect(),
        s.leads_processed,
        s.error_count,
        s.head_seq,
    )
}

/// Asserts the segmented server answers every question as the single-file
/// one does, and that both hold exactly events 1..=n as logged.
pub(crate) async fn assert_same_answers(
    segmented: &Client,
    single: &Client,
    n: u64,
    calls: &[Range<u64>],
) {
    let all_a = all_events(segmented).await;
    let all_b = all_events(single).await;
    assert_eq!(
        seqs(&all_a),
        (1..=n).collect::<Vec<_>>(),
        "segmented export"
    );
    let same_a: Vec<Same> = all_a.iter().map(same).collect();
    let same_b: Vec<Same> = all_b.iter().map(same).collect();
    let inputs: Vec<Same> = (1..=n).map(logged).collect();
    assert_same("segmented export vs what was logged", &same_a, &inputs);
    assert_same("export", &same_a, &same_b);
    // The chain holds in what is served, across segment boundaries.
    for pair in all_a.windows(2) {
        assert_eq!(pair[1].prev, pair[0].signature, "seq {}", pair[1].seq);
    }
    assert_eq!(all_a[0].prev, GENESIS);

    let (a, b) = tokio::join!(
        answers(segmented, &all_a, calls),
        answers(single, &all_b, calls)
    );
    assert_eq!(a.len(), b.len());
    for ((label, x), (_, y)) in a.iter().zip(&b) {
        assert_same(label, x, y);
    }

    let whole = stats(segmented, None).await;
    assert_eq!(whole.0, n);
    assert!(whole.4 > 0 && whole.3 == 50, "{whole:?}");
    assert_eq!(whole, stats(single, None).await, "stats");
    for w in WORKFLOWS {
        let s = stats(segmented, Some(w)).await;
        assert!(s.0 > 0, "{w}: {s:?}");
        assert_eq!(s, stats(single, Some(w)).await, "stats of {w}");
    }
}
