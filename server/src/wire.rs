//! The edge of the wire: the answers the transport would otherwise get
//! wrong, fixed in one layer outside every other.
//!
//! - **A plain HTTP/1.1 request** (a browser, `curl`, a load balancer's
//!   HTTP check) is answered `426 Upgrade Required` with a body saying this
//!   is a gRPC port, instead of HTTP/2 bytes it cannot read. The server
//!   accepts HTTP/1 connections only to say so: no HTTP/1 request reaches
//!   the token check or a service.
//! - **A request that does not decode** (a string that is not UTF-8, a
//!   truncated message, messages nested deeper than the decoder allows) is
//!   answered `INVALID_ARGUMENT` saying what was wrong, where the codec says
//!   `INTERNAL`, which would page someone for a caller's mistake.
//! - **A request over the size limit** is answered `RESOURCE_EXHAUSTED`, as
//!   gRPC's conventions say, where the transport says `OUT_OF_RANGE`.
//!
//! Both statuses come from the transport before any handler runs, as a
//! trailers-only response, so rewriting the response's headers is enough.
//! The decoder refuses messages nested more than 100 deep (prost's limit);
//! in `details` every level of JSON object or list costs three of those
//! (Struct, map entry, Value), so `details` may nest [`MAX_DETAILS_DEPTH`]
//! levels, and deeper is refused by name.

use std::task::{Context, Poll};

use tonic::{Code, Status};

/// How deep `details` may nest JSON objects and lists (`{"a":{"b":1}}` is
/// 2): 100 levels of messages, three per level, less the request's own.
pub(crate) const MAX_DETAILS_DEPTH: usize = 33;

/// What tonic's prost codec says of a message it cannot decode (INTERNAL).
const UNDECODABLE: &str = "failed to decode Protobuf message: ";
/// What tonic says of a message over the size limit (OUT_OF_RANGE).
const TOO_LARGE: &str = "Error, decoded message length too large: ";

/// The layer, outermost over the router.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WireLayer;

/// Its service.
#[derive(Debug, Clone)]
pub(crate) struct Wire<S> {
    inner: S,
}

impl<S> tower::Layer<S> for WireLayer {
    type Service = Wire<S>;

    fn layer(&self, inner: S) -> Wire<S> {
        Wire { inner }
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Wire<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.version() < http::Version::HTTP_2 {
            let tls =
                req.extensions()
                    .get::<tonic::transport::server::TlsConnectInfo<
                        tonic::transport::server::TcpConnectInfo,
                    >>()
                    .is_some();
            return Box::pin(std::future::ready(Ok(not_http1(tls))));
        }
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut response = answer.await?;
            if let Some(status) = Status::from_header_map(response.headers())
                && let Some(better) = rewrite(&status)
            {
                // A status always fits in headers; if not, keep tonic's own.
                let _ = better.add_header(response.headers_mut());
            }
            Ok(response)
        })
    }
}

/// The answer to an HTTP/1 request: 426, asking for HTTP/2 (`h2` over TLS,
/// `h2c` without), with a body a person reading it understands.
fn not_http1(tls: bool) -> http::Response<tonic::body::Body> {
    let body = "This is a gRPC port (auditlog.v1.AuditService): it speaks HTTP/2 only. Use \
                a gRPC client, the auditlog CLI, or grpcurl; for a health check use \
                grpc.health.v1.Health/Check.\n";
    let mut response = http::Response::new(tonic::body::Body::new(body.to_owned()));
    *response.status_mut() = http::StatusCode::UPGRADE_REQUIRED;
    let headers = response.headers_mut();
    let upgrade = if tls { "h2" } else { "h2c" };
    headers.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static(upgrade),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("upgrade, close"),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The status a caller should get instead of `status`, when the transport
/// made it about the request's bytes.
fn rewrite(status: &Status) -> Option<Status> {
    let message = status.message();
    match status.code() {
        Code::Internal => {
            let reason = message.strip_prefix(UNDECODABLE)?;
            Some(Status::invalid_argument(undecodable(reason)))
        }
        Code::OutOfRange => {
            let size = message.strip_prefix(TOO_LARGE)?;
            Some(Status::resource_exhausted(format!(
                "the request is too large ({size}); send less per call, e.g. split a LogBatch \
                 or shrink details"
            )))
        }
        _ => None,
    }
}

/// What to tell a caller whose message did not decode; `reason` is the
/// decoder's (the field path, then what was wrong).
fn undecodable(reason: &str) -> String {
    if reason.ends_with("recursion limit reached") {
        // The decoder's path names every level; the limit says enough.
        return format!(
            "the request nests messages deeper than the server decodes (100 levels): details \
             may nest at most {MAX_DETAILS_DEPTH} levels of objects and lists; flatten \
             details or send the deep part as a JSON string"
        );
    }
    let hint = if reason.contains("not UTF-8") {
        "every string field must be valid UTF-8; send bytes as base64 or hex text"
    } else {
        "send a complete message of the method's request type, encoded as protobuf"
    };
    format!("the request is not a valid protobuf message ({reason}): {hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_transports_statuses_are_rewritten() {
        let bad_utf8 = Status::internal(format!(
            "{UNDECODABLE}EventInput.actor: invalid string value: data is not UTF-8 encoded"
        ));
        let fixed = rewrite(&bad_utf8).unwrap();
        assert_eq!(fixed.code(), Code::InvalidArgument);
        assert!(fixed.message().contains("EventInput.actor"), "{fixed:?}");
        assert!(fixed.message().contains("UTF-8"), "{fixed:?}");

        let deep = Status::internal(format!("{UNDECODABLE}Value.kind: recursion limit reached"));
        let fixed = rewrite(&deep).unwrap();
        assert_eq!(fixed.code(), Code::InvalidArgument);
        assert!(fixed.message().contains("at most 33 levels"), "{fixed:?}");

        let big = Status::out_of_range(format!(
            "{TOO_LARGE}found 5000000 bytes, the limit is: 4194304 bytes"
        ));
        let fixed = rewrite(&big).unwrap();
        assert_eq!(fixed.code(), Code::ResourceExhausted);
        assert!(fixed.message().contains("5000000"), "{fixed:?}");

        for own in [
            Status::internal("verification task failed"),
            Status::out_of_range("something else"),
            Status::invalid_argument(UNDECODABLE),
        ] {
            assert!(rewrite(&own).is_none(), "{own:?}");
        }
    }
}
