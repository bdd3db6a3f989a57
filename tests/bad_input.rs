//! What callers send wrong, through a real server on 127.0.0.1: requests
//! that do not decode, nest too deep or are too large (sent as raw bytes
//! with a codec of the test's own), HTTP/2 requests that are not gRPC as
//! the server reads it (sent with `h2` as they are), plain HTTP/1.1 on the
//! gRPC port, control characters in short fields, formula cells in CSV
//! exports and escapes in CLI tables, and an inverted time range.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::collections::BTreeMap;

use auditlog_client::{NewEvent, pb};
use common::TestServer;
use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _};
use prost_types::{ListValue, Struct, Value, value::Kind};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Request, Status};

// ---------------------------------------------------------------------------
// Raw requests

/// A codec that sends the test's bytes as they are and reads answers as
/// bytes, so a request can be anything.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// Sends `bytes` as the request message of AuditService method `rpc`.
async fn send_raw(server: &TestServer, rpc: &str, bytes: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::try_from(format!("/auditlog.v1.AuditService/{rpc}")).unwrap();
    grpc.unary(Request::new(bytes), path, Raw)
        .await
        .map(|r| r.into_inner())
}

fn log_request(actor: &str, details: Option<Struct>) -> Vec<u8> {
    pb::LogRequest {
        event: Some(pb::EventInput {
            event_type: "lead_ingested".into(),
            actor: actor.into(),
            details,
            ..Default::default()
        }),
        with_proof: false,
    }
    .encode_to_vec()
}

/// `details` nesting `depth` objects: `{"k":{"k":...{"k":1}}}`.
fn nested(depth: usize) -> Struct {
    nested_as(depth, |_| false)
}

/// `details` nesting `depth` levels, the top one an object and level `l`
/// (from 2) a list where `list_at(l)`: `{"k":[{"k":[1]}]}` is 4.
fn nested_as(depth: usize, list_at: impl Fn(usize) -> bool) -> Struct {
    let mut value = Value {
        kind: Some(Kind::NumberValue(1.0)),
    };
    for level in (2..=depth).rev() {
        let kind = if list_at(level) {
            Kind::ListValue(ListValue {
                values: vec![value],
            })
        } else {
            Kind::StructValue(Struct {
                fields: BTreeMap::from([("k".to_owned(), value)]),
            })
        };
        value = Value { kind: Some(kind) };
    }
    Struct {
        fields: BTreeMap::from([("k".to_owned(), value)]),
    }
}

/// The status of `result`, failing the test on success.
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, Status>) -> Status {
    match result {
        Ok(v) => panic!("{what}: accepted ({v:?})"),
        Err(status) => status,
    }
}

#[tokio::test]
async fn requests_that_do_not_decode_are_invalid_arguments_that_say_why() {
    let server = TestServer::start().await;

    // A string that is not UTF-8: encode a valid request, then swap the
    // actor's bytes for invalid ones of the same length.
    let mut bytes = log_request("ZZZZ", None);
    let at = bytes.windows(4).position(|w| w == b"ZZZZ").unwrap();
    bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xc0, 0x80]);
    let status = refused("non-UTF-8 actor", send_raw(&server, "Log", bytes).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("EventInput.actor") && status.message().contains("UTF-8"),
        "{status:?}"
    );

    // A truncated message.
    let mut bytes = log_request("crm-sync", None);
    bytes.truncate(bytes.len() - 3);
    let status = refused("truncated", send_raw(&server, "Log", bytes).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("not a valid protobuf message"),
        "{status:?}"
    );

    // Bytes that are no message at all, on a streaming method too.
    let status = refused(
        "garbage",
        send_raw(&server, "GetStats", vec![0xff; 16]).await,
    );
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // The server still serves.
    server.client().await.stats(None).await.unwrap();
}

#[tokio::test]
async fn details_nest_to_the_documented_depth_and_deeper_is_refused_by_name() {
    const DEPTH: usize = 33; // docs/limits.md
    let server = TestServer::start().await;
    let deepest = log_request("a", Some(nested(DEPTH)));
    send_raw(&server, "Log", deepest).await.unwrap();
    let status = refused(
        "one level deeper",
        send_raw(&server, "Log", log_request("a", Some(nested(DEPTH + 1)))).await,
    );
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("details may nest at most 33 levels"),
        "{status:?}"
    );
    assert!(status.message().len() < 400, "{status:?}");
}

