//! The `[cluster]` section: where NATS is, what the stream and the lease
//! bucket are called, who this node is. Absent, the server is one node with
//! its own writer, exactly as without cluster mode.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keys::Secret;

/// The `[cluster]` section. Every field documents its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The NATS servers to connect to (`nats://host:4222`, `tls://...` or
    /// `host:port`); the client moves to another when one fails. Required.
    pub nats_urls: Vec<String>,
    /// The JetStream stream holding the log; records go to the subject
    /// `<stream>.log` and the leader lease to the bucket `<stream>_leader`.
    /// Default `AUDITLOG`.
    pub stream: String,
    /// Copies JetStream keeps of each message (and of the lease): 3 survives
    /// one NATS server lost; 1 or 5 otherwise. Default 3.
    pub replicas: usize,
    /// This node's name in the lease and in NATS. Default: the host name.
    pub node_name: Option<String>,
    /// This node's gRPC address as the other nodes dial it
    /// (`http://10.0.0.5:50051`, `https://...`): followers forward writes to
    /// the leader there. Required.
    pub advertise: String,
    /// How long the leader lease lives without a renewal, in milliseconds;
    /// the leader renews it every quarter of that. A dead leader is replaced
    /// after at most this long. Default 2000.
    pub lease_ttl_ms: u64,
    /// How many events this node's replica may be behind the stream before
    /// health reports `auditlog.v1.AuditService` NOT_SERVING. Default 10000.
    pub max_replica_lag: u64,
    /// A NATS credentials file (JWT and NKey seed). Default: none.
    pub nats_creds: Option<PathBuf>,
    /// A CA certificate (PEM) to verify the NATS servers' TLS with; set, the
    /// connection requires TLS. Default: none (the system roots for `tls://`).
    pub nats_tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) this node presents to NATS servers that
    /// verify clients (`tls { verify: true }`), with `nats_tls_key`; set,
    /// the connection requires TLS. Default: none.
    pub nats_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `nats_tls_cert`. Default: none.
    pub nats_tls_key: Option<PathBuf>,
    /// A NATS user name, with `nats_password`. Default: none.
    pub nats_user: Option<String>,
    /// The password of `nats_user`. Default: none.
    pub nats_password: Option<Secret>,
    /// A NATS authentication token. Default: none.
    pub nats_token: Option<Secret>,
    /// A file holding this node's NKey seed (`SU...`), for a NATS user
    /// known by its public NKey. Default: none.
    pub nats_nkey_file: Option<PathBuf>,
    /// The CA certificate (PEM) the nodes' gRPC certificates chain to: a
    /// follower forwarding a write to an `https://` leader trusts only
    /// this CA. Default: none (the public web roots).
    pub peer_ca_file: Option<PathBuf>,
    /// The client certificate (PEM) a follower presents when it forwards a
    /// write, for nodes that require one (`tls.client_ca_file`), with
    /// `peer_key_file`. Default: `tls.cert_file` when `[tls]` is set (so it
    /// must then allow client authentication), else none.
    pub peer_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `peer_cert_file`. Default: `tls.key_file`
    /// when `[tls]` is set, else none.
    pub peer_key_file: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            nats_urls: Vec::new(),
            stream: "AUDITLOG".to_owned(),
            replicas: 3,
            node_name: None,
            advertise: String::new(),
            lease_ttl_ms: 2000,
            max_replica_lag: 10_000,
            nats_creds: None,
            nats_tls_ca: None,
            nats_tls_cert: None,
            nats_tls_key: None,
            nats_user: None,
            nats_password: None,
            nats_token: None,
            nats_nkey_file: None,
            peer_ca_file: None,
            peer_cert_file: None,
            peer_key_file: None,
        }
    }
}

/// The shortest lease accepted: a renewal every quarter of it must fit a
/// round trip to a NATS quorum with room to spare.
const MIN_LEASE_MS: u64 = 400;
/// The longest lease accepted: writes stop for this long when a leader dies.
const MAX_LEASE_MS: u64 = 60_000;

