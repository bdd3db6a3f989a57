//! `StreamEvents` through the real client: history up to the head and then
//! the end (the export path); history then live with `follow`, with no gap and
//! no duplicate while writers run, each event as a query reads it; a subscriber that does not read for a long
//! time still gets everything and never slows the writers; and follow streams
//! end when the server shuts down.
//!
//! Every wait on a stream is bounded by [`PATIENCE`], so a stream that stalls
//! or never ends fails the test instead of hanging it.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use auditlog_client::{Client, EventStream, NewEvent, Query, pb};
use auditlog_server::config::Durability;
use common::{TestServer, seqs, small_window_client};
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio::time::timeout;

/// How long any single wait may take before the test is failed as hung.
const PATIENCE: Duration = Duration::from_secs(30);

/// Event `i` of the sample: a type, lead and workflow cycling through small sets.
fn sample(i: u64) -> NewEvent {
    let event_type = ["lead_ingested", "email_sent", "error"][(i % 3) as usize];
    NewEvent::new(event_type)
        .lead(format!("LEAD-{}", i % 4))
        .workflow(["sales", "support"][(i % 2) as usize])
        .detail("i", i)
}

/// Logs `n` sample events in one batch.
async fn log_samples(client: &Client, n: u64) -> Vec<pb::Receipt> {
    client.log_batch((0..n).map(sample)).await.unwrap()
}

/// Reads a stream that must end by itself, to its end.
async fn drain(stream: EventStream) -> Vec<pb::Event> {
    let items = timeout(PATIENCE, stream.collect::<Vec<_>>())
        .await
        .expect("the stream did not end");
    items.into_iter().map(Result::unwrap).collect()
}

/// Reads `stream` until it delivers seq `last` (or a later one).
async fn read_until(stream: &mut EventStream, last: u64) -> Vec<pb::Event> {
    let mut out = Vec::new();
    while out.last().is_none_or(|e: &pb::Event| e.seq < last) {
        let item = timeout(PATIENCE, stream.next())
            .await
            .unwrap_or_else(|_| {
                panic!("stalled after {} events, waiting for seq {last}", out.len())
            })
            .unwrap_or_else(|| panic!("ended after {} events, before seq {last}", out.len()));
        out.push(item.unwrap());
    }
    out
}

/// The seqs of every stored event matching `query`, oldest first.
async fn matching(client: &Client, query: Query) -> Vec<u64> {
    seqs(
        &client
            .query_all(query.oldest_first().limit(1000))
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn without_follow_the_stream_sends_the_history_then_ends() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_samples(&client, 20).await;

    let all = drain(client.stream(Query::new(), 1, false).await.unwrap()).await;
    assert_eq!(seqs(&all), (1..=20).collect::<Vec<_>>());
    // The stream carries the same events a query returns, field for field.
    assert_eq!(
        all,
        client.query_all(Query::new().oldest_first()).await.unwrap()
    );
    let from_zero = drain(client.stream(Query::new(), 0, false).await.unwrap()).await;
    assert_eq!(from_zero, all, "from_seq 0 means from the first event");

    for query in [
        Query::new().event_type("error"),
        Query::new().lead("LEAD-1").workflow("support"),
        Query::new()
            .event_type("email_sent")
            .event_type("error")
            .lead("LEAD-2"),
    ] {
        let want = matching(&client, query.clone()).await;
        assert!(!want.is_empty());
        let got = drain(client.stream(query.clone(), 1, false).await.unwrap()).await;
        assert_eq!(seqs(&got), want, "{:?}", query.request.filter);
    }

    for beyond in [21, 1000] {
        let none = drain(client.stream(Query::new(), beyond, false).await.unwrap()).await;
        assert!(none.is_empty(), "from_seq {beyond} is past the head");
    }
}

#[tokio::test]
async fn without_follow_the_stream_stops_at_the_head_it_started_with() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_samples(&client, 20).await;
    let mut stream = client.stream(Query::new(), 1, false).await.unwrap();
    // Once the first event has arrived the stream is under way.
    let first = read_until(&mut stream, 1).await;
    log_samples(&client, 5).await;
    let rest = drain(stream).await;
    assert_eq!(
        seqs(&[first, rest].concat()),
        (1..=20).collect::<Vec<_>>(),
        "events logged after the call started are not part of the export"
    );
}

