//! [`Client`]: one connection to a server, with one method per RPC of the
//! AuditService and the AdminService.

use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use tonic::transport::{Channel, Endpoint};

mod proofs;
mod receipts;

pub use proofs::{ProvenRecord, VerifiedCheckpoint};
pub use receipts::{ProvenReceipts, ReceiptsProof, check_receipt_proofs};

use crate::error::source_chain;
use crate::{Credentials, Error, NewEvent, Options, Query, pb};
use pb::admin_service_client::AdminServiceClient;
use pb::audit_service_client::AuditServiceClient;

/// The events of [`Client::stream`], in seq order.
pub type EventStream = BoxStream<'static, Result<pb::Event, Error>>;

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
            with_proof: false,
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
            .log_batch(pb::LogBatchRequest {
                events,
                with_proof: false,
            })
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

    /// The signing secret the server generated for webhook endpoint `name`
    /// (one configured without a secret), to set its receiver up with.
    pub async fn webhook_secret(&self, name: &str) -> Result<String, Error> {
        Ok(self
            .admin
            .clone()
            .get_webhook_secret(pb::GetWebhookSecretRequest {
                name: name.to_owned(),
            })
            .await?
            .into_inner()
            .secret)
    }

    /// Mails `html` (with `text` as its plain alternative) to the server's
    /// alert email recipients through its SMTP settings (admin); the number
    /// of recipients the mail went to.
    pub async fn mail_report(
        &self,
        subject: &str,
        html: String,
        text: String,
    ) -> Result<u32, Error> {
        Ok(self
            .admin
            .clone()
            .mail_report(pb::MailReportRequest {
                subject: subject.to_owned(),
                html,
                text,
            })
            .await?
            .into_inner()
            .recipients)
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
