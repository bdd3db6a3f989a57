//! Event details through the real client and back: every kind of JSON
//! value comes back as given, whether the details went as a
//! `google.protobuf.Struct` or as JSON text (`details_json`), and both ways
//! store the same line, byte for byte.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use auditlog_client::{Client, NewEvent, Query, pb};
use common::{TestServer, all_stored_lines, seqs};
use serde_json::json;

#[tokio::test]
async fn details_come_back_as_given() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let details = json!({
        "nested": {"deeper": {"list": [1, "two", 3.25, false, null, {"k": "v"}]}},
        "empty_object": {},
        "empty_list": [],
        "unicode": "héllo wörld — 日本語 🚀",
        "quotes": "she said \"hi\", 'bye' and \\ once",
        "newlines": "line 1\nline 2\r\n\ttabbed",
        "control": "\u{0001}\u{001f}",
        "yes": true,
        "no": false,
        "nothing": null,
        "integer": 42,
        "negative": -17,
        "largest_exact": 9_007_199_254_740_991_i64,
        "float": 0.1,
        "negative_float": -2.5e-7,
        "huge": 1.5e300,
    });
    // Each way once and in a batch of two: as a Struct (the default), then
    // through a client that sends details as JSON text.
    let as_json = Client::builder()
        .node(server.url.clone())
        .details_as_json(true)
        .connect()
        .await
        .unwrap();
    let event = || NewEvent::new("crm_update").details(details.clone());
    let mut written = Vec::new();
    for c in [&client, &as_json] {
        written.push(c.log(event()).await.unwrap().seq);
        let batch = c.log_batch(vec![event(), event()]).await.unwrap();
        written.extend(batch.iter().map(|r| r.seq));
    }
    let events = client.query_all(Query::new().oldest_first()).await.unwrap();
    assert_eq!(seqs(&events), written);
    for event in &events {
        let back = auditlog_proto::json::struct_to_json(event.details.as_ref().unwrap()).unwrap();
        assert_eq!(
            serde_json::Value::Object(back),
            details,
            "seq {}",
            event.seq
        );
    }
    let lines = all_stored_lines(&client).await;
    let stored: Vec<String> = lines.iter().map(|l| stored_details(l)).collect();
    assert!(stored.iter().all(|d| *d == stored[0]), "{stored:#?}");
}

