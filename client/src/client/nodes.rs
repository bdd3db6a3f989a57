//! The nodes a [`Client`] calls: one address or several (the nodes of a
//! cluster, any of which takes any call), and what the client does when a
//! node answers UNAVAILABLE or cannot be reached (which tonic reports as
//! UNAVAILABLE too).
//!
//! The client calls one node at a time. When it answers UNAVAILABLE, the
//! next call goes to the next node. A call that is safe to repeat is then
//! repeated: reads, and `Log`/`LogBatch` whose events all carry an
//! idempotency key (the server answers a repeated key with the first
//! receipt, so a write that was stored before the failure is not stored
//! twice). It goes to each other node at once, and after a full round
//! waits, with the wait doubling from [`Retry::first_backoff`] up to
//! [`Retry::max_backoff`], for at most [`Retry::attempts`] tries in all. A
//! write without keys is never repeated: its UNAVAILABLE goes back to the
//! caller, who cannot know whether it was stored.
//!
//! A connection cut in the middle of a call (a node killed while it
//! answered) comes back from tonic as UNKNOWN carrying the transport's
//! error; it is treated as UNAVAILABLE. An UNKNOWN the server itself sent
//! carries no such error and goes back to the caller.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::{Channeled, Client, deadline};
use crate::error::source_chain;
use crate::{Credentials, Error, Options};
use auditlog_proto::v1::admin_service_client::AdminServiceClient;
use auditlog_proto::v1::audit_service_client::AuditServiceClient;

/// How calls that are safe to repeat are repeated after UNAVAILABLE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included; 1 never repeats. Default 6.
    pub attempts: u32,
    /// The wait after the first full round of nodes. Default 100 ms.
    pub first_backoff: Duration,
    /// The longest wait between rounds; each wait doubles up to it.
    /// Default 2 s.
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 6,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Builds a [`Client`] over one or several node addresses
/// ([`Client::builder`]).
#[derive(Debug, Clone)]
pub struct Builder {
    urls: Vec<String>,
    options: Options,
    retry: Retry,
    answer_within: Duration,
    details_json: bool,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            urls: Vec::new(),
            options: Options::default(),
            retry: Retry::default(),
            answer_within: deadline::DEFAULT,
            details_json: false,
        }
    }
}

impl Builder {
    /// Adds a node (e.g. `http://10.0.0.1:50051`); nodes are tried in the
    /// order added.
    pub fn node(mut self, url: impl Into<String>) -> Builder {
        self.urls.push(url.into());
        self
    }

    /// Adds several nodes.
    pub fn nodes<S: Into<String>>(mut self, urls: impl IntoIterator<Item = S>) -> Builder {
        self.urls.extend(urls.into_iter().map(Into::into));
        self
    }

    /// A token and TLS settings, the same for every node.
    pub fn options(mut self, options: Options) -> Builder {
        self.options = options;
        self
    }

    /// How calls safe to repeat are repeated ([`Retry`]).
    pub fn retry(mut self, retry: Retry) -> Builder {
        self.retry = retry;
        self
    }

    /// How long a call waits for the server's answer before it fails
    /// UNAVAILABLE (default 60 s): all of a unary call (its headers,
    /// message and trailers), the start of a stream. VerifyIntegrity, which reads the whole log first, is not
    /// bounded.
    pub fn answer_within(mut self, limit: Duration) -> Builder {
        self.answer_within = limit;
        self
    }

    /// Sends each event's details as JSON text (`EventInput.details_json`)
    /// rather than as a `google.protobuf.Struct`: the same events stored,
    /// for less of this client's CPU (a `Struct` is a tree of maps to build
    /// and encode). Only for servers that know the field (this version and
    /// later): an older one ignores it and stores `{}`. Off by default.
    pub fn details_as_json(mut self, on: bool) -> Builder {
        self.details_json = on;
        self
    }

