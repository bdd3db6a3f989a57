//! Outgoing webhooks against a real HTTP receiver: every event, in seq
//! order, chained, signed per Standard Webhooks; an outage is made up for;
//! delivery resumes where it stopped after a server restart.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::time::{Duration, Instant};

use auditlog_client::NewEvent;
use auditlog_server::config::Secret;
use auditlog_server::webhooks::{Start, WebhookConfig};
use base64::Engine as _;
use common::TestServer;
use common::receivers::{HttpReceiver, Received};
use hmac::Mac as _;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn endpoint(port: u16) -> WebhookConfig {
    WebhookConfig {
        name: "receiver".into(),
        url: format!("http://127.0.0.1:{port}/hook"),
        event_types: vec![],
        workflows: vec![],
        bearer_token: Some(Secret::from("hook-token")),
        secret: Some(Secret::from(SECRET)),
        secret_file: None,
        start: Start::Beginning,
        timeout_secs: 5,
        max_backoff_secs: 1,
    }
}

/// Checks the Standard Webhooks signature and the bearer token.
fn verify(r: &Received) {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(r.headers["webhook-id"].as_bytes());
    mac.update(b".");
    mac.update(r.headers["webhook-timestamp"].as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(r.headers["webhook-signature"], expected);
    assert_eq!(r.headers["authorization"], "Bearer hook-token");
    assert_eq!(r.headers["webhook-id"], r.json["data"]["id"]);
}

/// Waits until seqs 1..=head have arrived; returns the seqs in arrival order.
async fn delivered(receiver: &HttpReceiver, head: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = receiver.received();
        let seqs: Vec<u64> = got
            .iter()
            .map(|r| r.json["data"]["seq"].as_u64().unwrap())
            .collect();
        if (1..=head).all(|s| seqs.contains(&s)) {
            for r in &got {
                verify(r);
            }
            return seqs;
        }
        assert!(
            Instant::now() < deadline,
            "only {seqs:?} of 1..={head} arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// First arrivals are in seq order and each chains to the one before.
fn assert_in_order_and_chained(receiver: &HttpReceiver) {
    let mut seen = std::collections::BTreeMap::new();
    let mut firsts = Vec::new();
    for r in receiver.received() {
        let seq = r.json["data"]["seq"].as_u64().unwrap();
        if let std::collections::btree_map::Entry::Vacant(e) = seen.entry(seq) {
            firsts.push(seq);
            e.insert(r.json["data"].clone());
        }
    }
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "out of order: {firsts:?}"
    );
    for (seq, data) in &seen {
        if let Some(before) = seen.get(&(seq - 1)) {
            assert_eq!(
                data["prev"], before["signature"],
                "seq {seq} does not chain"
            );
        }
    }
}

async fn log(client: &auditlog_client::Client, n: u64) {
    for i in 0..n {
        client
            .log(NewEvent::lead_ingested(format!("L{i}"), "web"))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_signed_in_order_and_outages_are_made_up() {
    let receiver = HttpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start_in(dir.path(), |c| c.webhooks = vec![endpoint(receiver.port)]).await;
    let client = server.client().await;
    log(&client, 20).await;
    delivered(&receiver, 20).await;

    // The receiver fails for a while: writes go on, nothing is lost.
    receiver.answer(500);
    log(&client, 20).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = client.webhook_status().await.unwrap();
    assert!(
        status[0].failures > 0 && !status[0].last_error.is_empty(),
        "{status:?}"
    );
    assert!(status[0].behind > 0, "{status:?}");
    receiver.answer(200);
    delivered(&receiver, 40).await;
    assert_in_order_and_chained(&receiver);
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.webhook_status().await.unwrap()[0].behind > 0 {
        assert!(Instant::now() < deadline, "still behind");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_where_it_stopped_after_a_restart() {
    let receiver = HttpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = receiver.port;
    let server = TestServer::start_in(dir.path(), |c| c.webhooks = vec![endpoint(port)]).await;
    let client = server.client().await;
    log(&client, 10).await;
    delivered(&receiver, 10).await;
    // Down while events are written and while the server restarts.
    receiver.answer(503);
    log(&client, 10).await;
    let server = server.restart(|c| c.webhooks = vec![endpoint(port)]).await;
    let client = server.client().await;
    log(&client, 5).await;
    receiver.answer(200);
    let seqs = delivered(&receiver, 25).await;
    assert_in_order_and_chained(&receiver);
    // At least once: a repeat is possible only for what was in flight.
    let repeats = seqs.len() - 25;
    assert!(repeats <= 1, "{repeats} repeats: {seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_deliver_only_matching_events() {
    let receiver = HttpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| {
        let mut e = endpoint(receiver.port);
        e.event_types = vec!["error".into()];
        e.workflows = vec!["sales".into()];
        c.webhooks = vec![e];
    })
    .await;
    let client = server.client().await;
    client
        .log(NewEvent::error("A", "a").workflow("sales"))
        .await
        .unwrap();
    client
        .log(NewEvent::error("B", "b").workflow("other"))
        .await
        .unwrap();
    client
        .log(NewEvent::lead_ingested("L", "web").workflow("sales"))
        .await
        .unwrap();
    let last = client
        .log(NewEvent::error("C", "c").workflow("sales"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.received().len() < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seqs: Vec<u64> = receiver
        .received()
        .iter()
        .map(|r| r.json["data"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, last.seq]);
}
