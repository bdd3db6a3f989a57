//! The Rust client over several nodes: a node that is down is passed over
//! for the next, and a write with an idempotency key that meets UNAVAILABLE
//! is retried until it is stored, exactly once.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::time::Duration;

use auditlog_client::{Client, NewEvent, Query, Retry};
use common::{TestServer, wait_until};

#[tokio::test]
async fn a_node_that_is_down_is_passed_over_for_the_next() {
    let mut gone = TestServer::start().await;
    let gone_url = gone.url.clone();
    gone.stop().await;
    let (a, b) = (TestServer::start().await, TestServer::start().await);

    // Down at connect: the client connects to the next address.
    let client = Client::builder()
        .nodes([gone_url.as_str(), a.url.as_str()])
        .connect()
        .await
        .unwrap();
    assert_eq!(client.current_node(), a.url);
    client.log(NewEvent::new("email_sent")).await.unwrap();

    // Down between calls: a keyed write goes on to the next node.
    let mut a = a;
    let client = Client::builder()
        .nodes([a.url.as_str(), b.url.as_str()])
        .connect()
        .await
        .unwrap();
    assert_eq!(
        client.log(NewEvent::new("email_sent")).await.unwrap().seq,
        2
    );
    a.stop().await;
    let receipt = client
        .log(NewEvent::new("email_sent").idempotency_key("after-a"))
        .await
        .unwrap();
    assert_eq!(client.current_node(), b.url);
    assert_eq!(receipt.seq, 1);
    let on_b = b.client().await.query_all(Query::new()).await.unwrap();
    assert_eq!(on_b.len(), 1);
    assert_eq!(on_b[0].idempotency_key, "after-a");
    // Reads follow.
    assert_eq!(client.stats(None).await.unwrap().total_events, 1);
}

#[tokio::test]
async fn a_keyed_write_that_met_unavailable_is_retried_and_stored_once() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .node(&server.url)
        .retry(Retry {
            attempts: 200,
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
        })
        .connect()
        .await
        .unwrap();
    // The next fsync fails: the write is not acknowledged and the store
    // answers UNAVAILABLE until a restart.
    let trigger = server.data_dir.join("FAIL_NEXT_FSYNC");
    std::fs::write(&trigger, b"").unwrap();
    let write = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .log(NewEvent::new("email_sent").idempotency_key("order-1"))
                .await
        })
    };
    wait_until("the injected fsync failure", || {
        let fired = !trigger.exists();
        async move { fired.then_some(()).ok_or("not yet".to_owned()) }
    })
    .await;
    let stats = Client::connect(&server.url).await.unwrap();
    wait_until("writes refused", || {
        let stats = stats.clone();
        async move {
            let refused = stats
                .log(NewEvent::new("probe"))
                .await
                .is_err_and(|e| e.code() == Some(tonic::Code::Unavailable));
            refused.then_some(()).ok_or("still writing".to_owned())
        }
    })
    .await;
    let server = server.restart_on_same_port().await;

    let receipt = write.await.unwrap().unwrap();
    let events = server.client().await.query_all(Query::new()).await.unwrap();
    let keyed: Vec<_> = events
        .iter()
        .filter(|e| e.idempotency_key == "order-1")
        .collect();
    assert_eq!(keyed.len(), 1, "{events:?}");
    assert_eq!(keyed[0].seq, receipt.seq);
    assert_eq!(keyed[0].signature, receipt.signature);
}

/// A node that takes the connection and never speaks HTTP/2 (a hung
/// process, a TLS port reached over `http://`) fails each call UNAVAILABLE
/// once no answer has begun within the client's bound, instead of holding
/// it for ever; a read then goes on to the next node.
#[tokio::test]
async fn a_node_that_never_answers_fails_the_call_in_time_and_reads_move_on() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut socket, _) = silent.accept().await.unwrap();
            // Read whatever comes, answer nothing.
            held.push(tokio::spawn(async move {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut socket, &mut sink).await;
            }));
        }
    });
    let client = Client::builder()
        .node(silent_url.as_str())
        .answer_within(Duration::from_secs(1))
        .retry(Retry {
            attempts: 1,
            ..Retry::default()
        })
        .connect()
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(30), client.stats(None))
        .await
        .expect("the call waited past its bound")
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unavailable), "{e}");
    assert!(e.to_string().contains("no answer within 1 s"), "{e}");

    let server = TestServer::start().await;
    server
        .client()
        .await
        .log(NewEvent::new("email_sent"))
        .await
        .unwrap();
    let client = Client::builder()
        .nodes([silent_url.as_str(), server.url.as_str()])
        .answer_within(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(30), client.stats(None))
        .await
        .expect("the read waited past its bound")
        .unwrap();
    assert_eq!(stats.total_events, 1);
    assert_eq!(client.current_node(), server.url);
}
