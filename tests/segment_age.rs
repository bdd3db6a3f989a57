//! Sealing by age: a log that takes few events still ages data out.
//!
//! Retention deletes only sealed, compressed segments, so a log too quiet to
//! fill a segment must have its active segment sealed by the age of its
//! first record (`max_segment_age_secs`), written to or not. Each test runs
//! the `auditlog-server` binary with that key and retention set through the
//! environment, as an operator would, and reaches it through the real
//! client.
//!
//! Covered:
//! - an event logged into an otherwise idle log is gone from Query no later
//!   than retention + segment age + the retention check interval (and not
//!   before the retention period), its purge is an `auditlog.purge` event
//!   whose seq range holds it, and the log still verifies;
//! - after a restart, the active segment's age is that of its first record,
//!   not of the start: a segment that came of age while the server was down
//!   is sealed at once.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use auditlog_client::{Client, NewEvent, Query};
use common::{ServerProcess, files, wait_until_within};
use serde_json::Value;

/// The segment age limit the tests run with.
const AGE: Duration = Duration::from_secs(1);
/// The retention period.
const RETENTION: Duration = Duration::from_secs(2);
/// How often retention runs.
const CHECK: Duration = Duration::from_secs(1);
/// Time on top of the documented bound for what it leaves out: compressing
/// the sealed segment, and this test's polling, on a busy machine.
const SLACK: Duration = Duration::from_secs(5);

/// The server binary on `dir` with `max_segment_age_secs` = `age` and the
/// given retention (0: off) and check interval.
async fn spawn(dir: &Path, age: Duration, retention: Duration) -> ServerProcess {
    let age = age.as_secs().to_string();
    let days = (retention.as_secs_f64() / 86_400.0).to_string();
    let check = CHECK.as_secs().to_string();
    ServerProcess::spawn_with(
        dir,
        &[
            ("AUDITLOG_MAX_SEGMENT_AGE_SECS", &age),
            ("AUDITLOG_RETENTION_DAYS", &days),
            ("AUDITLOG_RETENTION_CHECK_SECS", &check),
        ],
    )
    .await
}

fn event() -> NewEvent {
    NewEvent::new("email_sent")
        .actor("mailer")
        .lead("LEAD-001")
        .details(serde_json::json!({"to": "a@example.com"}))
}

/// A number from a purge event's details.
fn detail(event: &auditlog_client::pb::Event, key: &str) -> u64 {
    let details = event.details.as_ref().unwrap();
    let json = auditlog_proto::json::struct_to_json(details).unwrap();
    match &json[key] {
        Value::Number(n) => n.as_f64().unwrap() as u64,
        other => panic!("{key} is {other} in {json:?}"),
    }
}

#[tokio::test]
async fn an_idle_log_purges_an_event_within_retention_plus_segment_age() {
    let temp = tempfile::tempdir().unwrap();
    let server = spawn(temp.path(), AGE, RETENTION).await;
    let client = Client::connect(&server.url).await.unwrap();
    let logged_at = Instant::now();
    let old = client.log(event()).await.unwrap();

    // Nothing more is written: only the age of its segment seals it.
    let bound = RETENTION + AGE + CHECK;
    let client_ref = &client;
    wait_until_within(bound + SLACK, "the event to be purged", || async move {
        let all = client_ref.query_all(Query::new()).await.unwrap();
        match all.iter().find(|e| e.seq == old.seq) {
            Some(_) => Err(format!("seq {} still served", old.seq)),
            None => Ok(()),
        }
    })
    .await;
    let gone_after = logged_at.elapsed();
    assert!(
        gone_after >= RETENTION,
        "purged after {gone_after:?}, before the retention period"
    );

    // Its purge is in the log: an event whose range holds it.
    let purges = client
        .query_all(Query::new().event_type("auditlog.purge"))
        .await
        .unwrap();
    assert!(
        purges
            .iter()
            .any(|p| detail(p, "first_seq") <= old.seq && old.seq <= detail(p, "through_seq")),
        "no purge of seq {} among {purges:?}",
        old.seq
    );

    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

#[tokio::test]
async fn after_a_restart_the_segment_is_as_old_as_its_first_record() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let age = Duration::from_secs(3);
    // Retention off: only sealing is watched.
    let mut server = spawn(dir, age, Duration::ZERO).await;
    let client = Client::connect(&server.url).await.unwrap();
    let logged_at = Instant::now();
    client.log(event()).await.unwrap();
    server.signal("TERM");
    server.wait_exit_within(Duration::from_secs(10)).await;
    let sealed = |dir: &Path| files(dir).iter().any(|f| f.ends_with(".log.gz"));
    assert!(!sealed(dir), "sealed before it was due: {:?}", files(dir));

    // Back up once the segment is past its age: sealed at once, not `age`
    // after the start.
    tokio::time::sleep(age.saturating_sub(logged_at.elapsed())).await;
    let _server = spawn(dir, age, Duration::ZERO).await;
    wait_until_within(
        Duration::from_millis(2000),
        "the aged segment to be sealed",
        || async move {
            if sealed(dir) {
                Ok(())
            } else {
                Err(format!("{:?}", files(dir)))
            }
        },
    )
    .await;
}