impl ClusterConfig {
    /// Checks what types alone cannot; `Err` names the key (under
    /// `cluster.`) and says what to write instead.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.nats_urls.is_empty() {
            return Err((
                "cluster.nats_urls",
                "list at least one NATS server, e.g. nats_urls = [\"nats://10.0.0.1:4222\"]".into(),
            ));
        }
        if let Some(url) = self.nats_urls.iter().find(|u| !plausible_nats_url(u)) {
            return Err((
                "cluster.nats_urls",
                format!(
                    "{url:?} is not a NATS address; write nats://host:port, tls://host:port or host:port"
                ),
            ));
        }
        if !is_token(&self.stream) {
            return Err((
                "cluster.stream",
                format!(
                    "{:?} cannot name a JetStream stream; use letters, digits, `-` and `_`",
                    self.stream
                ),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err((
                "cluster.replicas",
                format!(
                    "JetStream keeps 1 to 5 replicas, not {}; 3 survives one NATS server lost",
                    self.replicas
                ),
            ));
        }
        if let Some(name) = &self.node_name
            && !is_token(name)
        {
            return Err((
                "cluster.node_name",
                format!("{name:?}: use letters, digits, `-` and `_` (no dots or spaces)"),
            ));
        }
        let advertise = self.advertise.trim();
        if advertise.is_empty() {
            return Err((
                "cluster.advertise",
                "set this node's gRPC address as the other nodes dial it, e.g. \
                 advertise = \"http://10.0.0.5:50051\""
                    .into(),
            ));
        }
        if !(advertise.starts_with("http://") || advertise.starts_with("https://"))
            || advertise.parse::<http::Uri>().is_err()
        {
            return Err((
                "cluster.advertise",
                format!("{advertise:?} is not an http:// or https:// address with a host and port"),
            ));
        }
        if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&self.lease_ttl_ms) {
            return Err((
                "cluster.lease_ttl_ms",
                format!(
                    "{} ms is out of range; use {MIN_LEASE_MS} to {MAX_LEASE_MS} (default 2000)",
                    self.lease_ttl_ms
                ),
            ));
        }
        self.validate_secrets()?;
        if self.max_replica_lag == 0 {
            return Err((
                "cluster.max_replica_lag",
                "0 would report every node unhealthy between a write and its replication; \
                 use at least 1 (default 10000)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The keys that come in pairs, and the NATS credentials, of which at
    /// most one kind may be set.
    fn validate_secrets(&self) -> Result<(), (&'static str, String)> {
        let pairs = [
            (
                ("cluster.nats_tls_cert", self.nats_tls_cert.is_some()),
                ("cluster.nats_tls_key", self.nats_tls_key.is_some()),
            ),
            (
                ("cluster.nats_user", self.nats_user.is_some()),
                ("cluster.nats_password", self.nats_password.is_some()),
            ),
            (
                ("cluster.peer_cert_file", self.peer_cert_file.is_some()),
                ("cluster.peer_key_file", self.peer_key_file.is_some()),
            ),
        ];
        for ((a, a_set), (b, b_set)) in pairs {
            if a_set != b_set {
                let (set, missing) = if a_set { (a, b) } else { (b, a) };
                return Err((
                    missing,
                    format!("{set} is set: set {missing} too, or neither"),
                ));
            }
        }
        let credentials: Vec<&str> = [
            ("cluster.nats_creds", self.nats_creds.is_some()),
            ("cluster.nats_nkey_file", self.nats_nkey_file.is_some()),
            ("cluster.nats_token", self.nats_token.is_some()),
            ("cluster.nats_user", self.nats_user.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if let [first, second, ..] = credentials[..] {
            return Err((
                second,
                format!("{first} is set too: NATS takes one kind of credentials; keep one"),
            ));
        }
        Ok(())
    }

    /// The subject the records are published on.
    pub(crate) fn subject(&self) -> String {
        format!("{}.log", self.stream)
    }

    /// The key-value bucket holding the leader lease.
    pub(crate) fn lease_bucket(&self) -> String {
        format!("{}_leader", self.stream)
    }

    /// The key-value bucket holding where each webhook endpoint's delivery
    /// stands, so a new leader resumes it.
    pub(crate) fn cursor_bucket(&self) -> String {
        format!("{}_cursors", self.stream)
    }

    /// This node's name: `node_name`, else the host name.
    pub(crate) fn node(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let host: String = host
                .trim()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if host.is_empty() {
                "node".to_owned()
            } else {
                host
            }
        })
    }

    pub(crate) fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
}

/// A name JetStream and NATS subjects accept as one token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `nats://host:port`, `tls://host:port`, `ws://...` or a bare `host:port`.
fn plausible_nats_url(url: &str) -> bool {
    let rest = ["nats://", "tls://", "ws://", "wss://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .unwrap_or(url);
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    !host_port.is_empty() && !host_port.contains(char::is_whitespace) && !host_port.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ClusterConfig {
        ClusterConfig {
            nats_urls: vec!["nats://127.0.0.1:4222".into()],
            advertise: "http://127.0.0.1:50051".into(),
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn a_complete_section_is_accepted() {
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn each_bad_key_is_named() {
        type Spoil = fn(&mut ClusterConfig);
        let cases: [(&str, Spoil); 12] = [
            ("cluster.nats_urls", |c| c.nats_urls.clear()),
            ("cluster.nats_urls", |c| {
                c.nats_urls = vec!["nats://a b".into()]
            }),
            ("cluster.stream", |c| c.stream = "AUDIT.LOG".into()),
            ("cluster.replicas", |c| c.replicas = 0),
            ("cluster.node_name", |c| c.node_name = Some("a.b".into())),
            ("cluster.advertise", |c| c.advertise = String::new()),
            ("cluster.advertise", |c| {
                c.advertise = "10.0.0.5:50051".into()
            }),
            ("cluster.lease_ttl_ms", |c| c.lease_ttl_ms = 50),
            ("cluster.nats_tls_key", |c| {
                c.nats_tls_cert = Some("client.pem".into())
            }),
            ("cluster.nats_user", |c| c.nats_password = Some("pw".into())),
            ("cluster.peer_cert_file", |c| {
                c.peer_key_file = Some("node.key".into())
            }),
            ("cluster.nats_token", |c| {
                c.nats_nkey_file = Some("seed".into());
                c.nats_token = Some("t".into());
            }),
        ];
        for (key, spoil) in cases {
            let mut config = valid();
            spoil(&mut config);
            assert_eq!(config.validate().map_err(|e| e.0), Err(key), "{config:?}");
        }
    }

    #[test]
    fn names_follow_the_stream() {
        let config = valid();
        assert_eq!(config.subject(), "AUDITLOG.log");
        assert_eq!(config.lease_bucket(), "AUDITLOG_leader");
        assert!(is_token(&config.node()));
    }
}
