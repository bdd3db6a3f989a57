//! Cluster mode: a Log or LogBatch reaching a follower goes to the leader
//! (`cluster::forward`), and is answered once this node's own replica
//! holds the last receipt, so a read on the node the caller asked sees the
//! write at once.

use auditlog_proto::v1 as pb;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::AuditSvc;
use super::api;
use super::deadline::{self, call_limit};
use super::details::WireDetails;
use super::edge;
use crate::limits::CallLimit;

impl AuditSvc {
    /// The leader's answer to a Log reaching a follower, once this
    /// replica holds it; `None` to write here.
    pub(super) async fn forward_log(
        &self,
        req: &Request<api::LogRequest>,
    ) -> Result<Option<pb::LogResponse>, Status> {
        let message = || pb::LogRequest {
            event: req.get_ref().event.as_ref().map(event_pb),
            with_proof: req.get_ref().with_proof,
        };
        let Some((answer, until)) = self
            .forward(
                req.metadata(),
                call_limit(req),
                message,
                |mut c, r| async move { c.log(r).await },
            )
            .await?
        else {
            return Ok(None);
        };
        let last = answer.receipt.as_ref().map_or(0, |r| r.seq);
        self.store_holding(last, until).await?;
        Ok(Some(answer))
    }

    /// The leader's answer to a LogBatch reaching a follower, once this
    /// replica holds all of it; `None` to write here.
    pub(super) async fn forward_log_batch(
        &self,
        req: &Request<api::LogBatchRequest>,
    ) -> Result<Option<pb::LogBatchResponse>, Status> {
        let message = || pb::LogBatchRequest {
            events: req.get_ref().events.iter().map(event_pb).collect(),
            with_proof: req.get_ref().with_proof,
        };
        let Some((answer, until)) = self
            .forward(
                req.metadata(),
                call_limit(req),
                message,
                |mut c, r| async move { c.log_batch(r).await },
            )
            .await?
        else {
            return Ok(None);
        };
        let last = answer.receipts.iter().map(|r| r.seq).max().unwrap_or(0);
        self.store_holding(last, until).await?;
        Ok(Some(answer))
    }

    /// Forwards the request `message` makes, sent with `metadata`, if this
    /// node follows a known leader: the answer and when waiting for the
    /// replica must end: shortly before the call's deadline or the limit
    /// it runs under (`limit`; `deadline::FORWARD`), so the answer goes in
    /// time. The leader is given the whole of the call's time, as a write
    /// here would be.
    async fn forward<Req, Resp, F, Fut>(
        &self,
        metadata: &MetadataMap,
        limit: Option<CallLimit>,
        message: impl FnOnce() -> Req,
        call: F,
    ) -> Result<Option<(Resp, Instant)>, Status>
    where
        F: FnOnce(
            pb::audit_service_client::AuditServiceClient<tonic::transport::Channel>,
            Request<Req>,
        ) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let running = self.running()?;
        let Some(cluster) = &running.cluster else {
            return Ok(None);
        };
        let Some(leader) = cluster.forward_to(metadata) else {
            return Ok(None);
        };
        let until = deadline::until(limit, deadline::FORWARD);
        let timeout = deadline::time_left(limit, deadline::FORWARD.without_deadline);
        let answer = cluster
            .forward(&leader, message(), metadata, timeout, call)
            .await
            .map_err(edge::cluster_status)?;
        Ok(Some((answer, until)))
    }
}

/// An event as the leader's API takes it: the same fields, `details` as
/// the `Struct` they were decoded from (keys in order, repeats merged).
/// `details_json` goes as a `Struct` too, so a leader of any version
/// stores it; text that does not read (or sent beside `details`) goes as
/// it came, for the leader to refuse.
fn event_pb(event: &api::EventInput) -> pb::EventInput {
    let json = match (&event.details, event.details_json.is_empty()) {
        (None, false) => WireDetails::of_json_text(&event.details_json).ok(),
        _ => None,
    };
    let (details, details_json) = match json {
        Some(wire) => (Some(wire.to_struct()), String::new()),
        None => (
            event.details.as_ref().map(WireDetails::to_struct),
            event.details_json.clone(),
        ),
    };
    pb::EventInput {
        event_type: event.event_type.to_string(),
        actor: event.actor.to_string(),
        lead_id: event.lead_id.to_string(),
        workflow: event.workflow.to_string(),
        details,
        idempotency_key: event.idempotency_key.to_string(),
        details_json,
    }
}
