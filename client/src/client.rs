//! [`Client`]: a connection to a server, or to the nodes of a cluster
//! (`nodes.rs`: which node a call goes to, and which calls are repeated
//! after UNAVAILABLE), with one method per RPC of the AuditService and the
//! AdminService.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use tonic::transport::Channel;

mod deadline;
mod follow;
mod nodes;
mod proofs;
mod receipts;

pub use follow::{FollowStream, Followed};
pub use nodes::{Builder, Retry};
pub use proofs::{ProvenRecord, VerifiedCheckpoint};
pub use receipts::{ProvenReceipts, ReceiptsProof, check_receipt_proofs};

use crate::{Credentials, Error, NewEvent, Options, Query, pb};
use nodes::{Node, Nodes};
use pb::admin_service_client::AdminServiceClient;
use pb::audit_service_client::AuditServiceClient;

/// The events of [`Client::stream`], in seq order.
pub type EventStream = BoxStream<'static, Result<pb::Event, Error>>;

/// StreamEvents' request for `query`'s filter from `from_seq`.
fn stream_request(
    query: Query,
    from_seq: u64,
    follow: bool,
    stored_lines: bool,
) -> pb::StreamEventsRequest {
    pb::StreamEventsRequest {
        filter: query.request.filter,
        from_seq,
        follow,
        min_seq: query.request.min_seq,
        stored_lines,
        details_as_json: query.request.details_as_json,
    }
}

/// A StreamEvents answer's events.
fn events_of(stream: tonic::Streaming<pb::StreamEventsResponse>) -> EventStream {
    stream
        .filter_map(|item| {
            std::future::ready(match item {
                Ok(msg) => msg.event.map(Ok),
                Err(status) => Some(Err(Error::Rpc(status))),
            })
        })
        .boxed()
}

/// A StreamEvents answer's stored lines, several to a message.
fn lines_of(stream: tonic::Streaming<pb::StreamEventsResponse>) -> LineStream {
    stream
        .flat_map(|item| {
            futures::stream::iter(match item {
                Ok(msg) => msg.lines.into_iter().map(Ok).collect(),
                Err(status) => vec![Err(Error::Rpc(status))],
            })
        })
        .boxed()
}

/// A stream of stored records ([`Client::stream_lines`]): each the JSON line
/// exactly as the log holds it, without its newline.
pub type LineStream = BoxStream<'static, Result<Vec<u8>, Error>>;

/// The generated clients, with credentials.
type Channeled = tonic::service::interceptor::InterceptedService<deadline::Answered, Credentials>;

