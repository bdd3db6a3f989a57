//! The edge of the wire: the answers the transport would otherwise get
//! wrong, fixed in one layer outside every other.
//!
//! - **A plain HTTP/1.1 request** (a browser, `curl`, a load balancer's
//!   HTTP check) is answered `426 Upgrade Required` with a body saying this
//!   is a gRPC port, instead of HTTP/2 bytes it cannot read. The server
//!   accepts HTTP/1 connections only to say so: no HTTP/1 request reaches
//!   the token check or a service.
//! - **An HTTP/2 request that is not a gRPC call** (not a POST, or a
//!   `content-type` other than `application/grpc`) is answered
//!   `INVALID_ARGUMENT` saying so, before anything reads its body: the
//!   transport would read a JSON body as gRPC messages and say `INTERNAL`.
//! - **A request that does not decode** (a string that is not UTF-8, a
//!   truncated message, messages nested deeper than the decoder allows) is
//!   answered `INVALID_ARGUMENT` saying what was wrong, where the codec says
//!   `INTERNAL`, which would page someone for a caller's mistake. So is a
//!   request whose gRPC framing is wrong: a body that ends inside a message
//!   (its 5-byte prefix announces more than follows), no message at all, or
//!   a message marked compressed (without `grpc-encoding`, or with a flag
//!   other than 0 or 1), and a second message after the first (every
//!   method but reflection's takes exactly one; tonic would drop it unseen:
//!   `one_message.rs`).
//! - **A request over the size limit** is answered `RESOURCE_EXHAUSTED`, as
//!   gRPC's conventions say, where the transport says `OUT_OF_RANGE`.
//! - **A method that is not there** stays `UNIMPLEMENTED`, but says which
//!   path was asked for and which services are, where the router says
//!   nothing.
//!
//! These statuses come from the transport before any handler runs, as a
//! trailers-only response, so rewriting the response's headers is enough.
//! They are recognised by code and by the transport's exact words (its
//! undecodable and too-large messages by their prefix), so a status a
//! handler makes is never rewritten: a handler's UNIMPLEMENTED always says
//! something, and none uses the transport's words.
//!
//! `details` may nest [`MAX_DETAILS_DEPTH`] levels of objects and lists,
//! and deeper is refused by name. Their decoder counts the levels
//! (`service/details.rs`, saying [`DETAILS_TOO_DEEP`]); the protobuf decoder
//! also refuses messages nested more than 100 deep (prost's limit), where a
//! level of objects costs three (Struct, map entry, Value), so it stops
//! objects at the same depth, and is named alike.

use std::task::{Context, Poll};

use tonic::{Code, Status};

mod one_message;

/// How deep `details` may nest JSON objects and lists, in any mix
/// (`{"a":{"b":1}}` is 2, and so is `{"a":[1]}`), counted by the `details`
/// decoder: where prost's 100 levels of messages stop objects, at three
/// messages a level, less the request's own.
pub(crate) const MAX_DETAILS_DEPTH: usize = 33;

/// What the `details` decoder says of details nested deeper than
/// [`MAX_DETAILS_DEPTH`] (`service/details.rs`), after the field path.
pub(crate) const DETAILS_TOO_DEEP: &str = "details nest objects and lists more than 33 levels deep";

/// The largest request message the server reads: tonic's default decoding
/// limit, 4 MiB (the gRPC body is 5 bytes more, its frame prefix).
pub(crate) const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// What a caller whose request message is over [`MAX_MESSAGE_BYTES`] is
/// told: the limit as the docs say it, then what to send instead for the
/// method at `path` (its advice fits the method: fewer events per LogBatch
/// means nothing to a caller of VerifyIntegrity). `found` is the message's
/// size when it is known.
pub(crate) fn too_large(path: &str, found: Option<u64>) -> String {
    let size = match found {
        Some(n) => format!("is {n} bytes, more than"),
        None => "is larger than".to_owned(),
    };
    let method = path.rsplit('/').next().unwrap_or_default();
    let advice = match method {
        "LogBatch" => {
            "send fewer events per LogBatch: split the batch so that each call's events, \
             details included, fit in 4 MiB"
        }
        "Log" | "TrackPerformance" => {
            "one event is far smaller: its short fields (actor, lead_id, workflow, \
             idempotency_key) are at most 256 characters and its details at most 64 KiB as \
             JSON; keep large content elsewhere and put a reference to it in details"
        }
        "VerifyIntegrity" => {
            "send fewer checkpoints per call: split them over several VerifyIntegrity calls"
        }
        "MailReport" => {
            "a report's html is at most 3 MiB and its text 64 KiB: mail a shorter period"
        }
        _ => "no request of this method needs that much: check what is being sent",
    };
    format!(
        "the request message {size} 4 MiB (4,194,304 bytes), the most the server reads; \
         {advice}"
    )
}

