//! Answers their callers have not read: at most [`CONNECTION_BYTES`] on one
//! connection and [`SERVER_BYTES`] across the server.
//!
//! HTTP/2 lets a caller stop reading: with a flow-control window of 0 the
//! server may send nothing of an answer, which then waits in memory, whole,
//! for as long as the connection lives (keepalive pings are still
//! answered). The in-flight cap does not see it: a call's slot is given back
//! once its handler has answered. Before this layer one connection that
//! sent 250 `Query` calls for 3 MiB pages and read nothing held about 200
//! MB of the server's memory, and four about 1 GB, without bound
//! (2026-12-06).
//!
//! So a unary answer is encoded here, before its headers go, and its bytes
//! are taken from two budgets until the answer is sent and its body
//! dropped: the connection's and the server's. (The transport asks the body
//! for its trailers only once the caller's window has room again, that is
//! once the caller has read about all of it, so the bytes are held until
//! then.) An answer that does not fit is dropped and the call answered
//! RESOURCE_EXHAUSTED, saying whose budget is spent. A connection holding
//! no unread answer always gets its next one past its own budget, however
//! large, and past the server's if it is small: callers that read their
//! answers are never refused for the size of one, and get their receipts
//! while others hold the server's budget.
//!
//! Streams (`StreamEvents`, `ExportSubject`: the methods the proto says
//! answer with a stream) are bounded by the
//! subscriptions' own budget (`hub.rs`); health and reflection pass as they
//! come.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;

use super::{BoxFuture, is_exempt};

/// The bytes of answers one connection may leave unread.
pub(crate) const CONNECTION_BYTES: usize = 16 << 20;
/// The bytes of answers all connections together may leave unread.
pub(crate) const SERVER_BYTES: usize = 256 << 20;
/// An answer this small goes to a connection holding no unread answer even
/// when the server's budget is spent.
const SMALL_ANSWER_BYTES: usize = 64 << 10;

/// Whether the method at `path` answers with a stream, as the proto's
/// descriptor says (read once): no list to keep in step with the proto.
fn is_stream(path: &str) -> bool {
    static STREAMS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    STREAMS
        .get_or_init(|| {
            use prost::Message as _;
            let set = prost_types::FileDescriptorSet::decode(auditlog_proto::FILE_DESCRIPTOR_SET)
                .expect("the descriptor set built into the binary decodes");
            set.file
                .iter()
                .flat_map(|f| f.service.iter().map(move |s| (f.package(), s)))
                .flat_map(|(package, s)| {
                    s.method
                        .iter()
                        .filter(|m| m.server_streaming())
                        .map(move |m| format!("/{package}.{}/{}", s.name(), m.name()))
                })
                .collect()
        })
        .iter()
        .any(|s| s == path)
}

/// The answer budgets, as a tower layer over the whole router.
#[derive(Debug, Clone)]
pub(crate) struct AnswersLayer {
    books: Arc<Books>,
}

/// Both budgets, in KiB permits.
#[derive(Debug)]
struct Books {
    server: Arc<Semaphore>,
    server_kib: u32,
    connection_kib: u32,
    /// Each connection holding unread answers, by its peer address (unique
    /// while it is open); removed once it holds none.
    connections: Mutex<HashMap<SocketAddr, Arc<Semaphore>>>,
}

impl AnswersLayer {
    pub(crate) fn new() -> AnswersLayer {
        AnswersLayer::with(CONNECTION_BYTES, SERVER_BYTES)
    }