/// A connection to an auditlog server, or to several nodes of a cluster
/// ([`Client::builder`]). Cheap to clone; clones share the connections.
#[derive(Debug, Clone)]
pub struct Client {
    nodes: Arc<Nodes>,
    retry: Retry,
    /// Whether events go with their details as JSON text
    /// ([`Builder::details_as_json`]).
    details_json: bool,
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`), failing fast when
    /// nothing answers there.
    pub async fn connect(url: impl Into<String>) -> Result<Client, Error> {
        Client::connect_with(url, Options::default()).await
    }

    /// Connects with a token and TLS settings.
    pub async fn connect_with(url: impl Into<String>, options: Options) -> Result<Client, Error> {
        Client::builder().node(url).options(options).connect().await
    }

    /// A client over several nodes (any of which takes any call), with
    /// its retry settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Wraps an existing channel (for custom settings).
    pub fn from_channel(channel: Channel) -> Client {
        Client {
            nodes: Arc::new(Nodes {
                list: vec![Node::new(
                    String::new(),
                    channel,
                    Credentials::default(),
                    deadline::DEFAULT,
                )],
                current: AtomicUsize::new(0),
            }),
            retry: Retry::default(),
            details_json: false,
        }
    }

    /// The address calls go to now (empty for [`Client::from_channel`]).
    pub fn current_node(&self) -> &str {
        &self.nodes.current().1.url
    }

    fn audit(&self) -> AuditServiceClient<Channeled> {
        self.nodes.current().1.audit.clone()
    }

    fn admin(&self) -> AdminServiceClient<Channeled> {
        self.nodes.current().1.admin.clone()
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&self) -> AuditServiceClient<Channeled> {
        self.audit()
    }

    /// Appends one event; returns its receipt once it is durable. With an
    /// idempotency key, an UNAVAILABLE answer is retried ([`Retry`]).
    pub async fn log(&self, event: NewEvent) -> Result<pb::Receipt, Error> {
        Ok(self.send_log(event, false).await?.0)
    }

    /// Appends `events` atomically; one receipt each, in order. When every
    /// event has an idempotency key, an UNAVAILABLE answer is retried
    /// ([`Retry`]).
    pub async fn log_batch(
        &self,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Result<Vec<pb::Receipt>, Error> {
        Ok(self.send_batch(events, false).await?.receipts)
    }

    /// One `Log` call, repeated after UNAVAILABLE when the event is keyed:
    /// the receipt, taken out of the response, and the rest of it.
    async fn send_log(
        &self,
        event: NewEvent,
        with_proof: bool,
    ) -> Result<(pb::Receipt, pb::LogResponse), Error> {
        let request = pb::LogRequest {
            event: Some(event.into_input_as(self.details_json)?),
            with_proof,
        };
        let mut response = self
            .call(keyed_log(&request), |mut c| {
                let request = request.clone();
                async move { c.log(request).await }
            })
            .await?;
        let receipt = response
            .receipt
            .take()
            .ok_or_else(|| Error::Rpc(tonic::Status::internal("the server sent no receipt")))?;
        Ok((receipt, response))
    }

    /// One `LogBatch` call, repeated after UNAVAILABLE when every event is
    /// keyed.
    async fn send_batch(
        &self,
        events: impl IntoIterator<Item = NewEvent>,
        with_proof: bool,
    ) -> Result<pb::LogBatchResponse, Error> {
        let events = events
            .into_iter()
            .map(|e| e.into_input_as(self.details_json))
            .collect::<Result<Vec<_>, _>>()?;
        let request = pb::LogBatchRequest { events, with_proof };
        self.call(keyed_batch(&request), |mut c| {
            let request = request.clone();
            async move { c.log_batch(request).await }
        })
        .await
    }

    /// One page of events matching `query`.
    pub async fn query(&self, query: Query) -> Result<pb::QueryResponse, Error> {
        self.call(true, |mut c| {
            let request = query.request.clone();
            async move { c.query(request).await }
        })
        .await
    }

    /// Every event matching `query`, following page tokens to the end.
    ///
    /// Each page must move on from the last: a page that is not the last
    /// holds at least one event, and every event comes after the one
    /// before it in the query's order. A server whose pages repeat or go
    /// back (broken, or hostile, paging for ever) is
    /// [`Error::Protocol`], not a loop.
    pub async fn query_all(&self, mut query: Query) -> Result<Vec<pb::Event>, Error> {
        let oldest_first = query.request.oldest_first;
        let mut events: Vec<pb::Event> = Vec::new();
        loop {
            let page = self.query(query.clone()).await?;
            let empty = page.events.is_empty();
            for event in page.events {
                let last = events.last().map(|e| e.seq);
                let on = last.is_none_or(|l| (event.seq > l) == oldest_first && event.seq != l);
                if !on {
                    let order = if oldest_first { "after" } else { "before" };
                    return Err(Error::Protocol(format!(
                        "seq {} came after seq {} in a query whose events each come {order} the                          one before",
                        event.seq,
                        last.unwrap_or_default()
                    )));
                }
                events.push(event);
            }
            if page.next_page_token.is_empty() {
                return Ok(events);
            }
            if empty {
                return Err(Error::Protocol(
                    "a page with no events and a next page token (a page that is not the last \
                     holds at least one event)"
                        .into(),
                ));
            }
            query.request.page_token = page.next_page_token;
        }
    }

    /// A lead's full timeline, oldest first. An empty `lead_id` is
    /// [`Error::EmptyLeadId`]: as a filter it would match every event, and
    /// this would page through the whole log.
    pub async fn lead_history(&self, lead_id: &str) -> Result<Vec<pb::Event>, Error> {
        self.query_all(Query::lead_history(lead_id)?).await
    }

    /// [`Client::lead_history`] with each event's details as JSON text
    /// ([`Query::details_as_json`]; read them with [`crate::details_of`]).
    pub async fn lead_history_as_json(&self, lead_id: &str) -> Result<Vec<pb::Event>, Error> {
        self.query_all(Query::lead_history(lead_id)?.details_as_json())
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
        let request = stream_request(query, from_seq, follow, false);
        let stream = self.audit().stream_events(request).await?.into_inner();
        Ok(events_of(stream))
    }

    /// [`Client::stream`], with each record as stored: the JSON line exactly
    /// as the log holds it (without its newline), which is what its HMAC
    /// signs and what the Merkle tree hashes as its leaf
    /// ([`proof::leaf_hash`](crate::proof::leaf_hash)), so it can be checked
    /// against a signed checkpoint or forwarded as JSON Lines. The server
    /// sends several records per message, which makes a live follower much
    /// cheaper than [`Client::stream`] for both ends.
    pub async fn stream_lines(
        &self,
        query: Query,
        from_seq: u64,
        follow: bool,
    ) -> Result<LineStream, Error> {
        let request = stream_request(query, from_seq, follow, true);
        let stream = self.audit().stream_events(request).await?.into_inner();
        Ok(lines_of(stream))
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
        Ok(self.audit().verify_integrity(request).await?.into_inner())
    }

    /// Seals the active segment now and has it compressed; with `wait`,
    /// answers once the compressed segment is in the manifest.
    pub async fn rotate(&self, wait: bool) -> Result<pb::RotateResponse, Error> {
        Ok(self
            .admin()
            .rotate(pb::RotateRequest { wait })
            .await?
            .into_inner())
    }

    /// A backup of the server's log, as it streams it: each file as a
    /// `file` message, then its bytes, then `done` (`auditlog backup DIR`
    /// writes one into a directory).
    pub async fn backup(&self) -> Result<tonic::Streaming<pb::BackupResponse>, Error> {
        self.backup_holding(Vec::new()).await
    }

    /// [`Client::backup`] by a caller that holds `held` from an earlier
    /// backup: those of them the log still has, unchanged, come as `file`
    /// messages marked `held`, without their bytes (`auditlog backup DIR
    /// --from EARLIER`).
    pub async fn backup_holding(
        &self,
        held: Vec<pb::HeldFile>,
    ) -> Result<tonic::Streaming<pb::BackupResponse>, Error> {
        Ok(self
            .admin()
            .backup(pb::BackupRequest { held })
            .await?
            .into_inner())
    }

