//! Outgoing webhooks end to end, against real HTTP receivers on 127.0.0.1
//! that authenticate every request themselves, as a Standard Webhooks
//! receiver would: the `webhook-signature` (HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}` with the `whsec_` secret), a
//! recent `webhook-timestamp`, and the bearer token. A request that fails is
//! answered 400 and recorded; every test ends with none.
//!
//! What must hold: every event arrives in seq order, chained (`data.prev` is
//! the previous `data.signature`) and exactly as stored; filters deliver only
//! matching events; an outage (error answers, then a closed port) is made up
//! in order without duplicates; delivery resumes where it stopped after a
//! clean restart and after a crash; status shows the outage and the
//! recovery; an unreachable endpoint never fails a `Log` call nor holds up
//! another endpoint; an endpoint configured by URL alone signs with a secret
//! the server generates once and keeps, which `auditlog webhooks secret`
//! shows; a malformed secret stops the server with an explanation.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auditlog_client::{Client, NewEvent, pb};
use auditlog_server::config::Secret;
use auditlog_server::config::{Start, WebhookConfig};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::endpoints::{Check, HttpEndpoint, Request, closed_port, webhook_config};
use common::{ServerProcess, TEST_KEY, TestServer, cli, wait_until, wait_until_within};
use hmac::Mac as _;
use serde_json::Value;

/// The signing secret the server is given (the Standard Webhooks example).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another valid secret, for a receiver that must reject everything.
const OTHER_SECRET: &str = "whsec_c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1zZXJ2ZXJz";
const TOKEN: &str = "receiver-token-123";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn config(name: &str, url: String, start: Start) -> WebhookConfig {
    WebhookConfig {
        bearer_token: Some(Secret::from(TOKEN)),
        secret: Some(Secret::from(SECRET)),
        start,
        ..webhook_config(name, url)
    }
}

/// What a Standard Webhooks receiver checks, for a receiver holding
/// `secret` and expecting `token` (no `Authorization` header when `None`).
fn verifier(secret: &'static str, token: Option<&'static str>) -> Check {
    Box::new(move |r: &Request| verify(r, secret, token))
}

fn verify(r: &Request, secret: &str, token: Option<&str>) -> Result<(), String> {
    let header = |name: &str| {
        r.headers
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no {name} header"))
    };
    if r.method != "POST" {
        return Err(format!("method {}", r.method));
    }
    if !header("content-type")?.starts_with("application/json") {
        return Err(format!("content-type {:?}", r.headers.get("content-type")));
    }
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    // Replay protection: the timestamp must be recent.
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| format!("webhook-timestamp {timestamp:?} is not a number"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - sent).abs() > 300 {
        return Err(format!("webhook-timestamp {sent} is {}s off", now - sent));
    }
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&r.body);
    let expected = BASE64.encode(mac.finalize().into_bytes());
    // Several signatures may be sent, space-separated, each `v1,<base64>`.
    let signatures = header("webhook-signature")?;
    let valid = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected);
    if !valid {
        return Err(format!("bad webhook-signature {signatures:?}"));
    }
    match (token, r.headers.get("authorization")) {
        (Some(t), Some(a)) if *a == format!("Bearer {t}") => {}
        (None, None) => {}
        (_, a) => return Err(format!("authorization {a:?}")),
    }
    if r.json["type"] != "auditlog.event" {
        return Err(format!("type {}", r.json["type"]));
    }
    if r.json["data"]["id"] != id.as_str() {
        return Err(format!(
            "webhook-id {id} is not data.id {}",
            r.json["data"]["id"]
        ));
    }
    if r.json["data"]["seq"].as_u64().is_none() {
        return Err("no data.seq".into());
    }
    Ok(())
}

/// A receiver checking every request as [`SECRET`] and [`TOKEN`] demand.
async fn receiver() -> HttpEndpoint {
    HttpEndpoint::start_checked(Some(verifier(SECRET, Some(TOKEN)))).await
}

fn seq_of(r: &Request) -> u64 {
    r.json["data"]["seq"].as_u64().unwrap()
}