/// What tonic's prost codec says of a message it cannot decode (INTERNAL).
const UNDECODABLE: &str = "failed to decode Protobuf message: ";
/// What tonic says of a message over the size limit (OUT_OF_RANGE).
const TOO_LARGE: &str = "Error, decoded message length too large: ";
/// What tonic's decoder says of a body that ends inside a message, its
/// 5-byte prefix or the bytes the prefix announces (INTERNAL).
const ENDS_EARLY: &str = "Unexpected EOF decoding stream.";
/// What tonic says of a unary or server-streaming call whose body holds no
/// message (INTERNAL).
const NO_MESSAGE: &str = "Missing request message.";
/// What tonic's decoder says of a message whose compressed flag is set when
/// the call named no `grpc-encoding` (INTERNAL).
const COMPRESSED_UNNAMED: &str =
    "protocol error: received message with compressed-flag but no grpc-encoding was specified";
/// What tonic's decoder says of a compressed flag other than 0 and 1, before
/// the flag (INTERNAL).
const BAD_FLAG: &str = "protocol error: received message with invalid compression flag: ";

/// How a request's body is framed, said in every refusal about it.
const FRAMING: &str = "a gRPC message is a 5-byte prefix (a flag byte, 0 for uncompressed, then \
                       the message's length as a 4-byte big-endian number) followed by that \
                       many bytes of protobuf";

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

impl<S> tower::Service<http::Request<tonic::body::Body>> for Wire<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        >,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.version() < http::Version::HTTP_2 {
            let tls =
                req.extensions()
                    .get::<tonic::transport::server::TlsConnectInfo<
                        tonic::transport::server::TcpConnectInfo,
                    >>()
                    .is_some();
            return Box::pin(std::future::ready(Ok(not_http1(tls))));
        }
        if let Some(refusal) = not_grpc(&req) {
            return Box::pin(std::future::ready(Ok(refusal.into_http())));
        }
        // Only to name a method that is not there; a clone of shared bytes.
        let uri = req.uri().clone();
        // Reflection's one stream takes many requests; every other method one.
        let req = if uri.path().starts_with("/grpc.reflection.") {
            req
        } else {
            req.map(|body| tonic::body::Body::new(one_message::OneMessage::new(body)))
        };
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut response = answer.await?;
            if let Some(status) = Status::from_header_map(response.headers())
                && let Some(better) = rewrite(&status, uri.path())
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

/// The refusal of an HTTP/2 request that is not a gRPC call as this server
/// reads one: a POST whose `content-type` is `application/grpc` or
/// `application/grpc+proto` (parameters after `;` aside, case aside).
/// Health checks and reflection are gRPC calls too.
fn not_grpc<B>(req: &http::Request<B>) -> Option<Status> {
    if req.method() != http::Method::POST {
        return Some(Status::invalid_argument(format!(
            "a gRPC call is an HTTP/2 POST with content-type application/grpc, not {}: use a \
             gRPC client, the auditlog CLI or grpcurl",
            req.method()
        )));
    }
    let content_type = req.headers().get(http::header::CONTENT_TYPE);
    match content_type.map(media_type) {
        Some(m)
            if m.eq_ignore_ascii_case(b"application/grpc")
                || m.eq_ignore_ascii_case(b"application/grpc+proto") =>
        {
            None
        }
        found => {
            let found = match found {
                None => "and the request has none".to_owned(),
                // Quoted and escaped; a long one is cut.
                Some(m) => format!("not {:?}", String::from_utf8_lossy(&m[..m.len().min(64)])),
            };
            Some(Status::invalid_argument(format!(
                "content-type must be application/grpc (or application/grpc+proto), {found}: \
                 this port speaks gRPC with protobuf messages only; use a gRPC client, the \
                 auditlog CLI or grpcurl"
            )))
        }
    }
}

