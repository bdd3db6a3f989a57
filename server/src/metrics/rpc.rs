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
//!
//! The methods and the codes are few and known, so each (method, code)
//! series has a slot in [`RpcMetrics`], which keeps a handle on it once it
//! exists: a call looks its series up by index, not by hashing its labels
//! under the family's lock. A series is still created in the family only
//! by its first call, so the exposition shows the series that have been
//! used, as before.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{HistogramFamily, Labels, Metrics};
use crate::gate::{Admit, Gate, RefusedBy};
use crate::performance::{RPCS, rpc_index};

/// The gRPC status codes, `OK` (0) to `UNAUTHENTICATED` (16).
const CODES: usize = 17;
/// The code of an answer whose `grpc-status` is not a known code.
const UNKNOWN: usize = 2;
/// The code of a call dropped before it was answered.
const CANCELLED: usize = 1;

/// Calls per RPC: the families Prometheus reads, and a handle on each
/// series once its first call created it.
pub(crate) struct RpcMetrics {
    calls: Family<Labels, Counter>,
    duration: HistogramFamily,
    /// Per method, in [`RPCS`]' order.
    series: Box<[Series]>,
}

/// One method's series, each shared with its family once created.
#[derive(Default)]
struct Series {
    duration: OnceLock<Histogram>,
    /// By gRPC code.
    calls: [OnceLock<Counter>; CODES],
}

fn rpc_seconds() -> Histogram {
    // 100 µs to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl RpcMetrics {
    /// The families, registered in `r`.
    pub(super) fn new(r: &mut Registry) -> RpcMetrics {
        let rpc = RpcMetrics {
            calls: Family::default(),
            duration: Family::new_with_constructor(rpc_seconds as fn() -> Histogram),
            series: RPCS.iter().map(|_| Series::default()).collect(),
        };
        r.register(
            "auditlog_rpc_calls",
            "AuditService and AdminService calls answered, by method and gRPC status code",
            rpc.calls.clone(),
        );
        r.register(
            "auditlog_rpc_duration_seconds",
            "Time from request to response headers (a stream: until it starts), by method",
            rpc.duration.clone(),
        );
        rpc
    }

    /// One call of the method `rpc` (its index in [`RPCS`]) answered with
    /// the gRPC code `code` after `seconds`; an unknown code counts as
    /// `UNKNOWN`.
    pub(crate) fn answered(&self, rpc: usize, code: usize, seconds: f64) {
        let (Some(series), Some(&method)) = (self.series.get(rpc), RPCS.get(rpc)) else {
            return;
        };
        let code = known_code(code);
        if let Some(calls) = series.calls.get(code) {
            calls
                .get_or_init(|| {
                    self.calls
                        .get_or_create(&[("method", method), ("code", code_name(code))])
                        .clone()
                })
                .inc();
        }
        series
            .duration
            .get_or_init(|| self.duration.get_or_create(&[("method", method)]).clone())
            .observe(seconds);
    }
}

/// Layers [`Gate`] with the metrics check.
#[derive(Clone)]
pub(crate) struct RpcLayer {
    metrics: Arc<Metrics>,
    /// False without a metrics listener: nobody could read the figures, so
    /// every call passes uncounted.
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
    /// The method's index in [`RPCS`].
    rpc: usize,
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
        Ok(rpc_index(req.uri().path()).map(|rpc| {
            self.metrics.limits.in_flight.inc();
            Call {
                metrics: Arc::clone(&self.metrics),
                rpc,
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
            .map_or(0, known_code);
        if let Some(RefusedBy(by)) = response.extensions().get::<RefusedBy>() {
            call.metrics.limits.refused(by, code_name(code));
        }
        call.finish(code);
    }
}

impl Call {
    fn finish(&mut self, code: usize) {
        self.answered = true;
        self.metrics
            .rpc
            .answered(self.rpc, code, self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.answered {
            self.finish(CANCELLED);
        }
        self.metrics.limits.in_flight.dec();
    }
}

/// `code` if it is a gRPC status code, else `UNKNOWN`'s.
fn known_code(code: usize) -> usize {
    if code < CODES { code } else { UNKNOWN }
}

/// The name of a gRPC status code, as the gRPC spec spells it.
fn code_name(code: usize) -> &'static str {
    const NAMES: [&str; CODES] = [
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
        assert_eq!(code_name(known_code(99)), "UNKNOWN");
    }

    /// Every (method, code) slot counts into its own series, labelled with
    /// its own names, and a slot's second call adds to the series its first
    /// created.
    #[test]
    fn every_method_and_code_has_its_own_series() {
        let m = Metrics::new();
        for (rpc, _) in RPCS.iter().enumerate() {
            for code in 0..CODES {
                // Call `rpc` with `code` (rpc + code + 1) times.
                for _ in 0..=(rpc + code) {
                    m.rpc.answered(rpc, code, 0.001);
                }
            }
        }
        m.rpc.answered(0, 1000, 0.001);
        m.rpc.answered(RPCS.len(), 0, 0.001);
        let text = super::super::scrape::encode(&m, None);
        for (rpc, method) in RPCS.iter().enumerate() {
            for code in 0..CODES {
                // The out-of-range code counted once more as UNKNOWN.
                let extra = u64::from(rpc == 0 && code == UNKNOWN);
                let n = (rpc + code + 1) as u64 + extra;
                let line = format!(
                    "auditlog_rpc_calls_total{{method=\"{method}\",code=\"{}\"}} {n}\n",
                    code_name(code)
                );
                assert!(text.contains(&line), "no {line:?} in {text}");
            }
            let calls =
                (0..CODES).map(|code| (rpc + code + 1) as u64).sum::<u64>() + u64::from(rpc == 0);
            let line =
                format!("auditlog_rpc_duration_seconds_count{{method=\"{method}\"}} {calls}\n");
            assert!(text.contains(&line), "no {line:?} in {text}");
        }
        assert_eq!(
            text.matches("auditlog_rpc_calls_total{").count(),
            RPCS.len() * CODES,
            "{text}"
        );
    }

    /// A series appears in the exposition only once it has been used, as
    /// when every call looked it up in the family.
    #[test]
    fn unused_series_are_not_exposed() {
        let m = Metrics::new();
        m.rpc.answered(1, 5, 0.002);
        let text = super::super::scrape::encode(&m, None);
        assert_eq!(
            text.matches("auditlog_rpc_calls_total{").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("auditlog_rpc_calls_total{method=\"LogBatch\",code=\"NOT_FOUND\"} 1\n"),
            "{text}"
        );
        assert_eq!(
            text.matches("auditlog_rpc_duration_seconds_count{").count(),
            1,
            "{text}"
        );
    }
}