/// A list is a level like an object (docs/limits.md): lists alone, or mixed
/// with objects, nest 33 levels and are refused at the 34th as objects are,
/// though protobuf's own limit would let lists alone reach 49.
#[tokio::test]
async fn lists_count_toward_the_depth_as_objects_do() {
    const DEPTH: usize = 33; // docs/limits.md
    let server = TestServer::start().await;
    /// A shape of nesting: its name, and which levels are lists.
    type Shape = (&'static str, fn(usize) -> bool);
    const SHAPES: [Shape; 3] = [
        ("lists", |_| true),
        ("lists in objects", |level| level % 2 == 0),
        ("objects in lists", |level| level % 2 == 1),
    ];
    for (shape, list_at) in SHAPES {
        let deepest = log_request("a", Some(nested_as(DEPTH, list_at)));
        send_raw(&server, "Log", deepest).await.unwrap();
        let deeper = log_request("a", Some(nested_as(DEPTH + 1, list_at)));
        let status = refused(shape, send_raw(&server, "Log", deeper).await);
        assert_eq!(status.code(), Code::InvalidArgument, "{shape}: {status:?}");
        assert!(
            status
                .message()
                .contains("details may nest at most 33 levels"),
            "{shape}: {status:?}"
        );
        assert!(status.message().len() < 400, "{shape}: {status:?}");
    }
    // Far deeper than protobuf's limit: the same refusal.
    let deepest = log_request("a", Some(nested_as(120, |_| true)));
    let status = refused("120 lists", send_raw(&server, "Log", deepest).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("at most 33 levels"), "{status:?}");
}

#[tokio::test]
async fn an_oversized_request_is_resource_exhausted() {
    let server = TestServer::start().await;
    let text = "x".repeat(5 << 20);
    let details = Struct {
        fields: BTreeMap::from([(
            "blob".to_owned(),
            Value {
                kind: Some(Kind::StringValue(text)),
            },
        )]),
    };
    let status = refused(
        "5 MiB request",
        send_raw(&server, "Log", log_request("a", Some(details))).await,
    );
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("larger than"), "{status:?}");
}

