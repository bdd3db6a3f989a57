//! A follower forwarding a write to the leader: one tonic channel to the
//! leader's `advertise` address (made again when the lease names another
//! node), the caller's authorization and deadline passed on, so the leader
//! checks the caller exactly as if it had been asked. A forwarded call is
//! marked ([`FORWARDED_BY`]) and never forwarded again: a node that
//! receives one while it follows answers UNAVAILABLE (the lease moved), so
//! two nodes with stale views cannot bounce a write between them.
//!
//! To an `https://` leader the follower speaks TLS trusting
//! `cluster.peer_ca_file` (else the public web roots) and presents
//! `cluster.peer_cert_file` (else its own `[tls]` certificate) to a leader
//! that asks for a client certificate. The files are read and checked once,
//! at start, so a bad one stops the server naming its key instead of
//! failing every forwarded write.

use std::future::Future;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use auditlog_proto::v1::audit_service_client::AuditServiceClient;
use tonic::metadata::MetadataMap;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Response, Status};

use super::lease::Holder;
use super::{ClusterConfig, ClusterError, Node, Role};
use crate::config::TlsConfig;

/// The metadata key that marks a forwarded call, naming the forwarder.
const FORWARDED_BY: &str = "auditlog-forwarded-by";

/// The caller's metadata that travels with a forwarded write: who it is
/// (`authorization`) and the trace it belongs to.
const PASSED_ON: [&str; 3] = ["authorization", "traceparent", "tracestate"];

/// The channel to the leader last forwarded to, by its address, and the
/// TLS spoken to an `https://` one.
pub(crate) struct LeaderChannel {
    tls: ClientTlsConfig,
    last: Mutex<Option<(String, Channel)>>,
}

/// The files a follower's TLS is made of, each with the key that named it.
#[derive(Debug, PartialEq)]
struct PeerFiles<'a> {
    ca: Option<(&'static str, &'a Path)>,
    identity: Option<[(&'static str, &'a Path); 2]>,
}

impl LeaderChannel {
    /// The TLS to leaders from `cluster`'s `peer_*` keys, the identity
    /// falling back to this node's own `tls` certificate; `Err` names the
    /// key of a file that cannot be read or used.
    pub(crate) fn new(
        cluster: &ClusterConfig,
        tls: Option<&TlsConfig>,
    ) -> Result<LeaderChannel, ClusterError> {
        let files = peer_files(cluster, tls);
        let read = |(key, path): (&'static str, &Path)| {
            std::fs::read(path).map_err(|e| ClusterError::Config {
                key,
                reason: format!("cannot read {}: {e}", path.display()),
            })
        };
        let mut out = ClientTlsConfig::new();
        out = match files.ca {
            Some(ca) => out.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => out.with_enabled_roots(),
        };
        if let Some([cert, key]) = files.identity {
            out = out.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        // Building a connector parses the certificates and the key, so an
        // unusable file is found now rather than at the first forward.
        Endpoint::from_static("https://leader.invalid")
            .tls_config(out.clone())
            .map_err(|e| {
                let (key, path) = files.identity.map_or(
                    files.ca.unwrap_or(("cluster.peer_ca_file", Path::new("?"))),
                    |[cert, _]| cert,
                );
                ClusterError::Config {
                    key,
                    reason: format!(
                        "the TLS settings for forwarding writes cannot be used ({}, or its key \
                         or CA): {e}",
                        path.display()
                    ),
                }
            })?;
        Ok(LeaderChannel {
            tls: out,
            last: Mutex::new(None),
        })
    }
}

/// Which files make a follower's TLS: the `peer_*` keys, and for the
/// identity this node's own `[tls]` certificate when they are unset.
fn peer_files<'a>(cluster: &'a ClusterConfig, tls: Option<&'a TlsConfig>) -> PeerFiles<'a> {
    let identity = match (&cluster.peer_cert_file, &cluster.peer_key_file, tls) {
        (Some(cert), Some(key), _) => Some([
            ("cluster.peer_cert_file", cert.as_path()),
            ("cluster.peer_key_file", key.as_path()),
        ]),
        (None, None, Some(tls)) => Some([
            ("tls.cert_file", tls.cert_file.as_path()),
            ("tls.key_file", tls.key_file.as_path()),
        ]),
        _ => None,
    };
    PeerFiles {
        ca: cluster
            .peer_ca_file
            .as_deref()
            .map(|ca| ("cluster.peer_ca_file", ca)),
        identity,
    }
}

impl Node {
    /// The leader to forward a write to: `Some` on a follower that knows
    /// the leader, for a call not forwarded already; `None` to write here
    /// (this node leads, or the write path refuses with the reason).
    pub(crate) fn forward_to(&self, metadata: &MetadataMap) -> Option<Holder> {
        if metadata.contains_key(FORWARDED_BY) {
            return None;
        }
        match &*self.role.borrow() {
            // Its own lease, lapsed (a renewal NATS did not answer in
            // time) and not yet expired: the write path says so, rather
            // than this node forwarding the call to itself.
            Role::Follower { leader: Some(h) } if h.node != self.config.node() => Some(h.clone()),
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
            // The leader's own answer (no transport error under it): it was
            // reached, and cannot take the write now.
            Err(s) if s.code() == Code::Unavailable && std::error::Error::source(&s).is_none() => {
                Err(ClusterError::Forward(format!(
                    "the leader {} at {} cannot take the write now: {}; retry",
                    leader.node,
                    leader.advertise,
                    s.message()
                )))
            }
            Err(s) if matches!(s.code(), Code::Unavailable | Code::Unknown) => {
                Err(unreachable(why_unreachable(&s)))
            }
            Err(s) => Err(ClusterError::Leader(Box::new(s))),
        }
    }

