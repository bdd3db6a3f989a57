//! Load shedding: a cap on calls in flight across the server. A call over
//! the cap is answered at once with RESOURCE_EXHAUSTED (never queued, never
//! left hanging), so an overload degrades into fast, retryable refusals.
//! Health and reflection are exempt, so probes still see the truth.
//!
//! The other limits are the transport's, set in `lib.rs` from the config:
//! concurrent streams per connection, HTTP/2 keepalive (dead peers are
//! reaped), and a timeout for unary handlers.

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The in-flight cap, as a tower layer over the whole router.
#[derive(Debug, Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ShedLayer {
    pub fn new(max_in_flight: usize) -> ShedLayer {
        ShedLayer {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max: max_in_flight,
        }
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
pub struct Shed<S> {
    inner: S,
    layer: ShedLayer,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Shed<S>
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
        let path = req.uri().path();
        let exempt = path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.");
        let permit: Option<OwnedSemaphorePermit> = if exempt {
            None
        } else {
            match Arc::clone(&self.layer.permits).try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    let status = tonic::Status::resource_exhausted(format!(
                        "the server is at its limit of {} calls in flight; retry with backoff",
                        self.layer.max
                    ));
                    return Box::pin(std::future::ready(Ok(status.into_http())));
                }
            }
        };
        let future = self.inner.call(req);
        Box::pin(async move {
            // Held until the handler has answered (for a stream: until it
            // has started).
            let response = future.await;
            drop(permit);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer as _, Service as _, ServiceExt as _};

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    fn code(response: &http::Response<tonic::body::Body>) -> Option<tonic::Code> {
        tonic::Status::from_header_map(response.headers()).map(|s| s.code())
    }

    #[tokio::test]
    async fn a_call_over_the_cap_is_refused_at_once_and_probes_pass() {
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let held = Arc::new(tokio::sync::Mutex::new(Some(held)));
        let inner = tower::service_fn(move |_req: http::Request<()>| {
            let held = Arc::clone(&held);
            async move {
                // The first call waits until released; later ones answer.
                if let Some(rx) = held.lock().await.take() {
                    let _ = rx.await;
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
            }
        });
        let mut shed = ShedLayer::new(1).layer(inner);
        let first = shed
            .ready()
            .await
            .unwrap()
            .call(request("/auditlog.v1.AuditService/Log"));
        let first = tokio::spawn(first);
        tokio::task::yield_now().await;
        let refused = shed
            .ready()
            .await
            .unwrap()
            .call(request("/auditlog.v1.AuditService/Log"))
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
        // The permit is back.
        let again = shed
            .ready()
            .await
            .unwrap()
            .call(request("/auditlog.v1.AuditService/Log"))
            .await
            .unwrap();
        assert_eq!(code(&again), None);
    }
}