    /// Connects to the first node that answers (the others are connected
    /// when first called), failing fast when none does.
    pub async fn connect(self) -> Result<Client, Error> {
        if self.urls.is_empty() {
            return Err(Error::InvalidUrl {
                url: String::new(),
                reason: "no server address given".into(),
            });
        }
        let credentials = Credentials {
            token: self.options.bearer()?,
        };
        let endpoints = self
            .urls
            .iter()
            .map(|url| endpoint(url, &self.options))
            .collect::<Result<Vec<_>, _>>()?;
        let mut failures = Vec::new();
        let mut reached = None;
        for (i, endpoint) in endpoints.iter().enumerate() {
            match endpoint.connect().await {
                Ok(channel) => {
                    reached = Some((i, channel));
                    break;
                }
                Err(e) => failures.push(format!("{}: {}", self.urls[i], source_chain(&e))),
            }
        }
        let Some((first, channel)) = reached else {
            return Err(Error::Connect {
                url: self.urls.join(", "),
                reason: failures.join("; "),
            });
        };
        let mut channel = Some(channel);
        let list = endpoints
            .iter()
            .zip(&self.urls)
            .enumerate()
            .map(|(i, (endpoint, url))| {
                let channel = match channel.take_if(|_| i == first) {
                    Some(c) => c,
                    None => endpoint.connect_lazy(),
                };
                Node::new(
                    url.clone(),
                    channel,
                    credentials.clone(),
                    self.answer_within,
                )
            })
            .collect();
        Ok(Client {
            nodes: Arc::new(Nodes {
                list,
                current: AtomicUsize::new(first),
            }),
            retry: self.retry,
            details_json: self.details_json,
        })
    }
}

/// How often an open connection is pinged (HTTP/2 PING, only while a
/// call is open), and how long an answer may take before the connection
/// counts as lost.
const KEEPALIVE: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint of `url`, with TLS for `https://`.
fn endpoint(url: &str, options: &Options) -> Result<Endpoint, Error> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| invalid(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // A long stream to a machine that vanished without a reset (power
        // lost, a partition) fails after these instead of waiting for ever,
        // so a follow moves on to another node.
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(options.tls())
            .map_err(|e| invalid(source_chain(&e)))?;
    }
    Ok(endpoint)
}

/// One node: its address and its generated clients.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) url: String,
    pub(super) audit: AuditServiceClient<Channeled>,
    pub(super) admin: AdminServiceClient<Channeled>,
}

impl Node {
    pub(super) fn new(
        url: String,
        channel: Channel,
        credentials: Credentials,
        answer_within: Duration,
    ) -> Node {
        let channel = deadline::Answered::new(channel, answer_within);
        Node {
            url,
            audit: AuditServiceClient::with_interceptor(channel.clone(), credentials.clone()),
            admin: AdminServiceClient::with_interceptor(channel, credentials),
        }
    }
}

/// The nodes, and which one calls go to now.
#[derive(Debug)]
pub(super) struct Nodes {
    pub(super) list: Vec<Node>,
    pub(super) current: AtomicUsize,
}

impl Nodes {
    /// The node calls go to now, and its place in the list.
    pub(super) fn current(&self) -> (usize, &Node) {
        let i = self.current.load(Ordering::Relaxed) % self.list.len();
        (i, &self.list[i])
    }

    /// Node `i` answered UNAVAILABLE: calls go to the next one, unless
    /// another call already moved on.
    pub(super) fn failed(&self, i: usize) {
        let next = (i + 1) % self.list.len();
        let _ = self
            .current
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

impl Client {
    /// Runs `call` on the current node. On UNAVAILABLE the next call goes
    /// to the next node, and with `repeat` this one is tried again as the
    /// module doc says.
    pub(super) async fn call<T, F, Fut>(&self, repeat: bool, mut call: F) -> Result<T, Error>
    where
        F: FnMut(AuditServiceClient<Channeled>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut tries = 0u32;
        let mut backoff = self.retry.first_backoff;
        loop {
            let (i, node) = self.nodes.current();
            let status = match call(node.audit.clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            if !worth_another_node(&status) {
                return Err(status.into());
            }
            self.nodes.failed(i);
            tries += 1;
            if !repeat || tries >= self.retry.attempts.max(1) {
                return Err(status.into());
            }
            // Each other node at once; a full round, then a wait.
            if (tries as usize).is_multiple_of(self.nodes.list.len()) {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(self.retry.max_backoff);
            }
        }
    }
}

/// Whether `status` says the node could not be reached or answer: the
/// server's UNAVAILABLE, or an UNKNOWN that tonic made from a transport
/// error (it has a source; a status read off the wire has none).
pub(super) fn worth_another_node(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable => true,
        tonic::Code::Unknown => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::worth_another_node;

    #[test]
    fn a_connection_cut_mid_call_is_worth_another_node_a_server_unknown_is_not() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let cut = tonic::Status::from_error(Box::new(reset));
        assert_eq!(cut.code(), tonic::Code::Unknown);
        assert!(worth_another_node(&cut));
        assert!(worth_another_node(&tonic::Status::unavailable(
            "leader changed"
        )));
        assert!(!worth_another_node(&tonic::Status::unknown(
            "from the server"
        )));
        assert!(!worth_another_node(&tonic::Status::invalid_argument("bad")));
    }
}