    /// The channel to `advertise`, made (lazily connecting) if the last one
    /// went elsewhere.
    fn leader_channel(&self, advertise: &str) -> Result<Channel, String> {
        let mut cached = self
            .to_leader
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner());
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
                .tls_config(self.to_leader.tls.clone())
                .map_err(|e| format!("TLS: {e}"))?;
        }
        let channel = endpoint.connect_lazy();
        *cached = Some((advertise.to_owned(), channel.clone()));
        Ok(channel)
    }
}

/// What `status` says about why the leader could not be reached: its
/// message and the errors under it (the TLS failure is usually one down),
/// and for a certificate refused, which keys to look at.
fn why_unreachable(status: &Status) -> String {
    let mut why = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let text = e.to_string();
        if !why.contains(&text) {
            why = format!("{why}: {text}");
        }
        source = e.source();
    }
    let lower = why.to_lowercase();
    if ["certificate", "tls", "handshake"]
        .iter()
        .any(|w| lower.contains(w))
    {
        why.push_str(
            " (TLS between nodes: cluster.peer_ca_file must hold the CA of the leader's \
             certificate, and a leader that requires client certificates must trust \
             cluster.peer_cert_file, by default tls.cert_file)",
        );
    }
    why
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn tls() -> TlsConfig {
        TlsConfig {
            cert_file: PathBuf::from("node.pem"),
            key_file: PathBuf::from("node.key"),
            client_ca_file: None,
        }
    }

    #[test]
    fn a_node_presents_its_own_certificate_unless_told_otherwise() {
        let mut cluster = ClusterConfig::default();
        let tls = tls();
        assert_eq!(
            peer_files(&cluster, Some(&tls)).identity,
            Some([
                ("tls.cert_file", Path::new("node.pem")),
                ("tls.key_file", Path::new("node.key"))
            ])
        );
        assert_eq!(peer_files(&cluster, None).identity, None);
        cluster.peer_cert_file = Some("client.pem".into());
        cluster.peer_key_file = Some("client.key".into());
        cluster.peer_ca_file = Some("ca.pem".into());
        let files = peer_files(&cluster, Some(&tls));
        assert_eq!(
            files.identity,
            Some([
                ("cluster.peer_cert_file", Path::new("client.pem")),
                ("cluster.peer_key_file", Path::new("client.key"))
            ])
        );
        assert_eq!(
            files.ca,
            Some(("cluster.peer_ca_file", Path::new("ca.pem")))
        );
    }

    #[test]
    fn an_unreadable_file_is_named_by_its_key() {
        let cluster = ClusterConfig {
            peer_ca_file: Some("/nonexistent/ca.pem".into()),
            ..ClusterConfig::default()
        };
        match LeaderChannel::new(&cluster, None) {
            Err(ClusterError::Config { key, .. }) => assert_eq!(key, "cluster.peer_ca_file"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("an unreadable CA file was accepted"),
        }
    }
}
