//! A log split into segments behaves like one file, stays readable with
//! standard tools, and reports tampering with a segment at the right place.
//!
//! Each test runs a real server (in-process, or the `auditlog-server` binary
//! for SIGKILL) through the real client, with a tiny `max_file_size_mb` or
//! explicit `Rotate` calls so the log spans many `audit.<UTC time>.log.gz`
//! segments, and edits the data directory behind the server's back where the
//! test is about tampering.
//!
//! Covered:
//! - the same ~3,000 events logged into a server with dozens of segments and
//!   into one with a single file give the same answers: queries by lead, type,
//!   workflow and time range with pagination, lead histories, statistics,
//!   streams from the start and from the middle, a follow stream across
//!   rotations; also after a restart (index rebuilt from the `.idx` files);
//!   verification is clean across every segment;
//! - every `.gz` decompresses as `zcat` does to JSON lines whose seqs and
//!   chain run on across files and into `audit.log`;
//! - tampering: a recompressed segment with one byte changed, a deleted
//!   segment (middle, first), two swapped segments, a manifest edited to hide
//!   a deleted segment, a truncated `.gz`, an unlisted `.gz`; and an untouched
//!   segmented log is clean;
//! - retention: old segments are purged, the purge is an event, verification
//!   starts after it, purged seqs are gone from every answer, a second run
//!   purges nothing, and a segment deleted by hand after a purge is still
//!   reported missing;
//! - `auditlog rotate --wait` from the CLI;
//! - SIGKILL while writers force rotations: nothing acknowledged is lost and
//!   the interrupted rotations are finished on start.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use auditlog_client::pb::{self, ProblemKind};
use auditlog_client::{Client, NewEvent, Query};
use auditlog_server::Config;
use common::{
    ServerProcess, TestServer, all_events, assert_whole, cli_bin, files, plain_sealed, run_to_end,
    seqs,
};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio::time::timeout;

use ProblemKind::{
    BadSignature, ChainBreak, ManifestModified, SegmentMissing, SegmentModified, SegmentUnlisted,
    SegmentUnreadable, SeqGap,
};

/// `prev` of seq 1.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// A segment size of about 20 KB: a batch of 50 to 100 events fills one.
const TINY_MB: f64 = 0.02;
/// How long a wait for the server may take before the test fails as a hang.
const PATIENCE: Duration = Duration::from_secs(20);

const TYPES: [&str; 8] = [
    "lead_ingested",
    "lead_qualified",
    "lead_routed",
    "crm_update",
    "email_sent",
    "email_scheduled",
    "workflow_started",
    "error",
];
const WORKFLOWS: [&str; 3] = ["sales", "onboarding", "renewals"];
const ACTORS: [&str; 4] = ["system", "mailer", "crm-sync", "scorer"];

fn tiny(config: &mut Config) {
    config.max_file_size_mb = TINY_MB;
}

// ---------------------------------------------------------------------------
// Events and writing
// ---------------------------------------------------------------------------

/// Event `i`: a type among eight (about one in eight an `error`), one of 50
/// leads (none for every 11th), one of three workflows or none, an actor, and
/// details with nested values. The same `i` always gives the same event.
fn varied(i: u64) -> NewEvent {
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
fn plan(first: u64, n: u64) -> Vec<Range<u64>> {
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
async fn write(client: &Client, calls: &[Range<u64>]) -> Vec<pb::Receipt> {
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

// ---------------------------------------------------------------------------
// The data directory
// ---------------------------------------------------------------------------

/// The compressed segments in `dir`, in name (= seq) order.
fn gz_files(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|n| n.starts_with("audit.") && n.ends_with(".log.gz"))
        .collect()
}

/// Waits until the sealer has compressed every sealed segment.
async fn wait_compressed(dir: &Path) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !plain_sealed(dir).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sealed segments were not compressed: {:?}",
            files(dir)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A manifest entry: the segment's file and seq range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    file: String,
    first: u64,
    last: u64,
}

/// The segments `manifest.json` lists, in order.
fn manifest(dir: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    value["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Entry {
            file: s["file"].as_str().unwrap().to_owned(),
            first: s["first_seq"].as_u64().unwrap(),
            last: s["last_seq"].as_u64().unwrap(),
        })
        .collect()
}

/// The `.idx` file of a segment.
fn idx_of(gz: &str) -> String {
    format!("{}.idx", gz.strip_suffix(".log.gz").unwrap())
}

