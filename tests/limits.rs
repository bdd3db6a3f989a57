//! Rate limits per token, through a real server on 127.0.0.1 and real
//! clients.
//!
//! - A token with a small burst is refused with RESOURCE_EXHAUSTED once its
//!   burst is spent, with a message naming its limit and a
//!   `google.rpc.RetryInfo` saying when to retry; other tokens, limited or
//!   not, and health probes are unaffected; once its bucket refills, the
//!   token is served again. Waits poll for the refill with a generous
//!   deadline, never assert a duration.
//! - A LogBatch counts as one call, however many events it carries.
//! - A token at `max_in_flight_per_token` is refused while another token is
//!   served; a verification held open by the `HOLD_VERIFICATION` test hook
//!   keeps the slot.
//! - Verifications run one at a time, at nice 19, with at most
//!   `max_queued_verifications` waiting; one more is refused with
//!   RESOURCE_EXHAUSTED at once. The alerts' scheduled verification takes
//!   its turn with them, at the same priority, and is never refused.
//! - A call past its deadline is answered DEADLINE_EXCEEDED, naming whose
//!   limit passed: the server's `handler_timeout_secs` (through the client),
//!   or the caller's shorter `grpc-timeout` (sent by a raw HTTP/2 client,
//!   since a client library also enforces its deadline itself and would
//!   answer first); the server then serves on.
//! - Bad limits in the config file stop the `auditlog-server` binary with an
//!   error naming the token and the key.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::time::{Duration, Instant};

use auditlog_client::{Client, NewEvent, Options};
use auditlog_server::config::{Role, TokenConfig};
use common::{TestServer, grpc_frame, health, raw_call, wait_until, workspace_bin};
use sha2::Digest as _;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt as _;

/// A token of the test server: its name, the secret a caller sends, and its
/// limit (calls per second, burst).
struct Token {
    name: &'static str,
    secret: &'static str,
    limit: Option<(f64, u32)>,
}

/// One call every five seconds on average, three at once.
const LIMITED: Token = Token {
    name: "crm-sync",
    secret: "lim-0b7e4c2a9d-secret",
    limit: Some((0.2, 3)),
};
/// The same limit in a bucket of its own.
const NEIGHBOUR: Token = Token {
    name: "webform",
    secret: "nbr-6f1d0a83c5-secret",
    limit: Some((0.2, 3)),
};
/// One call every ten seconds, two at once: for batches.
const BATCHER: Token = Token {
    name: "importer",
    secret: "bat-2c9e7b4f10-secret",
    limit: Some((0.1, 2)),
};
/// No limit.
const FREE: Token = Token {
    name: "ops",
    secret: "fre-93a5d2e7b8-secret",
    limit: None,
};

fn token_config(t: &Token) -> TokenConfig {
    TokenConfig {
        name: t.name.into(),
        sha256: hex::encode(sha2::Sha256::digest(t.secret.as_bytes())),
        roles: vec![Role::Admin],
        rate_per_sec: t.limit.map(|(rate, _)| rate),
        burst: t.limit.map(|(_, burst)| burst),
        actors: None,
    }
}

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.tokens = [&LIMITED, &NEIGHBOUR, &BATCHER, &FREE]
            .into_iter()
            .map(token_config)
            .collect();
    })
    .await
}

async fn client(server: &TestServer, token: &Token) -> Client {
    let options = Options {
        token: Some(token.secret.into()),
        ..Options::default()
    };
    Client::connect_with(&server.url, options).await.unwrap()
}

fn event(i: usize) -> NewEvent {
    NewEvent::lead_ingested(format!("LEAD-{i}"), "webform")
}

/// The status of a refused call.
fn status(error: auditlog_client::Error) -> tonic::Status {
    match error {
        auditlog_client::Error::Rpc(status) => status,
        other => panic!("not a refusal from the server: {other}"),
    }
}

/// Logs with `client` until a call is refused; the number of calls served
/// before it, and the refusal.
async fn spend(client: &Client) -> (usize, tonic::Status) {
    for served in 0..100 {
        if let Err(e) = client.log(event(served)).await {
            return (served, status(e));
        }
    }
    panic!("100 calls in a row were served despite the rate limit");
}

