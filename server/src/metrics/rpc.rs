//! The outermost layer over the router: counts every AuditService and
//! AdminService call by method and gRPC status code, times it, keeps the
//! calls in flight, and counts the calls a check inside refused (shedding,
//! the rate limit, the token check: each leaves a `gate::RefusedBy` on its
//! answer).
//!
//! The code is the one the answer's head carries: a handler's error and a
//! refusal come as trailers-only answers with `grpc-status` in the head,
//! so an answer without one counts as `OK` (for a stream: it started). A
//! call dropped before it was answered counts as `CANCELLED`.

use std::sync::Arc;
use std::time::Instant;

use super::Metrics;
use crate::gate::{Admit, Gate, RefusedBy};
use crate::performance::rpc_name;

/// Layers [`Gate`] with the metrics check.
#[derive(Clone)]
pub(crate) struct RpcLayer {
    metrics: Arc<Metrics>,
    /// False without a metrics listener: nobody could read the figures, so
    /// every call passes unboxed and uncounted.
    on: bool,
}

impl RpcLayer {
    pub(crate) fn new(metrics: &Arc<Metrics>, on: bool) -> RpcLayer {
        RpcLayer {
            metrics: Arc::clone(metrics),
            on,
        }
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = Gate<S, RpcLayer>;

    fn layer(&self, inner: S) -> Gate<S, RpcLayer> {
        Gate::new(inner, self.clone())
    }
}

/// One call being counted; counted as `CANCELLED` if dropped unanswered.
pub(crate) struct Call {
    metrics: Arc<Metrics>,
    method: &'static str,
    started: Instant,
    answered: bool,
}

impl Admit for RpcLayer {
    type Pass = Call;
    const NAME: &'static str = "metrics";

    fn admit<B>(&self, req: &mut http::Request<B>) -> Result<Option<Call>, tonic::Status> {
        if !self.on {
            return Ok(None);
        }
        Ok(rpc_name(req.uri().path()).map(|method| {
            self.metrics.limits.in_flight.inc();
            Call {
                metrics: Arc::clone(&self.metrics),
                method,
                started: Instant::now(),
                answered: false,
            }
        }))
    }

    fn answered_with(mut call: Call, response: &http::Response<tonic::body::Body>) {
        let code = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .map_or("OK", code_name);
        if let Some(RefusedBy(by)) = response.extensions().get::<RefusedBy>() {
            call.metrics.limits.refused(by, code);
        }
        call.finish(code);
    }
}

impl Call {
    fn finish(&mut self, code: &'static str) {
        self.answered = true;
        self.metrics
            .rpc
            .answered(self.method, code, self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.answered {
            self.finish("CANCELLED");
        }
        self.metrics.limits.in_flight.dec();
    }
}

/// The name of a gRPC status code, as the gRPC spec spells it.
fn code_name(code: usize) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code).copied().unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(
            code_name(tonic::Code::Unauthenticated as usize),
            "UNAUTHENTICATED"
        );
        assert_eq!(
            code_name(tonic::Code::ResourceExhausted as usize),
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(code_name(99), "UNKNOWN");
    }
}