    /// Runs retention now: purges the segments older than the retention
    /// period (the purge is itself logged).
    pub async fn apply_retention(&self) -> Result<pb::ApplyRetentionResponse, Error> {
        Ok(self
            .admin()
            .apply_retention(pb::ApplyRetentionRequest {})
            .await?
            .into_inner())
    }

    /// Sends a test alert to every configured channel; one result each.
    pub async fn test_alerts(&self) -> Result<Vec<pb::ChannelResult>, Error> {
        Ok(self
            .admin()
            .test_alerts(pb::TestAlertsRequest {})
            .await?
            .into_inner()
            .channels)
    }

    /// Alert channels' and rules' counters.
    pub async fn alert_status(&self) -> Result<pb::GetAlertStatusResponse, Error> {
        Ok(self
            .admin()
            .get_alert_status(pb::GetAlertStatusRequest {})
            .await?
            .into_inner())
    }

    /// Each outgoing webhook endpoint's delivery state.
    pub async fn webhook_status(&self) -> Result<Vec<pb::WebhookStatus>, Error> {
        Ok(self
            .admin()
            .get_webhook_status(pb::GetWebhookStatusRequest {})
            .await?
            .into_inner()
            .endpoints)
    }

    /// The signing secret the server generated for webhook endpoint `name`
    /// (one configured without a secret), to set its receiver up with.
    pub async fn webhook_secret(&self, name: &str) -> Result<String, Error> {
        Ok(self
            .admin()
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
            .admin()
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
        self.call(true, |mut c| {
            let request = request.clone();
            async move { c.get_stats(request).await }
        })
        .await
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
        self.audit()
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
            .audit()
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
            .audit()
            .export_subject(pb::ExportSubjectRequest {
                identifier: identifier.to_owned(),
            })
            .await?
            .into_inner();
        Ok(stream.map(|item| item.map_err(Error::Rpc)).boxed())
    }
}

/// Whether a `Log` may be repeated: its event carries an idempotency key.
fn keyed_log(request: &pb::LogRequest) -> bool {
    request
        .event
        .as_ref()
        .is_some_and(|e| !e.idempotency_key.is_empty())
}

/// Whether a `LogBatch` may be repeated: every event carries a key.
fn keyed_batch(request: &pb::LogBatchRequest) -> bool {
    request.events.iter().all(|e| !e.idempotency_key.is_empty())
}
