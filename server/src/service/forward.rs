//! Cluster mode: a Log or LogBatch reaching a follower goes to the leader
//! (`cluster::forward`), and is answered once this node's own replica
//! holds the last receipt, so a read on the node the caller asked sees the
//! write at once.

use std::time::Duration;

use auditlog_proto::v1 as pb;
use tokio::time::Instant;
use tonic::{Request, Status};

use super::AuditSvc;
use super::deadline::call_timeout;
use super::edge;

/// How long a forwarded write without a deadline may take, the leader's
/// answer and this replica's catching up together.
const FORWARD_WAIT: Duration = Duration::from_secs(10);

impl AuditSvc {
    /// The leader's answer to a Log reaching a follower, once this
    /// replica holds it; `None` to write here.
    pub(super) async fn forward_log(
        &self,
        req: &Request<pb::LogRequest>,
    ) -> Result<Option<pb::LogResponse>, Status> {
        let Some((answer, until)) = self
            .forward(req, |mut c, r| async move { c.log(r).await })
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
        req: &Request<pb::LogBatchRequest>,
    ) -> Result<Option<pb::LogBatchResponse>, Status> {
        let Some((answer, until)) = self
            .forward(req, |mut c, r| async move { c.log_batch(r).await })
            .await?
        else {
            return Ok(None);
        };
        let last = answer.receipts.iter().map(|r| r.seq).max().unwrap_or(0);
        self.store_holding(last, until).await?;
        Ok(Some(answer))
    }

    /// Forwards `req` if this node follows a known leader: the answer and
    /// when waiting for the replica must end.
    async fn forward<Req, Resp, F, Fut>(
        &self,
        req: &Request<Req>,
        call: F,
    ) -> Result<Option<(Resp, Instant)>, Status>
    where
        Req: Clone,
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
        let Some(leader) = cluster.forward_to(req.metadata()) else {
            return Ok(None);
        };
        let timeout = call_timeout(req.metadata()).unwrap_or(FORWARD_WAIT);
        let until = Instant::now() + timeout.saturating_sub(timeout / 10);
        let answer = cluster
            .forward(
                &leader,
                req.get_ref().clone(),
                req.metadata(),
                timeout,
                call,
            )
            .await
            .map_err(edge::cluster_status)?;
        Ok(Some((answer, until)))
    }
}
