//! The one tower service behind the per-call checks over the router (the
//! token check, the rate limit): a check either lets the request through to
//! the router or answers it at once with a status, without calling it.

use std::task::{Context, Poll};

/// A decision made on each call before it reaches the router.
pub trait Admit: Clone {
    /// `Ok` passes the request on (perhaps with extensions added); `Err`
    /// answers the call with that status.
    fn admit<B>(&self, req: &mut http::Request<B>) -> Result<(), tonic::Status>;
}

/// The service a check's layer wraps around the router.
#[derive(Debug, Clone)]
pub struct Gate<S, A> {
    inner: S,
    admit: A,
}

impl<S, A> Gate<S, A> {
    pub fn new(inner: S, admit: A) -> Gate<S, A> {
        Gate { inner, admit }
    }
}

impl<S, B, A> tower::Service<http::Request<B>> for Gate<S, A>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    A: Admit,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        std::future::Ready<Result<http::Response<tonic::body::Body>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self.admit.admit(&mut req) {
            Ok(()) => futures::future::Either::Left(self.inner.call(req)),
            Err(status) => {
                futures::future::Either::Right(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}
