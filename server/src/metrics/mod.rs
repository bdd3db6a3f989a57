//! Prometheus metrics: one [`Metrics`] of families, registered once in
//! `run` and shared as an `Arc` (the store carries it, so whatever holds the
//! store reaches it), and the listener that serves them (`http`).
//!
//! Two kinds of figures. Counters and histograms that code updates as it
//! works live in the registry here; each update is an atomic add (a
//! histogram's observe takes an uncontended lock), never per event where
//! per group will do, and never an allocation. Figures the running server
//! already keeps (the head seq, the segment files, webhook and alert
//! status) are read when Prometheus scrapes (`scrape`), so they cost the
//! hot path nothing.
//!
//! Invariant: no label takes a value from a caller or from the log (no
//! lead id, actor or token); label values are RPC names, gRPC codes,
//! finding kinds, and names from the configuration.

mod http;
mod rpc;
mod scrape;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub(crate) use http::serve;
pub(crate) use rpc::RpcLayer;
use rpc::RpcMetrics;

use crate::store::{FindingKind, Report};

/// One label.
type Label = [(&'static str, &'static str); 1];
/// Two labels.
type Labels = [(&'static str, &'static str); 2];
/// A gauge of a non-integer value.
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;
type HistogramFamily = Family<Label, Histogram, fn() -> Histogram>;

/// Every family the server updates as it works.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) rpc: RpcMetrics,
    pub(crate) store: StoreMetrics,
    pub(crate) live: LiveMetrics,
    pub(crate) integrity: IntegrityMetrics,
    pub(crate) limits: LimitMetrics,
    pub(crate) recovery: RecoveryMetrics,
}

/// The write path.
pub(crate) struct StoreMetrics {
    events: Counter,
    commits: Counter,
    group_size: Histogram,
    bytes: Counter,
    fsync: Histogram,
}

/// Live subscriptions.
pub(crate) struct LiveMetrics {
    streams: Gauge,
    lagged: Counter,
}

/// Verification.
pub(crate) struct IntegrityMetrics {
    runs: Counter,
    events_checked: Counter,
    problems: Family<Label, Counter>,
    last_clean: FloatGauge,
}

/// The limits over calls.
pub(crate) struct LimitMetrics {
    in_flight: Gauge,
    shed: Counter,
    rate_limited: Counter,
    auth_refused: Family<Label, Counter>,
}

/// What recovery did at this start.
pub(crate) struct RecoveryMetrics {
    seconds: FloatGauge,
    quarantined_bytes: Gauge,
}

/// Held while a live subscription runs: counts it as open.
pub(crate) struct OpenStream<'a>(&'a Gauge);

