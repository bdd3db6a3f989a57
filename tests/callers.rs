//! Who did it, through real servers on 127.0.0.1: with tokens, the token
//! that wrote each event is recorded in the signed `caller` field whatever
//! actor the caller claims, shown by queries, the CLI and exports, and
//! covered by verification; a token's `actors` list limits the actors it
//! may claim; without tokens nothing changes. Refused calls leave a trace in
//! the server's log: peer, method and reason, never the token, rate limited.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;

use auditlog_client::{Client, NewEvent, Options, Query};
use auditlog_server::config::{Role, TokenConfig};
use common::{ServerProcess, TestServer};
use sha2::Digest as _;
use tonic::Code;

const WRITER: (&str, &str) = ("svc-writer", "wr-5d1e0c7b3a-secret");
const CRM: (&str, &str) = ("crm", "crm-7a2c4e9f10-secret");
const ADMIN: (&str, &str) = ("ops", "ad-1f3b5d7e9c-secret");

fn token((name, secret): (&str, &str), roles: &[Role], actors: Option<&[&str]>) -> TokenConfig {
    TokenConfig {
        name: name.into(),
        sha256: hex::encode(sha2::Sha256::digest(secret.as_bytes())),
        roles: roles.to_vec(),
        rate_per_sec: None,
        burst: None,
        actors: actors.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
    }
}

async fn protected() -> TestServer {
    TestServer::start_with(|c| {
        common::with_test_key(c);
        c.tokens = vec![
            token(WRITER, &[Role::Writer], None),
            token(CRM, &[Role::Writer], Some(&["crm-sync", "crm-import"])),
            token(ADMIN, &[Role::Admin], None),
        ];
    })
    .await
}

async fn client(server: &TestServer, (_, secret): (&str, &str)) -> Client {
    let options = Options {
        token: Some(secret.into()),
        ..Options::default()
    };
    Client::connect_with(&server.url, options).await.unwrap()
}

#[tokio::test]
async fn the_token_that_wrote_an_event_is_recorded_signed_and_shown() {
    let server = protected().await;
    let writer = client(&server, WRITER).await;
    let admin = client(&server, ADMIN).await;
    // The writer claims to be the admin.
    let claimed = writer
        .log(NewEvent::new("lead_ingested").actor("ops").lead("LEAD-7"))
        .await
        .unwrap();
    let own = admin.log(NewEvent::new("workflow_started")).await.unwrap();

    let events = admin
        .query_all(Query::new().oldest_first().limit(10))
        .await
        .unwrap();
    let who: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.actor.as_str(), e.caller.as_str()))
        .collect();
    assert_eq!(who, [("ops", "svc-writer"), ("ops", "ops")]);
    assert_eq!(
        (events[0].seq, events[1].seq),
        (claimed.seq, own.seq),
        "{events:?}"
    );

    // On disk the caller follows the actor, inside what the MAC covers.
    let lines = common::read_lines(&server.log_path());
    assert!(
        lines[0].contains(r#""actor":"ops","caller":"svc-writer","lead_id":"LEAD-7""#),
        "{}",
        lines[0]
    );
    assert!(admin.verify().await.unwrap().ok);

    // The CLI shows it: a CALLER column, and in JSON and CSV.
    let (_, admin_secret) = ADMIN;
    let (code, out, err) = common::cli(
        &server.url,
        &["--token", admin_secret, "query", "--oldest-first"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let mut rows = out.lines();
    assert!(
        rows.next().unwrap().trim_end().ends_with("ACTOR  CALLER"),
        "{out}"
    );
    assert!(
        rows.next()
            .unwrap()
            .trim_end()
            .ends_with("ops    svc-writer"),
        "{out}"
    );
    let (_, out, _) = common::cli(
        &server.url,
        &["--token", admin_secret, "--json", "history", "LEAD-7"],
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["events"][0]["caller"], "svc-writer", "{out}");
    let (_, out, _) = common::cli(
        &server.url,
        &["--token", admin_secret, "export", "--format", "csv"],
    )
    .await;
    let mut csv = csv::Reader::from_reader(out.as_bytes());
    let at = csv
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "caller")
        .unwrap();
    let callers: Vec<String> = csv.records().map(|r| r.unwrap()[at].to_owned()).collect();
    assert_eq!(callers, ["svc-writer", "ops"]);

    // Rewriting the caller on disk is caught like any other edit.
    common::tamper(&server.log_path(), |lines| {
        lines[0] = common::edit_line(&lines[0], r#""caller":"svc-writer""#, r#""caller":"ops""#);
    });
    let report = admin.verify().await.unwrap();
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.problems[0].seq, claimed.seq, "{report:?}");
}

#[tokio::test]
async fn without_tokens_records_have_no_caller() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log(NewEvent::new("lead_ingested")).await.unwrap();
    let line = &common::read_lines(&server.log_path())[0];
    assert!(!line.contains("caller"), "{line}");
    let events = client.query(Query::new()).await.unwrap().events;
    assert_eq!(events[0].caller, "");
    let (_, out, _) = common::cli(&server.url, &["query"]).await;
    assert!(!out.contains("CALLER"), "{out}");
}

