//! A typed Rust client for the auditlog service.
//!
//! ```no_run
//! # async fn demo() -> Result<(), auditlog_client::Error> {
//! use auditlog_client::{Client, NewEvent, Query};
//!
//! let client = Client::connect("http://127.0.0.1:50051").await?;
//! let receipt = client.log(NewEvent::lead_ingested("LEAD-001", "webform")).await?;
//! println!("logged seq {} ({})", receipt.seq, receipt.signature);
//!
//! let history = client.lead_history("LEAD-001").await?;
//! let errors = client.query(Query::new().event_type("error").limit(10)).await?;
//! # let _ = (history, errors);
//! # Ok(()) }
//! ```
//!
//! The generated protobuf types are re-exported as [`pb`]; every method
//! returns them, so nothing is lost between the wire and the caller.

mod event;

use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use tonic::transport::{Channel, Endpoint};

pub use auditlog_proto::v1 as pb;
pub use event::NewEvent;

use pb::admin_service_client::AdminServiceClient;
use pb::audit_service_client::AuditServiceClient;

/// The events of [`Client::stream`], in seq order.
pub type EventStream = BoxStream<'static, Result<pb::Event, Error>>;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not a valid `http://host:port` or `https://host:port`.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// No connection could be made.
    #[error("cannot connect to the auditlog server at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The server answered with an error status.
    #[error("{}", describe(.0))]
    Rpc(#[from] tonic::Status),
    /// `details` was not a JSON object.
    #[error("details must be a JSON object, not {0}")]
    DetailsNotObject(&'static str),
}

impl Error {
    /// The gRPC status code, for errors the server returned.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Rpc(s) => Some(s.code()),
            _ => None,
        }
    }

    /// The `(field, reason)` pairs of an INVALID_ARGUMENT answer.
    pub fn field_violations(&self) -> Vec<(String, String)> {
        use tonic_types::StatusExt as _;
        match self {
            Error::Rpc(s) => s
                .get_details_bad_request()
                .map(|b| {
                    b.field_violations
                        .into_iter()
                        .map(|v| (v.field, v.description))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

fn describe(s: &tonic::Status) -> String {
    let code = format!("{:?}", s.code());
    // InvalidArgument -> INVALID_ARGUMENT, as every gRPC tool spells it.
    let mut name = String::new();
    for (i, c) in code.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    let mut text = if s.message().is_empty() {
        name
    } else {
        format!("{name}: {}", s.message())
    };
    // A failed connection (TLS refused, connection reset) arrives as
    // "transport error" with the reason in its sources: name the reason.
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        let part = e.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// A filter and page request for [`Client::query`]; the same filter serves
/// [`Client::stream`].
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub request: pb::QueryRequest,
}

impl Query {
    /// Every event, newest first, 100 per page.
    pub fn new() -> Query {
        Query::default()
    }

    fn filter(&mut self) -> &mut pb::EventFilter {
        self.request.filter.get_or_insert_with(Default::default)
    }

    /// Also match events of `event_type` (any of the types given).
    pub fn event_type(mut self, event_type: impl Into<String>) -> Query {
        self.filter().event_types.push(event_type.into());
        self
    }

    /// Only this lead's events.
    pub fn lead(mut self, lead_id: impl Into<String>) -> Query {
        self.filter().lead_id = lead_id.into();
        self
    }

    /// Only this workflow's events.
    pub fn workflow(mut self, workflow: impl Into<String>) -> Query {
        self.filter().workflow = workflow.into();
        self
    }

    /// Only this actor's events.
    pub fn actor(mut self, actor: impl Into<String>) -> Query {
        self.filter().actor = actor.into();
        self
    }

    /// Only events at or after this time.
    pub fn since(mut self, t: std::time::SystemTime) -> Query {
        self.filter().since = Some(t.into());
        self
    }

    /// Only events strictly before this time.
    pub fn until(mut self, t: std::time::SystemTime) -> Query {
        self.filter().until = Some(t.into());
        self
    }

    /// At most `n` events per page (1 to 1,000).
    pub fn limit(mut self, n: u32) -> Query {
        self.request.limit = n;
        self
    }

    /// Oldest first instead of newest first.
    pub fn oldest_first(mut self) -> Query {
        self.request.oldest_first = true;
        self
    }

    /// Continue after a previous page.
    pub fn page_token(mut self, token: impl Into<String>) -> Query {
        self.request.page_token = token.into();
        self
    }
}

/// How to reach a server beyond its URL: a bearer token, and TLS settings
/// for `https://` URLs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Sent as `authorization: Bearer <token>` with every call.
    pub token: Option<String>,
    /// The CA certificate (PEM) the server's certificate must chain to;
    /// without it, the public web roots are used.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// A client certificate and key (PEM), for servers that require mutual
    /// TLS.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the server's certificate must carry, when it is not the
    /// URL's host.
    pub domain: Option<String>,
}

impl Options {
    /// The TLS settings for an `https://` endpoint.
    pub fn tls(&self) -> tonic::transport::ClientTlsConfig {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        tls = match &self.ca_cert_pem {
            Some(ca) => tls.ca_certificate(tonic::transport::Certificate::from_pem(ca)),
            None => tls.with_webpki_roots(),
        };
        if let Some((cert, key)) = &self.identity_pem {
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        if let Some(domain) = &self.domain {
            tls = tls.domain_name(domain.clone());
        }
        tls
    }
}

/// Adds the bearer token to every call.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.token {
            req.metadata_mut().insert("authorization", token.clone());
        }
        Ok(req)
    }
}

/// The generated clients, with credentials.
type Channeled = tonic::service::interceptor::InterceptedService<Channel, Credentials>;

/// A connection to an auditlog server. Cheap to clone; clones share the
/// connection.
#[derive(Debug, Clone)]
pub struct Client {
    inner: AuditServiceClient<Channeled>,
    admin: AdminServiceClient<Channeled>,
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`), failing fast when
    /// nothing answers there.
    pub async fn connect(url: impl Into<String>) -> Result<Client, Error> {
        Client::connect_with(url, Options::default()).await
    }

    /// Connects with a token and TLS settings.
    pub async fn connect_with(url: impl Into<String>, options: Options) -> Result<Client, Error> {
        let url = url.into();
        let invalid = |reason: String| Error::InvalidUrl {
            url: url.clone(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(options.tls())
                .map_err(|e| invalid(source_chain(&e)))?;
        }
        let channel = endpoint.connect().await.map_err(|e| Error::Connect {
            url: url.clone(),
            reason: source_chain(&e),
        })?;
        let token = match options.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| invalid("the token holds characters a header cannot".into()))?,
            ),
            None => None,
        };
        Ok(Client::from_channel_with(channel, Credentials { token }))
    }

    /// Wraps an existing channel (for custom settings).
    pub fn from_channel(channel: Channel) -> Client {
        Client::from_channel_with(channel, Credentials::default())
    }

    fn from_channel_with(channel: Channel, credentials: Credentials) -> Client {
        Client {
            inner: AuditServiceClient::with_interceptor(channel.clone(), credentials.clone()),
            admin: AdminServiceClient::with_interceptor(channel, credentials),
        }
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&self) -> AuditServiceClient<Channeled> {
        self.inner.clone()
    }

    /// Appends one event; returns its receipt once it is durable.
    pub async fn log(&self, event: NewEvent) -> Result<pb::Receipt, Error> {
        let request = pb::LogRequest {
            event: Some(event.into_input()?),
        };
        let response = self.inner.clone().log(request).await?.into_inner();
        response
            .receipt
            .ok_or_else(|| Error::Rpc(tonic::Status::internal("the server sent no receipt")))
    }

    /// Appends `events` atomically; one receipt each, in order.
    pub async fn log_batch(
        &self,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Result<Vec<pb::Receipt>, Error> {
        let events = events
            .into_iter()
            .map(NewEvent::into_input)
            .collect::<Result<Vec<_>, _>>()?;
        let response = self
            .inner
            .clone()
            .log_batch(pb::LogBatchRequest { events })
            .await?;
        Ok(response.into_inner().receipts)
    }

    /// One page of events matching `query`.
    pub async fn query(&self, query: Query) -> Result<pb::QueryResponse, Error> {
        Ok(self.inner.clone().query(query.request).await?.into_inner())
    }

    /// Every event matching `query`, following page tokens to the end.
    pub async fn query_all(&self, mut query: Query) -> Result<Vec<pb::Event>, Error> {
        let mut events = Vec::new();
        loop {
            let page = self.query(query.clone()).await?;
            events.extend(page.events);
            if page.next_page_token.is_empty() {
                return Ok(events);
            }
            query.request.page_token = page.next_page_token;
        }
    }

    /// A lead's full timeline, oldest first.
    pub async fn lead_history(&self, lead_id: &str) -> Result<Vec<pb::Event>, Error> {
        self.query_all(Query::new().lead(lead_id).oldest_first().limit(1000))
            .await
    }

    /// Events matching `query`'s filter from `from_seq` on, in seq order: the
    /// history, then (with `follow`) live events until the stream is dropped
    /// or the server shuts down.
    pub async fn stream(
        &self,
        query: Query,
        from_seq: u64,
        follow: bool,
    ) -> Result<EventStream, Error> {
        let request = pb::StreamEventsRequest {
            filter: query.request.filter,
            from_seq,
            follow,
        };
        let stream = self
            .inner
            .clone()
            .stream_events(request)
            .await?
            .into_inner();
        Ok(stream
            .filter_map(|item| {
                std::future::ready(match item {
                    Ok(msg) => msg.event.map(Ok),
                    Err(status) => Some(Err(Error::Rpc(status))),
                })
            })
            .boxed())
    }

    /// Verifies the whole log.
    pub async fn verify(&self) -> Result<pb::VerifyIntegrityResponse, Error> {
        self.verify_with(pb::VerifyIntegrityRequest::default())
            .await
    }

    /// Verifies with a range or checkpoints.
    pub async fn verify_with(
        &self,
        request: pb::VerifyIntegrityRequest,
    ) -> Result<pb::VerifyIntegrityResponse, Error> {
        Ok(self
            .inner
            .clone()
            .verify_integrity(request)
            .await?
            .into_inner())
    }

    /// Seals the active segment now and has it compressed; with `wait`,
    /// answers once the compressed segment is in the manifest.
    pub async fn rotate(&self, wait: bool) -> Result<pb::RotateResponse, Error> {
        Ok(self
            .admin
            .clone()
            .rotate(pb::RotateRequest { wait })
            .await?
            .into_inner())
    }

    /// Runs retention now: purges the segments older than the retention
    /// period (the purge is itself logged).
    pub async fn apply_retention(&self) -> Result<pb::ApplyRetentionResponse, Error> {
        Ok(self
            .admin
            .clone()
            .apply_retention(pb::ApplyRetentionRequest {})
            .await?
            .into_inner())
    }

    /// Sends a test alert to every configured channel; one result each.
    pub async fn test_alerts(&self) -> Result<Vec<pb::ChannelResult>, Error> {
        Ok(self
            .admin
            .clone()
            .test_alerts(pb::TestAlertsRequest {})
            .await?
            .into_inner()
            .channels)
    }

    /// Alert channels' and rules' counters.
    pub async fn alert_status(&self) -> Result<pb::GetAlertStatusResponse, Error> {
        Ok(self
            .admin
            .clone()
            .get_alert_status(pb::GetAlertStatusRequest {})
            .await?
            .into_inner())
    }

    /// Each outgoing webhook endpoint's delivery state.
    pub async fn webhook_status(&self) -> Result<Vec<pb::WebhookStatus>, Error> {
        Ok(self
            .admin
            .clone()
            .get_webhook_status(pb::GetWebhookStatusRequest {})
            .await?
            .into_inner()
            .endpoints)
    }

    /// Statistics for the whole log, or one workflow's.
    pub async fn stats(&self, workflow: Option<&str>) -> Result<pb::GetStatsResponse, Error> {
        let request = pb::GetStatsRequest {
            workflow: workflow.unwrap_or_default().to_owned(),
            ..pb::GetStatsRequest::default()
        };
        self.stats_with(request).await
    }

    /// Statistics with a time range, a timeline, error types or a lead
    /// funnel.
    pub async fn stats_with(
        &self,
        request: pb::GetStatsRequest,
    ) -> Result<pb::GetStatsResponse, Error> {
        Ok(self.inner.clone().get_stats(request).await?.into_inner())
    }

    /// Records how long `operation` took; logged as a `performance` event.
    pub async fn track_performance(
        &self,
        operation: &str,
        duration: Duration,
        workflow: Option<&str>,
    ) -> Result<pb::Receipt, Error> {
        self.track_performance_with(pb::TrackPerformanceRequest {
            operation: operation.to_owned(),
            duration_ms: duration.as_secs_f64() * 1000.0,
            workflow: workflow.unwrap_or_default().to_owned(),
            ..pb::TrackPerformanceRequest::default()
        })
        .await
    }

    /// TrackPerformance with every field.
    pub async fn track_performance_with(
        &self,
        request: pb::TrackPerformanceRequest,
    ) -> Result<pb::Receipt, Error> {
        self.inner
            .clone()
            .track_performance(request)
            .await?
            .into_inner()
            .receipt
            .ok_or_else(|| Error::Rpc(tonic::Status::internal("the server sent no receipt")))
    }

    /// Per-operation duration figures over the recent windows (all
    /// operations, or the one named).
    pub async fn performance_stats(
        &self,
        operation: Option<&str>,
    ) -> Result<pb::GetPerformanceStatsResponse, Error> {
        self.performance_stats_with(pb::GetPerformanceStatsRequest {
            operation: operation.unwrap_or_default().to_owned(),
            ..pb::GetPerformanceStatsRequest::default()
        })
        .await
    }

    /// GetPerformanceStats with every field (a time range, say).
    pub async fn performance_stats_with(
        &self,
        request: pb::GetPerformanceStatsRequest,
    ) -> Result<pb::GetPerformanceStatsResponse, Error> {
        Ok(self
            .inner
            .clone()
            .get_performance_stats(request)
            .await?
            .into_inner())
    }

    /// Every event about one data subject, in seq order, with where the
    /// subject appears in each.
    pub async fn export_subject(
        &self,
        identifier: &str,
    ) -> Result<BoxStream<'static, Result<pb::ExportSubjectResponse, Error>>, Error> {
        let stream = self
            .inner
            .clone()
            .export_subject(pb::ExportSubjectRequest {
                identifier: identifier.to_owned(),
            })
            .await?
            .into_inner();
        Ok(stream.map(|item| item.map_err(Error::Rpc)).boxed())
    }
}

/// An error and its causes on one line ("transport error: connection refused").
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !text.contains(&msg) {
            text.push_str(": ");
            text.push_str(&msg);
        }
        source = s.source();
    }
    text
}