/// A `.gz` file decompressed as `zcat` does (every gzip member in turn).
fn zcat(path: &Path) -> String {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// `text` compressed as one gzip member, as `gzip` would.
fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

// ---------------------------------------------------------------------------
// Comparing answers
// ---------------------------------------------------------------------------

/// What the same inputs in the same order give on any server: everything but
/// the id, timestamp, prev and signature.
#[derive(Debug, Clone, PartialEq)]
struct Same {
    seq: u64,
    event_type: String,
    actor: String,
    lead_id: String,
    workflow: String,
    idempotency_key: String,
    details: Value,
}

fn same(e: &pb::Event) -> Same {
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
fn logged(seq: u64) -> Same {
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
fn assert_same(label: &str, a: &[Same], b: &[Same]) {
    if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
        panic!(
            "{label}: first difference at position {i}:\n  {:?}\nvs\n  {:?}",
            a[i], b[i]
        );
    }
    assert_eq!(a.len(), b.len(), "{label}: different lengths");
}

/// Reads the next `n` events of a stream, failing on a hang or an error.
async fn next_n(stream: &mut auditlog_client::EventStream, n: usize) -> Vec<pb::Event> {
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
async fn streamed(client: &Client, query: Query, from_seq: u64) -> Vec<pb::Event> {
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
async fn assert_same_answers(segmented: &Client, single: &Client, n: u64, calls: &[Range<u64>]) {
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

// ---------------------------------------------------------------------------
// Same answers as one file
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segmented_log_answers_like_a_single_file() {
    const N: u64 = 3000;
    const MORE: u64 = 400;
    let segmented = TestServer::start_with(tiny).await;
    let single = TestServer::start().await;
    let (seg, one) = (segmented.client().await, single.client().await);
    let calls = plan(1, N);
    let (receipts, _) = tokio::join!(write(&seg, &calls), write(&one, &calls));
    assert_eq!(receipts.len() as u64, N);

    // Dozens of segments, all compressed. (The last batch may have filled a
    // segment and left nothing to rotate.)
    let last = seg.rotate(true).await.unwrap();
    if last.rotated {
        assert!(last.file.ends_with(".log.gz"), "{last:?}");
        assert_eq!(last.last_seq, N);
    }
    let dir = segmented.data_dir.clone();
    wait_compressed(&dir).await;
    let gz = gz_files(&dir);
    assert!(gz.len() >= 20, "only {} segments: {gz:?}", gz.len());
    let listed = manifest(&dir);
    assert_eq!(
        listed.iter().map(|e| e.file.clone()).collect::<Vec<_>>(),
        gz
    );
    assert_eq!(listed.last().unwrap().last, N);
    assert!(plain_sealed(&single.data_dir).is_empty() && gz_files(&single.data_dir).is_empty());
    assert_same_answers(&seg, &one, N, &calls).await;

    // A follow stream from before the rotation sees what is written after
    // it, through further rotations.
    let mut follow = seg.stream(Query::new(), N - 4, true).await.unwrap();
    let history = next_n(&mut follow, 5).await;
    assert_eq!(seqs(&history), (N - 4..=N).collect::<Vec<_>>());
    let more = plan(N + 1, MORE);
    tokio::join!(write(&seg, &more), write(&one, &more));
    let live = next_n(&mut follow, MORE as usize).await;
    assert_eq!(seqs(&live), (N + 1..=N + MORE).collect::<Vec<_>>());
    let want: Vec<Same> = (N + 1..=N + MORE).map(logged).collect();
    assert_same("follow", &live.iter().map(same).collect::<Vec<_>>(), &want);
    assert_eq!(live[0].prev, history[4].signature);
    drop(follow);
    wait_compressed(&dir).await;
    assert!(
        gz_files(&dir).len() > gz.len(),
        "no rotation while following"
    );
    let mut all_calls = calls.clone();
    all_calls.extend(more);
    assert_same_answers(&seg, &one, N + MORE, &all_calls).await;

    // After a restart the index comes from the .idx files.
    seg.rotate(true).await.unwrap();
    wait_compressed(&dir).await;
    let segmented = segmented.restart(tiny).await;
    let seg = segmented.client().await;
    assert_same_answers(&seg, &one, N + MORE, &all_calls).await;

    let report = seg.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, N + MORE);
    assert_eq!(report.head_seq, N + MORE);
    assert!(report.segments_checked > 20, "{report:?}");
    assert!(report.events_per_second > 0.0, "{report:?}");
    let plain = one.verify().await.unwrap();
    assert!(plain.ok, "{:?}", plain.problems);
    assert_eq!(plain.events_checked, N + MORE);
    assert_eq!(
        plain.head_signature,
        all_events(&one).await.last().unwrap().signature
    );
}

// ---------------------------------------------------------------------------
// Readable with standard tools
// ---------------------------------------------------------------------------

#[tokio::test]
async fn segments_decompress_with_zcat_to_one_chained_log() {
    let server = TestServer::start_with(tiny).await;
    let client = server.client().await;
    let calls = plan(1, 700);
    let receipts = write(&client, &calls).await;
    client.rotate(true).await.unwrap();
    write(&client, &[701..702, 702..703]).await;
    let dir = &server.data_dir;
    wait_compressed(dir).await;

    let gz = gz_files(dir);
    assert!(gz.len() >= 5, "{gz:?}");
    let listed = manifest(dir);
    assert_eq!(
        listed.iter().map(|e| e.file.clone()).collect::<Vec<_>>(),
        gz,
        "the manifest lists every segment, in seq order"
    );
    let mut records: Vec<Value> = Vec::new();
    for (name, entry) in gz.iter().zip(&listed) {
        let text = zcat(&dir.join(name));
        assert!(text.ends_with('\n'), "{name}");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
            .collect();
        assert_eq!(lines[0]["seq"].as_u64(), Some(entry.first), "{name}");
        assert_eq!(
            lines.last().unwrap()["seq"].as_u64(),
            Some(entry.last),
            "{name}"
        );
        records.extend(lines);
    }
    for line in common::read_lines(&server.log_path()) {
        records.push(serde_json::from_str(&line).unwrap());
    }
    let got: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, (1..=702).collect::<Vec<_>>());
    let mut prev = GENESIS.to_owned();
    for r in &records {
        assert_eq!(r["prev"].as_str().unwrap(), prev, "seq {}", r["seq"]);
        prev = r["signature"].as_str().unwrap().to_owned();
    }
    for r in &receipts {
        let rec = &records[usize::try_from(r.seq).unwrap() - 1];
        assert_eq!(rec["signature"].as_str().unwrap(), r.signature);
        assert_eq!(rec["details"], logged(r.seq).details);
    }
}

// ---------------------------------------------------------------------------
// Tampering with segments
// ---------------------------------------------------------------------------

/// Events per segment of [`Segmented`].
const PER_SEGMENT: u64 = 40;
/// Compressed segments of [`Segmented`].
const SEGMENTS: usize = 6;
/// Events in `audit.log` after them.
const TAIL: u64 = 5;
const HEAD: u64 = PER_SEGMENT * SEGMENTS as u64 + TAIL;

/// A running server whose log is [`SEGMENTS`] compressed segments of
/// [`PER_SEGMENT`] events each, then [`TAIL`] events in `audit.log`.
struct Segmented {
    server: TestServer,
    client: Client,
    segments: Vec<Entry>,
}

impl Segmented {
    async fn new() -> Segmented {
        let server = TestServer::start().await;
        let client = server.client().await;
        let mut segments = Vec::new();
        for s in 0..SEGMENTS as u64 {
            let first = s * PER_SEGMENT + 1;
            write(
                &client,
                &[first..first + 30, first + 30..first + PER_SEGMENT],
            )
            .await;
            let r = client.rotate(true).await.unwrap();
            assert!(r.rotated && r.file.ends_with(".log.gz"), "{r:?}");
            assert_eq!((r.first_seq, r.last_seq), (first, first + PER_SEGMENT - 1));
            segments.push(Entry {
                file: r.file,
                first: r.first_seq,
                last: r.last_seq,
            });
        }
        let tail = SEGMENTS as u64 * PER_SEGMENT + 1;
        let singles: Vec<Range<u64>> = (tail..tail + TAIL).map(|i| i..i + 1).collect();
        write(&client, &singles).await;
        wait_compressed(&server.data_dir).await;
        assert_eq!(manifest(&server.data_dir), segments);
        Segmented {
            server,
            client,
            segments,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.server.data_dir.join(name)
    }

    /// Verifies and returns `(kind, file, seq)` of each problem.
    async fn problems(&self) -> Vec<(ProblemKind, String, u64)> {
        located(&self.client.verify().await.unwrap())
    }
}

fn located(report: &pb::VerifyIntegrityResponse) -> Vec<(ProblemKind, String, u64)> {
    assert_eq!(report.ok, report.problems.is_empty(), "{report:?}");
    report
        .problems
        .iter()
        .map(|p| (p.kind(), p.file.clone(), p.seq))
        .collect()
}

#[track_caller]
fn assert_has(found: &[(ProblemKind, String, u64)], kind: ProblemKind, file: &str, seq: u64) {
    let want = (kind, file.to_owned(), seq);
    assert!(found.contains(&want), "expected {want:?} in {found:?}");
}

#[track_caller]
fn assert_only_in(found: &[(ProblemKind, String, u64)], files: &[&str]) {
    assert!(
        found.iter().all(|(_, f, _)| files.contains(&f.as_str())),
        "a problem outside {files:?}: {found:?}"
    );
}

#[tokio::test]
async fn an_untouched_segmented_log_is_clean() {
    let s = Segmented::new().await;
    let report = s.client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, HEAD);
    assert_eq!(report.head_seq, HEAD);
    assert_eq!(report.segments_checked, SEGMENTS as u64 + 1, "{report:?}");
}

#[tokio::test]
async fn a_recompressed_segment_with_one_byte_changed_is_located() {
    let s = Segmented::new().await;
    let seg = &s.segments[2];
    let target = seg.first + 7;
    let text = zcat(&s.path(&seg.file));
    // One byte: the first letter of the event type of seq `target`.
    let line_start = text.find(&format!("{{\"seq\":{target},")).unwrap();
    let field = "\"event_type\":\"";
    let at = line_start + text[line_start..].find(field).unwrap() + field.len();
    let mut bytes = text.clone().into_bytes();
    assert_ne!(bytes[at], b'x');
    bytes[at] = b'x';
    let changed = String::from_utf8(bytes).unwrap();
    std::fs::write(s.path(&seg.file), gzip(&changed)).unwrap();

    let found = s.problems().await;
    assert_has(&found, SegmentModified, &seg.file, seg.first);
    assert_has(&found, BadSignature, &seg.file, target);
    assert_only_in(&found, &[&seg.file]);
    let report = s.client.verify().await.unwrap();
    let bad = report
        .problems
        .iter()
        .find(|p| p.kind() == BadSignature)
        .unwrap();
    assert_eq!(bad.line, target - seg.first + 1, "line within the segment");
}

#[tokio::test]
async fn a_deleted_middle_segment_is_missing_not_purged() {
    let s = Segmented::new().await;
    let seg = s.segments[3].clone();
    std::fs::remove_file(s.path(&seg.file)).unwrap();
    let expect = vec![(SegmentMissing, seg.file.clone(), seg.first)];
    let report = s.client.verify().await.unwrap();
    assert_eq!(located(&report), expect);
    let message = &report.problems[0].message;
    assert!(
        message.contains(&format!("{}..={}", seg.first, seg.last)),
        "{message}"
    );

    // Also after a restart, which finds the segment gone.
    let server = s.server.restart(|_| {}).await;
    let client = server.client().await;
    assert_eq!(located(&client.verify().await.unwrap()), expect);
    let events = all_events(&client).await;
    assert!(
        events
            .iter()
            .all(|e| !(seg.first..=seg.last).contains(&e.seq))
    );
    assert_eq!(events.len() as u64, HEAD - PER_SEGMENT);
}

#[tokio::test]
async fn a_deleted_first_segment_is_missing_not_purged() {
    let s = Segmented::new().await;
    let seg = &s.segments[0];
    std::fs::remove_file(s.path(&seg.file)).unwrap();
    std::fs::remove_file(s.path(&idx_of(&seg.file))).unwrap();
    let report = s.client.verify().await.unwrap();
    assert_eq!(
        located(&report),
        vec![(SegmentMissing, seg.file.clone(), 1)]
    );
    let message = &report.problems[0].message;
    assert!(message.contains(&format!("1..={}", seg.last)), "{message}");
}

#[tokio::test]
async fn two_swapped_segments_are_reported_by_name() {
    let s = Segmented::new().await;
    let (a, b) = (&s.segments[1], &s.segments[2]);
    let swap = s.path("swap.tmp");
    std::fs::rename(s.path(&a.file), &swap).unwrap();
    std::fs::rename(s.path(&b.file), s.path(&a.file)).unwrap();
    std::fs::rename(&swap, s.path(&b.file)).unwrap();

    let found = s.problems().await;
    assert_has(&found, SegmentModified, &a.file, a.first);
    assert_has(&found, SegmentModified, &b.file, b.first);
    assert_only_in(&found, &[&a.file, &b.file]);
}

#[tokio::test]
async fn a_manifest_edited_to_hide_a_deleted_segment_is_caught() {
    let s = Segmented::new().await;
    let (gone, next) = (&s.segments[3], &s.segments[4]);
    std::fs::remove_file(s.path(&gone.file)).unwrap();
    std::fs::remove_file(s.path(&idx_of(&gone.file))).unwrap();
    let path = s.path("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut value: Value = serde_json::from_str(&text).unwrap();
    value["segments"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["file"] != gone.file.as_str());
    let edited = format!("{}\n", serde_json::to_string(&value).unwrap());
    assert!(edited.len() < text.len() && edited.ends_with("\"}\n"));
    std::fs::write(&path, edited).unwrap();

    let found = s.problems().await;
    assert!(
        found
            .iter()
            .any(|(k, f, _)| *k == ManifestModified && f == "manifest.json"),
        "{found:?}"
    );
    assert_has(&found, SeqGap, &next.file, next.first);
    assert_has(&found, ChainBreak, &next.file, next.first);
    assert_only_in(&found, &["manifest.json", &next.file]);
    assert!(
        !found.iter().any(|(k, ..)| *k == SegmentMissing),
        "the edited manifest no longer lists it: {found:?}"
    );
}

#[tokio::test]
async fn a_truncated_segment_is_unreadable() {
    let s = Segmented::new().await;
    let (seg, next) = (&s.segments[2], &s.segments[3]);
    let path = s.path(&seg.file);
    let bytes = std::fs::read(&path).unwrap();
    // Half, moved off a gzip member boundary if it falls on one, so the
    // cut really ends inside compressed data.
    let mut cut = bytes.len() / 2;
    while bytes[cut..].starts_with(&[0x1f, 0x8b]) {
        cut -= 1;
    }
    std::fs::write(&path, &bytes[..cut]).unwrap();

    let found = s.problems().await;
    let unreadable: Vec<_> = found
        .iter()
        .filter(|(k, ..)| *k == SegmentUnreadable)
        .collect();
    assert_eq!(unreadable.len(), 1, "{found:?}");
    let (_, file, seq) = unreadable[0];
    assert_eq!(file, &seg.file);
    assert!(
        (seg.first..=seg.last).contains(seq),
        "unreadable at seq {seq}, outside {}..={}",
        seg.first,
        seg.last
    );
    // What could not be read is missing before the next segment.
    assert_only_in(&found, &[&seg.file, &next.file]);
    assert!(
        found
            .iter()
            .all(|(_, f, q)| f == &seg.file || *q == next.first),
        "{found:?}"
    );
}

/// A change that leaves every line readable (a member header's time field,
/// which no reader uses) is still a changed file: reported as modified, and
/// nothing else.
#[tokio::test]
async fn a_segment_changed_where_no_line_is_is_still_modified() {
    let s = Segmented::new().await;
    let seg = &s.segments[1];
    let path = s.path(&seg.file);
    let lines = zcat(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    // The server writes every member with this header (no time, no name).
    let header = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let second = bytes[1..]
        .windows(header.len())
        .position(|w| w == header)
        .expect("a second gzip member")
        + 1;
    bytes[second + 4] = 1;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(zcat(&path), lines, "the same lines, in a changed file");

    let found = s.problems().await;
    assert_eq!(found, vec![(SegmentModified, seg.file.clone(), seg.first)]);
}

#[tokio::test]
async fn an_unlisted_segment_file_is_reported() {
    let s = Segmented::new().await;
    let extra = "audit.20000101T000000.000000Z.log.gz";
    std::fs::copy(s.path(&s.segments[1].file), s.path(extra)).unwrap();
    assert_eq!(
        s.problems().await,
        vec![(SegmentUnlisted, extra.to_owned(), 0)]
    );
}

// ---------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------

/// The retention period of [`retained`].
const RETENTION: Duration = Duration::from_secs(2);

/// Tiny segments, a retention of [`RETENTION`], and a check interval long
/// enough that only the check at start and explicit calls run.
fn retained(config: &mut Config) {
    config.max_file_size_mb = 0.01;
    config.retention_days = RETENTION.as_secs_f64() / 86_400.0;
    config.retention_check_secs = 86_400;
}

#[tokio::test]
async fn retention_purges_old_segments_and_logs_the_purge() {
    let server = TestServer::start_with(retained).await;
    let client = server.client().await;
    let dir = server.data_dir.clone();
    let old = write(&client, &plan(1, 300)).await;
    client.rotate(true).await.unwrap();
    wait_compressed(&dir).await;
    let sealed = gz_files(&dir);
    assert!(sealed.len() >= 3, "{sealed:?}");
    // Each segment's lead copy and its index, which the purge removes too.
    let copies: Vec<String> = sealed
        .iter()
        .flat_map(|gz| {
            let stem = gz.strip_suffix(".log.gz").unwrap();
            [format!("{stem}.leads.zst"), format!("{stem}.leads.idx")]
        })
        .collect();
    let before = files(&dir);
    assert!(copies.iter().all(|c| before.contains(c)), "{before:?}");
    let through = old.last().unwrap();
    assert_eq!(through.seq, 300);

    tokio::time::sleep(RETENTION + Duration::from_millis(500)).await;
    write(&client, &[301..302, 302..303, 303..304]).await;
    let purge = client.apply_retention().await.unwrap();
    assert_eq!(purge.segments, sealed);
    assert_eq!((purge.first_seq, purge.through_seq), (1, 300));
    assert_eq!(purge.event_seq, 304);
    let left = files(&dir);
    for name in &sealed {
        assert!(!left.contains(name), "{name} still there: {left:?}");
        assert!(!left.contains(&idx_of(name)), "{name}'s index still there");
    }
    for copy in &copies {
        assert!(!left.contains(copy), "{copy} still there: {left:?}");
    }
    assert!(manifest(&dir).is_empty());

    // The purge is an event like any other.
    let purges = client
        .query_all(Query::new().event_type("auditlog.purge"))
        .await
        .unwrap();
    assert_eq!(seqs(&purges), vec![304]);
    let details = same(&purges[0]).details;
    assert_eq!(details["through_seq"].as_f64(), Some(300.0), "{details}");
    assert_eq!(
        details["last_signature"].as_str(),
        Some(through.signature.as_str())
    );
    assert_eq!(details["segments"], json!(sealed));

    // Verification starts after it; nothing purged is served any more.
    let check = |report: pb::VerifyIntegrityResponse| {
        assert!(report.ok, "{:?}", report.problems);
        assert_eq!((report.events_checked, report.head_seq), (4, 304));
    };
    check(client.verify().await.unwrap());
    let assert_gone = |events: &[pb::Event], what: &str| {
        assert!(
            events.iter().all(|e| e.seq > 300),
            "{what}: {:?}",
            seqs(events)
        );
    };
    let all = all_events(&client).await;
    assert_eq!(seqs(&all), vec![301, 302, 303, 304]);
    assert_gone(&client.query_all(Query::new()).await.unwrap(), "query");
    let lead = logged(5).lead_id;
    assert_gone(&client.lead_history(&lead).await.unwrap(), "history");
    assert_gone(&streamed(&client, Query::new(), 1).await, "stream");
    let s = client.stats(None).await.unwrap();
    assert_eq!((s.total_events, s.head_seq), (4, 304), "{s:?}");

    // Nothing old enough: nothing purged.
    let again = client.apply_retention().await.unwrap();
    assert!(again.segments.is_empty(), "{again:?}");
    assert_eq!(again.through_seq, 0);

    // A restart (which also runs retention once) keeps all of that.
    let server = server.restart(retained).await;
    let client = server.client().await;
    check(client.verify().await.unwrap());
    assert_eq!(seqs(&all_events(&client).await), vec![301, 302, 303, 304]);
    let next = client.log(varied(305)).await.unwrap();
    assert_eq!(next.seq, 305);

    // A purge record excuses only what it purged: a newer segment deleted by
    // hand is missing.
    for k in 0..3 {
        let first = 306 + k * 10;
        write(&client, &plan(first, 10)).await;
        client.rotate(true).await.unwrap();
    }
    wait_compressed(&dir).await;
    let segments = manifest(&dir);
    assert!(segments.len() >= 3, "{segments:?}");
    let victim = &segments[1];
    std::fs::remove_file(dir.join(&victim.file)).unwrap();
    let found = located(&client.verify().await.unwrap());
    assert_eq!(
        found,
        vec![(SegmentMissing, victim.file.clone(), victim.first)]
    );
}

// ---------------------------------------------------------------------------
// Rotation from the CLI
// ---------------------------------------------------------------------------

/// Runs `auditlog --server <url> ARGS` in a blocking task (the server runs in
/// this process), asserts it succeeded, and returns its stdout.
async fn auditlog(url: &str, args: &[&str]) -> String {
    let mut all = vec!["--server".to_owned(), url.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let out = run_to_end(
        cli_bin().to_path_buf(),
        all,
        vec![],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        out.code, 0,
        "auditlog {args:?} failed: {}{}",
        out.stderr, out.stdout
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_rotates_and_says_when_there_is_nothing_to_rotate() {
    let server = TestServer::start().await;
    let client = server.client().await;
    write(&client, &plan(1, 10)).await;

    let out = auditlog(&server.url, &["rotate", "--wait"]).await;
    let gz = gz_files(&server.data_dir);
    assert_eq!(gz.len(), 1, "{:?}", files(&server.data_dir));
    assert!(out.contains(&gz[0]), "{out:?} does not name {}", gz[0]);
    assert!(out.contains("1..=10"), "{out:?}");
    assert!(plain_sealed(&server.data_dir).is_empty());
    assert_eq!(manifest(&server.data_dir)[0].file, gz[0]);

    let out = auditlog(&server.url, &["rotate", "--wait"]).await;
    assert!(out.contains("nothing to rotate"), "{out:?}");
    assert_eq!(gz_files(&server.data_dir), gz);

    let out = auditlog(&server.url, &["--json", "rotate"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rotated"], json!(false), "{v}");
}

// ---------------------------------------------------------------------------
// kill -9 while rotating
// ---------------------------------------------------------------------------

/// The server binary on `dir` with tiny segments.
async fn spawn_tiny(dir: &Path) -> ServerProcess {
    let tiny = TINY_MB.to_string();
    ServerProcess::spawn_with(dir, &[("AUDITLOG_MAX_FILE_SIZE_MB", &tiny)]).await
}

/// Logs calls of `size` events until the server stops answering; returns
/// the receipts it got.
async fn write_until_killed(
    client: Client,
    first: u64,
    size: u64,
    count: Arc<AtomicUsize>,
) -> Vec<pb::Receipt> {
    let mut acked = Vec::new();
    for call in 0.. {
        let start = first + call * size;
        let result = if size == 1 {
            client.log(varied(start)).await.map(|r| vec![r])
        } else {
            client.log_batch((start..start + size).map(varied)).await
        };
        match result {
            Ok(receipts) => {
                count.fetch_add(receipts.len(), Ordering::Relaxed);
                acked.extend(receipts);
            }
            Err(_) => break,
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_rotations_loses_nothing_and_finishes_them_on_start() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let mut server = spawn_tiny(dir).await;
    let count = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for (w, size) in [1u64, 1, 10, 40].into_iter().enumerate() {
        let client = Client::connect(&server.url).await.unwrap();
        let first = (w as u64 + 1) * 1_000_000;
        writers.push(tokio::spawn(write_until_killed(
            client,
            first,
            size,
            Arc::clone(&count),
        )));
    }
    // Kill once several segments have been sealed and writes keep coming.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while count.load(Ordering::Relaxed) < 1500 || gz_files(dir).len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writers stalled at {} events: {:?}",
            count.load(Ordering::Relaxed),
            files(dir)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() >= 1500);

    let server = spawn_tiny(dir).await;
    let client = Client::connect(&server.url).await.unwrap();
    // Contiguous seqs, every acknowledged receipt in place, verification
    // clean.
    let head = assert_whole(&client, &acked).await.len() as u64;

    // The sealer finishes what the crash interrupted, leaving no temporary
    // file behind (those of the crash are removed on start; the sealer's own
    // are renamed once written).
    wait_compressed(dir).await;
    assert!(
        files(dir).iter().all(|n| !n.ends_with(".tmp")),
        "{:?}",
        files(dir)
    );
    let segments = manifest(dir);
    assert_eq!(
        segments.iter().map(|e| e.file.clone()).collect::<Vec<_>>(),
        gz_files(dir)
    );
    for pair in segments.windows(2) {
        assert_eq!(pair[1].first, pair[0].last + 1, "{pair:?}");
    }
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, head);
    // Still writable, the chain going on.
    assert_eq!(client.log(varied(1)).await.unwrap().seq, head + 1);
}
