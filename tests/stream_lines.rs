//! `StreamEvents` with `stored_lines`: each record exactly as the log holds
//! it, history and live, filtered like events; the lines alone rebuild the
//! root of a checkpoint signed with the verifier key (what an auditor
//! mirroring the log checks); large groups go in several messages, each
//! under the documented bound; and records read back from sealed segments
//! are the lines that were written.
//!
//! Every wait on a stream is bounded by [`PATIENCE`], so a stream that stalls
//! fails the test instead of hanging it.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::time::Duration;

use auditlog_client::proof::{leaf_hash, root_of};
use auditlog_client::{LineStream, NewEvent, Query, pb};
use common::witness::{checkpoint_of, trusted_key};
use common::{TestServer, read_lines};
use futures::StreamExt as _;
use pb::audit_service_client::AuditServiceClient;
use prost::Message as _;
use tokio::time::timeout;

/// How long any single wait may take before the test is failed as hung.
const PATIENCE: Duration = Duration::from_secs(30);

/// The most bytes of lines a message holds, unless it holds one line.
const MESSAGE_BOUND: usize = 1 << 20;

/// Event `i` of the sample: types, leads and details with escapes.
fn sample(i: u64) -> NewEvent {
    NewEvent::new(["lead_ingested", "email_sent", "error"][(i % 3) as usize])
        .lead(format!("LEAD-{}", i % 4))
        .detail("i", i)
        .detail("note", "tab\t, quote \", é, \u{1}")
}

/// The next `n` lines of `stream`, as text.
async fn take(stream: &mut LineStream, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let line = timeout(PATIENCE, stream.next())
            .await
            .unwrap_or_else(|_| panic!("stalled after {} of {n} lines", out.len()))
            .unwrap_or_else(|| panic!("ended after {} of {n} lines", out.len()))
            .unwrap();
        out.push(String::from_utf8(line).unwrap());
    }
    out
}

/// Every line of a stream that ends by itself.
async fn drain(stream: LineStream) -> Vec<String> {
    timeout(PATIENCE, stream.collect::<Vec<_>>())
        .await
        .expect("the stream did not end")
        .into_iter()
        .map(|l| String::from_utf8(l.unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_lines_are_the_log_and_rebuild_a_signed_checkpoint() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log_batch((0..50).map(sample)).await.unwrap();
    for i in 50..60 {
        client.log(sample(i)).await.unwrap();
    }
    let mut follow = client.stream_lines(Query::new(), 1, true).await.unwrap();
    let mut got = take(&mut follow, 60).await;
    // Live: groups committed after the stream caught up.
    client.log_batch((60..100).map(sample)).await.unwrap();
    got.extend(take(&mut follow, 40).await);
    client.log(sample(100)).await.unwrap();
    got.extend(take(&mut follow, 1).await);

    let log = read_lines(&server.data_dir.join("audit.log"));
    assert_eq!(log.len(), 101);
    assert_eq!(got, log, "the stream's lines are not the log's");

    // An auditor holding only the verifier key: the lines' leaf hashes
    // make the root the log signed.
    let key = trusted_key(&server.data_dir);
    let checkpoint = checkpoint_of(&client, &key, 101).await;
    let leaves: Vec<_> = got.iter().map(|l| leaf_hash(l.as_bytes())).collect();
    assert_eq!(checkpoint.checkpoint.root, root_of(&leaves));

    // A filter applies as it does to events; without follow the history ends.
    let lead = drain(
        client
            .stream_lines(Query::new().lead("LEAD-1").event_type("error"), 1, false)
            .await
            .unwrap(),
    )
    .await;
    let want: Vec<&String> = log
        .iter()
        .filter(|l| l.contains(r#""lead_id":"LEAD-1""#) && l.contains(r#""event_type":"error""#))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(lead.iter().collect::<Vec<_>>(), want);
    // From a seq in the middle.
    let tail = drain(client.stream_lines(Query::new(), 90, false).await.unwrap()).await;
    assert_eq!(tail, log[89..]);
}

/// Reads raw messages of a stored-lines stream until `lines` lines came;
/// returns the lines and how many messages carried them, each message
/// checked against the bound.
async fn read_messages(
    stream: &mut tonic::Streaming<pb::StreamEventsResponse>,
    lines: usize,
) -> (Vec<Vec<u8>>, usize) {
    let mut got = Vec::new();
    let mut messages = 0;
    while got.len() < lines {
        let message = timeout(PATIENCE, stream.message())
            .await
            .expect("the stream stalled")
            .unwrap()
            .expect("the stream ended");
        assert!(message.event.is_none());
        assert!(!message.lines.is_empty(), "a message without lines");
        assert!(
            message.encoded_len() <= MESSAGE_BOUND || message.lines.len() == 1,
            "a message of {} bytes holds {} lines",
            message.encoded_len(),
            message.lines.len()
        );
        messages += 1;
        got.extend(message.lines);
    }
    (got, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_groups_span_bounded_messages_and_sealed_segments_read_as_written() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let blob = "x".repeat(60_000);
    let big = |i: u64| {
        NewEvent::new("error")
            .lead(format!("BIG-{}", i % 2))
            .detail("blob", blob.as_str())
            .detail("i", i)
    };
    // 40 records of about 60 KB: 2.4 MB in one group, from the file.
    client.log_batch((0..40).map(big)).await.unwrap();
    let mut audit = AuditServiceClient::new(server.channel().await);
    let request = pb::StreamEventsRequest {
        from_seq: 1,
        follow: true,
        stored_lines: true,
        ..Default::default()
    };
    let mut stream = audit.stream_events(request).await.unwrap().into_inner();
    let (mut got, messages) = read_messages(&mut stream, 40).await;
    assert!(messages >= 3, "2.4 MB of history in {messages} messages");
    // And as large a group live.
    client.log_batch((40..80).map(big)).await.unwrap();
    let (live, messages) = read_messages(&mut stream, 40).await;
    assert!(messages >= 3, "2.4 MB live in {messages} messages");
    got.extend(live);
    let written = read_lines(&server.data_dir.join("audit.log"));
    let got: Vec<String> = got
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect();
    assert_eq!(got, written);

    // Sealed and compressed, the segment gives back the same lines.
    client.rotate(true).await.unwrap();
    let sealed = drain(client.stream_lines(Query::new(), 1, false).await.unwrap()).await;
    assert_eq!(sealed[..80], written[..]);
}
