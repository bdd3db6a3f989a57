//! `Client::follow` and `Client::follow_lines`: a live stream that outlives
//! its connection, through a real server restarted on the same port.
//!
//! - Across a restart on the same log, the follow says it lost the stream,
//!   resumes after the last record it yielded (found again with the same
//!   signature), and yields every event exactly once, in seq order,
//!   including those written while it was away; the same holds for stored
//!   lines, byte for byte as a fresh read gives them.
//! - A server back with another log ends the follow with `NotTheSameLog`:
//!   one that holds other records at the seqs followed (a longer log), and
//!   one whose log ends before the last seq followed (after its `min_seq`
//!   wait).
//!
//! Every wait is bounded by [`PATIENCE`], so a follow that stalls fails the
//! test instead of hanging it.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use auditlog_client::{Client, Error, FollowStream, Followed, NewEvent, Query, pb, stored_seq};
use auditlog_server::config::Config;
use common::TestServer;
use futures::StreamExt as _;
use tokio::time::timeout;

/// How long any single wait may take before the test is failed as hung.
const PATIENCE: Duration = Duration::from_secs(30);

fn event(tag: &str, i: u64) -> NewEvent {
    NewEvent::new("crm_update")
        .lead(format!("{tag}-{i}"))
        .detail("i", i)
}

async fn log_n(client: &Client, tag: &str, range: std::ops::Range<u64>) {
    client
        .log_batch(range.map(|i| event(tag, i)))
        .await
        .unwrap();
}

/// The follow's next yield.
async fn next<T>(follow: &mut FollowStream<T>) -> Result<Followed<T>, Error> {
    timeout(PATIENCE, follow.next())
        .await
        .expect("the follow yielded nothing in time")
        .expect("a follow ends only with an error")
}

/// Reads `n` items; losses and resumptions on the way are returned apart.
async fn items<T>(follow: &mut FollowStream<T>, n: usize) -> (Vec<T>, Vec<String>) {
    let (mut got, mut told) = (Vec::new(), Vec::new());
    while got.len() < n {
        match next(follow).await.unwrap() {
            Followed::Item(t) => got.push(t),
            Followed::Lost { error, .. } => told.push(format!("lost: {error}")),
            Followed::Resumed { node, seq } => told.push(format!("resumed on {node} at {seq}")),
        }
    }
    (got, told)
}

/// A server with a log of its own, on `addr` (freed by a stopped server).
async fn other_server_on(addr: SocketAddr, dir: &std::path::Path) -> TestServer {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let config = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    TestServer::start_on(listener, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_resumes_after_a_restart_with_nothing_missed_or_repeated() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_n(&client, "A", 0..3).await;
    let mut events = client.follow(Query::new(), 1);
    let mut lines = client.follow_lines(Query::new(), 2);
    let (first, told) = items(&mut events, 3).await;
    assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(told.is_empty(), "{told:?}");
    let (first_lines, _) = items(&mut lines, 2).await;
    let first_seqs: Vec<_> = first_lines.iter().map(|l| stored_seq(l)).collect();
    assert_eq!(first_seqs, [Some(2), Some(3)]);

    // Restarted on the same log; events are written before and after the
    // follows find it again.
    let server = server.restart_on_same_port().await;
    let client = server.client().await;
    log_n(&client, "B", 3..5).await;
    let (after, told) = items(&mut events, 2).await;
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(told.len(), 2, "one loss, one resumption: {told:?}");
    assert!(told[0].starts_with("lost: "), "{told:?}");
    assert!(
        told[1].ends_with(" at 3"),
        "resumed at the last seq: {told:?}"
    );
    log_n(&client, "C", 5..6).await;
    let (live, _) = items(&mut events, 1).await;
    assert_eq!(live[0].seq, 6);
    assert_eq!(live[0].lead_id, "C-5");

    // The lines follow: 4, 5, 6, each as a fresh read gives it.
    let (after_lines, told) = items(&mut lines, 3).await;
    assert!(told.iter().any(|t| t.ends_with(" at 3")), "{told:?}");
    let fresh: Vec<Vec<u8>> = client
        .stream_lines(Query::new(), 4, false)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(after_lines, fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_ends_when_the_server_comes_back_with_another_log() {
    let mut server = TestServer::start().await;
    let client = server.client().await;
    log_n(&client, "A", 0..3).await;
    let mut follow = client.follow(Query::new(), 1);
    let (seen, _) = items(&mut follow, 3).await;
    let addr = server.addr;
    server.stop().await;

    // A longer log on the same address: seq 3 is there, another record.
    let other_dir = tempfile::tempdir().unwrap();
    let other = other_server_on(addr, other_dir.path()).await;
    log_n(&other.client().await, "Z", 0..5).await;
    let error = loop {
        match next(&mut follow).await {
            Ok(Followed::Lost { .. }) => continue,
            Ok(other) => panic!("the follow went on over another log: {other:?}"),
            Err(e) => break e,
        }
    };
    let Error::NotTheSameLog { reason, .. } = &error else {
        panic!("not NotTheSameLog: {error:?}");
    };
    assert!(reason.contains("seq 3"), "{error}");
    assert!(timeout(PATIENCE, follow.next()).await.unwrap().is_none());
    assert_eq!(seen.last().unwrap().seq, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_ends_when_the_log_it_comes_back_to_is_shorter() {
    let mut server = TestServer::start().await;
    let client = server.client().await;
    log_n(&client, "A", 0..3).await;
    let mut follow = client.follow(Query::new().lead("A-2"), 1);
    let (seen, _): (Vec<pb::Event>, _) = items(&mut follow, 1).await;
    assert_eq!(seen[0].seq, 3);
    let addr = server.addr;
    server.stop().await;

    // One event where three were: the server waits out min_seq (5 s),
    // then says its head is short of it.
    let other_dir = tempfile::tempdir().unwrap();
    let other = other_server_on(addr, other_dir.path()).await;
    log_n(&other.client().await, "A", 2..3).await;
    let error = loop {
        match next(&mut follow).await {
            Ok(Followed::Lost { .. }) => continue,
            Ok(other) => panic!("the follow went on over a shorter log: {other:?}"),
            Err(e) => break e,
        }
    };
    assert!(matches!(error, Error::NotTheSameLog { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("does not hold seq 3"), "{text}");
    assert!(
        text.contains("head 1"),
        "the server's reason is kept: {text}"
    );
}