/// The most calls a bucket of `limit` that was full at `since` can have
/// served by now: its burst, and what refilled meanwhile. A slow machine
/// earns more calls, never a failed test.
fn most_served(limit: (f64, u32), since: Instant) -> usize {
    let (rate, burst) = limit;
    burst as usize + (since.elapsed().as_secs_f64() * rate).floor() as usize
}

/// The RetryInfo delay of a refusal.
fn retry_delay(refused: &tonic::Status) -> Duration {
    refused
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .unwrap_or_else(|| panic!("no RetryInfo in {refused:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_burst_waits_for_its_bucket_and_no_one_else_does() {
    let server = server().await;
    let limited = client(&server, &LIMITED).await;
    let neighbour = client(&server, &NEIGHBOUR).await;
    let free = client(&server, &FREE).await;
    let limit = LIMITED.limit.unwrap();
    let (rate, burst) = limit;

    // The burst is served, then a call is refused. (The bucket has been
    // full since the server started.)
    let started = Instant::now();
    let (served, refused) = spend(&limited).await;
    assert!(
        served >= burst as usize && served <= most_served(limit, started),
        "{served} calls served"
    );
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    let message = refused.message();
    for part in [
        "\"crm-sync\"",
        "rate limit of 0.2 calls per second (burst 3)",
        "retry in",
    ] {
        assert!(message.contains(part), "{part:?} is not in {message:?}");
    }
    assert!(!message.contains(LIMITED.secret), "{message}");
    // When to retry, readable from any language: google.rpc.RetryInfo. The
    // bucket holds less than one call, so less than one refill's time.
    let delay = retry_delay(&refused);
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs_f64(1.0 / rate),
        "{delay:?}"
    );

    // Reads count against the same bucket: refused too, unless the machine
    // took the whole delay (less the millisecond it is rounded up by) to ask.
    let read = limited.stats(None).await;
    if started.elapsed() + Duration::from_millis(1) < delay {
        let e = status(read.unwrap_err());
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    }

    // Nobody else is affected: another token with the same limit has its
    // whole burst, an unlimited one is never refused, and health answers
    // even with the limited token's credentials, as often as it is asked.
    for i in 0..burst as usize {
        neighbour.log(event(i)).await.unwrap();
    }
    for i in 0..20 {
        free.log(event(i)).await.unwrap();
    }
    for _ in 0..20 {
        assert_eq!(
            health(&server.url, Some(LIMITED.secret)).await.unwrap(),
            ServingStatus::Serving
        );
    }

    // The bucket refills: waiting as told, the token is served again.
    let limited = &limited;
    let receipt = wait_until("the limited token to be served again", || async move {
        match limited.log(event(1000)).await {
            Ok(receipt) => Ok(receipt),
            Err(e) => {
                let e = status(e);
                assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                tokio::time::sleep(retry_delay(&e)).await;
                Err(e.message().to_owned())
            }
        }
    })
    .await;
    assert_eq!(receipt.seq, free.stats(None).await.unwrap().head_seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_call_however_many_events_it_carries() {
    let server = server().await;
    let batcher = client(&server, &BATCHER).await;
    let limit = BATCHER.limit.unwrap();
    let (_, burst) = limit;
    // A burst of two calls: two batches of 500 events each.
    let started = Instant::now();
    let mut written = 0;
    for call in 0..burst as usize {
        let receipts = batcher
            .log_batch((0..500).map(|i| event(call * 500 + i)))
            .await
            .unwrap();
        written += receipts.len();
    }
    assert_eq!(written, 1000);
    // Then the bucket is empty, however many events went through it.
    let (served, refused) = spend(&batcher).await;
    assert!(
        burst as usize + served <= most_served(limit, started),
        "{served} calls more served"
    );
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
}

// ---------------------------------------------------------------------------
// Bad limits in the config file

/// Runs `auditlog-server --config <toml> --print-config`: the exit code and
/// stderr.
fn check_config(toml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditlog.toml");
    std::fs::write(&path, toml).unwrap();
    let out = std::process::Command::new(workspace_bin("auditlog-server", "auditlog-server"))
        .arg("--config")
        .arg(&path)
        .arg("--print-config")
        .env_remove("AUDITLOG_HMAC_KEY")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// A `[[tokens]]` entry with `extra` lines.
fn token_toml(extra: &str) -> String {
    format!(
        "[[tokens]]\nname = \"crm-sync\"\nsha256 = \"{}\"\nroles = [\"writer\"]\n{extra}\n",
        "ab".repeat(32)
    )
}

#[test]
fn bad_rate_limits_are_refused_naming_the_token_and_the_key() {
    let (code, out) = check_config(&token_toml("rate_per_sec = 2.5\nburst = 10"));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("rate_per_sec = 2.5") && out.contains("burst = 10"),
        "{out}"
    );
    let (code, out) = check_config(&token_toml("rate_per_sec = 0.5"));
    assert_eq!(code, Some(0), "{out}");

    // Values validation refuses, named with the entry.
    for (extra, expected) in [
        ("rate_per_sec = 0", "rate_per_sec is 0;"),
        ("rate_per_sec = -2", "rate_per_sec is -2;"),
        ("rate_per_sec = nan", "rate_per_sec is NaN;"),
        ("rate_per_sec = inf", "rate_per_sec is inf;"),
        ("rate_per_sec = 5\nburst = 0", "burst is 0;"),
        ("burst = 5", "burst needs rate_per_sec"),
    ] {
        let (code, out) = check_config(&token_toml(extra));
        assert_eq!(code, Some(1), "{extra}: {out}");
        let expected = format!("configuration key tokens: tokens[0] (crm-sync): {expected}");
        assert!(
            out.contains(&expected),
            "{extra}: {expected:?} not in {out}"
        );
    }
    // Values of the wrong type, and unknown keys, named by their place.
    for (extra, key) in [
        ("rate_per_sec = 5\nburst = -1", "key tokens[0].burst "),
        ("rate_per_sec = 5\nburst = 2.5", "key tokens[0].burst "),
        ("rate_per_sec = \"fast\"", "key tokens[0].rate_per_sec "),
        ("rate = 5", "key tokens[0].rate "),
    ] {
        let (code, out) = check_config(&token_toml(extra));
        assert_eq!(code, Some(1), "{extra}: {out}");
        assert!(out.contains(key), "{extra}: {key:?} not in {out}");
    }
}

/// How many verifications are inside the `HOLD_VERIFICATION` hook, and the
/// thread ids of their markers.
fn held_verifications(dir: &std::path::Path) -> Vec<u32> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("VERIFYING.")?.parse().ok()
        })
        .collect()
}

