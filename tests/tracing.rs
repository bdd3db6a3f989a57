//! OpenTelemetry traces end to end: the server binary exports over real
//! OTLP/gRPC to a receiver in this test (a tonic server decoding
//! `opentelemetry-proto`'s types), continuing the caller's W3C
//! `traceparent`.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use auditlog_client::pb;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use pb::audit_service_client::AuditServiceClient;
use sha2::Digest as _;

use common::{ServerProcess, wait_until};

/// The caller's trace and its span, as its `traceparent` names them.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const TOKEN: &str = "tracing-test-token-0f3a9c1e";

/// Every span the receiver was sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.spans.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// Serves OTLP on a free port; returns its URL.
    async fn start() -> (Receiver, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let receiver = Receiver::default();
        let serve = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(serve);
        (receiver, url)
    }

    /// Waits for a span named `name` in the caller's trace.
    async fn span(&self, name: &str) -> Span {
        wait_until(
            &format!("the span {name} in the caller's trace"),
            || async {
                let spans = self.spans.lock().unwrap();
                spans
                    .iter()
                    .find(|s| s.name == name && hex::encode(&s.trace_id) == TRACE)
                    .cloned()
                    .ok_or_else(|| {
                        let seen: Vec<_> = spans
                            .iter()
                            .map(|s| (s.name.clone(), hex::encode(&s.trace_id)))
                            .collect();
                        format!("spans so far: {seen:?}")
                    })
            },
        )
        .await
    }
}

/// The server binary with a token, JSON logs, and traces exported to
/// `otlp`; its stderr in a file.
struct Traced {
    process: ServerProcess,
}

impl Traced {
    /// With `rust_log` as `RUST_LOG`.
    async fn start(dir: &Path, otlp: &str, rust_log: &str) -> Traced {
        let config = dir.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "log_format = \"json\"\n\
                 [[tokens]]\nname = \"crm\"\nsha256 = {:?}\nroles = [\"writer\", \"reader\"]\n\
                 [tracing]\notlp_endpoint = {otlp:?}\nservice_name = \"auditlog-under-test\"\n",
                hex::encode(sha2::Sha256::digest(TOKEN.as_bytes()))
            ),
        )
        .unwrap();
        let process = ServerProcess::spawn_logging(
            &dir.join("data"),
            ["--config".as_ref(), config.as_os_str()],
            // Export each batch after 50 ms rather than 5 s.
            &[("RUST_LOG", rust_log), ("OTEL_BSP_SCHEDULE_DELAY", "50")],
            dir.join("server.stderr"),
        )
        .await;
        Traced { process }
    }

    /// Logs `details` with the caller's `traceparent`, and the token if
    /// `authorized`.
    async fn log(
        &self,
        details: serde_json::Value,
        authorized: bool,
    ) -> Result<pb::LogResponse, tonic::Status> {
        let mut client = AuditServiceClient::connect(self.process.url.clone())
            .await
            .unwrap();
        let serde_json::Value::Object(details) = details else {
            panic!("details must be an object")
        };
        let mut request = tonic::Request::new(pb::LogRequest {
            event: Some(pb::EventInput {
                event_type: "lead_created".into(),
                details: Some(auditlog_proto::json::json_to_struct(&details)),
                ..Default::default()
            }),
            with_proof: false,
        });
        let metadata = request.metadata_mut();
        metadata.insert(
            "traceparent",
            format!("00-{TRACE}-{PARENT}-01").parse().unwrap(),
        );
        metadata.insert("tracestate", "vendor=opaque".parse().unwrap());
        if authorized {
            metadata.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        }
        client.log(request).await.map(tonic::Response::into_inner)
    }
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// The caller's trace shows the audit write inside it: the server's RPC
/// span is the child of the caller's span, and the group commit and its
/// fsync are the RPC span's descendants. No span holds the token or what
/// the event said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_span_continues_the_callers_trace_with_the_commit_inside() {
    let (receiver, otlp) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The log's filter leaves the exported spans alone.
    let server = Traced::start(dir.path(), &otlp, "warn").await;
    server
        .log(serde_json::json!({"note": "secret-ish detail"}), true)
        .await
        .unwrap();

    let rpc = receiver.span("auditlog.v1.AuditService/Log").await;
    assert_eq!(hex::encode(&rpc.parent_span_id), PARENT);
    assert_eq!(rpc.trace_state, "vendor=opaque");
    assert_eq!(
        attribute(&rpc, "rpc.grpc.status_code"),
        Some(&AnyValue::IntValue(0))
    );
    assert_eq!(
        attribute(&rpc, "rpc.method"),
        Some(&AnyValue::StringValue("Log".into()))
    );
    let commit = receiver.span("auditlog.store.commit").await;
    assert_eq!(commit.parent_span_id, rpc.span_id);
    assert_eq!(attribute(&commit, "events"), Some(&AnyValue::IntValue(1)));
    let fsync = receiver.span("auditlog.store.fsync").await;
    assert_eq!(fsync.parent_span_id, commit.span_id);

    let spans = format!("{:?}", receiver.spans.lock().unwrap());
    for secret in [TOKEN, "secret-ish detail", "lead_created"] {
        assert!(!spans.contains(secret), "a span holds {secret:?}: {spans}");
    }
}

/// `"_trace": true` in the details is stored as the call's trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_detail_key_records_the_trace_id_in_the_event() {
    let (_receiver, otlp) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Traced::start(dir.path(), &otlp, "warn").await;
    server
        .log(serde_json::json!({"_trace": true, "step": 1}), true)
        .await
        .unwrap();
    server
        .log(serde_json::json!({"_trace": "mine", "step": 2}), true)
        .await
        .unwrap();

    let options = auditlog_client::Options {
        token: Some(TOKEN.into()),
        ..auditlog_client::Options::default()
    };
    let client = auditlog_client::Client::connect_with(&server.process.url, options)
        .await
        .unwrap();
    let events = common::all_events(&client).await;
    let details: Vec<_> = events
        .iter()
        .map(|e| auditlog_proto::json::struct_to_json(e.details.as_ref().unwrap()).unwrap())
        .collect();
    assert_eq!(details[0]["_trace"], TRACE);
    assert_eq!(details[0]["step"], 1);
    // Only `true` asks: any other value is the caller's and kept.
    assert_eq!(details[1]["_trace"], "mine");
}

/// With tracing on, a JSON log line written inside a call carries the
/// call's trace id in its span context (at `RUST_LOG=info`, the default, or
/// finer: the log shows the spans its filter lets through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_inside_a_call_carry_its_trace_id() {
    let (_receiver, otlp) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Traced::start(dir.path(), &otlp, "info").await;
    let refused = server.log(serde_json::json!({}), false).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let line = wait_until("the refusal's log line", || async {
        let text = server.process.stderr();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("refused"))
            })
            .ok_or(text)
    })
    .await;
    assert_eq!(line["span"]["trace_id"], TRACE, "{line}");
    assert_eq!(line["span"]["rpc.method"], "Log", "{line}");
}
