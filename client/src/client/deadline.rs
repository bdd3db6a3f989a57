//! [`Answered`]: a bound on how long a call waits for the server's answer,
//! so that no call waits for ever.
//!
//! Why: a plain `http://` URL pointed at a TLS port gets its connection
//! closed before the server's HTTP/2 SETTINGS, and now and then the
//! pending call under tonic's channel was left with no connection, no
//! timer and nothing to wake it: `auditlog stats` sat there for minutes
//! (CI, 2026-12-05; the same class as bun issue 35023 for node:http2). The
//! bound is on the response future, which completes with the answer's
//! headers, and for a unary call on its body too: a server that sends the
//! headers and then not the message (or not the trailers), keeping the
//! connection alive, held the call for ever (a witness's round against a
//! hostile server, 2026-12-07). A stream's body is not bounded: a
//! subscription runs as long as it likes. VerifyIntegrity is left
//! unbounded: it reads the whole log before it answers; so is a call that
//! carries a deadline of its own (`grpc-timeout`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::codegen::{Bytes, Service, http};
use tonic::transport::Channel;

/// How long a call waits for its answer to begin (a unary one: to end),
/// unless it is exempt.
pub(super) const DEFAULT: Duration = Duration::from_secs(60);

/// Methods that may take longer than any fixed bound before they answer.
const UNBOUNDED: &[&str] = &["/auditlog.v1.AuditService/VerifyIntegrity"];

/// The methods that answer with a stream: only their start is bounded.
const STREAMS: &[&str] = &[
    "/auditlog.v1.AuditService/StreamEvents",
    "/auditlog.v1.AuditService/ExportSubject",
    "/auditlog.v1.AdminService/Backup",
];

/// A [`Channel`] whose calls fail UNAVAILABLE when no answer has begun
/// within `limit`, or a unary one is not whole by then.
#[derive(Debug, Clone)]
pub struct Answered {
    inner: Channel,
    limit: Duration,
}

impl Answered {
    pub(super) fn new(inner: Channel, limit: Duration) -> Answered {
        Answered { inner, limit }
    }
}

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<http::Request<Body>> for Answered {
    type Response = http::Response<Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Boxed<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // A call with a deadline of its own (`grpc-timeout`, which also
        // tells the server how long it may wait for proofs) keeps it.
        let bounded = !UNBOUNDED.contains(&request.uri().path())
            && !request.headers().contains_key("grpc-timeout");
        let unary = !STREAMS.contains(&request.uri().path());
        let limit = self.limit;
        let deadline = tokio::time::Instant::now() + limit;
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answered: Result<Self::Response, Self::Error> = if bounded {
                match tokio::time::timeout_at(deadline, answer).await {
                    Ok(Ok(answer)) if unary => Ok(answer.map(|body| {
                        Body::new(Whole {
                            body,
                            deadline: Box::pin(tokio::time::sleep_until(deadline)),
                            limit,
                        })
                    })),
                    Ok(answer) => answer.map_err(Into::into),
                    // A status, so tonic hands it on as it is (UNAVAILABLE:
                    // another node may answer).
                    Err(_) => Err(Box::new(tonic::Status::unavailable(format!(
                        "no answer within {} s: the connection may have closed before the \
                         server spoke HTTP/2 (an http:// URL for a TLS port?), or the server \
                         is stuck",
                        limit.as_secs()
                    )))),
                }
            } else {
                answer.await.map_err(Into::into)
            };
            answered
        })
    }
}

/// A unary answer's body that fails UNAVAILABLE when it has not ended by
/// the call's deadline (its message or its trailers never came).
struct Whole {
    body: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl http_body::Body for Whole {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(tonic::Status::unavailable(format!(
                "no whole answer within {} s: the server sent the answer's headers and not \
                 all of its message and trailers (the server is stuck, or hostile)",
                self.limit.as_secs()
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::{STREAMS, UNBOUNDED};

    /// The lists name methods by path, so a streaming method added to the
    /// proto and missing here would have its stream cut at the bound.
    #[test]
    fn the_lists_match_the_proto() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(auditlog_proto::FILE_DESCRIPTOR_SET)
            .expect("the embedded descriptor set decodes");
        let mut methods = Vec::new();
        let mut streams = Vec::new();
        for file in set.file.iter().filter(|f| f.package() == "auditlog.v1") {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/auditlog.v1.{}/{}", service.name(), method.name());
                    if method.server_streaming() {
                        streams.push(path.clone());
                    }
                    methods.push(path);
                }
            }
        }
        let mut listed: Vec<String> = STREAMS.iter().map(|s| s.to_string()).collect();
        listed.sort();
        streams.sort();
        assert_eq!(listed, streams, "STREAMS must name every streaming method");
        for path in UNBOUNDED {
            assert!(methods.iter().any(|m| m == path), "{path} is no method");
        }
    }
}
