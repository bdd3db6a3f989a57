//! The server's own RPC timings: a layer over the router that times each
//! AuditService and AdminService call. They are not written to the log
//! (that would double every write), so they start empty after a restart.

use std::sync::Arc;
use std::time::Instant;

use super::{Performance, Source};
use crate::gate::{Admit, Gate};

/// Times every AuditService and AdminService call, from request to response
/// headers (for a stream: until it starts).
#[derive(Clone)]
pub(crate) struct TimingLayer {
    performance: Option<Arc<Performance>>,
}

impl TimingLayer {
    pub(crate) fn new(performance: &Arc<Performance>) -> TimingLayer {
        TimingLayer {
            performance: performance
                .config
                .track_server
                .then(|| Arc::clone(performance)),
        }
    }
}

impl<S> tower::Layer<S> for TimingLayer {
    type Service = Gate<S, TimingLayer>;

    fn layer(&self, inner: S) -> Gate<S, TimingLayer> {
        Gate::new(inner, self.clone())
    }
}

/// One RPC being timed.
pub(crate) struct Timer {
    performance: Arc<Performance>,
    rpc: &'static str,
    started: Instant,
}

impl Admit for TimingLayer {
    type Pass = Timer;

    fn admit<B>(&self, req: &mut http::Request<B>) -> Result<Option<Timer>, tonic::Status> {
        Ok(self.performance.as_ref().and_then(|p| {
            rpc_name(req.uri().path()).map(|rpc| Timer {
                performance: Arc::clone(p),
                rpc,
                started: Instant::now(),
            })
        }))
    }

    fn answered(timer: Timer) {
        timer.performance.record(
            Source::Server,
            timer.rpc,
            timer.started.elapsed().as_secs_f64() * 1000.0,
        );
    }
}

/// The method name of an auditlog RPC path, e.g. `Log` for
/// `/auditlog.v1.AuditService/Log`; `None` for health, reflection and
/// unknown paths (which must not grow the table).
pub(crate) fn rpc_name(path: &str) -> Option<&'static str> {
    rpc_index(path).and_then(|i| RPCS.get(i).copied())
}

/// The methods [`rpc_name`] knows, each at its index ([`rpc_index`]).
pub(crate) const RPCS: [&str; 14] = [
    "Log",
    "LogBatch",
    "Query",
    "StreamEvents",
    "VerifyIntegrity",
    "GetStats",
    "TrackPerformance",
    "GetPerformanceStats",
    "ExportSubject",
    "Rotate",
    "ApplyRetention",
    "TestAlerts",
    "GetAlertStatus",
    "GetWebhookStatus",
];

/// As [`rpc_name`], the method's index in [`RPCS`].
pub(crate) fn rpc_index(path: &str) -> Option<usize> {
    let method = path
        .strip_prefix("/auditlog.v1.AuditService/")
        .or_else(|| path.strip_prefix("/auditlog.v1.AdminService/"))?;
    RPCS.iter().position(|r| *r == method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_auditlog_rpcs_are_timed() {
        assert_eq!(rpc_name("/auditlog.v1.AuditService/Log"), Some("Log"));
        assert_eq!(rpc_name("/auditlog.v1.AdminService/Rotate"), Some("Rotate"));
        assert_eq!(rpc_name("/grpc.health.v1.Health/Check"), None);
        assert_eq!(rpc_name("/auditlog.v1.AuditService/Nope"), None);
    }
}