#[tokio::test]
async fn from_seq_in_the_middle_resumes_exactly_there() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_samples(&client, 20).await;

    let tail = drain(client.stream(Query::new(), 8, false).await.unwrap()).await;
    assert_eq!(seqs(&tail), (8..=20).collect::<Vec<_>>());

    // With follow: the history from 8, then what is logged next.
    let mut following = client.stream(Query::new(), 8, true).await.unwrap();
    let history = read_until(&mut following, 20).await;
    // And a seq past the head waits for that event.
    let mut ahead = client.stream(Query::new(), 23, true).await.unwrap();
    log_samples(&client, 5).await;
    let live = read_until(&mut following, 25).await;
    assert_eq!(
        seqs(&[history, live].concat()),
        (8..=25).collect::<Vec<_>>()
    );
    assert_eq!(seqs(&read_until(&mut ahead, 25).await), [23, 24, 25]);
}

/// The writers of the live test: each logs `per_writer` sample events one
/// call at a time, pausing after `pause_at` until `go` is set.
fn spawn_writers(
    server: &TestServer,
    writers: u64,
    per_writer: u64,
    pause_at: u64,
    go: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let url = server.url.clone();
            let mut go = go.clone();
            tokio::spawn(async move {
                let client = Client::connect(url).await.unwrap();
                for i in 0..per_writer {
                    if i == pause_at {
                        go.wait_for(|go| *go).await.unwrap();
                    }
                    client.log(sample(w * per_writer + i)).await.unwrap();
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_sends_history_then_live_with_no_gap_or_duplicate_while_writers_run() {
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 300;
    let server = TestServer::start().await;
    let client = server.client().await;
    let (go, go_rx) = watch::channel(false);
    // Each writer pauses after 250 events until the streams are open, so
    // the streams see a history written while they open, then live events.
    let writers = spawn_writers(&server, WRITERS, PER_WRITER, 250, go_rx);
    while client.stats(None).await.unwrap().head_seq < WRITERS * 150 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let queries = [
        Query::new(),
        Query::new().workflow("support"),
        Query::new().event_type("error").event_type("lead_ingested"),
    ];
    let mut streams = Vec::new();
    for q in &queries {
        streams.push(client.stream(q.clone(), 1, true).await.unwrap());
    }
    go.send(true).unwrap();
    for w in writers {
        timeout(PATIENCE, w).await.unwrap().unwrap();
    }
    // A last event every stream matches: whatever a stream sent before it
    // must be exactly the matching events, each once.
    let sentinel = client
        .log(NewEvent::new("error").workflow("support"))
        .await
        .unwrap();
    assert_eq!(sentinel.seq, WRITERS * PER_WRITER + 1);

    // Each live event is encoded once and sent to every stream it matches:
    // what each stream got is, field for field, what a query reads back.
    for (q, stream) in queries.into_iter().zip(&mut streams) {
        let want = client
            .query_all(q.clone().oldest_first().limit(1000))
            .await
            .unwrap();
        assert_eq!(want.last().map(|e| e.seq), Some(sentinel.seq));
        let got = read_until(stream, sentinel.seq).await;
        assert_eq!(seqs(&got), seqs(&want), "{:?}", q.request.filter);
        assert_eq!(got, want, "{:?}", q.request.filter);
    }
    assert_eq!(
        matching(&client, Query::new()).await,
        (1..=sentinel.seq).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_misses_nothing_and_blocks_no_writer() {
    const WRITERS: u64 = 8;
    const PER_ROUND: u64 = 250;
    // The server buffers 1,024 committed groups per subscriber and 256
    // events in its stream channel; with the 64 KiB window a few hundred
    // more are in flight. Writing well over that many groups while the
    // stream is unread forces the subscriber to lag and catch up from the
    // file. Fsync is off only to make the groups (one per commit) quick.
    const GROUPS_NEEDED: usize = 2_500;
    let server = TestServer::start_with(|c| c.durability = Durability::OsBuffered).await;
    let subscriber = small_window_client(&server.url).await;
    let mut stream = subscriber.stream(Query::new(), 1, true).await.unwrap();

    // Rounds of 8 writers × 250 single `log` calls, until the receipts show
    // enough distinct commit groups (events of one group share a timestamp).
    let clients: Vec<Client> =
        futures::future::join_all((0..WRITERS).map(|_| server.client())).await;
    let next = Arc::new(AtomicU64::new(0));
    let mut groups = HashSet::new();
    for _round in 0..10 {
        let writers = clients.iter().cloned().map(|client| {
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut stamps = Vec::new();
                for _ in 0..PER_ROUND {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let r = client.log(sample(i)).await.unwrap();
                    stamps.push(r.timestamp.unwrap());
                }
                stamps
            })
        });
        // The stream is unread all this time: writers finishing at all
        // shows a slow subscriber does not hold them back.
        let done = timeout(PATIENCE, futures::future::join_all(writers))
            .await
            .expect("writers blocked while a subscriber was not reading");
        for stamps in done {
            groups.extend(stamps.unwrap().into_iter().map(|t| (t.seconds, t.nanos)));
        }
        if groups.len() >= GROUPS_NEEDED {
            break;
        }
    }
    assert!(
        groups.len() >= GROUPS_NEEDED,
        "only {} commit groups were written",
        groups.len()
    );

    let head = next.load(Ordering::Relaxed);
    let got = read_until(&mut stream, head).await;
    assert_eq!(seqs(&got), (1..=head).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_end_when_the_server_stops() {
    let mut server = TestServer::start().await;
    let client = server.client().await;
    log_samples(&client, 3).await;
    let mut caught_up = client.stream(Query::new(), 1, true).await.unwrap();
    read_until(&mut caught_up, 3).await;
    let mut waiting = client.stream(Query::new(), 100, true).await.unwrap();
    let mut filtered = client
        .stream(Query::new().lead("LEAD-NOBODY"), 1, true)
        .await
        .unwrap();

    timeout(PATIENCE, server.stop())
        .await
        .expect("stop hung with follow streams open");
    for (name, stream) in [
        ("caught up", &mut caught_up),
        ("waiting past the head", &mut waiting),
        ("matching nothing", &mut filtered),
    ] {
        let end = timeout(PATIENCE, stream.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: the stream did not end"));
        assert!(
            end.as_ref().is_none_or(Result::is_err),
            "{name}: got {end:?} after shutdown"
        );
    }
}

/// A record whose MAC fails (one digit changed in the log file while the
/// server was stopped): a stream sends every event before it, then
/// DATA_LOSS naming its seq and where to read on, and reading on from there
/// gets the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_ends_a_stream_after_every_event_before_it() {
    const DAMAGED: u64 = 600;
    let server = TestServer::start().await;
    let client = server.client().await;
    for _ in 0..7 {
        log_samples(&client, 100).await;
    }
    let server = server
        .restart_after(
            |dir| {
                let path = dir.join("audit.log");
                let text = std::fs::read_to_string(&path).unwrap();
                let head = format!("{{\"seq\":{DAMAGED},");
                let at = text.find(&head).unwrap();
                let digit = at + text[at..].find("\"i\":").unwrap() + 4;
                let mut bytes = text.into_bytes();
                bytes[digit] = if bytes[digit] == b'1' { b'2' } else { b'1' };
                std::fs::write(&path, bytes).unwrap();
            },
            |_| {},
        )
        .await;
    let client = server.client().await;
    let (sent, error) = timeout(PATIENCE, common::export_from(&client, 1))
        .await
        .expect("the stream stalled");
    let error = error.expect("the stream ended without an error");
    let before: Vec<u64> = (1..DAMAGED).collect();
    assert_eq!(seqs(&sent), before, "every event before it");
    assert_eq!(error.code(), tonic::Code::DataLoss, "{error:?}");
    let text = error.message().to_owned();
    assert!(
        text.contains(&format!("damaged at seq {DAMAGED}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("from seq {}", DAMAGED + 1)),
        "{text}"
    );
    let rest = drain(
        client
            .stream(Query::new(), DAMAGED + 1, false)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seqs(&rest), (DAMAGED + 1..=700).collect::<Vec<_>>());
}
