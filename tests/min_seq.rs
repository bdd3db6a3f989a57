//! Reads that carry `min_seq` (a receipt's seq): served once the node holds
//! that event, or refused at the call's deadline saying how far the node
//! has got. On a single node only a seq beyond the head waits, and is then
//! refused OUT_OF_RANGE naming the head (a seq this log never gave, which
//! no retry brings), not UNAVAILABLE (the cluster follower's "catching
//! up").

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::time::Duration;

use auditlog_client::{NewEvent, Query, pb};
use common::TestServer;
use tonic::{Code, Request};

/// `message` as a request with a deadline of `timeout`.
fn within<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

#[tokio::test]
async fn a_read_past_the_head_waits_for_it_or_says_how_far_the_node_is() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for _ in 0..3 {
        client.log(NewEvent::new("email_sent")).await.unwrap();
    }
    // A seq the node holds: answered at once.
    let held = client.query(Query::new().min_seq(3)).await.unwrap();
    assert_eq!(held.events.len(), 3);

    // Past the head, within a short deadline: refused OUT_OF_RANGE (there
    // is no replica to catch up and no other node to read from), saying
    // both seqs.
    let short = Duration::from_millis(300);
    for min_seq in [10, 1_000_000_000] {
        let query = pb::QueryRequest {
            min_seq,
            ..Default::default()
        };
        let stats = pb::GetStatsRequest {
            min_seq,
            ..Default::default()
        };
        let stream = pb::StreamEventsRequest {
            min_seq,
            ..Default::default()
        };
        let mut raw = client.raw();
        let refusals = [
            raw.query(within(query, short)).await.unwrap_err(),
            raw.get_stats(within(stats, short)).await.unwrap_err(),
            raw.stream_events(within(stream, short)).await.unwrap_err(),
        ];
        for status in refusals {
            assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
            let message = status.message();
            assert!(
                message.contains(&format!("min_seq {min_seq} is past this log's head 3")),
                "{message}"
            );
            assert!(!message.contains("replica"), "{message}");
        }
    }

    // A read waiting for seq 5 is answered with it once it is written.
    let waiting = {
        let mut raw = client.raw();
        let query = pb::QueryRequest {
            min_seq: 5,
            oldest_first: true,
            ..Default::default()
        };
        tokio::spawn(async move { raw.query(within(query, Duration::from_secs(60))).await })
    };
    client.log(NewEvent::new("email_sent")).await.unwrap();
    client.log(NewEvent::new("email_sent")).await.unwrap();
    let events = waiting.await.unwrap().unwrap().into_inner().events;
    assert_eq!(events.last().map(|e| e.seq), Some(5));
}