impl Metrics {
    /// Every family, registered.
    pub(crate) fn new() -> Metrics {
        let mut r = Registry::default();
        let rpc = RpcMetrics::new(&mut r);
        let store = StoreMetrics {
            events: Counter::default(),
            commits: Counter::default(),
            // 1 to 8192 events.
            group_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            bytes: Counter::default(),
            // 50 µs to about 1.6 s.
            fsync: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
        };
        r.register(
            "auditlog_events_appended",
            "Events durably appended to the log",
            store.events.clone(),
        );
        r.register(
            "auditlog_group_commits",
            "Group commits made durable and acknowledged",
            store.commits.clone(),
        );
        r.register(
            "auditlog_group_commit_events",
            "Events per group commit",
            store.group_size.clone(),
        );
        r.register(
            "auditlog_written_bytes",
            "Bytes appended to the active segment",
            store.bytes.clone(),
        );
        r.register(
            "auditlog_fsync_duration_seconds",
            "Time of each fdatasync of the log",
            store.fsync.clone(),
        );
        let live = LiveMetrics {
            streams: Gauge::default(),
            lagged: Counter::default(),
        };
        r.register(
            "auditlog_open_streams",
            "Live subscriptions open: StreamEvents, ExportSubject and webhook endpoints",
            live.streams.clone(),
        );
        r.register(
            "auditlog_subscribers_lagged",
            "Times a live subscriber fell behind (the broadcast overflowed, or its reader stopped taking events) and read from the file instead",
            live.lagged.clone(),
        );
        let integrity = IntegrityMetrics {
            runs: Counter::default(),
            events_checked: Counter::default(),
            problems: Family::default(),
            last_clean: FloatGauge::default(),
        };
        // Every series exists from the start at 0, so the first problem is
        // an increase Prometheus sees (a series first seen at 1 is not).
        for kind in FINDING_KINDS {
            let _ = integrity
                .problems
                .get_or_create(&[("kind", kind_label(kind))]);
        }
        r.register(
            "auditlog_verifications",
            "Verifications run (VerifyIntegrity and scheduled)",
            integrity.runs.clone(),
        );
        r.register(
            "auditlog_verification_events_checked",
            "Events checked by verifications",
            integrity.events_checked.clone(),
        );
        r.register(
            "auditlog_verification_problems",
            "Problems verifications found, by kind",
            integrity.problems.clone(),
        );
        r.register(
            "auditlog_last_clean_verification_timestamp_seconds",
            "Unix time of the last verification of the whole log that found nothing (0: none \
             since start)",
            integrity.last_clean.clone(),
        );
        let limits = LimitMetrics {
            in_flight: Gauge::default(),
            shed: Counter::default(),
            rate_limited: Counter::default(),
            auth_refused: Family::default(),
        };
        for reason in ["UNAUTHENTICATED", "PERMISSION_DENIED"] {
            let _ = limits.auth_refused.get_or_create(&[("reason", reason)]);
        }
        r.register(
            "auditlog_calls_in_flight",
            "AuditService and AdminService calls being handled",
            limits.in_flight.clone(),
        );
        r.register(
            "auditlog_calls_shed",
            "Calls refused because max_in_flight were already being handled",
            limits.shed.clone(),
        );
        r.register(
            "auditlog_calls_rate_limited",
            "Calls refused by a token's rate limit",
            limits.rate_limited.clone(),
        );
        r.register(
            "auditlog_calls_refused_by_auth",
            "Calls refused by the token check, by reason (the gRPC code)",
            limits.auth_refused.clone(),
        );
        let recovery = RecoveryMetrics {
            seconds: FloatGauge::default(),
            quarantined_bytes: Gauge::default(),
        };
        r.register(
            "auditlog_recovery_duration_seconds",
            "How long recovering the log took at this start",
            recovery.seconds.clone(),
        );
        r.register(
            "auditlog_recovery_quarantined_bytes",
            "Bytes recovery cut from the end of the log into audit.log.quarantine at this start",
            recovery.quarantined_bytes.clone(),
        );
        let build: Family<Labels, Gauge> = Family::default();
        build
            .get_or_create(&[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", env!("BUILD_GIT_REVISION")),
            ])
            .set(1);
        r.register(
            "auditlog_build_info",
            "Always 1; the labels name the server's version and git revision",
            build,
        );
        Metrics {
            registry: r,
            rpc,
            store,
            live,
            integrity,
            limits,
            recovery,
        }
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl StoreMetrics {
    /// One group commit of `events` events and `bytes` bytes, durable and
    /// acknowledged.
    pub(crate) fn committed(&self, events: usize, bytes: u64) {
        self.events.inc_by(events as u64);
        self.commits.inc();
        self.group_size.observe(events as f64);
        self.bytes.inc_by(bytes);
    }

    /// One `fdatasync` that took `seconds`.
    pub(crate) fn synced(&self, seconds: f64) {
        self.fsync.observe(seconds);
    }
}

impl LiveMetrics {
    /// Counts a subscription as open until the guard is dropped.
    pub(crate) fn open(&self) -> OpenStream<'_> {
        self.streams.inc();
        OpenStream(&self.streams)
    }

    /// A subscriber fell behind.
    pub(crate) fn lagged(&self) {
        self.lagged.inc();
    }
}

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl IntegrityMetrics {
    /// One verification's report; `whole` when it covered the whole log,
    /// the only kind whose clean result vouches for the log.
    pub(crate) fn verified(&self, report: &Report, whole: bool) {
        self.runs.inc();
        self.events_checked.inc_by(report.events_checked);
        for finding in &report.findings {
            self.problems
                .get_or_create(&[("kind", kind_label(finding.kind))])
                .inc();
        }
        if whole && report.findings.is_empty() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.last_clean.set(now);
        }
    }
}

