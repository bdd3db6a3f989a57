//! HTTP/2 requests that are not gRPC as the server reads it, sent with `h2`
//! as they are: framing mistakes, wrong methods, content types and
//! compressions, and paths that are no method.

use tonic::{Code, Status};

use crate::bad_input::raw::log_request;
use crate::common::{self, TestServer};

/// A gRPC request's headers.
const GRPC: &[(&str, &str)] = &[("content-type", "application/grpc"), ("te", "trailers")];

/// Sends one HTTP/2 request exactly as given (`method` on `path`, `headers`,
/// then `body` in one DATA frame unless it is empty) on a connection of its
/// own, and returns the gRPC status it is answered with: from the headers of
/// a trailers-only answer, else from the trailers.
async fn raw_http2(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Status {
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", server.addr));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut send) = client
        .send_request(request.body(()).unwrap(), body.is_empty())
        .unwrap();
    if !body.is_empty() {
        send.send_data(bytes::Bytes::copy_from_slice(body), true)
            .unwrap();
    }
    let response = tokio::time::timeout(common::DEADLINE, response)
        .await
        .expect("no answer")
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::OK, "{response:?}");
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().expect("no trailers");
    Status::from_header_map(&trailers).expect("no grpc-status")
}

/// A gRPC message: the 5-byte prefix (`flag`, then `len` big-endian), then
/// `payload`.
fn framed(flag: u8, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// What a probe found answered INTERNAL, or UNIMPLEMENTED without a word,
/// is a caller's mistake answered INVALID_ARGUMENT (or UNIMPLEMENTED for a
/// method that is not there) saying what was wrong and what to send
/// (docs/limits.md).
#[tokio::test]
async fn framing_mistakes_are_invalid_arguments_that_say_what_to_send() {
    let server = TestServer::start().await;
    let log = "/auditlog.v1.AuditService/Log";
    let message = log_request("crm-sync", None);
    let len = u32::try_from(message.len()).unwrap();
    let json: &[(&str, &str)] = &[("content-type", "application/json")];
    let none: &[(&str, &str)] = &[("te", "trailers")];
    /// What is sent (the case's name, method, path, headers, body), and
    /// the answer's code and words.
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Vec<u8>,
        Code,
        &'a [&'a str],
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "a prefix announcing more than the body holds",
            "POST",
            log,
            GRPC,
            framed(0, len + 100, &message),
            Code::InvalidArgument,
            &["ends inside a gRPC message", "5-byte prefix"],
        ),
        (
            "a body shorter than a prefix",
            "POST",
            log,
            GRPC,
            vec![0, 0, 0],
            Code::InvalidArgument,
            &["ends inside a gRPC message"],
        ),
        (
            "two messages in one body",
            "POST",
            log,
            GRPC,
            [framed(0, len, &message), framed(0, len, &message)].concat(),
            Code::InvalidArgument,
            &["more than one gRPC message", "exactly one"],
        ),
        (
            "an empty body",
            "POST",
            log,
            GRPC,
            Vec::new(),
            Code::InvalidArgument,
            &["no request message was sent", "exactly one"],
        ),
        (
            "a GET",
            "GET",
            log,
            none,
            Vec::new(),
            Code::InvalidArgument,
            &["POST", "not GET"],
        ),
        (
            "the compressed flag without grpc-encoding",
            "POST",
            log,
            GRPC,
            framed(1, len, &message),
            Code::InvalidArgument,
            &["marked compressed", "grpc-encoding", "identity"],
        ),
        (
            "a flag that is neither 0 nor 1",
            "POST",
            log,
            GRPC,
            framed(7, len, &message),
            Code::InvalidArgument,
            &["flag", "7"],
        ),
        (
            "JSON",
            "POST",
            log,
            json,
            br#"{"event":{"event_type":"x"}}"#.to_vec(),
            Code::InvalidArgument,
            &[
                "content-type must be application/grpc",
                "application/grpc+proto",
                "application/json",
            ],
        ),
        (
            "no content-type",
            "POST",
            log,
            none,
            framed(0, len, &message),
            Code::InvalidArgument,
            &["content-type must be application/grpc"],
        ),
        (
            // As gRPC says: UNIMPLEMENTED, naming what the server accepts.
            "a compression the server does not take",
            "POST",
            log,
            &[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("grpc-encoding", "gzip"),
            ],
            framed(1, len, &message),
            Code::Unimplemented,
            &["gzip"],
        ),
        (
            "a method the service does not have",
            "POST",
            "/auditlog.v1.AuditService/Nope",
            GRPC,
            framed(0, len, &message),
            Code::Unimplemented,
            &[
                "no method /auditlog.v1.AuditService/Nope here",
                "auditlog.v1.AuditService and auditlog.v1.AdminService",
                "reflection",
            ],
        ),
        (
            "a path that is no method",
            "POST",
            "/foo",
            GRPC,
            framed(0, len, &message),
            Code::Unimplemented,
            &["no method /foo here", "reflection"],
        ),
    ];
    let mut wrong = Vec::new();
    for (what, method, path, headers, body, code, says) in cases {
        let status = raw_http2(&server, method, path, headers, &body).await;
        if status.code() != code
            || !says.iter().all(|said| status.message().contains(said))
            || status.message().len() >= 400
        {
            wrong.push(format!(
                "{what}: {:?} {:?}",
                status.code(),
                status.message()
            ));
        }
    }
    assert!(wrong.is_empty(), "answered wrong:\n{}", wrong.join("\n"));

    // The same message, framed right, is written, as application/grpc+proto
    // too.
    for content_type in ["application/grpc", "application/grpc+proto"] {
        let headers = [("content-type", content_type), ("te", "trailers")];
        let status = raw_http2(&server, "POST", log, &headers, &framed(0, len, &message)).await;
        assert_eq!(status.code(), Code::Ok, "{content_type}: {status:?}");
    }
    server.client().await.stats(None).await.unwrap();
}
