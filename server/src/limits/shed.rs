//! The cap on calls in flight across the server, taken only once a call's
//! request message has arrived.
//!
//! A call's HEADERS cost a client nothing, and a handler cannot start before
//! its message is read. So a slot taken at the headers could be held by a
//! client that never sends the message: about 1,200 such calls once held all
//! 1,024 slots until the handler timeout. Here the request body is read
//! first, bounded in time (`request_read_timeout_secs`, answered
//! DEADLINE_EXCEEDED) and in size ([`MAX_REQUEST_BYTES`], answered
//! RESOURCE_EXHAUSTED), and only then is a slot taken. A call over the cap is
//! answered at once with RESOURCE_EXHAUSTED (never queued), so an overload
//! degrades into fast, retryable refusals. Every AuditService and
//! AdminService method takes exactly one request message, so reading it whole
//! first changes nothing for them: tonic too waits for the end of the request
//! before it calls the handler.
//!
//! The bytes buffered at once are bounded by [`REQUEST_BUDGET_BYTES`]
//! (or `max_in_flight` times [`MAX_REQUEST_BYTES`], if smaller). A chunk
//! that would pass that budget is refused with RESOURCE_EXHAUSTED; headers
//! alone take none of it. The bound was `max_in_flight` times 4 MiB, 4 GiB
//! by default, until 200 concurrent `LogBatch` calls of 3.8 MB over four
//! connections took the server to 821 MB (2026-12-06). What else a call costs
//! before its slot is bounded elsewhere: streams per connection
//! (`max_streams_per_connection`), connections (`max_connections`,
//! `listener.rs`), and the read timeout.
//!
//! Health and reflection (a bidirectional stream) are passed through as they
//! come, so probes still see the truth.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;

use super::{BoxFuture, is_exempt};

/// The largest request body read: one message of tonic's default decoding
/// limit ([`crate::wire::MAX_MESSAGE_BYTES`], 4 MiB) and its 5-byte gRPC
/// frame header. A larger message would be refused by the decoder anyway;
/// here it is refused before it is buffered.
pub(crate) const MAX_REQUEST_BYTES: usize = crate::wire::MAX_MESSAGE_BYTES + 5;

/// The most request bytes buffered at once across the server: 16 of the
/// largest messages, a second of this server's fastest batched
/// ingest on two cores.
pub(crate) const REQUEST_BUDGET_BYTES: usize = 64 << 20;

/// The in-flight cap, as a tower layer over the whole router.
#[derive(Debug, Clone)]
pub(crate) struct ShedLayer {
    permits: Arc<Semaphore>,
    max: usize,
    read_timeout: Duration,
    /// The request bytes that may be buffered at once, one permit a byte.
    buffered: Arc<Semaphore>,
}

impl ShedLayer {
    pub(crate) fn new(max_in_flight: usize, read_timeout: Duration) -> ShedLayer {
        ShedLayer {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max: max_in_flight,
            read_timeout,
            buffered: Arc::new(Semaphore::new(
                max_in_flight
                    .saturating_mul(MAX_REQUEST_BYTES)
                    .min(REQUEST_BUDGET_BYTES)
                    .min(Semaphore::MAX_PERMITS),
            )),
        }
    }