/// Waits until exactly one verification is held, and returns its thread id.
async fn one_held(dir: &std::path::Path) -> u32 {
    wait_until("a verification to be held", || async move {
        match held_verifications(dir)[..] {
            [tid] => Ok(tid),
            ref other => Err(format!("{} held", other.len())),
        }
    })
    .await
}

/// The nice value of a thread of this process.
fn nice_of(tid: u32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // The fields after the command name in parentheses; nice is field 19.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(16).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_at_its_in_flight_cap_is_refused_and_another_is_served() {
    let server = TestServer::start_with(|c| {
        c.tokens = [&FREE, &NEIGHBOUR].into_iter().map(token_config).collect();
        c.max_in_flight_per_token = 1;
    })
    .await;
    let (busy, other) = (
        client(&server, &FREE).await,
        client(&server, &NEIGHBOUR).await,
    );
    busy.log(event(0)).await.unwrap();
    let hold = server.data_dir.join("HOLD_VERIFICATION");
    std::fs::write(&hold, b"").unwrap();
    let verifying = tokio::spawn({
        let busy = busy.clone();
        async move { busy.verify().await }
    });
    one_held(&server.data_dir).await;
    let refused = status(busy.log(event(1)).await.unwrap_err());
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(
        refused.message().contains("max_in_flight_per_token"),
        "{}",
        refused.message()
    );
    other.log(event(2)).await.unwrap();
    std::fs::remove_file(&hold).unwrap();
    assert!(verifying.await.unwrap().unwrap().ok);
    busy.log(event(3)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_is_answered_deadline_exceeded_naming_whose() {
    let server = TestServer::start_with(|c| c.handler_timeout_secs = 2).await;
    let client = Client::connect(&server.url).await.unwrap();
    client.log(event(0)).await.unwrap();
    let hold = server.data_dir.join("HOLD_VERIFICATION");
    std::fs::write(&hold, b"").unwrap();

    let refused = status(client.verify().await.unwrap_err());
    assert_eq!(refused.code(), tonic::Code::DeadlineExceeded, "{refused:?}");
    for words in ["2 s (handler_timeout_secs)", "idempotency_key"] {
        assert!(refused.message().contains(words), "{}", refused.message());
    }

    let refused = raw_call_with_deadline(server.addr, "VerifyIntegrity", "300m").await;
    assert_eq!(refused.code(), tonic::Code::DeadlineExceeded, "{refused:?}");
    assert!(
        refused.message().contains("the caller's deadline (300 ms)"),
        "{}",
        refused.message()
    );

    std::fs::remove_file(&hold).unwrap();
    assert!(client.verify().await.unwrap().ok);
}

/// The status a call of the empty request to `method` is answered with,
/// sent over HTTP/2 with `grpc-timeout: timeout` and nothing else watching
/// the time.
async fn raw_call_with_deadline(
    addr: std::net::SocketAddr,
    method: &str,
    timeout: &str,
) -> tonic::Status {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let request = raw_call(addr, method)
        .header("grpc-timeout", timeout)
        .body(())
        .unwrap();
    let (response, mut body) = h2.send_request(request, false).unwrap();
    body.send_data(grpc_frame(&[]), true).unwrap();
    let response = response.await.unwrap();
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    let mut answer = response.into_body();
    while let Some(chunk) = answer.data().await {
        chunk.unwrap();
    }
    let trailers = answer
        .trailers()
        .await
        .unwrap()
        .expect("a status in trailers");
    tonic::Status::from_header_map(&trailers).expect("a gRPC status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifications_run_one_at_a_time_at_low_priority_and_a_crowd_is_refused() {
    let server = TestServer::start_with(|c| c.max_queued_verifications = 1).await;
    let client = Client::connect(&server.url).await.unwrap();
    for i in 0..5 {
        client.log(event(i)).await.unwrap();
    }
    let hold = server.data_dir.join("HOLD_VERIFICATION");
    std::fs::write(&hold, b"").unwrap();
    let verify = || {
        let client = client.clone();
        tokio::spawn(async move { client.verify().await })
    };
    let first = verify();
    let tid = one_held(&server.data_dir).await;
    assert_eq!(
        nice_of(tid),
        19,
        "the verification runs at the lowest priority"
    );

    // One more may wait; of two more, one is refused at once. Were both let
    // in, a second would be held beside the first.
    let (mut second, mut third) = (verify(), verify());
    let dir = &server.data_dir;
    let two_held = wait_until("two verifications to be held at once", || async move {
        match held_verifications(dir).len() {
            2.. => Ok(()),
            n => Err(format!("{n} held")),
        }
    });
    let (refused, waiting) = tokio::select! {
        answer = &mut second => (answer, third),
        answer = &mut third => (answer, second),
        () = two_held => panic!("two verifications ran at once"),
    };
    let refused = status(refused.unwrap().unwrap_err());
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(
        refused.message().contains("a verification is running")
            && refused.message().contains("max_queued_verifications"),
        "{}",
        refused.message()
    );
    std::fs::remove_file(&hold).unwrap();
    assert!(first.await.unwrap().unwrap().ok);
    assert!(waiting.await.unwrap().unwrap().ok);
    assert!(client.verify().await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_verification_takes_its_turn_with_the_calls() {
    let server = TestServer::start_with(|c| c.alerts.verify_interval_secs = 1).await;
    let client = Client::connect(&server.url).await.unwrap();
    client.log(event(0)).await.unwrap();
    let hold = server.data_dir.join("HOLD_VERIFICATION");
    std::fs::write(&hold, b"").unwrap();
    // The scheduled verification comes within a second and is held, at the
    // lowest priority.
    let tid = one_held(&server.data_dir).await;
    assert_eq!(
        nice_of(tid),
        19,
        "the scheduled verification runs at nice 19"
    );
    // A call now waits for its turn instead of running beside it: for as
    // long as the hold lasts, no second verification is held.
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.verify().await }
    });
    let dir = &server.data_dir;
    let two_held = wait_until("two verifications to be held at once", || async move {
        match held_verifications(dir).len() {
            2.. => Ok(()),
            n => Err(format!("{n} held")),
        }
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(3), two_held)
            .await
            .is_err(),
        "a call ran beside the scheduled verification"
    );
    assert!(!call.is_finished(), "the call did not wait for its turn");
    std::fs::remove_file(&hold).unwrap();
    assert!(call.await.unwrap().unwrap().ok);
}
