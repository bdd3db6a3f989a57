//! A follower forwarding a write to the leader: one tonic channel to the
//! leader's `advertise` address (made again when the lease names another
//! node), the caller's authorization and deadline passed on, so the leader
//! checks the caller exactly as if it had been asked. A forwarded call is
//! marked ([`FORWARDED_BY`]) and never forwarded again: a node that
//! receives one while it follows answers UNAVAILABLE (the lease moved), so
//! two nodes with stale views cannot bounce a write between them.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use auditlog_proto::v1::audit_service_client::AuditServiceClient;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Response, Status};

use super::lease::Holder;
use super::{ClusterError, Node, Role};

/// The metadata key that marks a forwarded call, naming the forwarder.
const FORWARDED_BY: &str = "auditlog-forwarded-by";

/// The caller's metadata that travels with a forwarded write: who it is
/// (`authorization`) and the trace it belongs to.
const PASSED_ON: [&str; 3] = ["authorization", "traceparent", "tracestate"];

/// The channel to the leader last forwarded to, by its address.
#[derive(Default)]
pub(crate) struct LeaderChannel(Mutex<Option<(String, Channel)>>);

impl Node {
    /// The leader to forward a write to: `Some` on a follower that knows
    /// the leader, for a call not forwarded already; `None` to write here
    /// (this node leads, or the write path refuses with the reason).
    pub(crate) fn forward_to(&self, metadata: &MetadataMap) -> Option<Holder> {
        if metadata.contains_key(FORWARDED_BY) {
            return None;
        }
        match &*self.role.borrow() {
            Role::Follower { leader: Some(h) } => Some(h.clone()),
            _ => None,
        }
    }

    /// Sends `req` to `leader` with the caller's `metadata` and `timeout`,
    /// through `call` (the RPC). The leader's own refusals come back as it
    /// gave them; not reaching it is UNAVAILABLE naming it.
    pub(crate) async fn forward<Req, Resp, F, Fut>(
        &self,
        leader: &Holder,
        req: Req,
        metadata: &MetadataMap,
        timeout: Duration,
        call: F,
    ) -> Result<Resp, ClusterError>
    where
        F: FnOnce(AuditServiceClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let unreachable = |why: String| {
            ClusterError::Forward(format!(
                "cannot reach the leader {} at {}: {why}; retry",
                leader.node, leader.advertise
            ))
        };
        let channel = self
            .leader_channel(&leader.advertise)
            .map_err(unreachable)?;
        let mut request = Request::new(req);
        for key in PASSED_ON {
            if let Some(value) = metadata.get(key) {
                request.metadata_mut().insert(key, value.clone());
            }
        }
        if let Ok(me) = self.config.node().parse() {
            request.metadata_mut().insert(FORWARDED_BY, me);
        }
        request.set_timeout(timeout);
        match call(AuditServiceClient::new(channel), request).await {
            Ok(response) => Ok(response.into_inner()),
            // Unknown is how a connection cut mid-call (the leader killed)
            // comes back; Unavailable, a leader not listening or one
            // refusing for now: either way worth a retry.
            Err(s) if matches!(s.code(), Code::Unavailable | Code::Unknown) => {
                Err(unreachable(s.message().to_owned()))
            }
            Err(s) => Err(ClusterError::Leader(Box::new(s))),
        }
    }

    /// The channel to `advertise`, made (lazily connecting) if the last one
    /// went elsewhere.
    fn leader_channel(&self, advertise: &str) -> Result<Channel, String> {
        let mut cached = self.to_leader.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((address, channel)) = &*cached
            && address == advertise
        {
            return Ok(channel.clone());
        }
        let mut endpoint = Endpoint::from_shared(advertise.to_owned())
            .map_err(|e| format!("bad address: {e}"))?
            .connect_timeout(self.config.lease_ttl());
        if advertise.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_enabled_roots())
                .map_err(|e| format!("TLS: {e}"))?;
        }
        let channel = endpoint.connect_lazy();
        *cached = Some((advertise.to_owned(), channel.clone()));
        Ok(channel)
    }
}