/// A request over 4 MiB is refused naming the limit as the docs do (not
/// 4194309, the limit plus the frame prefix) with advice for the method
/// called: before, every method was told to send fewer events per LogBatch,
/// a VerifyIntegrity with 100,000 checkpoints too.
#[tokio::test]
async fn an_oversized_request_is_told_what_to_send_for_its_method() {
    let server = TestServer::start().await;
    let event = |actor: String| pb::EventInput {
        event_type: "lead_ingested".into(),
        actor,
        ..Default::default()
    };
    let ten_mb = || "x".repeat(10_000_000);
    let checkpoints = (1..=100_000)
        .map(|seq| pb::Checkpoint {
            seq,
            signature: "0".repeat(64),
        })
        .collect();
    for (rpc, request, advice) in [
        (
            "Log",
            log_request(&ten_mb(), None),
            "its details at most 64 KiB as JSON",
        ),
        (
            "LogBatch",
            pb::LogBatchRequest {
                events: (0..20).map(|_| event("y".repeat(300_000))).collect(),
                with_proof: false,
            }
            .encode_to_vec(),
            "send fewer events per LogBatch",
        ),
        (
            "VerifyIntegrity",
            pb::VerifyIntegrityRequest {
                from_seq: 0,
                to_seq: 0,
                checkpoints,
            }
            .encode_to_vec(),
            "send fewer checkpoints per call",
        ),
        (
            "GetStats",
            pb::GetStatsRequest {
                workflow: ten_mb(),
                ..Default::default()
            }
            .encode_to_vec(),
            "no request of this method needs that much",
        ),
    ] {
        assert!(request.len() > 4 << 20, "{rpc}: {}", request.len());
        let status = refused(rpc, send_raw(&server, rpc, request).await);
        assert_eq!(status.code(), Code::ResourceExhausted, "{rpc}: {status:?}");
        let message = status.message();
        assert!(
            message.starts_with("the request message is larger than 4 MiB (4,194,304 bytes)"),
            "{rpc}: {message}"
        );
        assert!(message.contains(advice), "{rpc}: {message}");
        assert!(!message.contains("4194309"), "{rpc}: {message}");
        if rpc != "LogBatch" {
            assert!(!message.contains("LogBatch"), "{rpc}: {message}");
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP/2 requests that are not gRPC as the server reads it

/// A gRPC request's headers.
const GRPC: &[(&str, &str)] = &[("content-type", "application/grpc"), ("te", "trailers")];

/// Sends one HTTP/2 request exactly as given (`method` on `path`, `headers`,
/// then `body` in one DATA frame unless it is empty) on a connection of its
/// own, and returns the gRPC status it is answered with: from the headers of
/// a trailers-only answer, else from the trailers.
async fn raw_http2(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Status {
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", server.addr));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut send) = client
        .send_request(request.body(()).unwrap(), body.is_empty())
        .unwrap();
    if !body.is_empty() {
        send.send_data(bytes::Bytes::copy_from_slice(body), true)
            .unwrap();
    }
    let response = tokio::time::timeout(common::DEADLINE, response)
        .await
        .expect("no answer")
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::OK, "{response:?}");
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().expect("no trailers");
    Status::from_header_map(&trailers).expect("no grpc-status")
}

/// A gRPC message: the 5-byte prefix (`flag`, then `len` big-endian), then
/// `payload`.
fn framed(flag: u8, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// What a probe found answered INTERNAL, or UNIMPLEMENTED without a word,
/// is a caller's mistake answered INVALID_ARGUMENT (or UNIMPLEMENTED for a
/// method that is not there) saying what was wrong and what to send
/// (docs/limits.md).
#[tokio::test]
async fn framing_mistakes_are_invalid_arguments_that_say_what_to_send() {
    let server = TestServer::start().await;
    let log = "/auditlog.v1.AuditService/Log";
    let message = log_request("crm-sync", None);
    let len = u32::try_from(message.len()).unwrap();
    let json: &[(&str, &str)] = &[("content-type", "application/json")];
    let none: &[(&str, &str)] = &[("te", "trailers")];
    /// What is sent (the case's name, method, path, headers, body), and
    /// the answer's code and words.
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Vec<u8>,
        Code,
        &'a [&'a str],
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "a prefix announcing more than the body holds",
            "POST",
            log,
            GRPC,
            framed(0, len + 100, &message),
            Code::InvalidArgument,
            &["ends inside a gRPC message", "5-byte prefix"],
        ),
        (
            "a body shorter than a prefix",
            "POST",
            log,
            GRPC,
            vec![0, 0, 0],
            Code::InvalidArgument,
            &["ends inside a gRPC message"],
        ),
        (
            "an empty body",
            "POST",
            log,
            GRPC,
            Vec::new(),
            Code::InvalidArgument,
            &["no request message was sent", "exactly one"],
        ),
        (
            "a GET",
            "GET",
            log,
            none,
            Vec::new(),
            Code::InvalidArgument,
            &["POST", "not GET"],
        ),
        (
            "the compressed flag without grpc-encoding",
            "POST",
            log,
            GRPC,
            framed(1, len, &message),
            Code::InvalidArgument,
            &["marked compressed", "grpc-encoding", "identity"],
        ),
        (
            "a flag that is neither 0 nor 1",
            "POST",
            log,
            GRPC,
            framed(7, len, &message),
            Code::InvalidArgument,
            &["flag", "7"],
        ),
        (
            "JSON",
            "POST",
            log,
            json,
            br#"{"event":{"event_type":"x"}}"#.to_vec(),
            Code::InvalidArgument,
            &[
                "content-type must be application/grpc",
                "application/grpc+proto",
                "application/json",
            ],
        ),
        (
            "no content-type",
            "POST",
            log,
            none,
            framed(0, len, &message),
            Code::InvalidArgument,
            &["content-type must be application/grpc"],
        ),
        (
            // As gRPC says: UNIMPLEMENTED, naming what the server accepts.
            "a compression the server does not take",
            "POST",
            log,
            &[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("grpc-encoding", "gzip"),
            ],
            framed(1, len, &message),
            Code::Unimplemented,
            &["gzip"],
        ),
        (
            "a method the service does not have",
            "POST",
            "/auditlog.v1.AuditService/Nope",
            GRPC,
            framed(0, len, &message),
            Code::Unimplemented,
            &[
                "no method /auditlog.v1.AuditService/Nope here",
                "auditlog.v1.AuditService and auditlog.v1.AdminService",
                "reflection",
            ],
        ),
        (
            "a path that is no method",
            "POST",
            "/foo",
            GRPC,
            framed(0, len, &message),
            Code::Unimplemented,
            &["no method /foo here", "reflection"],
        ),
    ];
    let mut wrong = Vec::new();
    for (what, method, path, headers, body, code, says) in cases {
        let status = raw_http2(&server, method, path, headers, &body).await;
        if status.code() != code
            || !says.iter().all(|said| status.message().contains(said))
            || status.message().len() >= 400
        {
            wrong.push(format!(
                "{what}: {:?} {:?}",
                status.code(),
                status.message()
            ));
        }
    }
    assert!(wrong.is_empty(), "answered wrong:\n{}", wrong.join("\n"));

    // The same message, framed right, is written, as application/grpc+proto
    // too.
    for content_type in ["application/grpc", "application/grpc+proto"] {
        let headers = [("content-type", content_type), ("te", "trailers")];
        let status = raw_http2(&server, "POST", log, &headers, &framed(0, len, &message)).await;
        assert_eq!(status.code(), Code::Ok, "{content_type}: {status:?}");
    }
    server.client().await.stats(None).await.unwrap();
}

// ---------------------------------------------------------------------------
// HTTP/1.1 on the gRPC port

#[tokio::test]
async fn plain_http_gets_an_http1_answer_saying_this_is_a_grpc_port() {
    let server = TestServer::start().await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // The server closes the connection after answering.
    tokio::time::timeout(common::DEADLINE, tcp.read_to_end(&mut answer))
        .await
        .expect("the server kept the connection open")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 426 "), "{text:?}");
    assert!(
        text.to_ascii_lowercase().contains("upgrade: h2c"),
        "{text:?}"
    );
    assert!(text.contains("This is a gRPC port"), "{text:?}");

    // gRPC on the same port is unaffected.
    server.client().await.stats(None).await.unwrap();
}

// ---------------------------------------------------------------------------
// Control characters and what the CLI shows

#[tokio::test]
async fn control_characters_in_short_fields_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for (event, field) in [
        (
            NewEvent::new("lead_ingested").actor("crm\nFORGED"),
            "event.actor",
        ),
        (
            NewEvent::new("lead_ingested").lead("L-1\r"),
            "event.lead_id",
        ),
        (
            NewEvent::new("lead_ingested").workflow("a\u{1b}[2J"),
            "event.workflow",
        ),
        (NewEvent::new("lead_ingested").lead("L\0"), "event.lead_id"),
        (
            NewEvent::new("lead_ingested").actor("crm\u{7f}"),
            "event.actor",
        ),
        (
            NewEvent::new("lead_ingested").idempotency_key("k\u{9b}"),
            "event.idempotency_key",
        ),
    ] {
        let err = client.log(event).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::InvalidArgument), "{field}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(field) && text.contains("control character"),
            "{text}"
        );
    }
    let err = client
        .log_batch([
            NewEvent::new("lead_ingested"),
            NewEvent::new("lead_ingested").actor("a\tb"),
        ])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("events[1].actor"), "{err}");
    // Nothing was written; text with accents and spaces still is.
    client
        .log(
            NewEvent::new("lead_ingested")
                .actor("Zoë O'Brien")
                .lead("LEAD 1"),
        )
        .await
        .unwrap();
    assert_eq!(client.stats(None).await.unwrap().total_events, 1);
}

