//! Compliance mode end to end: PII never reaches the disk, its tokens are
//! stable across restarts, and a data-subject export finds exactly one
//! person's events, through the RPC and `auditlog subject export`.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::Path;

use auditlog_client::{Client, NewEvent, Query, pb};
use auditlog_server::Config;
use common::TestServer;
use futures::StreamExt as _;
use serde_json::{Value, json};

/// Plain values that must never be stored.
const PII: [&str; 9] = [
    "jane.doe@example.com",
    "Jane Doe",
    "+1 (555) 010-9999",
    "555.010.9999",
    "5550109999",
    "221B Baker Street",
    "078-05-1120",
    "john.roe@example.org",
    "John Roe",
];

fn compliance_on(c: &mut Config) {
    c.compliance.enabled = true;
    c.compliance.lead_id = true;
}

/// Events about Jane (lead id = her email), John, and nobody.
fn events() -> Vec<NewEvent> {
    vec![
        NewEvent::lead_ingested("jane.doe@example.com", "webform").details(json!({
            "source": "webform",
            "contact": {"email": "Jane.Doe@Example.com", "phone": "+1 (555) 010-9999"},
            "name": "Jane Doe",
        })),
        NewEvent::new("crm_create")
            .lead("john.roe@example.org")
            .details(
                json!({"crm": "hubspot", "name": "John Roe", "email": "john.roe@example.org"}),
            ),
        NewEvent::new("address_changed").details(json!({
            "people": [{"name": "Jane Doe", "address": "221B Baker Street", "ssn": "078-05-1120"}],
        })),
        NewEvent::new("note").details(json!({"text": "no personal data here", "phone_count": 2})),
        NewEvent::new("call_logged").details(json!({"phone": "+1 555.010.9999"})),
    ]
}

/// Every file under `dir`, gzip members decompressed, as bytes.
fn everything_stored(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let raw = std::fs::read(&path).unwrap();
            if path.extension().is_some_and(|e| e == "gz") {
                let mut text = Vec::new();
                flate2::read::MultiGzDecoder::new(&raw[..])
                    .read_to_end(&mut text)
                    .unwrap();
                out.push((format!("{} (decompressed)", path.display()), text));
            }
            out.push((path.display().to_string(), raw));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let hay = String::from_utf8_lossy(haystack).to_lowercase();
    hay.contains(&needle.to_lowercase())
}