/// A `content-type`'s media type: what comes before its parameters.
fn media_type(value: &http::HeaderValue) -> &[u8] {
    let bytes = value.as_bytes();
    bytes
        .split(|&c| c == b';')
        .next()
        .unwrap_or(bytes)
        .trim_ascii()
}

/// The status a caller should get instead of `status`, when the transport
/// made it about the request's bytes or path (`path`).
fn rewrite(status: &Status, path: &str) -> Option<Status> {
    let message = status.message();
    match status.code() {
        Code::Internal => Some(Status::invalid_argument(match message {
            ENDS_EARLY => format!(
                "the request body ends inside a gRPC message: its 5-byte prefix announces \
                 more bytes than follow it, or the body stops inside the prefix; {FRAMING}. \
                 Send the whole message, with its own length in the prefix"
            ),
            NO_MESSAGE => format!(
                "no request message was sent: a unary call carries exactly one (as do \
                 StreamEvents and the other server-streaming calls); {FRAMING}, even for an \
                 empty request (5 zero bytes)"
            ),
            COMPRESSED_UNNAMED => format!(
                "the message is marked compressed (its flag byte is 1) but no grpc-encoding \
                 header names how; this server accepts identity (uncompressed) messages: \
                 send the flag byte 0 and the message as it is; {FRAMING}"
            ),
            _ => match message.strip_prefix(BAD_FLAG) {
                Some(rest) => {
                    let flag = rest.split(' ').next().unwrap_or_default();
                    format!(
                        "the request's body is not framed as gRPC messages: a message's flag \
                         byte must be 0 (uncompressed) or 1 (compressed), not {flag}; \
                         {FRAMING}"
                    )
                }
                None => undecodable(message.strip_prefix(UNDECODABLE)?),
            },
        })),
        Code::OutOfRange => {
            // "found 5000000 bytes, the limit is: 4194304 bytes"
            let size = message.strip_prefix(TOO_LARGE)?;
            let found = size
                .strip_prefix("found ")
                .and_then(|rest| rest.split(' ').next()?.parse().ok());
            Some(Status::resource_exhausted(too_large(path, found)))
        }
        // The router's and a generated service's answer to a path they do
        // not serve; a handler's UNIMPLEMENTED says why.
        Code::Unimplemented if message.is_empty() => {
            // The caller's path, cut short if it is long.
            let path = path
                .char_indices()
                .nth(200)
                .map_or(path, |(at, _)| &path[..at]);
            Some(Status::unimplemented(format!(
                "no method {path} here: this server offers auditlog.v1.AuditService and \
                 auditlog.v1.AdminService (list them with server reflection), called as \
                 /<service>/<method>, e.g. /auditlog.v1.AuditService/Log"
            )))
        }
        _ => None,
    }
}

