//! Shutdown under load, with the real `auditlog-server` binary and signals
//! sent by kill(1).
//!
//! - SIGTERM in the middle of a write burst with follow streams open: the
//!   follow streams end cleanly, the process exits 0 within its
//!   `shutdown_grace_secs` (plus a margin for a busy machine), and after a
//!   restart every acknowledged receipt is there exactly once, at its seq
//!   with its signature, seqs without a gap, the chain verifying.
//! - A second signal while the drain is held open (an export whose reader
//!   stopped reading, so its stream cannot finish until the grace runs out)
//!   exits at once; a restart recovers as after a crash.
//!
//! The only time bounds asserted are the behaviour under test: the drain
//! bound, and "at once" as a few seconds against a grace of minutes.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use auditlog_client::{Client, Query, pb};
use common::{ServerProcess, Writers, assert_whole, keyed, send, small_window_client};
use futures::StreamExt as _;
use tokio::task::JoinHandle;

/// What a busy machine may add to a drain: closing connections, the store's
/// last sync, the process exit.
const MARGIN: Duration = Duration::from_secs(20);
/// How long a task may take to notice that the server is gone.
const NOTICE: Duration = Duration::from_secs(20);

/// How a follow stream went: the events it got, and how it ended.
struct Followed {
    events: Vec<pb::Event>,
    end: Result<(), String>,
}

/// Opens a follow stream from seq 1 and reads it in a task until it ends.
async fn follow(url: &str) -> JoinHandle<Followed> {
    let client = Client::connect(url).await.unwrap();
    let mut stream = client.stream(Query::new(), 1, true).await.unwrap();
    tokio::spawn(async move {
        let _client = client;
        let mut events = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => events.push(event),
                Err(e) => {
                    return Followed {
                        events,
                        end: Err(e.to_string()),
                    };
                }
            }
        }
        Followed {
            events,
            end: Ok(()),
        }
    })
}

/// Waits for a follow stream to end, failing the test when it hangs.
async fn ended(task: JoinHandle<Followed>) -> Followed {
    tokio::time::timeout(NOTICE, task)
        .await
        .expect("a follow stream did not end")
        .unwrap()
}

/// Restarts the server on `dir` and checks the log: every receipt of
/// `acked` at its seq with its id and signature, no gap, verification
/// clean. Retries the `pending` calls with their keys (each writes at most
/// once), checks again, and checks every idempotency key is in the log
/// exactly once. Returns the log's events.
async fn assert_recovered(
    dir: &Path,
    mut acked: Vec<pb::Receipt>,
    pending: Vec<Vec<String>>,
) -> Vec<pb::Event> {
    let server = ServerProcess::spawn(dir).await;
    let client = Client::connect(&server.url).await.unwrap();
    assert_whole(&client, &acked).await;
    for keys in pending {
        acked.extend(send(&client, &keys).await.unwrap());
    }
    let events = assert_whole(&client, &acked).await;
    let mut keys = HashSet::new();
    for e in &events {
        assert!(
            keys.insert(&e.idempotency_key),
            "key {} is in the log twice",
            e.idempotency_key
        );
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_drains_and_exits_0_with_every_acknowledged_event_durable() {
    const GRACE_SECS: u64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let grace = GRACE_SECS.to_string();
    let mut server = ServerProcess::spawn_with(
        dir.path(),
        &[("AUDITLOG_SHUTDOWN_GRACE_SECS", grace.as_str())],
    )
    .await;
    let followers = [follow(&server.url).await, follow(&server.url).await];
    let writers =
        Writers::start(&server.url, ["a", "b", "c", "d"].map(|n| (n.to_owned(), 1))).await;
    writers.wait_for(200).await;

    server.signal("TERM");
    let status = server
        .wait_exit_within(Duration::from_secs(GRACE_SECS) + MARGIN)
        .await;
    assert!(status.success(), "exit status {status}");

    let (acked, pending) = writers.finish().await;
    let mut streams = Vec::new();
    for follower in followers {
        let followed = ended(follower).await;
        assert_eq!(followed.end, Ok(()), "a follow stream ended with an error");
        streams.push(followed.events);
    }

    let events = assert_recovered(dir.path(), acked, pending).await;
    // What the follow streams got is the log from its start, without a gap
    // or a duplicate.
    for seen in streams {
        assert!(!seen.is_empty(), "a follow stream got nothing");
        for (e, logged) in seen.iter().zip(&events) {
            assert_eq!(
                (e.seq, &e.signature),
                (logged.seq, &logged.signature),
                "a follow stream strayed from the log"
            );
        }
        assert!(seen.len() <= events.len());
    }
}

/// The scenario of a second signal: a drain held open by an export nobody
/// reads, a follow stream to tell when shutdown has begun, writers; SIGTERM,
/// then `second` (`TERM` or `INT`) once the drain is under way.
async fn second_signal_exits_at_once(second: &str) {
    // The drain could last this long: the second signal must not wait.
    const GRACE_SECS: &str = "600";
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        ServerProcess::spawn_with(dir.path(), &[("AUDITLOG_SHUTDOWN_GRACE_SECS", GRACE_SECS)])
            .await;
    let client = Client::connect(&server.url).await.unwrap();

    // About 1.5 MB of history: far more than the export's window and the
    // server's buffer of a stream hold.
    let mut acked = Vec::new();
    for batch in 0..20 {
        let events = (0..50)
            .map(|i| keyed(&format!("preload-{batch}-{i}")).detail("padding", "x".repeat(1500)));
        acked.extend(client.log_batch(events).await.unwrap());
    }
    let exporter = small_window_client(&server.url).await;
    let stalled = exporter
        .raw()
        .stream_events(pb::StreamEventsRequest {
            filter: None,
            from_seq: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let follower = follow(&server.url).await;
    let writers = Writers::start(&server.url, ["a", "b"].map(|n| (n.to_owned(), 1))).await;
    writers.wait_for(50).await;

    server.signal("TERM");
    // Shutdown has begun once the follow stream is ended...
    let followed = ended(follower).await;
    assert_eq!(followed.end, Ok(()));
    // ... and the export nobody reads keeps the drain going. (A drain with
    // nothing to wait for ends in milliseconds; this one has minutes.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        server.exited(),
        None,
        "the drain did not wait for the export"
    );

    server.signal(second);
    let status = server.wait_exit_within(Duration::from_secs(10)).await;
    // The shell's status for a process killed by that signal.
    let expected = if second == "INT" { 130 } else { 143 };
    assert_eq!(status.code(), Some(expected), "exit status {status}");
    drop(stalled);

    let (more, pending) = writers.finish().await;
    acked.extend(more);
    assert_recovered(dir.path(), acked, pending).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_sigterm_during_the_drain_exits_at_once_and_a_restart_recovers() {
    second_signal_exits_at_once("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigint_during_the_drain_exits_at_once_and_a_restart_recovers() {
    second_signal_exits_at_once("INT").await;
}
