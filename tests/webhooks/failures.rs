//! Failures and retries: an outage (error answers, then a closed port) is
//! made up in order without duplicates, `410 Gone` pauses delivery until a
//! restart, and unreachable endpoints never fail a `Log` call nor hold up
//! another endpoint.

use std::time::Duration;

use auditlog_client::NewEvent;
use auditlog_server::config::Start;

use crate::common::endpoints::closed_port;
use crate::common::{TestServer, cli};
use crate::webhooks::checks::{
    assert_chained, assert_complete_in_order, cli_status, delivered, log_n, status_of, status_when,
};
use crate::webhooks::receiver::{config, receiver, seq_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_made_up_in_order_without_duplicates() {
    let hook = receiver().await;
    let server = TestServer::start_with(|c| {
        c.webhooks = vec![config("hook", hook.url("/hook"), Start::Beginning)];
    })
    .await;
    let client = server.client().await;
    let mut seqs = log_n(&client, 10, "up").await;
    delivered(&hook, &seqs).await;

    // The receiver answers 500 for a while: writes go on.
    hook.answer(500);
    seqs.extend(log_n(&client, 10, "failing").await);
    let s = status_when(&client, "hook", "failures on HTTP 500", |s| {
        s.consecutive_failures >= 2
    })
    .await;
    assert!(s.last_error.contains("HTTP 500"), "{s:?}");
    assert!(s.last_error_at.is_some(), "{s:?}");
    assert_eq!((s.delivered_seq, s.behind), (10, 10), "{s:?}");
    let failures_on_500 = s.failures;
    assert!(
        hook.requests()
            .iter()
            .all(|r| r.status == 200 || seq_of(r) == 11),
        "only seq 11 is retried while it fails"
    );

    // Then it is gone altogether: the port is closed.
    hook.go_down();
    seqs.extend(log_n(&client, 10, "down").await);
    let s = status_when(&client, "hook", "failures on a closed port", |s| {
        s.failures > failures_on_500 + 1 && !s.last_error.contains("HTTP 500")
    })
    .await;
    assert!(s.behind >= 20 && s.consecutive_failures >= 2, "{s:?}");
    let shown = cli_status(&server.url, "hook").await;
    assert_eq!(shown["delivered_seq"], 10, "{shown}");
    assert_eq!(shown["behind"], 20, "{shown}");
    assert!(shown["failures"].as_u64().unwrap() > 0, "{shown}");
    assert!(!shown["last_error"].as_str().unwrap().is_empty(), "{shown}");
    assert!(shown["last_error_at"].is_string(), "{shown}");

    // Back: everything missed arrives, in order, once each.
    hook.come_up().await;
    hook.answer(200);
    let got = delivered(&hook, &seqs).await;
    assert_eq!(assert_complete_in_order(&got, &seqs), 0, "accepted twice");
    assert_chained(&got);
    assert!(hook.rejected().is_empty(), "{:?}", hook.rejected());
    let s = status_when(&client, "hook", "caught up", |s| s.behind == 0).await;
    assert_eq!(s.delivered_seq, 30, "{s:?}");
    assert_eq!(s.consecutive_failures, 0, "{s:?}");
    assert!(s.failures > failures_on_500, "{s:?}");
    assert_eq!(s.delivered, 30, "{s:?}");
    let shown = cli_status(&server.url, "hook").await;
    assert_eq!(
        (shown["behind"].as_u64(), shown["delivered_seq"].as_u64()),
        (Some(0), Some(30)),
        "{shown}"
    );
    assert_eq!(shown["consecutive_failures"], 0, "{shown}");
    // The table form names it too.
    let (code, stdout, stderr) = cli(&server.url, &["webhooks", "status"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("hook") && stdout.contains("30"), "{stdout}");
}

/// `410 Gone` is the receiver's word that it wants no more (Standard
/// Webhooks): delivery pauses, without retries, until a restart; ingest goes
/// on; and since the position stays, the restarted server delivers every
/// event from there, none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_410_gone_pauses_delivery_until_a_restart_and_misses_nothing() {
    let hook = receiver().await;
    let url = hook.url("/hook");
    let endpoint = move |c: &mut auditlog_server::Config| {
        c.webhooks = vec![config("hook", url.clone(), Start::Beginning)];
    };
    let server = TestServer::start_with(endpoint.clone()).await;
    let client = server.client().await;
    let mut seqs = log_n(&client, 3, "before").await;
    delivered(&hook, &seqs).await;

    hook.answer(410);
    seqs.extend(log_n(&client, 3, "gone").await);
    let s = status_when(&client, "hook", "paused on 410", |s| s.paused).await;
    assert!(s.last_error.contains("410"), "{s:?}");
    assert!(
        s.last_error.contains("paused until the server restarts"),
        "{s:?}"
    );
    assert_eq!((s.delivered_seq, s.failures), (3, 1), "{s:?}");
    // A retry would come within 0.5 to 0.63 s: none does.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.attempts(), 4, "{:?}", hook.requests());
    // Writes never wait for a webhook.
    seqs.extend(log_n(&client, 2, "while-paused").await);
    let s = status_of(&client, "hook").await;
    assert_eq!((s.delivered_seq, s.behind, s.paused), (3, 5, true), "{s:?}");
    let shown = cli_status(&server.url, "hook").await;
    assert_eq!(shown["paused"], true, "{shown}");
    let (code, stdout, stderr) = cli(&server.url, &["webhooks", "status"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("hook answered 410 Gone"), "{stdout}");

    // The receiver is back; so is delivery, after a restart, from seq 4.
    hook.answer(200);
    let server = server.restart(endpoint).await;
    let client = server.client().await;
    let got = delivered(&hook, &seqs).await;
    assert_eq!(assert_complete_in_order(&got, &seqs), 0, "accepted twice");
    assert_chained(&got);
    assert!(hook.rejected().is_empty(), "{:?}", hook.rejected());
    let s = status_when(&client, "hook", "caught up", |s| s.behind == 0).await;
    assert_eq!((s.delivered_seq, s.paused), (8, false), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_never_fail_log_nor_hold_up_another_endpoint() {
    let working = receiver().await;
    let server = TestServer::start_with(|c| {
        c.webhooks = (0..3)
            .map(|i| {
                config(
                    &format!("down-{i}"),
                    format!("http://127.0.0.1:{}/hook", closed_port()),
                    Start::Beginning,
                )
            })
            .chain([config("up", working.url("/hook"), Start::Beginning)])
            .collect();
    })
    .await;
    let client = server.client().await;
    let mut seqs = Vec::new();
    for i in 0..300 {
        let r = client
            .log(NewEvent::lead_ingested(format!("LEAD-{i}"), "web"))
            .await
            .unwrap_or_else(|e| panic!("log call {i} failed: {e}"));
        seqs.push(r.seq);
    }
    let batch = client
        .log_batch(
            (0..50)
                .map(|i| NewEvent::error("Timeout", &format!("batch {i}")))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    seqs.extend(batch.iter().map(|r| r.seq));
    assert_eq!(seqs, (1..=350).collect::<Vec<u64>>());

    let got = delivered(&working, &seqs).await;
    assert_eq!(assert_complete_in_order(&got, &seqs), 0);
    assert!(working.rejected().is_empty(), "{:?}", working.rejected());
    for i in 0..3 {
        let s = status_when(&client, &format!("down-{i}"), "failures", |s| {
            s.failures >= 1
        })
        .await;
        assert_eq!(
            (s.delivered_seq, s.delivered, s.behind),
            (0, 0, 350),
            "{s:?}"
        );
        assert!(!s.last_error.is_empty(), "{s:?}");
    }
    let s = status_when(&client, "up", "caught up", |s| s.behind == 0).await;
    assert_eq!((s.delivered_seq, s.failures), (350, 0), "{s:?}");
}
