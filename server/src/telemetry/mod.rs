//! OpenTelemetry traces, optional (`[tracing]`): spans exported over
//! OTLP/gRPC to a collector, with the caller's W3C trace context continued.
//!
//! Spans, all built with the `tracing` crate and exported by the
//! `tracing-opentelemetry` layer that `main.rs` installs beside the log
//! formatter:
//! - one per AuditService and AdminService call (`rpc.rs`), the child of the
//!   `traceparent` (and `tracestate`) the caller sent, with the method and
//!   the gRPC status code;
//! - one per group commit (`commit`) and one per `fdatasync` (`fsync`),
//!   made by the store's writer and syncer threads (`store/spans.rs`): a
//!   group's span is the child of its first caller's RPC span and links
//!   the others, so a caller's trace shows the audit write inside it.
//!
//! Invariant: no span holds a token, an event's content or anything else
//! from a request but its method name and trace context. With tracing off
//! (the default) no span is made at all: the RPC layer passes calls straight
//! through, and the store's requests carry an empty span (no allocation).
//!
//! A caller that wants its trace id in the stored event sets the detail
//! [`TRACE_KEY`] (`"_trace": true`); the server replaces that `true` with
//! the call's trace id (32 hex digits) before the event is signed. With
//! tracing off, or without a valid trace, it is stored as sent.

mod rpc;

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub(crate) use rpc::TraceLayer;

use crate::store::{Details, NewEvent};

/// The detail key a caller sets to `true` to have the call's trace id
/// recorded in the stored event, in its place.
pub const TRACE_KEY: &str = "_trace";

/// How long one export to the collector may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `[tracing]` section. Every field documents its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The OTLP/gRPC endpoint spans are exported to, `http://HOST:PORT` (a
    /// collector's port is usually 4317) or `https://...` (TLS, the public
    /// web roots). Default: none, no spans are made or exported.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces recorded, from 0 to 1. A call that comes
    /// with a `traceparent` follows its caller's decision instead. Default 1.
    pub sample_ratio: f64,
    /// The `service.name` the spans are exported under. Default `auditlog`.
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> TracingConfig {
        TracingConfig {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            service_name: "auditlog".to_owned(),
        }
    }
}

impl TracingConfig {
    /// Checks what types alone cannot, naming the key at fault.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(url) = &self.otlp_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err((
                "tracing.otlp_endpoint",
                "is not an http:// or https:// URL; use e.g. http://127.0.0.1:4317".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err((
                "tracing.sample_ratio",
                format!(
                    "is {}; it must be a share from 0 (none) to 1 (every trace)",
                    self.sample_ratio
                ),
            ));
        }
        if self.service_name.trim().is_empty() {
            return Err((
                "tracing.service_name",
                "must not be empty (default auditlog)".into(),
            ));
        }
        Ok(())
    }

    /// Whether spans are made and exported.
    pub(crate) fn on(&self) -> bool {
        self.otlp_endpoint.is_some()
    }
}

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("tracing.otlp_endpoint: cannot set up the OTLP exporter: {0}")]
pub struct TelemetryError(String);

/// The running exporter: its `tracing` layer, and a flush at the end.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Sets up the exporter for `config`, or `None` when tracing is off.
    /// Must be called inside the Tokio runtime the server runs on: the
    /// gRPC channel to the collector runs there.
    pub fn start(config: &TracingConfig) -> Result<Option<Telemetry>, TelemetryError> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT);
        if endpoint.starts_with("https://") {
            builder = builder
                .with_tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots());
        }
        let exporter = builder.build().map_err(|e| TelemetryError(e.to_string()))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        Ok(Some(Telemetry { provider }))
    }

    /// The layer that turns the server's spans into exported ones; only the
    /// spans of this crate, never log events.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + Send + Sync + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        use tracing_subscriber::Layer as _;
        let tracer = self.provider.tracer("auditlog-server");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.is_span() && meta.target().starts_with("auditlog_server")
            }))
    }

    /// Exports the spans still buffered and stops. Call it before the
    /// runtime is shut down.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "flushing the last spans to the OTLP endpoint failed");
        }
    }
}

/// Replaces the detail `"_trace": true` of each event by the current call's
/// trace id (see the module doc). Looks at nothing else, and costs one
/// substring search per event; only details that hold the key are parsed.
pub(crate) fn stamp_trace_ids(events: &mut [NewEvent]) {
    // Built once: building a searcher costs more than one short search.
    static KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(TRACE_KEY));
    let asked = |e: &NewEvent| {
        KEY.find(e.details.as_str().as_bytes()).is_some()
            && e.details.get(TRACE_KEY) == Some(serde_json::Value::Bool(true))
    };
    if !events.iter().any(asked) {
        return;
    }
    let span = tracing::Span::current();
    if span.is_none() {
        return;
    }
    let context = span.context();
    let trace = context.span().span_context().clone();
    if !trace.is_valid() {
        return;
    }
    let id = serde_json::Value::String(trace.trace_id().to_string());
    for event in events.iter_mut().filter(|e| asked(e)) {
        let mut details = event.details.to_map();
        details.insert(TRACE_KEY.to_owned(), id.clone());
        event.details = Details::from_map(&details);
    }
}