/// The `details` text of a stored line, byte for byte.
fn stored_details(line: &[u8]) -> String {
    let line = std::str::from_utf8(line).unwrap();
    let rest = &line[line.find(r#","details":"#).unwrap() + 11..];
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<serde::de::IgnoredAny>();
    values.next().unwrap().unwrap();
    rest[..values.byte_offset()].to_owned()
}

#[tokio::test]
async fn details_sent_as_json_text_are_stored_as_the_same_struct_would_be() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // Spaces, keys out of order, a repeated key (its last value counts),
    // escapes, an integer beyond 2^53 (a double, as in a Struct), exponents.
    let text = r#" {
        "z": {"list": [1, "two", 3.25, false, null, {"k": "v"}], "empty": {}},
        "a": "first", "a": "last",
        "escaped": "caf\u00e9 \/ \"q\" \\ \n\t \ud83d\ude80",
        "beyond_2_53": 9007199254740993,
        "exponent": 1E2, "negative": -2.5e-7, "zero": -0, "empty_list": []
    } "#;
    let meant: serde_json::Value = serde_json::from_str(text).unwrap();
    client
        .log(NewEvent::new("crm_update").details(meant.clone()))
        .await
        .unwrap();
    let json_input = pb::EventInput {
        event_type: "crm_update".into(),
        details_json: text.into(),
        ..Default::default()
    };
    let mut raw = client.raw();
    raw.log(pb::LogRequest {
        event: Some(json_input.clone()),
        with_proof: false,
    })
    .await
    .unwrap();
    raw.log_batch(pb::LogBatchRequest {
        events: vec![json_input.clone(), json_input],
        with_proof: false,
    })
    .await
    .unwrap();

    let lines = all_stored_lines(&client).await;
    assert_eq!(lines.len(), 4);
    let stored: Vec<String> = lines.iter().map(|l| stored_details(l)).collect();
    assert!(
        stored.iter().all(|d| *d == stored[0]),
        "the Struct's stored details, then the texts': {stored:#?}"
    );
    assert!(
        stored[0].starts_with(r#"{"a":"last","beyond_2_53":9007199254740992,"#),
        "{}",
        stored[0]
    );
    let events = client.query_all(Query::new().oldest_first()).await.unwrap();
    for event in &events[1..] {
        assert_eq!(event.details, events[0].details, "seq {}", event.seq);
    }
}

/// `details_as_json` answers each event's details as the stored text, the
/// same values the `Struct` form holds, through every page of a query and a
/// lead's history; without it nothing changes.
#[tokio::test]
async fn details_read_as_json_are_the_stored_text() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let kinds = [
        json!({"score": 3, "tags": ["a", "b"], "ok": true, "none": null}),
        json!({}),
        json!({"esc": "q\"b\\n\nt\tu\u{0001} é 😀", "deep": {"a": [[], {}, -2.5e-7, 1.5e300]}}),
    ];
    for n in 0..9 {
        client
            .log(NewEvent::lead_ingested("L-7", "web").details(kinds[n % 3].clone()))
            .await
            .unwrap();
    }
    let lines = all_stored_lines(&client).await;
    let as_struct = client
        .query_all(Query::new().oldest_first().limit(2))
        .await
        .unwrap();
    let as_json = client
        .query_all(Query::new().oldest_first().limit(2).details_as_json())
        .await
        .unwrap();
    assert_eq!(seqs(&as_json), seqs(&as_struct));
    assert_eq!(as_json.len(), 9);
    for ((json_event, struct_event), line) in as_json.iter().zip(&as_struct).zip(&lines) {
        assert_eq!(json_event.details, None, "seq {}", json_event.seq);
        assert_eq!(json_event.details_json, stored_details(line));
        let value: serde_json::Value = serde_json::from_str(&json_event.details_json).unwrap();
        assert_eq!(value, kinds[(json_event.seq as usize - 1) % 3]);
        let back =
            auditlog_proto::json::struct_to_json(struct_event.details.as_ref().unwrap()).unwrap();
        assert_eq!(value, serde_json::Value::Object(back));
        // What the client reads from either form.
        assert_eq!(
            auditlog_client::details_of(json_event).unwrap(),
            auditlog_client::details_of(struct_event).unwrap()
        );
        assert_eq!(struct_event.details_json, "");
        // Every other field as the Struct form has it.
        assert_eq!(
            pb::Event {
                details: struct_event.details.clone(),
                details_json: String::new(),
                ..json_event.clone()
            },
            *struct_event
        );
    }
    // A lead's history, newest first, the same way.
    let history = client
        .query_all(Query::new().lead("L-7").details_as_json())
        .await
        .unwrap();
    assert_eq!(seqs(&history), (1..=9).rev().collect::<Vec<u64>>());
    assert!(
        history
            .iter()
            .all(|e| e.details.is_none() && e.details_json.starts_with('{'))
    );
}

/// A stream with `details_as_json` sends the stored text too: the history
/// read from the log, then live events as the writer publishes them (the
/// encoding every live follower of that form shares), while a follower of
/// the same events without the flag still gets a `Struct`.
#[tokio::test]
async fn details_streamed_as_json_are_the_stored_text() {
    use futures::StreamExt as _;
    let server = TestServer::start().await;
    let client = server.client().await;
    let details = json!({"score": 3, "esc": "q\"b\n é", "deep": {"a": [[], {}, -2.5e-7]}});
    let event = || NewEvent::lead_ingested("L-9", "web").details(details.clone());
    client.log(event()).await.unwrap();
    client.log(event()).await.unwrap();
    let mut as_json = client
        .stream(Query::new().details_as_json(), 1, true)
        .await
        .unwrap();
    let mut as_struct = client.stream(Query::new(), 1, true).await.unwrap();
    // Two from the log, then three live (one alone, two in a batch).
    let mut got = Vec::new();
    for n in 0..5 {
        if n == 2 {
            client.log(event()).await.unwrap();
            client.log_batch(vec![event(), event()]).await.unwrap();
        }
        let json_event = as_json.next().await.unwrap().unwrap();
        let struct_event = as_struct.next().await.unwrap().unwrap();
        assert_eq!(json_event.seq, n + 1);
        assert_eq!(json_event.details, None, "seq {}", json_event.seq);
        let value: serde_json::Value = serde_json::from_str(&json_event.details_json).unwrap();
        assert_eq!(value, details);
        assert_eq!(
            pb::Event {
                details: struct_event.details.clone(),
                details_json: String::new(),
                ..json_event.clone()
            },
            struct_event
        );
        got.push(json_event.details_json);
    }
    let lines = all_stored_lines(&client).await;
    let stored: Vec<String> = lines.iter().map(|l| stored_details(l)).collect();
    assert_eq!(got, stored);
}
