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

type Answer<E> = Result<http::Response<tonic::body::Body>, E>;

pin_project_lite::pin_project! {
    /// A call let through with a pass: the router's answer, and the pass
    /// handed back to the check once it is in (dropped with the call if it
    /// never is). Not boxed: a call costs no allocation here.
    pub(crate) struct Held<F, A: Admit> {
        #[pin]
        answer: F,
        pass: Option<A::Pass>,
    }
}

impl<F, A, E> std::future::Future for Held<F, A>
where
    F: std::future::Future<Output = Answer<E>>,
    A: Admit,
{
    type Output = Answer<E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer<E>> {
        let this = self.project();
        let response = std::task::ready!(this.answer.poll(cx));
        if let Some(pass) = this.pass.take() {
            match &response {
                Ok(r) => A::answered_with(pass, r),
                Err(_) => A::answered(pass),
            }
        }
        Poll::Ready(response)
    }
}

impl<S, B, A> tower::Service<http::Request<B>> for Gate<S, A>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    A: Admit,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = futures::future::Either<
        futures::future::Either<S::Future, std::future::Ready<Answer<S::Error>>>,
        Held<S::Future, A>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        use futures::future::Either::{Left, Right};
        match self.admit.admit(&mut req) {
            Ok(None) => Left(Left(self.inner.call(req))),
            Ok(Some(pass)) => Right(Held {
                answer: self.inner.call(req),
                pass: Some(pass),
            }),
            Err(status) => {
                let mut response = status.into_http();
                response.extensions_mut().insert(RefusedBy(A::NAME));
                Left(Right(std::future::ready(Ok(response))))
            }
        }
    }
}
