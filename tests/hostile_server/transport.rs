//! Below gRPC: a server that sends an answer's headers and then nothing
//! (the connection alive, pings answered) must not hold a unary call for
//! ever; one that declares a 4 GiB message is refused at its prefix.

use std::time::{Duration, Instant};

use auditlog_client::Client;

use crate::hostile_server::fake::{Raw, raw_server};
use crate::hostile_server::{auditlog, refused};

#[tokio::test]
async fn a_unary_answer_whose_message_never_comes_fails_within_the_bound() {
    let (url, server) = raw_server(Raw::HeadersThenNothing).await;
    let client = Client::builder()
        .node(url)
        .answer_within(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(20), client.checkpoint(false)).await;
    let Ok(answer) = answer else {
        panic!("GetCheckpoint still waits after 20 s for a message its headers announced");
    };
    let e = answer.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unavailable), "{e}");
    assert!(e.to_string().contains("no whole answer within 1 s"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    server.abort();
}

#[tokio::test]
async fn a_message_that_declares_4_gib_is_refused_at_its_prefix() {
    let (url, server) = raw_server(Raw::HugeMessage).await;
    let client = Client::connect(url.clone()).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(20), client.checkpoint(false))
        .await
        .expect("a 4 GiB message is waited for")
        .unwrap_err();
    assert!(e.to_string().contains("message length too large"), "{e}");
    let run = auditlog(&url, &["checkpoint"]).await;
    refused(&run, "message length too large");
    server.abort();
}
