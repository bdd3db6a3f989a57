//! Delivery and signatures: every event arrives in seq order, signed,
//! chained and as stored; a receiver holding another secret or expecting
//! another token rejects every delivery.

use std::collections::HashSet;

use auditlog_client::NewEvent;
use auditlog_server::config::Start;

use crate::common::endpoints::HttpEndpoint;
use crate::common::{self, TestServer};
use crate::webhooks::checks::{
    assert_as_stored, assert_chained, assert_complete_in_order, delivered, log_n, status_when,
};
use crate::webhooks::receiver::{OTHER_SECRET, SECRET, TOKEN, config, receiver, seq_of, verifier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_in_seq_order_signed_chained_and_as_stored() {
    let all = receiver().await;
    let new = receiver().await;
    // Events already in the log before any webhook was configured.
    let server = TestServer::start_with(common::with_test_key).await;
    let client = server.client().await;
    let mut seqs = log_n(&client, 5, "before").await;
    let batch = client
        .log_batch(vec![
            NewEvent::error("Timeout", "CRM did not answer").lead("LEAD-1"),
            NewEvent::crm_update("LEAD-1", "hubspot", "0031", &["stage"]).actor("sync"),
            NewEvent::new("custom_thing").details(serde_json::json!({"n": 1, "ok": true})),
        ])
        .await
        .unwrap();
    seqs.extend(batch.iter().map(|r| r.seq));

    let (all_url, new_url) = (all.url("/all"), new.url("/new"));
    let endpoints = move |c: &mut auditlog_server::Config| {
        common::with_test_key(c);
        c.webhooks = vec![
            config("all", all_url.clone(), Start::Beginning),
            config("new", new_url.clone(), Start::Now),
        ];
    };
    let server = server.restart(endpoints).await;
    let client = server.client().await;
    let mut new_seqs = log_n(&client, 10, "live").await;
    let batch = client
        .log_batch(
            (0..5)
                .map(|i| NewEvent::email_sent(format!("LEAD-{i}"), "a@example.com", "hi"))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    new_seqs.extend(batch.iter().map(|r| r.seq));
    seqs.extend(&new_seqs);
    assert_eq!(seqs, (1..=23).collect::<Vec<u64>>());

    // "all" gets the whole log, "new" only what came after it started.
    let got = delivered(&all, &seqs).await;
    let repeats = assert_complete_in_order(&got, &seqs);
    assert_eq!(repeats, 0, "delivered twice without any failure");
    assert_chained(&got);
    assert_as_stored(&got, &server.log_path());
    let got_new = delivered(&new, &new_seqs).await;
    assert_eq!(assert_complete_in_order(&got_new, &new_seqs), 0);
    assert_chained(&got_new);
    for endpoint in [&all, &new] {
        assert!(endpoint.rejected().is_empty(), "{:?}", endpoint.rejected());
        assert_eq!(endpoint.attempts(), endpoint.accepted().len() as u64);
    }
    // One webhook-id per event, stable: the event's id.
    let ids: HashSet<&str> = got
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    assert_eq!(ids.len(), got.len());

    let s = status_when(&client, "all", "all delivered", |s| s.delivered_seq == 23).await;
    assert_eq!(
        (s.behind, s.failures, s.consecutive_failures),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.delivered, 23, "{s:?}");
    assert!(
        s.last_error.is_empty() && s.last_error_at.is_none(),
        "{s:?}"
    );
    assert_eq!(s.url, all.url("/all"));
    let s = status_when(&client, "new", "new delivered", |s| s.delivered_seq == 23).await;
    assert_eq!((s.behind, s.delivered), (0, 15), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_holding_another_secret_rejects_every_delivery() {
    // The receivers' check is real: signed with SECRET, checked against
    // OTHER_SECRET, nothing passes, and the server keeps retrying.
    let wrong = HttpEndpoint::start_checked(Some(verifier(OTHER_SECRET, Some(TOKEN)))).await;
    let no_token = HttpEndpoint::start_checked(Some(verifier(SECRET, Some("another")))).await;
    let server = TestServer::start_with(|c| {
        c.webhooks = vec![
            config("wrong", wrong.url("/hook"), Start::Beginning),
            config("token", no_token.url("/hook"), Start::Beginning),
        ];
    })
    .await;
    let client = server.client().await;
    log_n(&client, 3, "x").await;
    for (endpoint, name) in [(&wrong, "wrong"), (&no_token, "token")] {
        let s = status_when(&client, name, "repeated failures", |s| {
            s.consecutive_failures >= 2
        })
        .await;
        assert!(s.last_error.contains("HTTP 400"), "{s:?}");
        assert_eq!((s.delivered_seq, s.delivered, s.behind), (0, 0, 3), "{s:?}");
        assert!(endpoint.accepted().is_empty());
        let rejected = endpoint.rejected();
        assert!(!rejected.is_empty());
        // Always seq 1: nothing later is sent before it is accepted.
        assert!(endpoint.requests().iter().all(|r| seq_of(r) == 1));
        let why = if name == "wrong" {
            "signature"
        } else {
            "authorization"
        };
        assert!(rejected.iter().all(|r| r.contains(why)), "{rejected:?}");
    }
}