#[tokio::test]
async fn a_token_logs_only_as_the_actors_it_is_allowed() {
    let server = protected().await;
    let crm = client(&server, CRM).await;
    crm.log(NewEvent::new("crm_update").actor("crm-sync"))
        .await
        .unwrap();
    for (event, actor) in [
        (NewEvent::new("crm_update").actor("ops"), "ops"),
        // No actor means the token's own name, which is not in its list.
        (NewEvent::new("crm_update"), "crm"),
    ] {
        let err = crm.log(event).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("{actor:?}")) && text.contains(r#"token "crm""#),
            "{text}"
        );
        assert!(text.contains(r#""crm-sync", "crm-import""#), "{text}");
    }
    let err = crm
        .log_batch([
            NewEvent::new("crm_update").actor("crm-import"),
            NewEvent::new("crm_update").actor("svc-writer"),
        ])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
    assert!(err.to_string().contains("events[1].actor"), "{err}");
    let admin = client(&server, ADMIN).await;
    assert_eq!(admin.stats(None).await.unwrap().total_events, 1);
}

/// The server binary with `[[tokens]]`, its stderr in a file.
async fn spawn_with_tokens(dir: &Path) -> ServerProcess {
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[[tokens]]\nname = {:?}\nsha256 = {:?}\nroles = [\"writer\"]\n",
            WRITER.0,
            hex::encode(sha2::Sha256::digest(WRITER.1.as_bytes()))
        ),
    )
    .unwrap();
    ServerProcess::spawn_logging(
        &dir.join("data"),
        ["--config".as_ref(), config.as_os_str()],
        &[],
        dir.join("server.stderr"),
    )
    .await
}

#[tokio::test]
async fn refused_calls_are_logged_once_with_peer_method_and_reason_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_with_tokens(dir.path()).await;
    const WRONG: &str = "wrong-4e8a1c-token-never-logged";
    let options = Options {
        token: Some(WRONG.into()),
        ..Options::default()
    };
    let wrong = Client::connect_with(&server.url, options).await.unwrap();
    for _ in 0..300 {
        let err = wrong.log(NewEvent::new("lead_ingested")).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::Unauthenticated), "{err}");
    }
    let anonymous = Client::connect(&server.url).await.unwrap();
    anonymous.stats(None).await.unwrap_err();

    let log = common::wait_until("a refusal in the server's log", || {
        let log = server.stderr();
        async move {
            if log.contains("call refused") {
                Ok(log)
            } else {
                Err(log)
            }
        }
    })
    .await;
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
    assert_eq!(refusals.len(), 1, "not rate limited: {log}");
    let line = refusals[0];
    for part in [
        "peer=127.0.0.1:",
        "method=/auditlog.v1.AuditService/Log",
        "reason=unknown token",
        "WARN",
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
    assert!(!log.contains(WRONG), "the token was logged: {log}");
}