    /// The slot for a call whose message has been read, or the refusal.
    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, tonic::Status> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            tonic::Status::resource_exhausted(format!(
                "the server is at its limit of {} calls in flight; retry with backoff",
                self.max
            ))
        })
    }
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`ShedLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub(crate) struct Shed<S> {
    inner: S,
    layer: ShedLayer,
}

impl<S> tower::Service<http::Request<Body>> for Shed<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
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
        if is_exempt(req.uri().path()) {
            return futures::future::Either::Left(self.inner.call(req));
        }
        // The clone that was made ready is the one that answers.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let layer = self.layer.clone();
        futures::future::Either::Right(Box::pin(async move {
            let (parts, body) = req.into_parts();
            let budget = Arc::clone(&layer.buffered);
            let path = parts.uri.path();
            let (body, bytes) = match read_whole(body, path, layer.read_timeout, budget).await {
                Ok(read) => read,
                Err(status) => return Ok(status.into_http()),
            };
            let permit = match layer.admit() {
                Ok(permit) => permit,
                Err(status) => {
                    // Counted by the metrics layer as shed.
                    let mut response = status.into_http();
                    response
                        .extensions_mut()
                        .insert(crate::gate::RefusedBy("shed"));
                    return Ok(response);
                }
            };
            // Held until the handler has answered (for a stream: until it
            // has started).
            let response = inner.call(http::Request::from_parts(parts, body)).await;
            drop((permit, bytes));
            response
        }))
    }
}

/// Reads a request body to its end within `limit`, and gives it back as a
/// body that is all there, with its bytes' share of `budget`; `path` (the
/// method's) only says what to send instead of a body that is too large.
async fn read_whole(
    mut body: Body,
    path: &str,
    limit: Duration,
    budget: Arc<Semaphore>,
) -> Result<(Body, Option<OwnedSemaphorePermit>), tonic::Status> {
    let mut taken: Option<OwnedSemaphorePermit> = None;
    let read = async {
        let mut data = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                // A refusal of the body itself (a second message,
                // `wire::one_message`) is the caller's mistake, said as it is.
                if e.code() == tonic::Code::InvalidArgument {
                    return e;
                }
                tonic::Status::cancelled(format!("the request was not received whole: {e}"))
            })?;
            match frame.into_data() {
                Ok(chunk) => {
                    if data.len() + chunk.len() > MAX_REQUEST_BYTES {
                        // The body is the message and its 5-byte prefix.
                        return Err(tonic::Status::resource_exhausted(crate::wire::too_large(
                            path, None,
                        )));
                    }
                    let share = u32::try_from(chunk.len())
                        .ok()
                        .and_then(|n| Arc::clone(&budget).try_acquire_many_owned(n).ok())
                        .ok_or_else(|| {
                            tonic::Status::resource_exhausted(
                                "the server is buffering as many request bytes as it may; \
                                 retry with backoff",
                            )
                        })?;
                    match &mut taken {
                        Some(t) => t.merge(share),
                        None => taken = Some(share),
                    }
                    data.extend_from_slice(&chunk);
                }
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        Ok((data.freeze(), trailers))
    };
    let (data, trailers) = tokio::time::timeout(limit, read).await.map_err(|_| {
        tonic::Status::deadline_exceeded(format!(
            "the request message did not arrive within {} s of its headers \
             (request_read_timeout_secs); send the message right after the headers",
            limit.as_secs()
        ))
    })??;
    Ok((whole_body(data, trailers), taken))
}

/// A body of `data`, then `trailers` if the request had any.
fn whole_body(data: Bytes, trailers: Option<http::HeaderMap>) -> Body {
    let data = (!data.is_empty()).then(|| Ok(http_body::Frame::data(data)));
    let trailers = trailers.map(|t| Ok(http_body::Frame::trailers(t)));
    let frames = data.into_iter().chain(trailers);
    Body::new(http_body_util::StreamBody::new(futures::stream::iter(
        frames.collect::<Vec<Result<_, std::convert::Infallible>>>(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer as _, Service as _, ServiceExt as _};

    fn request(path: &str) -> http::Request<Body> {
        let body = whole_body(Bytes::from_static(b"\0\0\0\0\0"), None);
        http::Request::builder().uri(path).body(body).unwrap()
    }

    fn code(response: &http::Response<Body>) -> Option<tonic::Code> {
        tonic::Status::from_header_map(response.headers()).map(|s| s.code())
    }

    #[tokio::test]
    async fn a_call_over_the_cap_is_refused_at_once_and_probes_pass() {
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let (entered, mut first_entered) = tokio::sync::mpsc::unbounded_channel::<()>();
        let held = Arc::new(tokio::sync::Mutex::new(Some(held)));
        let inner = tower::service_fn(move |req: http::Request<Body>| {
            let held = Arc::clone(&held);
            let entered = entered.clone();
            async move {
                // The message arrives whole.
                let body = req.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], b"\0\0\0\0\0");
                // The first call waits until released; later ones answer.
                if let Some(rx) = held.lock().await.take() {
                    let _ = entered.send(());
                    let _ = rx.await;
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
            }
        });
        let mut shed = ShedLayer::new(1, Duration::from_secs(10)).layer(inner);
        let log = "/auditlog.v1.AuditService/Log";
        let first = tokio::spawn(shed.ready().await.unwrap().call(request(log)));
        first_entered.recv().await.unwrap();
        let refused = shed
            .ready()
            .await
            .unwrap()
            .call(request(log))
            .await
            .unwrap();
        assert_eq!(code(&refused), Some(tonic::Code::ResourceExhausted));
        let probe = shed
            .ready()
            .await
            .unwrap()
            .call(request("/grpc.health.v1.Health/Check"));
        let _ = release.send(());
        assert_eq!(code(&probe.await.unwrap()), None);
        assert_eq!(code(&first.await.unwrap().unwrap()), None);
        // The slot is back.
        let again = shed
            .ready()
            .await
            .unwrap()
            .call(request(log))
            .await
            .unwrap();
        assert_eq!(code(&again), None);
    }

    #[tokio::test]
    async fn buffered_bytes_are_bounded_until_the_handler_answers() {
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let (entered, mut first_entered) = tokio::sync::mpsc::unbounded_channel::<()>();
        let held = Arc::new(tokio::sync::Mutex::new(Some(held)));
        let inner = tower::service_fn(move |_req: http::Request<Body>| {
            let held = Arc::clone(&held);
            let entered = entered.clone();
            async move {
                if let Some(rx) = held.lock().await.take() {
                    let _ = entered.send(());
                    let _ = rx.await;
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
            }
        });
        // One slot: a budget of one largest message.
        let mut shed = ShedLayer::new(1, Duration::from_secs(10)).layer(inner);
        let log = "/auditlog.v1.AuditService/Log";
        let largest = whole_body(Bytes::from(vec![0u8; MAX_REQUEST_BYTES]), None);
        let largest = http::Request::builder().uri(log).body(largest).unwrap();
        let first = tokio::spawn(shed.ready().await.unwrap().call(largest));
        first_entered.recv().await.unwrap();
        let refused = shed
            .ready()
            .await
            .unwrap()
            .call(request(log))
            .await
            .unwrap();
        let status = tonic::Status::from_header_map(refused.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status.message().contains("buffering"),
            "{}",
            status.message()
        );
        let _ = release.send(());
        assert_eq!(code(&first.await.unwrap().unwrap()), None);
        let again = shed
            .ready()
            .await
            .unwrap()
            .call(request(log))
            .await
            .unwrap();
        assert_eq!(code(&again), None);
    }

    #[tokio::test]
    async fn a_message_that_never_comes_takes_no_slot_and_is_answered() {
        let inner = tower::service_fn(|_req: http::Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        });
        let layer = ShedLayer::new(1, Duration::from_millis(50));
        let mut shed = layer.clone().layer(inner);
        // Headers whose body never ends.
        let (_sender, body) = tokio::sync::mpsc::channel::<
            Result<http_body::Frame<Bytes>, std::convert::Infallible>,
        >(1);
        let body = Body::new(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(body),
        ));
        let req = http::Request::builder()
            .uri("/auditlog.v1.AuditService/Log")
            .body(body)
            .unwrap();
        let waiting = tokio::spawn(shed.ready().await.unwrap().call(req));
        // While it waits, the one slot is free.
        let permit = layer.admit().unwrap();
        drop(permit);
        let answer = waiting.await.unwrap().unwrap();
        let status = tonic::Status::from_header_map(answer.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(
            status.message().contains("request_read_timeout_secs"),
            "{}",
            status.message()
        );
    }
}