/// A filter value no event could hold, by the rules events are checked
/// with, is INVALID_ARGUMENT naming the field and the rule, for Query,
/// StreamEvents and GetStats alike (as ExportSubject refuses such an
/// identifier). Before, `event_types=["Bad Type\n"]`, `lead_id="\x1b"` and
/// a 10,000-character `lead_id` were accepted and answered nothing, as an
/// empty log would. Every value an event can hold still matches it.
#[tokio::test]
async fn filter_values_no_event_could_hold_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let longest = "L".repeat(256);
    client
        .log(
            NewEvent::new("lead_ingested")
                .lead(&longest)
                .actor("Zoë O'Brien")
                .workflow("wf 1"),
        )
        .await
        .unwrap();
    let mut audit = pb::audit_service_client::AuditServiceClient::new(server.channel().await);
    let filter = |f: pb::EventFilter| Some(f);
    let bad = [
        (
            pb::EventFilter {
                event_types: vec!["lead_ingested".into(), "Bad Type\n".into()],
                ..Default::default()
            },
            "filter.event_types[1] \"Bad Type\\n\" is not lower_snake_case",
        ),
        (
            pb::EventFilter {
                lead_id: "\x1b".into(),
                ..Default::default()
            },
            "filter.lead_id holds the control character U+001B",
        ),
        (
            pb::EventFilter {
                lead_id: "x".repeat(10_000),
                ..Default::default()
            },
            "filter.lead_id is 10000 characters; an event's lead_id is at most 256",
        ),
        (
            pb::EventFilter {
                actor: "crm\nFORGED".into(),
                ..Default::default()
            },
            "filter.actor holds the control character U+000A",
        ),
        (
            pb::EventFilter {
                workflow: "w".repeat(257),
                ..Default::default()
            },
            "filter.workflow is 257 characters",
        ),
    ];
    for (f, says) in bad {
        let query = audit
            .query(pb::QueryRequest {
                filter: filter(f.clone()),
                ..Default::default()
            })
            .await
            .map(|_| ());
        let stream = audit
            .stream_events(pb::StreamEventsRequest {
                filter: filter(f),
                ..Default::default()
            })
            .await
            .map(|_| ());
        for (rpc, answer) in [("Query", query), ("StreamEvents", stream)] {
            let status = refused(rpc, answer);
            assert_eq!(status.code(), Code::InvalidArgument, "{rpc}: {status:?}");
            assert!(
                status.message().contains(says)
                    && status.message().ends_with("so no event could match"),
                "{rpc}: {says}\n{}",
                status.message()
            );
        }
    }
    for (event_types, workflow, says) in [
        (
            vec!["Bad Type\n".to_owned()],
            "",
            "event_types[0] \"Bad Type\\n\"",
        ),
        (
            vec![],
            "\x1b",
            "workflow holds the control character U+001B",
        ),
    ] {
        let status = refused(
            "GetStats",
            audit
                .get_stats(pb::GetStatsRequest {
                    event_types,
                    workflow: workflow.into(),
                    ..Default::default()
                })
                .await,
        );
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(says), "{status:?}");
    }

    // What an event can hold is still asked for, and found.
    let can = pb::EventFilter {
        event_types: vec![
            "lead_ingested".into(),
            "auditlog.purge".into(),
            String::new(),
        ],
        lead_id: longest.clone(),
        actor: "Zoë O'Brien".into(),
        workflow: "wf 1".into(),
        ..Default::default()
    };
    let page = audit
        .query(pb::QueryRequest {
            filter: filter(can.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].lead_id, longest);
    let mut stream = audit
        .stream_events(pb::StreamEventsRequest {
            filter: filter(can),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let stats = audit
        .get_stats(pb::GetStatsRequest {
            event_types: vec!["lead_ingested".into(), "auditlog.purge".into()],
            workflow: "wf 1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.total_events, 1);
}

#[tokio::test]
async fn cli_tables_escape_what_a_terminal_would_act_on() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // Details may hold any text; the errors table shows error_message.
    let forged = "boom\n2026-01-01T00:00:00.000000Z  999  FORGED\u{1b}[2J\u{202e}";
    client
        .log(NewEvent::error("timeout", forged).lead("LEAD-1"))
        .await
        .unwrap();
    for args in [&["errors"][..], &["query", "--verbose"][..]] {
        let (code, out, err) = common::cli(&server.url, args).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{202e}'),
            "{args:?}: raw escapes in {out:?}"
        );
        assert_eq!(out.lines().count(), 2, "{args:?}: a forged row in {out:?}");
        assert!(out.contains(r"boom\n2026"), "{args:?}: {out:?}");
    }
}

#[tokio::test]
async fn csv_exports_neutralise_formula_cells() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .log(
            NewEvent::new("lead_ingested")
                .actor("=HYPERLINK(\"http://evil\",\"x\")")
                .lead("@SUM(A1:A9)")
                .workflow("+1-1"),
        )
        .await
        .unwrap();
    let (code, out, err) = common::cli(&server.url, &["export", "--format", "csv"]).await;
    assert_eq!(code, 0, "{err}");
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let cell = |name: &str| &row[headers.iter().position(|h| h == name).unwrap()];
    assert_eq!(cell("actor"), "'=HYPERLINK(\"http://evil\",\"x\")");
    assert_eq!(cell("lead_id"), "'@SUM(A1:A9)");
    assert_eq!(cell("workflow"), "'+1-1");
    assert_eq!(cell("event_type"), "lead_ingested");
    // JSON stays exact.
    let (_, out, _) = common::cli(&server.url, &["export", "--format", "jsonl"]).await;
    assert!(out.contains(r#""actor":"=HYPERLINK"#), "{out}");
}

// ---------------------------------------------------------------------------
// Ranges

#[tokio::test]
async fn performance_stats_refuse_an_inverted_range() {
    let server = TestServer::start().await;
    let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let err = server
        .client()
        .await
        .performance_stats_with(pb::GetPerformanceStatsRequest {
            operation: String::new(),
            since: at(2_000_000_000),
            until: at(1_000_000_000),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    assert!(err.to_string().contains("until"), "{err}");
}