/// The client's helpers write the old logger's detail keys, and compliance
/// mode's default fields pseudonymise the address a mail went to, whether
/// under the helper's `recipient` or another client's `to`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helpers_keep_the_old_keys_and_mail_addresses_are_pii_by_default() {
    let server = TestServer::start_with(|c| c.compliance.enabled = true).await;
    let client = server.client().await;
    let events = vec![
        NewEvent::email_sent("LEAD-1", "ana@example.com", "Welcome").step("welcome-1"),
        NewEvent::new("email_sent")
            .lead("LEAD-2")
            .detail("to", "bo@example.com"),
        NewEvent::lead_routed("LEAD-1", "team-a")
            .reason("score above 80")
            .condition("score > 80"),
        NewEvent::crm_create("LEAD-1", "hubspot", "R1"),
        NewEvent::email_cancelled("LEAD-1", "replied").condition("lead replied"),
    ];
    client.log_batch(events).await.unwrap();
    let stored = client
        .query(Query::new().oldest_first().limit(10))
        .await
        .unwrap()
        .events;
    let details: Vec<Value> = stored
        .iter()
        .map(|e| {
            let map = auditlog_proto::json::struct_into_json(e.details.clone().unwrap()).unwrap();
            Value::Object(map)
        })
        .collect();
    for (i, key) in [(0, "recipient"), (1, "to")] {
        let value = details[i][key].as_str().unwrap_or_default();
        assert!(value.starts_with("pii:hmac:"), "{key}: {:?}", details[i]);
    }
    assert_eq!(details[0]["subject"], "Welcome");
    assert_eq!(details[0]["step"], "welcome-1");
    assert_eq!(
        details[2],
        json!({"destination": "team-a", "reason": "score above 80", "condition": "score > 80"})
    );
    assert_eq!(details[3], json!({"crm": "hubspot", "crm_id": "R1"}));
    assert_eq!(
        details[4],
        json!({"reason": "replied", "condition": "lead replied"})
    );
    for (name, bytes) in everything_stored(&server.data_dir) {
        for plain in ["ana@example.com", "bo@example.com"] {
            assert!(!contains(&bytes, plain), "{plain:?} is stored in {name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plain_pii_value_reaches_the_data_directory() {
    let server = TestServer::start_with(compliance_on).await;
    let client = server.client().await;
    let mut batch = events();
    let first = batch.remove(0);
    client.log(first).await.unwrap();
    client.log_batch(batch).await.unwrap();
    client
        .track_performance_with(pb::TrackPerformanceRequest {
            operation: "crm.lookup".into(),
            duration_ms: 12.5,
            lead_id: "jane.doe@example.com".into(),
            details: Some(auditlog_proto::json::json_to_struct(
                json!({"email": "jane.doe@example.com"})
                    .as_object()
                    .unwrap(),
            )),
            ..Default::default()
        })
        .await
        .unwrap();
    // Half the log sealed and gzipped, half in the active file.
    client.rotate(true).await.unwrap();
    client
        .log(
            NewEvent::email_sent("jane.doe@example.com", "x", "Welcome")
                .detail("email", "jane.doe@example.com"),
        )
        .await
        .unwrap();

    let files = everything_stored(&server.data_dir);
    assert!(files.iter().any(|(n, _)| n.ends_with(".gz (decompressed)")));
    for (name, bytes) in &files {
        for plain in PII {
            assert!(!contains(bytes, plain), "{plain:?} is stored in {name}");
        }
    }
    // What is stored instead: the same token for each spelling of Jane's
    // email, and her phone number in both formats.
    let stored = client
        .query(Query::new().oldest_first().limit(100))
        .await
        .unwrap()
        .events;
    let details: Vec<Value> = stored
        .iter()
        .map(|e| {
            auditlog_proto::json::struct_to_json(e.details.as_ref().unwrap())
                .unwrap()
                .into()
        })
        .collect();
    let jane = details[0]["contact"]["email"].as_str().unwrap().to_owned();
    assert!(jane.starts_with("pii:hmac:") && jane.len() == 41, "{jane}");
    assert_eq!(stored[0].lead_id, jane, "the lead id is pseudonymised too");
    assert_eq!(details[1]["email"].as_str().unwrap(), stored[1].lead_id);
    assert_ne!(
        details[1]["email"].as_str().unwrap(),
        jane,
        "John's token differs"
    );
    assert_eq!(details[0]["contact"]["phone"], details[4]["phone"]);
    assert_eq!(details[2]["people"][0]["name"], details[0]["name"]);
    assert_eq!(
        details[3],
        json!({"text": "no personal data here", "phone_count": 2})
    );
    assert_eq!(details[0]["source"], "webform");
    // Pseudonymised before signing: the log verifies.
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    // A lead's history is still found by its plain id.
    let history = client.lead_history("Jane.Doe@example.com").await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 6, 7],
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_stable_across_restarts() {
    let server = TestServer::start_with(compliance_on).await;
    let client = server.client().await;
    let email = |client: Client| async move {
        let r = client
            .log(NewEvent::new("signup").detail("email", "jane.doe@example.com"))
            .await
            .unwrap();
        let e = client
            .query(Query::new().limit(1))
            .await
            .unwrap()
            .events
            .remove(0);
        assert_eq!(e.seq, r.seq);
        auditlog_proto::json::struct_to_json(e.details.as_ref().unwrap()).unwrap()["email"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = email(client).await;
    let server = server.restart(compliance_on).await;
    let after = email(server.client().await).await;
    assert_eq!(before, after);
    // The generated key is kept in the data directory, private.
    let key = server.data_dir.join("pseudonym.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

async fn export(client: &Client, identifier: &str) -> Vec<(u64, Vec<String>)> {
    let mut stream = client.export_subject(identifier).await.unwrap();
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        let item = item.unwrap();
        out.push((item.event.unwrap().seq, item.matched_fields));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_export_finds_exactly_that_subjects_events() {
    let server = TestServer::start_with(compliance_on).await;
    let client = server.client().await;
    client.log_batch(events()).await.unwrap();

    let jane = export(&client, "jane.doe@example.com").await;
    assert_eq!(
        jane,
        [(
            1,
            vec!["lead_id".to_owned(), "details.contact.email".to_owned()]
        ),]
    );
    let by_phone = export(&client, "+1-555-010-9999").await;
    assert_eq!(
        by_phone,
        [
            (1, vec!["details.contact.phone".to_owned()]),
            (5, vec!["details.phone".to_owned()]),
        ]
    );
    let by_name = export(&client, " jane doe ").await;
    assert_eq!(by_name.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(by_name[1].1, ["details.people.0.name"]);
    let john = export(&client, "John.Roe@example.org").await;
    assert_eq!(
        john,
        [(2, vec!["lead_id".to_owned(), "details.email".to_owned()])]
    );
    assert!(export(&client, "nobody@example.com").await.is_empty());

    // The CLI: CSV with one row per event and where the subject appears.
    let (code, out, err) = common::cli(
        &server.url,
        &["subject", "export", "+15550109999", "--format", "csv"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(headers.get(0), Some("seq"));
    assert_eq!(headers.iter().next_back(), Some("matched_fields"));
    let rows: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_owned(), r[r.len() - 1].to_owned())
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("1".to_owned(), "details.contact.phone".to_owned()),
            ("5".to_owned(), "details.phone".to_owned())
        ]
    );
    // JSON to a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jane.json");
    let (code, _, err) = common::cli(
        &server.url,
        &[
            "subject",
            "export",
            "Jane Doe",
            "--output",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let exported: Vec<Value> = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let seqs: BTreeSet<u64> = exported
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, BTreeSet::from([1, 3]));
    // An empty identifier is refused with the field named.
    let err = client.export_subject("  ").await.err().unwrap();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument));
    let (code, _, stderr) = common::cli(&server.url, &["subject", "export", ""]).await;
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("identifier"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_compliance_mode_values_are_stored_and_exported_as_given() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log_batch(events()).await.unwrap();
    let text = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(text.contains("Jane.Doe@Example.com"));
    assert!(!server.data_dir.join("pseudonym.key").exists());
    let jane = export(&client, "jane.doe@example.com").await;
    assert_eq!(
        jane,
        [(
            1,
            vec!["lead_id".to_owned(), "details.contact.email".to_owned()]
        )]
    );
}