    fn with(connection_bytes: usize, server_bytes: usize) -> AnswersLayer {
        let kib = |bytes: usize| u32::try_from(bytes >> 10).unwrap_or(u32::MAX >> 3).max(1);
        let server_kib = kib(server_bytes);
        AnswersLayer {
            books: Arc::new(Books {
                server: Arc::new(Semaphore::new(server_kib as usize)),
                server_kib,
                connection_kib: kib(connection_bytes),
                connections: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// What an admitted answer holds until its body is dropped.
#[derive(Debug)]
struct Held {
    books: Arc<Books>,
    peer: Option<SocketAddr>,
    permits: Option<(Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>)>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.permits = None;
        let Some(peer) = self.peer else { return };
        let mut connections = lock(&self.books.connections);
        // Only the map holds it now: no answer of this connection is unread.
        if connections
            .get(&peer)
            .is_some_and(|budget| Arc::strong_count(budget) == 1)
        {
            connections.remove(&peer);
        }
    }
}

/// The map, also when a thread panicked holding it (only inserts and
/// removes happen under it, so it is whole).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Books {
    /// Takes `bytes` for an answer to `peer`, or says why not.
    fn admit(self: &Arc<Books>, peer: Option<SocketAddr>, bytes: usize) -> Result<Held, String> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        // Dropped on refusal too, so the connection's entry goes when it
        // holds nothing.
        let mut held = Held {
            books: Arc::clone(self),
            peer,
            permits: None,
        };
        let (connection, holds_none) = match peer {
            Some(peer) => {
                let budget = Arc::clone(
                    lock(&self.connections)
                        .entry(peer)
                        .or_insert_with(|| Arc::new(Semaphore::new(self.connection_kib as usize))),
                );
                let holds_none = budget.available_permits() == self.connection_kib as usize;
                // A connection that has read everything gets one answer of
                // any size.
                let want = match holds_none {
                    true => kib.min(self.connection_kib),
                    false => kib,
                };
                let unread_mib = (self.connection_kib as usize - budget.available_permits()) >> 10;
                let Ok(permit) = budget.try_acquire_many_owned(want) else {
                    return Err(format!(
                        "this connection has {unread_mib} MiB of answers it has not read (at \
                         most {} MiB); read them before calling again",
                        self.connection_kib >> 10
                    ));
                };
                (Some(permit), holds_none)
            }
            None => (None, false),
        };
        let server = match Arc::clone(&self.server).try_acquire_many_owned(kib.min(self.server_kib))
        {
            Ok(permit) => Some(permit),
            // A small answer to a connection that has read everything goes
            // all the same: receipts and short pages are never refused for
            // what other connections leave unread (at most a small answer
            // more a connection).
            Err(_) if holds_none && bytes <= SMALL_ANSWER_BYTES => None,
            Err(_) => {
                return Err(format!(
                    "the server holds {} MiB of answers its callers have not read; retry with \
                     backoff",
                    self.server_kib >> 10
                ));
            }
        };
        held.permits = Some((server, connection));
        Ok(held)
    }
}

impl<S> tower::Layer<S> for AnswersLayer {
    type Service = Answers<S>;

    fn layer(&self, inner: S) -> Answers<S> {
        Answers {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AnswersLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub(crate) struct Answers<S> {
    inner: S,
    layer: AnswersLayer,
}

impl<S> tower::Service<http::Request<Body>> for Answers<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures::future::Either<S::Future, BoxFuture<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let path = req.uri().path();
        if is_exempt(path) || is_stream(path) {
            return futures::future::Either::Left(self.inner.call(req));
        }
        let peer = crate::auth::peer_of(&req);
        let books = Arc::clone(&self.layer.books);
        let answer = self.inner.call(req);
        futures::future::Either::Right(Box::pin(async move {
            let (parts, mut body) = answer.await?.into_parts();
            let first = body.frame().await;
            let held = match &first {
                Some(Ok(frame)) => match frame.data_ref() {
                    Some(data) => match books.admit(peer, data.len()) {
                        Ok(held) => Some(held),
                        Err(why) => {
                            let mut refused = tonic::Status::resource_exhausted(why).into_http();
                            refused
                                .extensions_mut()
                                .insert(crate::gate::RefusedBy("shed"));
                            return Ok(refused);
                        }
                    },
                    None => None,
                },
                _ => None,
            };
            let body = Prefetched {
                first,
                rest: body,
                _held: held,
            };
            Ok(http::Response::from_parts(parts, Body::new(body)))
        }))
    }
}

/// A body whose first frame was read ahead, and the budget its answer
/// holds until it is dropped.
struct Prefetched {
    first: Option<Result<Frame<Bytes>, tonic::Status>>,
    rest: Body,
    _held: Option<Held>,
}

impl http_body::Body for Prefetched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn a_connection_is_held_to_its_budget_and_one_answer_always_goes() {
        let layer = AnswersLayer::with(4 << 10, 64 << 10);
        let books = &layer.books;
        // Larger than the connection's budget, but its only one: it goes.
        let big = books.admit(peer(1), 10 << 10).unwrap();
        let refused = books.admit(peer(1), 1).unwrap_err();
        assert!(refused.contains("this connection"), "{refused}");
        // Another connection is served.
        let other = books.admit(peer(2), 3 << 10).unwrap();
        drop(big);
        let again = books.admit(peer(1), 3 << 10).unwrap();
        drop((again, other));
        assert!(lock(&books.connections).is_empty(), "entries left behind");
    }

    #[test]
    fn the_server_budget_bounds_every_connection_together() {
        let layer = AnswersLayer::with(16 << 10, 8 << 10);
        let books = &layer.books;
        let held: Vec<Held> = (1..=4)
            .map(|p| books.admit(peer(p), 2 << 10).unwrap())
            .collect();
        let refused = books.admit(peer(9), 65 << 10).unwrap_err();
        assert!(refused.contains("the server holds"), "{refused}");
        // A receipt still goes to a connection that has read everything,
        // once.
        let receipt = books.admit(peer(9), 200).unwrap();
        let refused = books.admit(peer(9), 200).unwrap_err();
        assert!(refused.contains("the server holds"), "{refused}");
        drop(receipt);
        assert!(
            !lock(&books.connections).contains_key(&peer(9).unwrap()),
            "a refused connection left its entry"
        );
        drop(held);
        books.admit(peer(9), 8 << 10).unwrap();
    }

    #[test]
    fn the_streaming_methods_are_read_from_the_proto() {
        for stream in ["StreamEvents", "ExportSubject"] {
            assert!(is_stream(&format!("/auditlog.v1.AuditService/{stream}")));
        }
        for unary in ["Log", "Query", "VerifyIntegrity"] {
            assert!(!is_stream(&format!("/auditlog.v1.AuditService/{unary}")));
        }
    }
}
