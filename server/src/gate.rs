//! The one tower service behind every per-call layer over the router (load
//! shedding, the token check, the rate limit, RPC timing): a check either
//! lets the request through to the router or answers it at once with a
//! status, without calling it. A check that must know when the call it let
//! through has been answered (to free a permit, to time it) keeps a pass
//! for the call's length and gets it back at the end.

use std::task::{Context, Poll};

/// A decision made on each call before it reaches the router.
pub(crate) trait Admit: Clone {
    /// What a check keeps while the call it let through runs.
    type Pass: Send + 'static;

    /// The name a call this check answers itself is counted under
    /// ([`RefusedBy`], read by the metrics layer).
    const NAME: &'static str = "check";

    /// `Ok` passes the request on (perhaps with extensions added), with a
    /// pass to hold until it is answered or none; `Err` answers the call
    /// with that status.
    fn admit<B>(&self, req: &mut http::Request<B>) -> Result<Option<Self::Pass>, tonic::Status>;

    /// The call let through with `pass` has been answered (for a stream:
    /// it has started). A call dropped before then drops its pass instead.
    fn answered(pass: Self::Pass) {
        drop(pass);
    }

    /// As [`Admit::answered`], for a check that reads the response's head.
    fn answered_with(pass: Self::Pass, _response: &http::Response<tonic::body::Body>) {
        Self::answered(pass);
    }
}

/// Left on a response a check gave itself: which check refused the call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefusedBy(pub(crate) &'static str);

/// The service a check's layer wraps around the router.
#[derive(Debug, Clone)]
pub(crate) struct Gate<S, A> {
    inner: S,
    admit: A,
}

impl<S, A> Gate<S, A> {
    pub(crate) fn new(inner: S, admit: A) -> Gate<S, A> {
        Gate { inner, admit }
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
type Answer<E> = Result<http::Response<tonic::body::Body>, E>;

impl<S, B, A> tower::Service<http::Request<B>> for Gate<S, A>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    A: Admit,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    /// Unboxed unless the check holds a pass for the call.
    type Future = futures::future::Either<
        futures::future::Either<S::Future, std::future::Ready<Answer<S::Error>>>,
        BoxFuture<Answer<S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        use futures::future::Either::{Left, Right};
        match self.admit.admit(&mut req) {
            Ok(None) => Left(Left(self.inner.call(req))),
            Ok(Some(pass)) => {
                let answer = self.inner.call(req);
                Right(Box::pin(async move {
                    let response = answer.await;
                    match &response {
                        Ok(r) => A::answered_with(pass, r),
                        Err(_) => A::answered(pass),
                    }
                    response
                }))
            }
            Err(status) => {
                let mut response = status.into_http();
                response.extensions_mut().insert(RefusedBy(A::NAME));
                Left(Right(std::future::ready(Ok(response))))
            }
        }
    }
}