/// Waits until every seq in `expected` was accepted; returns the accepted
/// requests in arrival order.
async fn delivered(endpoint: &HttpEndpoint, expected: &[u64]) -> Vec<Request> {
    let want: BTreeSet<u64> = expected.iter().copied().collect();
    let want = &want;
    wait_until(&format!("seqs {expected:?}"), || async move {
        let got = endpoint.accepted();
        let seen: BTreeSet<u64> = got.iter().map(seq_of).collect();
        if want.is_subset(&seen) {
            Ok(got)
        } else {
            Err(format!(
                "missing {:?}; {} attempts; rejected {:?}",
                want.difference(&seen).collect::<Vec<_>>(),
                endpoint.attempts(),
                endpoint.rejected()
            ))
        }
    })
    .await
}

/// The accepted deliveries cover exactly `expected`, each seq's first
/// arrival in ascending order; returns how many arrivals were repeats.
fn assert_complete_in_order(got: &[Request], expected: &[u64]) -> usize {
    let mut seen = HashSet::new();
    let firsts: Vec<u64> = got.iter().map(seq_of).filter(|s| seen.insert(*s)).collect();
    assert_eq!(
        firsts, expected,
        "first arrivals are not exactly the expected seqs in order"
    );
    got.len() - firsts.len()
}

/// Every delivery chains to the one before it in the log: for consecutive
/// seqs, `data.prev` is the previous `data.signature`.
fn assert_chained(got: &[Request]) {
    let mut by_seq = std::collections::BTreeMap::new();
    for r in got {
        by_seq.insert(seq_of(r), r.json["data"].clone());
    }
    for (seq, data) in &by_seq {
        if *seq == 1 {
            assert_eq!(data["prev"], GENESIS, "seq 1");
        }
        if let Some(before) = by_seq.get(&(seq - 1)) {
            assert_eq!(
                data["prev"], before["signature"],
                "seq {seq} does not chain"
            );
        }
    }
}

/// `data` is the record exactly as stored in the log file: every field the
/// file holds, with the same value.
fn assert_as_stored(got: &[Request], log_file: &Path) {
    let lines: Vec<(String, Value)> = common::read_lines(log_file)
        .into_iter()
        .map(|l| {
            let v = serde_json::from_str(&l).unwrap();
            (l, v)
        })
        .collect();
    for r in got {
        let data = &r.json["data"];
        let seq = seq_of(r);
        let (line, stored) = lines
            .iter()
            .find(|(_, v)| v["seq"] == seq)
            .unwrap_or_else(|| panic!("seq {seq} not in the log file"));
        for key in [
            "seq",
            "id",
            "timestamp",
            "event_type",
            "actor",
            "lead_id",
            "workflow",
            "details",
            "key_id",
            "prev",
            "signature",
        ] {
            assert_eq!(data[key], stored[key], "seq {seq}: {key} differs");
        }
        // The signature really is the record's MAC, recomputed from the line.
        assert_eq!(
            data["signature"],
            common::hmac_hex(TEST_KEY.as_bytes(), common::unsigned_part(line).as_bytes()),
            "seq {seq}: data.signature is not the record's MAC"
        );
    }
}

async fn log_n(client: &Client, n: usize, tag: &str) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        let r = client
            .log(NewEvent::lead_ingested(format!("{tag}-{i}"), "web").workflow("sales"))
            .await
            .unwrap();
        seqs.push(r.seq);
    }
    seqs
}

async fn status_of(client: &Client, name: &str) -> pb::WebhookStatus {
    client
        .webhook_status()
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no webhook {name}"))
}