impl LimitMetrics {
    /// A call refused by the check named `by` (see `gate::Admit::NAME`)
    /// with `code`.
    fn refused(&self, by: &str, code: &'static str) {
        match by {
            "shed" => {
                self.shed.inc();
            }
            "rate_limit" => {
                self.rate_limited.inc();
            }
            "auth" => {
                self.auth_refused.get_or_create(&[("reason", code)]).inc();
            }
            _ => {}
        }
    }
}

impl RecoveryMetrics {
    /// What recovery took and cut at this start.
    pub(crate) fn recovered(&self, seconds: f64, quarantined_bytes: u64) {
        self.seconds.set(seconds);
        self.quarantined_bytes
            .set(i64::try_from(quarantined_bytes).unwrap_or(i64::MAX));
    }
}

/// Opens the store with `open`, recording how long recovery took and what
/// it moved into the quarantine file.
pub(crate) fn recovering<T>(
    metrics: &Metrics,
    dir: &std::path::Path,
    open: impl FnOnce() -> T,
) -> T {
    let quarantined =
        || std::fs::metadata(dir.join(crate::store::QUARANTINE_FILE)).map_or(0, |m| m.len());
    let before = quarantined();
    let started = std::time::Instant::now();
    let opened = open();
    metrics.recovery.recovered(
        started.elapsed().as_secs_f64(),
        quarantined().saturating_sub(before),
    );
    opened
}

/// Every kind of finding, each a series of `auditlog_verification_problems`.
const FINDING_KINDS: [FindingKind; 17] = [
    FindingKind::Malformed,
    FindingKind::BadSignature,
    FindingKind::ChainBreak,
    FindingKind::SeqGap,
    FindingKind::SeqOutOfOrder,
    FindingKind::Truncated,
    FindingKind::UnknownKey,
    FindingKind::CheckpointMismatch,
    FindingKind::SegmentMissing,
    FindingKind::SegmentModified,
    FindingKind::SegmentUnreadable,
    FindingKind::SegmentUnlisted,
    FindingKind::ManifestModified,
    FindingKind::WrongKey,
    FindingKind::HeadModified,
    FindingKind::TreeMismatch,
    FindingKind::RetiredKey,
];

/// A finding kind as a label value.
fn kind_label(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::Malformed => "malformed",
        FindingKind::BadSignature => "bad_signature",
        FindingKind::ChainBreak => "chain_break",
        FindingKind::SeqGap => "seq_gap",
        FindingKind::SeqOutOfOrder => "seq_out_of_order",
        FindingKind::Truncated => "truncated",
        FindingKind::UnknownKey => "unknown_key",
        FindingKind::CheckpointMismatch => "checkpoint_mismatch",
        FindingKind::SegmentMissing => "segment_missing",
        FindingKind::SegmentModified => "segment_modified",
        FindingKind::SegmentUnreadable => "segment_unreadable",
        FindingKind::SegmentUnlisted => "segment_unlisted",
        FindingKind::ManifestModified => "manifest_modified",
        FindingKind::WrongKey => "wrong_key",
        FindingKind::HeadModified => "head_modified",
        FindingKind::TreeMismatch => "tree_mismatch",
        FindingKind::RetiredKey => "retired_key",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exposed_with_total_and_build_info() {
        let m = Metrics::new();
        m.store.committed(3, 120);
        m.rpc.answered(0, 0, 0.01);
        let text = scrape::encode(&m, None);
        assert!(
            text.contains("auditlog_events_appended_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("auditlog_written_bytes_total 120\n"),
            "{text}"
        );
        assert!(
            text.contains("auditlog_rpc_calls_total{method=\"Log\",code=\"OK\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("auditlog_build_info{version=\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