/// What to tell a caller whose message did not decode; `reason` is the
/// decoder's (the field path, then what was wrong).
fn undecodable(reason: &str) -> String {
    if reason.ends_with("recursion limit reached") || reason.ends_with(DETAILS_TOO_DEEP) {
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

    const LOG: &str = "/auditlog.v1.AuditService/Log";

    #[test]
    fn only_the_transports_statuses_are_rewritten() {
        let bad_utf8 = Status::internal(format!(
            "{UNDECODABLE}EventInput.actor: invalid string value: data is not UTF-8 encoded"
        ));
        let fixed = rewrite(&bad_utf8, LOG).unwrap();
        assert_eq!(fixed.code(), Code::InvalidArgument);
        assert!(fixed.message().contains("EventInput.actor"), "{fixed:?}");
        assert!(fixed.message().contains("UTF-8"), "{fixed:?}");

        for deep in [
            format!("{UNDECODABLE}Value.kind: recursion limit reached"),
            format!("{UNDECODABLE}Struct.fields: Value.kind: {DETAILS_TOO_DEEP}"),
        ] {
            let fixed = rewrite(&Status::internal(deep), LOG).unwrap();
            assert_eq!(fixed.code(), Code::InvalidArgument);
            assert!(fixed.message().contains("at most 33 levels"), "{fixed:?}");
        }

        let big = Status::out_of_range(format!(
            "{TOO_LARGE}found 5000000 bytes, the limit is: 4194304 bytes"
        ));
        let fixed = rewrite(&big, LOG).unwrap();
        assert_eq!(fixed.code(), Code::ResourceExhausted);
        assert!(
            fixed
                .message()
                .starts_with("the request message is 5000000 bytes, more than 4 MiB"),
            "{fixed:?}"
        );
        assert!(
            fixed.message().contains("details at most 64 KiB"),
            "{fixed:?}"
        );

        for (transport, says) in [
            (ENDS_EARLY, "ends inside a gRPC message"),
            (NO_MESSAGE, "no request message was sent"),
            (COMPRESSED_UNNAMED, "no grpc-encoding header names how"),
            (
                "protocol error: received message with invalid compression flag: 123 (valid \
                 flags are 0 and 1), while sending request",
                "or 1 (compressed), not 123;",
            ),
        ] {
            let fixed = rewrite(&Status::internal(transport), LOG).unwrap();
            assert_eq!(fixed.code(), Code::InvalidArgument, "{fixed:?}");
            assert!(fixed.message().contains(says), "{fixed:?}");
            assert!(fixed.message().contains("5-byte prefix"), "{fixed:?}");
            assert!(fixed.message().len() < 400, "{fixed:?}");
        }

        let fixed = rewrite(&Status::unimplemented(""), "/auditlog.v1.AuditService/Nope").unwrap();
        assert_eq!(fixed.code(), Code::Unimplemented);
        assert!(
            fixed
                .message()
                .starts_with("no method /auditlog.v1.AuditService/Nope here"),
            "{fixed:?}"
        );

        let long = format!("/{}", "x".repeat(10_000));
        let fixed = rewrite(&Status::unimplemented(""), &long).unwrap();
        assert!(fixed.message().len() < 400, "{fixed:?}");

        // A handler's own statuses, however close to the transport's.
        for own in [
            Status::internal("verification task failed"),
            Status::out_of_range("something else"),
            Status::invalid_argument(UNDECODABLE),
            Status::invalid_argument(ENDS_EARLY),
            Status::unavailable(NO_MESSAGE),
            Status::internal(format!("{NO_MESSAGE} ")),
            Status::internal(format!("the leader said: {ENDS_EARLY}")),
            Status::unimplemented("GetWebhookSecret needs a webhook"),
            Status::invalid_argument(""),
        ] {
            assert!(rewrite(&own, LOG).is_none(), "{own:?}");
        }
    }

    #[test]
    fn the_depth_refusal_names_the_limit() {
        assert!(
            DETAILS_TOO_DEEP.contains(&format!(" {MAX_DETAILS_DEPTH} ")),
            "{DETAILS_TOO_DEEP}"
        );
    }

    #[test]
    fn only_grpc_posts_pass() {
        let request = |method: &str, content_type: Option<&str>| {
            let mut r = http::Request::builder().method(method).uri(LOG);
            if let Some(c) = content_type {
                r = r.header(http::header::CONTENT_TYPE, c);
            }
            r.body(()).unwrap()
        };
        for passes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC",
            "application/grpc; charset=utf-8",
        ] {
            assert!(
                not_grpc(&request("POST", Some(passes))).is_none(),
                "{passes}"
            );
        }
        for (method, content_type, says) in [
            (
                "GET",
                Some("application/grpc"),
                "POST with content-type application/grpc, not GET",
            ),
            ("POST", None, "and the request has none"),
            ("POST", Some("application/json"), "not \"application/json\""),
            (
                "POST",
                Some("application/grpc+json"),
                "not \"application/grpc+json\"",
            ),
            (
                "POST",
                Some("application/grpc-web"),
                "not \"application/grpc-web\"",
            ),
        ] {
            let refused = not_grpc(&request(method, content_type)).unwrap();
            assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
            assert!(refused.message().contains(says), "{refused:?}");
        }
    }
}
