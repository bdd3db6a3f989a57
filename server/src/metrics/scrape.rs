//! The exposition: the registry's families, then the figures read from the
//! running server at each scrape (the head seq, the segment files, webhook
//! and alert status), so the write path never updates them.

use std::path::Path;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;
use crate::Running;

/// A label whose value comes from the configuration (a webhook endpoint's
/// or an alert rule's name): bounded by it.
type Named = [(&'static str, String); 1];

/// The whole exposition, OpenMetrics text, ending in `# EOF`. Blocking:
/// reads the data directory.
pub(super) fn encode(metrics: &Metrics, running: Option<&Running>) -> String {
    let mut now = Registry::default();
    if let Some(running) = running {
        register_running(&mut now, running);
    }
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    let _ = encode_registry(&mut out, &metrics.registry);
    let _ = encode_registry(&mut out, &now);
    let _ = encode_eof(&mut out);
    out
}

/// `openmetrics` (OpenMetrics text, as [`encode`] writes it) in the
/// Prometheus text format 0.0.4, for scrapers and tools that do not ask for
/// OpenMetrics (`promtool check metrics` among them): a counter family is
/// named with its `_total`, as its samples are, and the `# UNIT` and
/// `# EOF` lines go. Every other line is the same in both formats here (no
/// exemplars, no info or state-set types).
pub(super) fn to_text_004(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match described {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn gauge(value: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    g
}

fn register_running(r: &mut Registry, running: &Running) {
    let store = &running.store;
    let head = store.head();
    r.register(
        "auditlog_head_seq",
        "The highest committed seq",
        gauge(head),
    );
    r.register(
        "auditlog_store_writable",
        "1 while the store accepts writes; 0 once it refuses them (a failed fsync, the active \
         file gone, a full disk)",
        gauge(u64::from(store.write_refusal().is_none())),
    );
    let files = SegmentFiles::of(store.dir());
    r.register(
        "auditlog_segments",
        "Segment files in the data directory: the active one, sealed and compressed ones",
        gauge(files.count),
    );
    r.register(
        "auditlog_segments_bytes",
        "Bytes of the segment files (with the compressed segments' indexes)",
        gauge(files.bytes),
    );
    r.register(
        "auditlog_sealer_backlog_segments",
        "Sealed segments waiting to be compressed",
        gauge(files.backlog),
    );

    if let Some(node) = &running.cluster {
        register_cluster(r, node.status());
    }

    let delivered: Family<Named, Counter> = Family::default();
    let failures: Family<Named, Counter> = Family::default();
    let lag: Family<Named, Gauge> = Family::default();
    let skipped: Family<Named, Counter> = Family::default();
    let paused: Family<Named, Gauge> = Family::default();
    for endpoint in running.webhooks.status() {
        let label = [("endpoint", endpoint.name)];
        paused.get_or_create(&label).set(i64::from(endpoint.paused));
        delivered.get_or_create(&label).inc_by(endpoint.delivered);
        failures.get_or_create(&label).inc_by(endpoint.failures);
        skipped.get_or_create(&label).inc_by(endpoint.skipped);
        lag.get_or_create(&label)
            .set(i64::try_from(head.saturating_sub(endpoint.delivered_seq)).unwrap_or(i64::MAX));
    }
    r.register(
        "auditlog_webhook_deliveries",
        "Events delivered, by webhook endpoint",
        delivered,
    );
    r.register(
        "auditlog_webhook_failures",
        "Failed delivery attempts (errors and non-2xx answers), by webhook endpoint",
        failures,
    );
    r.register(
        "auditlog_webhook_lag_events",
        "The head seq minus the last seq delivered, by webhook endpoint",
        lag,
    );
    r.register(
        "auditlog_webhook_skipped",
        "Events retention purged before they could be delivered, by webhook endpoint",
        skipped,
    );
    r.register(
        "auditlog_webhook_paused",
        "1 while delivery to the endpoint is paused because it answered 410 Gone (until restart)",
        paused,
    );

    let (channels, rules, dropped, _missed) = running.alerts.status();
    let sent: Family<Named, Counter> = Family::default();
    let failed: Family<Named, Counter> = Family::default();
    for c in channels {
        let label = [("channel", c.channel)];
        sent.get_or_create(&label).inc_by(c.sent);
        failed.get_or_create(&label).inc_by(c.failed);
    }
    let fired: Family<Named, Counter> = Family::default();
    for rule in rules {
        fired
            .get_or_create(&[("rule", rule.name)])
            .inc_by(rule.fired);
    }
    r.register("auditlog_alerts_sent", "Alerts sent, by channel", sent);
    r.register(
        "auditlog_alerts_failed",
        "Alerts that failed to send, by channel",
        failed,
    );
    r.register(
        "auditlog_alert_rule_fired",
        "Times each configured alert rule fired",
        fired,
    );
    let dropped_alerts: Counter = Counter::default();
    dropped_alerts.inc_by(dropped);
    r.register(
        "auditlog_alerts_dropped",
        "Alerts dropped because the send queue was full",
        dropped_alerts,
    );
}

/// A cluster node's part, only in cluster mode.
fn register_cluster(r: &mut Registry, node: crate::cluster::Status) {
    r.register(
        "auditlog_cluster_leader",
        "1 while the leader lease says this node leads (it signs and publishes every write)",
        gauge(u64::from(node.leads)),
    );
    r.register(
        "auditlog_cluster_ready",
        "1 while this node takes writes: NATS reached, the stream fit and holding what the \
         replica took in, the replica following within max_replica_lag (the health of \
         auditlog.v1.AuditService)",
        gauge(u64::from(node.vouched)),
    );
    r.register(
        "auditlog_cluster_applied_stream_seq",
        "The stream sequence of the last message this node's replica took in",
        gauge(node.applied),
    );
    r.register(
        "auditlog_cluster_replica_lag_events",
        "Events this node's replica was behind the stream's last message, looked at every second",
        gauge(node.behind),
    );
    let skipped = Counter::<u64>::default();
    skipped.inc_by(node.skipped);
    r.register(
        "auditlog_cluster_foreign_messages_skipped",
        "Stream messages skipped since start because no auditlog leader wrote them (someone \
         else published to the stream's subject)",
        skipped,
    );
}

/// What the segment files in the data directory add up to.
#[derive(Debug, Default, PartialEq)]
struct SegmentFiles {
    count: u64,
    bytes: u64,
    backlog: u64,
}

impl SegmentFiles {
    /// Counts `audit.log`, `audit.<stamp>.log` (sealed, waiting to be
    /// compressed) and `audit.<stamp>.log.gz` (with its `.idx`, counted in
    /// bytes only). An unreadable directory counts as empty.
    fn of(dir: &Path) -> SegmentFiles {
        let mut files = SegmentFiles::default();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return files;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with("audit.") || name.ends_with(".tmp") {
                continue;
            }
            let len = || entry.metadata().map_or(0, |m| m.len());
            if name == crate::store::LOG_FILE || name.ends_with(".log.gz") {
                files.count += 1;
                files.bytes += len();
            } else if name.ends_with(".log") {
                files.count += 1;
                files.backlog += 1;
                files.bytes += len();
            } else if name.ends_with(".idx") {
                files.bytes += len();
            }
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_004_names_counter_families_with_total() {
        let om = "# HELP a_events Events.\n# TYPE a_events counter\na_events_total 3\n\
                  # HELP a_seconds Time.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\n\
                  a_seconds_sum 0.5\na_seconds_count 1\n# EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP a_events_total Events.\n# TYPE a_events_total counter\na_events_total 3\n\
             # HELP a_seconds Time.\n# TYPE a_seconds histogram\n\
             a_seconds_sum 0.5\na_seconds_count 1\n"
        );
    }

    #[test]
    fn segment_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        for (name, len) in [
            ("audit.log", 10),
            ("audit.20260101T000000Z.log", 20),
            ("audit.20250101T000000Z.log.gz", 30),
            ("audit.20250101T000000Z.idx", 5),
            ("audit.log.quarantine", 100),
            ("manifest.json", 100),
        ] {
            std::fs::write(dir.path().join(name), vec![b'x'; len]).unwrap();
        }
        assert_eq!(
            SegmentFiles::of(dir.path()),
            SegmentFiles {
                count: 3,
                bytes: 65,
                backlog: 1,
            }
        );
    }
}
