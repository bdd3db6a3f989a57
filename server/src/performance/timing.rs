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

/// Every method of the API, each at its index ([`rpc_index`]): the
/// AuditService's, then from [`ADMIN`] on the AdminService's. A test walks
/// the proto's descriptor, so a method added there without a place here
/// fails the build's tests rather than going uncounted and untimed.
pub(crate) const RPCS: [&str; 20] = [
    "Log",
    "LogBatch",
    "Query",
    "StreamEvents",
    "VerifyIntegrity",
    "GetStats",
    "TrackPerformance",
    "GetPerformanceStats",
    "ExportSubject",
    "GetCheckpoint",
    "GetInclusionProof",
    "GetConsistencyProof",
    "Rotate",
    "ApplyRetention",
    "TestAlerts",
    "GetAlertStatus",
    "GetWebhookStatus",
    "GetWebhookSecret",
    "MailReport",
    "Backup",
];

/// The index in [`RPCS`] of the AdminService's first method.
const ADMIN: usize = 12;

/// As [`rpc_name`], the method's index in [`RPCS`]. A method is looked up
/// among its own service's only, so a path naming the other service's
/// method (which tonic answers `UNIMPLEMENTED`) is not one of ours.
pub(crate) fn rpc_index(path: &str) -> Option<usize> {
    let (method, indexes) = match path.strip_prefix("/auditlog.v1.AuditService/") {
        Some(method) => (method, 0..ADMIN),
        None => (
            path.strip_prefix("/auditlog.v1.AdminService/")?,
            ADMIN..RPCS.len(),
        ),
    };
    indexes.into_iter().find(|&i| RPCS.get(i) == Some(&method))
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
        assert_eq!(rpc_name("/auditlog.v1.AdminService/Log"), None);
        assert_eq!(rpc_name("/auditlog.v1.AuditService/Rotate"), None);
    }

    /// Every method of every service in the proto has its index, in its
    /// own service's part of the table, and the table names nothing else.
    #[test]
    fn every_method_of_the_api_has_an_index() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(auditlog_proto::FILE_DESCRIPTOR_SET)
            .expect("the embedded descriptor set decodes");
        let mut indexes = Vec::new();
        for file in set.file.iter().filter(|f| f.package() == "auditlog.v1") {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/auditlog.v1.{}/{}", service.name(), method.name());
                    let index = rpc_index(&path);
                    assert_eq!(
                        index.map(|i| RPCS[i]),
                        Some(method.name()),
                        "{path} has no index: add it to RPCS in its service's part"
                    );
                    indexes.extend(index);
                }
            }
        }
        indexes.sort_unstable();
        indexes.dedup();
        assert_eq!(
            indexes.len(),
            RPCS.len(),
            "RPCS names a method the proto lacks"
        );
    }
}
