//! The RPC span: the outermost layer over the router, with tracing on. Each
//! AuditService and AdminService call runs inside a span named after its
//! method (`auditlog.v1.AuditService/Log`), the child of the W3C
//! `traceparent`/`tracestate` in the call's metadata, if any. The span ends
//! when the answer's head is out (a stream: once it started) and records
//! the gRPC status code the head carries, `OK` if none (as the metrics
//! layer counts it).
//!
//! With tracing off the layer passes each call straight to the router.

use std::task::{Context, Poll};

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::performance::rpc_name;

/// Wraps the router with the RPC span, when `on`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TraceLayer {
    on: bool,
}

impl TraceLayer {
    pub(crate) fn new(on: bool) -> TraceLayer {
        TraceLayer { on }
    }
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced { inner, on: self.on }
    }
}

/// The service [`TraceLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct Traced<S> {
    inner: S,
    on: bool,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
type Answer<E> = Result<http::Response<tonic::body::Body>, E>;

impl<S, B> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    /// Unboxed unless the call is traced.
    type Future = futures::future::Either<S::Future, BoxFuture<Answer<S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use futures::future::Either::{Left, Right};
        let Some(span) = self.on.then(|| rpc_span(&req)).flatten() else {
            return Left(self.inner.call(req));
        };
        let answer = span.in_scope(|| self.inner.call(req));
        let recorded = span.clone();
        Right(Box::pin(
            async move {
                let response = answer.await;
                let code = match &response {
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0),
                    // The transport failed the call: gRPC's UNKNOWN.
                    Err(_) => 2,
                };
                recorded.record("rpc.grpc.status_code", code);
                if is_server_error(code) {
                    recorded.record("otel.status_code", "ERROR");
                }
                response
            }
            .instrument(span),
        ))
    }
}

/// The span of a call to one of our methods, parented on the caller's
/// trace context; `None` for other paths (health, reflection).
fn rpc_span<B>(req: &http::Request<B>) -> Option<tracing::Span> {
    let path = req.uri().path();
    let method = rpc_name(path)?;
    let name = path.trim_start_matches('/');
    let service = name.split('/').next().unwrap_or_default();
    let span = tracing::info_span!(
        "rpc",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = Empty,
        trace_id = Empty,
    );
    let parent = TraceContextPropagator::new().extract(&Metadata(req.headers()));
    // An error means the span is disabled: nothing to parent.
    let _ = span.set_parent(parent);
    // The trace id as a field too, so a JSON log line written inside the
    // call carries it in its `span` (the exported span has it anyway).
    let context = span.context();
    let trace = context.span().span_context().clone();
    if trace.is_valid() {
        span.record("trace_id", tracing::field::display(trace.trace_id()));
    }
    Some(span)
}

/// The codes that mark the span as failed: the server's faults, not the
/// caller's (per the OpenTelemetry conventions for gRPC servers).
fn is_server_error(code: i64) -> bool {
    use tonic::Code;
    [
        Code::Unknown,
        Code::DeadlineExceeded,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
    ]
    .into_iter()
    .any(|c| c as i64 == code)
}

/// A call's metadata as the propagator reads it.
struct Metadata<'a>(&'a http::HeaderMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