/// Waits until endpoint `name`'s status satisfies `ready`; returns it.
async fn status_when(
    client: &Client,
    name: &str,
    what: &str,
    ready: impl Fn(&pb::WebhookStatus) -> bool,
) -> pb::WebhookStatus {
    let ready = &ready;
    wait_until(what, || async move {
        let s = status_of(client, name).await;
        if ready(&s) {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await
}

/// `auditlog webhooks status --json`, endpoint `name`.
async fn cli_status(url: &str, name: &str) -> Value {
    let (code, stdout, stderr) = cli(url, &["webhooks", "status", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let all: Value = serde_json::from_str(&stdout).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {all}"))
        .clone()
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_deliver_only_matching_events() {
    let types = receiver().await;
    let flows = receiver().await;
    let both = receiver().await;
    let server = TestServer::start_with(|c| {
        let mut t = config("types", types.url("/t"), Start::Beginning);
        t.event_types = vec!["error".into(), "crm_update".into()];
        let mut w = config("flows", flows.url("/w"), Start::Beginning);
        w.workflows = vec!["sales".into()];
        let mut b = config("both", both.url("/b"), Start::Beginning);
        b.event_types = vec!["error".into()];
        b.workflows = vec!["sales".into(), "billing".into()];
        c.webhooks = vec![t, w, b];
    })
    .await;
    let client = server.client().await;

    // A varied sample, with a model of what each endpoint should get.
    const TYPES: [&str; 4] = ["lead_ingested", "error", "crm_update", "email_sent"];
    const FLOWS: [&str; 4] = ["sales", "billing", "", "onboarding"];
    let (mut want_types, mut want_flows, mut want_both) = (vec![], vec![], vec![]);
    for i in 0..41 {
        // The last is a sentinel every filter matches.
        let (ty, flow) = if i == 40 {
            ("error", "sales")
        } else {
            (TYPES[i % 4], FLOWS[(i / 4) % 4])
        };
        let seq = client
            .log(NewEvent::new(ty).workflow(flow).detail("i", i as u64))
            .await
            .unwrap()
            .seq;
        if ty == "error" || ty == "crm_update" {
            want_types.push(seq);
        }
        if flow == "sales" {
            want_flows.push(seq);
        }
        if ty == "error" && (flow == "sales" || flow == "billing") {
            want_both.push(seq);
        }
    }
    for (endpoint, want) in [
        (&types, &want_types),
        (&flows, &want_flows),
        (&both, &want_both),
    ] {
        assert!(want.len() > 3, "the sample is too thin: {want:?}");
        let got = delivered(endpoint, want).await;
        // Delivery is in seq order, so once the sentinel (seq 41) is in,
        // every earlier event was delivered or skipped.
        assert_eq!(assert_complete_in_order(&got, want), 0);
        assert!(endpoint.rejected().is_empty(), "{:?}", endpoint.rejected());
        for r in &got {
            let data = &r.json["data"];
            let i = data["details"]["i"].as_u64().unwrap() as usize;
            assert_eq!(data["seq"], i as u64 + 1);
        }
    }
    let got = types.accepted();
    assert!(
        got.iter()
            .all(|r| ["error", "crm_update"]
                .contains(&r.json["data"]["event_type"].as_str().unwrap())),
        "other types delivered"
    );
    let got = flows.accepted();
    assert!(
        got.iter().all(|r| r.json["data"]["workflow"] == "sales"),
        "other workflows delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_endpoint_is_not_reported_behind_for_events_it_skips() {
    // GetWebhookStatus: `delivered_seq` is "the last seq delivered (or
    // skipped by its filters)". An endpoint that has delivered every
    // matching event is caught up, whatever its filter is.
    let types = receiver().await;
    let flows = receiver().await;
    let server = TestServer::start_with(|c| {
        let mut t = config("types", types.url("/t"), Start::Beginning);
        t.event_types = vec!["error".into()];
        let mut w = config("flows", flows.url("/w"), Start::Beginning);
        w.workflows = vec!["billing".into()];
        c.webhooks = vec![t, w];
    })
    .await;
    let client = server.client().await;
    let first = client
        .log(NewEvent::error("Timeout", "x").workflow("billing"))
        .await
        .unwrap()
        .seq;
    log_n(&client, 5, "skipped").await;
    delivered(&types, &[first]).await;
    delivered(&flows, &[first]).await;
    let client = &client;
    for name in ["flows", "types"] {
        let s = wait_until_within(
            Duration::from_secs(5),
            &format!("{name} caught up"),
            || async move {
                let s = status_of(client, name).await;
                if s.delivered_seq == 6 && s.behind == 0 {
                    Ok(s)
                } else {
                    Err(format!("{s:?}"))
                }
            },
        )
        .await;
        assert_eq!(s.delivered, 1, "{s:?}");
    }
}

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
async fn delivery_resumes_where_it_stopped_after_a_restart() {
    let hook = receiver().await;
    let url = hook.url("/hook");
    let endpoint = move |c: &mut auditlog_server::Config| {
        c.webhooks = vec![config("hook", url.clone(), Start::Beginning)];
    };
    let server = TestServer::start_with(endpoint.clone()).await;
    let client = server.client().await;
    let old = log_n(&client, 10, "old").await;
    delivered(&hook, &old).await;
    status_when(&client, "hook", "position 10", |s| s.delivered_seq == 10).await;
    let position = server.data_dir.join("webhooks").join("hook.pos");
    assert_eq!(std::fs::read_to_string(&position).unwrap().trim(), "10");

    let server = server.restart(endpoint).await;
    let client = server.client().await;
    let new = log_n(&client, 5, "new").await;
    assert_eq!(new, (11..=15).collect::<Vec<u64>>());
    let got = delivered(&hook, &new).await;
    let all: Vec<u64> = (1..=15).collect();
    let repeats = assert_complete_in_order(&got, &all);
    // At least once: at most the one event in flight at the stop again.
    assert!(
        repeats <= 1,
        "{repeats} repeats: {:?}",
        got.iter().map(seq_of).collect::<Vec<_>>()
    );
    let after_restart: Vec<u64> = got.iter().skip(10).map(seq_of).collect();
    assert!(
        after_restart.iter().filter(|s| **s <= 10).count() <= 1,
        "old events sent again after the restart: {after_restart:?}"
    );
    assert_chained(&got);
    assert!(hook.rejected().is_empty(), "{:?}", hook.rejected());
    let s = status_when(&client, "hook", "caught up", |s| s.delivered_seq == 15).await;
    assert_eq!(s.behind, 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_logged_while_the_receiver_is_down_arrive_after_a_restart() {
    let hook = receiver().await;
    hook.go_down();
    let url = hook.url("/hook");
    let endpoint = move |c: &mut auditlog_server::Config| {
        c.webhooks = vec![config("hook", url.clone(), Start::Beginning)];
    };
    let server = TestServer::start_with(endpoint.clone()).await;
    let client = server.client().await;
    let mut seqs = log_n(&client, 10, "down").await;
    status_when(&client, "hook", "a failure", |s| s.failures >= 1).await;

    let server = server.restart(endpoint).await;
    let client = server.client().await;
    let s = status_of(&client, "hook").await;
    assert_eq!((s.delivered_seq, s.behind), (0, 10), "{s:?}");
    seqs.extend(log_n(&client, 5, "after").await);
    hook.come_up().await;
    let got = delivered(&hook, &seqs).await;
    assert_eq!(assert_complete_in_order(&got, &seqs), 0);
    assert_chained(&got);
    assert!(hook.rejected().is_empty(), "{:?}", hook.rejected());
    status_when(&client, "hook", "caught up", |s| {
        s.behind == 0 && s.delivered_seq == 15
    })
    .await;
}

/// The server binary with a config file holding `[[webhooks]]`.
async fn spawn_server(dir: &Path, config_file: &Path) -> ServerProcess {
    let args = [Path::new("--config"), config_file];
    ServerProcess::spawn_args(dir, args, &[("RUST_LOG", "error")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_server_is_killed() {
    let hook = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_file = dir.path().join("auditlog.toml");
    std::fs::write(
        &config_file,
        format!(
            "hmac_key = \"{TEST_KEY}\"\n\n[[webhooks]]\nname = \"crash\"\nurl = \"{}\"\n\
             secret = \"{SECRET}\"\nbearer_token = \"{TOKEN}\"\nstart = \"beginning\"\n\
             max_backoff_secs = 1\n",
            hook.url("/hook")
        ),
    )
    .unwrap();
    let mut server = spawn_server(&data, &config_file).await;
    let client = Client::connect(&server.url).await.unwrap();
    let mut seqs = log_n(&client, 10, "before").await;
    delivered(&hook, &seqs).await;
    // Down while more is written; then SIGKILL, no chance to save anything.
    hook.go_down();
    seqs.extend(log_n(&client, 10, "while-down").await);
    let client = &client;
    wait_until("a failed delivery", || async move {
        let s = client.webhook_status().await.unwrap();
        if s[0].failures > 0 {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    server.kill9();

    let server = spawn_server(&data, &config_file).await;
    let client = Client::connect(&server.url).await.unwrap();
    seqs.extend(log_n(&client, 5, "after").await);
    assert_eq!(seqs, (1..=25).collect::<Vec<u64>>());
    hook.come_up().await;
    let got = delivered(&hook, &seqs).await;
    let repeats = assert_complete_in_order(&got, &seqs);
    assert!(
        repeats <= 1,
        "{repeats} repeats: {:?}",
        got.iter().map(seq_of).collect::<Vec<_>>()
    );
    assert_chained(&got);
    assert_as_stored(&got, &data.join("audit.log"));
    assert!(hook.rejected().is_empty(), "{:?}", hook.rejected());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_alone_signs_with_a_generated_secret_kept_across_restarts() {
    // The receiver learns the secret from `auditlog webhooks secret`, as its
    // operator would; until then it rejects everything.
    let learned = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let check: Check = {
        let learned = std::sync::Arc::clone(&learned);
        Box::new(move |r: &Request| {
            let secret = learned.lock().unwrap().clone();
            if secret.is_empty() {
                return Err("the receiver has no secret yet".into());
            }
            verify(r, &secret, None)
        })
    };
    let hook = HttpEndpoint::start_checked(Some(check)).await;
    let url = hook.url("/hook");
    let endpoints = move |c: &mut auditlog_server::Config| {
        let mut bare = config("bare", url.clone(), Start::Now);
        (bare.secret, bare.bearer_token) = (None, None);
        c.webhooks = vec![bare, config("configured", closed_port_url(), Start::Now)];
    };
    let server = TestServer::start_with(endpoints.clone()).await;

    let (code, stdout, stderr) = cli(&server.url, &["webhooks", "secret", "bare"]).await;
    assert_eq!(code, 0, "{stderr}");
    let secret = stdout.trim().to_owned();
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").expect(&secret))
        .unwrap();
    assert_eq!(key.len(), 32, "{secret}");
    *learned.lock().unwrap() = secret.clone();
    // Kept in the data directory, readable by the server's user alone.
    let file = server.data_dir.join("webhooks").join("bare.secret");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), secret);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let client = server.client().await;
    let mut seqs = log_n(&client, 3, "first").await;
    delivered(&hook, &seqs).await;
    assert!(status_of(&client, "bare").await.secret_generated);
    assert!(!status_of(&client, "configured").await.secret_generated);
    let (code, stdout, stderr) = cli(&server.url, &["webhooks", "status"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("auditlog webhooks secret bare"), "{stdout}");
    assert!(!stdout.contains("secret configured"), "{stdout}");

    // The same secret after a restart: the receiver needs no new setup.
    let server = server.restart(endpoints).await;
    let client = server.client().await;
    assert_eq!(client.webhook_secret("bare").await.unwrap(), secret);
    seqs.extend(log_n(&client, 2, "after").await);
    let got = delivered(&hook, &seqs).await;
    assert_eq!(assert_complete_in_order(&got, &seqs), 0);
    assert!(hook.rejected().is_empty(), "{:?}", hook.rejected());

    // A configured secret is never shown; an unknown name is named.
    let err = client.webhook_secret("configured").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition), "{err}");
    assert!(!err.to_string().contains(SECRET), "{err}");
    let err = client.webhook_secret("nope").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
    assert!(err.to_string().contains("bare, configured"), "{err}");
    let (code, stdout, stderr) = cli(&server.url, &["webhooks", "secret", "nope"]).await;
    assert_ne!(code, 0, "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
}

/// A URL where nothing listens.
fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}/hook", closed_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_secret_stops_the_server_with_words() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = |config: String| {
        let config_file = dir.path().join("auditlog.toml");
        std::fs::write(&config_file, config).unwrap();
        let args = [
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--data-dir".to_owned(),
            data.display().to_string(),
            "--config".to_owned(),
            config_file.display().to_string(),
        ];
        let bin = common::workspace_bin("auditlog-server", "auditlog-server");
        let env = vec![("AUDITLOG_HMAC_KEY".to_owned(), TEST_KEY.to_owned())];
        common::run_to_end(bin, args.to_vec(), env, Duration::from_secs(60))
    };
    let hook = |secret: &str| {
        format!("[[webhooks]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/hook\"\n{secret}")
    };
    for (secret, words) in [
        // URL-safe base64, which the base64 crate reported as "Invalid
        // symbol 45, offset 2".
        ("whsec_ab-cdefghijklmnopqrstuvw", &["'-'", "URL-safe"][..]),
        ("whsec_c2hvcnQ=", &["too short", "at least 16 bytes"]),
    ] {
        let out = start(hook(&format!("secret = \"{secret}\"\n"))).await;
        assert_ne!(out.code, 0, "{out:?}");
        let err = out.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{err}");
        for word in words
            .iter()
            .chain(&["webhooks[0] (crm)", "whsec_ followed by", "base64"])
        {
            assert!(err.contains(word), "{word:?} not in: {err}");
        }
        assert!(
            !err.contains("Invalid symbol") && !err.contains(secret),
            "{err}"
        );
    }
    // A generated secret file that was damaged names the file to delete.
    std::fs::create_dir_all(data.join("webhooks")).unwrap();
    std::fs::write(data.join("webhooks").join("crm.secret"), "whsec_x-y\n").unwrap();
    let out = start(hook("")).await;
    assert_ne!(out.code, 0, "{out:?}");
    for word in ["crm.secret", "delete the file", "URL-safe"] {
        assert!(out.stderr.contains(word), "{word:?} not in: {}", out.stderr);
    }
}

/// What a [`Redirector`] answers: a redirect status with a Location, or 200.
struct Redirect {
    status: u16,
    location: String,
}

/// Each request a [`Redirector`] got: its method and `data.seq`.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<u64>)>>>;

/// A receiver answering every request with a redirect (or 200 once told),
/// recording each request's method and `data.seq`.
struct Redirector {
    port: u16,
    answer: std::sync::Arc<std::sync::Mutex<Redirect>>,
    requests: Seen,
}

impl Redirector {
    async fn start() -> Redirector {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = std::sync::Arc::new(std::sync::Mutex::new(Redirect {
            status: 200,
            location: String::new(),
        }));
        let requests: Seen = Seen::default();
        let (a, r) = (answer.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (a, r) = (a.clone(), r.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 16 * 1024];
                    // One request per connection: the head, then the body.
                    let (head_end, length) = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse().unwrap());
                            break (end + 4, length);
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buf.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let method = String::from_utf8_lossy(&buf[..head_end])
                        .split(' ')
                        .next()
                        .unwrap()
                        .to_owned();
                    let body: Value = serde_json::from_slice(&buf[head_end..head_end + length])
                        .unwrap_or(Value::Null);
                    r.lock()
                        .unwrap()
                        .push((method, body["data"]["seq"].as_u64()));
                    let reply = {
                        let a = a.lock().unwrap();
                        format!(
                            "HTTP/1.1 {} Status\r\nlocation: {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                            a.status, a.location
                        )
                    };
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        Redirector {
            port,
            answer,
            requests,
        }
    }

    fn answer(&self, status: u16, location: &str) {
        *self.answer.lock().unwrap() = Redirect {
            status,
            location: location.to_owned(),
        };
    }

    fn requests(&self) -> Vec<(String, Option<u64>)> {
        self.requests.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_never_followed_but_retried_as_a_failure() {
    // Where the redirects point: it must never hear from the server.
    let elsewhere = HttpEndpoint::start().await;
    let hook = Redirector::start().await;
    let server = TestServer::start_with(|c| {
        c.webhooks = vec![config(
            "hook",
            format!("http://127.0.0.1:{}/hook", hook.port),
            Start::Beginning,
        )];
    })
    .await;
    let client = server.client().await;
    let mut failures = 0;
    for (i, status) in [301u16, 302, 307, 308].into_iter().enumerate() {
        let (absolute, relative) = (elsewhere.url(&format!("/moved{status}")), "/here");
        // An absolute Location to another host, then a relative one.
        for (j, location) in [absolute.as_str(), relative].into_iter().enumerate() {
            hook.answer(status, location);
            let seq = log_n(&client, 1, &format!("redirect-{status}-{j}")).await[0];
            let shown = if j == 0 {
                absolute.clone()
            } else {
                format!("http://127.0.0.1:{}/here", hook.port)
            };
            let s = status_when(&client, "hook", &format!("HTTP {status} failing"), |s| {
                s.failures >= failures + 2 && s.consecutive_failures >= 2
            })
            .await;
            assert_eq!(s.delivered_seq, seq - 1, "{s:?}");
            assert_eq!(s.behind, 1, "{s:?}");
            for word in [
                &format!("HTTP {status}"),
                "redirect",
                shown.as_str(),
                "the configured url must be the final one",
            ] {
                assert!(s.last_error.contains(word), "{word:?} not in {s:?}");
            }
            // Neither followed (nothing elsewhere, no GET to itself) nor
            // counted as delivered: only POSTs of this event, retried.
            assert!(
                elsewhere.requests().is_empty(),
                "{:?}",
                elsewhere.requests()
            );
            let got = hook.requests();
            assert!(
                got.iter().all(|(m, _)| m == "POST"),
                "redirect followed: {got:?}"
            );
            let tried = got.iter().filter(|(_, s)| *s == Some(seq)).count();
            assert!(tried >= 2, "{got:?}");
            // Once it answers 200 the event is delivered.
            hook.answer(200, "");
            let s = status_when(&client, "hook", "delivered after 200", |s| {
                s.delivered_seq == seq && s.consecutive_failures == 0
            })
            .await;
            assert_eq!(s.delivered, (2 * i + j + 1) as u64, "{s:?}");
            failures = s.failures;
        }
    }
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_purged_before_delivery_are_reported_skipped() {
    let hook = receiver().await;
    let retained = |c: &mut auditlog_server::Config| {
        c.max_file_size_mb = 0.01;
        c.retention_days = 2.0 / 86_400.0;
        c.retention_check_secs = 86_400;
    };
    let server = TestServer::start_with(retained).await;
    let client = server.client().await;
    log_n(&client, 300, "old").await;
    client.rotate(true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    log_n(&client, 1, "new").await;
    let through = wait_until("a purge", || {
        let client = &client;
        async move {
            let purge = client.apply_retention().await.map_err(|e| e.to_string())?;
            if purge.through_seq > 0 {
                Ok(purge.through_seq)
            } else {
                Err(format!("{purge:?}"))
            }
        }
    })
    .await;
    // An endpoint whose position (0) lies before the oldest event kept.
    let server = server
        .restart(|c| {
            retained(c);
            c.webhooks = vec![config("hook", hook.url("/hook"), Start::Beginning)];
        })
        .await;
    let client = server.client().await;
    let head = client
        .log(NewEvent::lead_ingested("after", "web"))
        .await
        .unwrap()
        .seq;
    let s = status_when(&client, "hook", "caught up", |s| s.delivered_seq == head).await;
    let words = format!("events 1..={through} ({through}) were purged by retention");
    assert!(s.last_error.contains(&words), "{words:?} not in {s:?}");
    assert!(s.last_error_at.is_some(), "{s:?}");
    assert_eq!((s.behind, s.failures, s.skipped), (0, 0, through), "{s:?}");
    let got = hook.accepted();
    assert_eq!(got.first().map(seq_of), Some(through + 1));
    assert!(hook.rejected().is_empty(), "{:?}", hook.rejected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_timeout_stops_the_server_with_words() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("auditlog.toml");
    std::fs::write(
        &config_file,
        "[[webhooks]]\nname = \"z\"\nurl = \"http://127.0.0.1:9/zero\"\ntimeout_secs = 0\n",
    )
    .unwrap();
    let args = [
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--data-dir".to_owned(),
        dir.path().join("data").display().to_string(),
        "--config".to_owned(),
        config_file.display().to_string(),
    ];
    let bin = common::workspace_bin("auditlog-server", "auditlog-server");
    let env = vec![("AUDITLOG_HMAC_KEY".to_owned(), TEST_KEY.to_owned())];
    let out = common::run_to_end(bin, args.to_vec(), env, Duration::from_secs(60)).await;
    assert_ne!(out.code, 0, "{out:?}");
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    for word in ["webhooks[0] (z)", "timeout_secs", "1 or more"] {
        assert!(err.contains(word), "{word:?} not in: {err}");
    }
}
