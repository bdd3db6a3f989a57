//! Performance tracking: a window of recent durations per operation, exact
//! percentiles over it, and degradation alerts.
//!
//! Two sources feed it. Callers report durations (TrackPerformance, or any
//! logged event of type `performance` with `details.operation` and
//! `details.duration_ms`); those are events in the log, so the windows are
//! rebuilt from the log at start. The server also times its own RPCs through
//! [`TimingLayer`]; those are not written to the log (that would double every
//! write) and start empty after a restart.
//!
//! Percentiles are exact, by nearest rank over a sorted copy of the window:
//! pN is the smallest sample with at least N% of the samples at or below it.
//!
//! Degradation: every `recent / 5` samples, an operation whose window holds at
//! least `min_samples` is checked; when the p95 of its last `recent` samples
//! exceeds `factor` times the p95 of the samples before them in the window,
//! and by at least `min_increase_ms`, an alert is raised (once per
//! `cooldown_secs` per operation).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::alerts::{Alert, AlertKind, Alerts};
use crate::clock::now_micros;
use crate::gate::{Admit, Gate};
use crate::store::{Filter, NewEvent, Order, Receipt, Record, Store};

/// The event type performance measurements are logged as.
pub(crate) const EVENT_TYPE: &str = "performance";

/// The `[performance]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceConfig {
    /// How many recent durations each operation keeps. Default 1000.
    pub window: usize,
    /// Time the server's own RPCs. Default true.
    pub track_server: bool,
    /// Degradation alerts (`[performance.degradation]`).
    pub degradation: DegradationConfig,
}

impl Default for PerformanceConfig {
    fn default() -> PerformanceConfig {
        PerformanceConfig {
            window: 1000,
            track_server: true,
            degradation: DegradationConfig::default(),
        }
    }
}

/// The `[performance.degradation]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DegradationConfig {
    /// Raise degradation alerts. Default true.
    pub enabled: bool,
    /// Alert when the recent p95 exceeds the window's p95 by this factor.
    /// Default 2.0.
    pub factor: f64,
    /// How many of the latest samples are "recent". Default 50.
    pub recent: usize,
    /// How many samples the window needs before it is judged. Default 200.
    pub min_samples: usize,
    /// And only when the recent p95 is also at least this many milliseconds
    /// above the baseline's, so sub-millisecond jitter (a fast RPC going
    /// from 0.7 to 3 ms) does not page anyone. Default 10.
    pub min_increase_ms: f64,
    /// Quiet time per operation after an alert, in seconds. Default 900.
    pub cooldown_secs: u64,
}

impl Default for DegradationConfig {
    fn default() -> DegradationConfig {
        DegradationConfig {
            enabled: true,
            factor: 2.0,
            recent: 50,
            min_samples: 200,
            min_increase_ms: 10.0,
            cooldown_secs: 900,
        }
    }
}

impl PerformanceConfig {
    /// Checks what types alone cannot; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.window == 0 || self.window > 1_000_000 {
            return Err((
                "performance.window",
                format!("is {}; it must be from 1 to 1,000,000", self.window),
            ));
        }
        let d = &self.degradation;
        if !(d.factor > 1.0 && d.factor.is_finite()) {
            return Err((
                "performance.degradation.factor",
                format!("is {}; it must be a number above 1", d.factor),
            ));
        }
        if !(d.min_increase_ms >= 0.0 && d.min_increase_ms.is_finite()) {
            return Err((
                "performance.degradation.min_increase_ms",
                format!(
                    "is {}; it must be 0 or a positive number of milliseconds",
                    d.min_increase_ms
                ),
            ));
        }
        if d.recent == 0 || d.recent >= self.window {
            return Err((
                "performance.degradation.recent",
                format!(
                    "is {}; it must be at least 1 and below performance.window ({})",
                    d.recent, self.window
                ),
            ));
        }
        if d.min_samples < d.recent || d.min_samples > self.window {
            return Err((
                "performance.degradation.min_samples",
                format!(
                    "is {}; it must be from degradation.recent ({}) to performance.window ({})",
                    d.min_samples, d.recent, self.window
                ),
            ));
        }
        Ok(())
    }
}

/// Where a measurement comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Reported by a caller.
    Tracked = 0,
    /// The server timing its own RPC.
    Server = 1,
}

impl Source {
    const ALL: [Source; 2] = [Source::Tracked, Source::Server];
}

/// Figures over a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// One operation's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationStats {
    pub operation: String,
    pub source: Source,
    pub summary: Summary,
}

/// The windows, shared by the handlers and the timing layer.
pub struct Performance {
    config: PerformanceConfig,
    /// Per source (indexed by `Source as usize`), per operation.
    windows: Mutex<[HashMap<String, Window>; 2]>,
    /// Set once alerting runs (after recovery).
    alerts: OnceLock<Alerts>,
}

#[derive(Debug, Default)]
struct Window {
    samples: VecDeque<f64>,
    /// Samples added since start, for spacing the degradation checks.
    added: u64,
    last_alert: Option<Instant>,
}

impl Performance {
    pub fn new(config: PerformanceConfig) -> Arc<Performance> {
        Arc::new(Performance {
            config,
            windows: Mutex::new([HashMap::new(), HashMap::new()]),
            alerts: OnceLock::new(),
        })
    }

    /// The window size.
    pub fn window(&self) -> usize {
        self.config.window
    }

    /// Sends degradation alerts through `alerts` from now on.
    pub fn set_alerts(&self, alerts: Alerts) {
        let _ = self.alerts.set(alerts);
    }

    /// Adds one duration.
    pub fn record(&self, source: Source, operation: &str, duration_ms: f64) {
        if let (Some(alert), Some(alerts)) =
            (self.push(source, operation, duration_ms), self.alerts.get())
        {
            alerts.raise(alert);
        }
    }

    /// Adds one measurement; returns the degradation alert it triggers, if
    /// any (at most one per cooldown).
    fn push(&self, source: Source, operation: &str, duration_ms: f64) -> Option<Alert> {
        if !duration_ms.is_finite() || duration_ms < 0.0 {
            return None;
        }
        // Under the lock only the push and, now and then, a copy of the
        // window; the degradation check runs on the copy after the lock is
        // released, so callers on other threads never wait for it.
        let check = {
            let Ok(mut windows) = self.windows.lock() else {
                return None;
            };
            let by_op = &mut windows[source as usize];
            let w = match by_op.get_mut(operation) {
                Some(w) => w,
                None => by_op.entry(operation.to_owned()).or_default(),
            };
            if w.samples.len() == self.config.window {
                w.samples.pop_front();
            }
            w.samples.push_back(duration_ms);
            w.added += 1;
            self.due_for_check(w)
                .then(|| w.samples.iter().copied().collect::<Vec<f64>>())
        };
        let alert = self.degraded(check?, operation, source)?;
        // Cooldown: claim the alert under the lock, so two threads that found
        // the same degradation raise it once.
        let claimed = self.windows.lock().ok().is_some_and(|mut windows| {
            match windows[source as usize].get_mut(operation) {
                Some(w) if self.cooled_down(w) => {
                    w.last_alert = Some(Instant::now());
                    true
                }
                _ => false,
            }
        });
        claimed.then_some(alert)
    }

    /// Adds the measurement a `performance` event carries, if it carries one.
    pub fn record_event(&self, record: &Record) {
        if let Some((op, ms)) = measurement(record) {
            self.record(Source::Tracked, op, ms);
        }
    }

    /// Refills the windows from the newest `performance` events in the log:
    /// at most `window` x 100 events are read, so start-up stays bounded.
    pub fn rebuild(&self, store: &Store) -> Result<u64, crate::store::StoreError> {
        let filter = Filter {
            event_types: vec![EVENT_TYPE.to_owned()],
            ..Filter::default()
        };
        let budget = self.config.window.saturating_mul(100);
        let mut newest_first: Vec<(String, f64)> = Vec::new();
        let page = |records: Vec<Record>| {
            let found = records.iter().filter_map(measurement);
            newest_first.extend(found.map(|(op, ms)| (op.to_owned(), ms)));
            if newest_first.len() < budget {
                std::ops::ControlFlow::Continue(())
            } else {
                std::ops::ControlFlow::Break(())
            }
        };
        if budget > 0 {
            store.scan(&filter, Order::NewestFirst, None, u64::MAX, page)?;
        }
        let read = newest_first.len() as u64;
        if let Ok(mut windows) = self.windows.lock() {
            for (op, ms) in newest_first.into_iter().rev() {
                let w = windows[Source::Tracked as usize].entry(op).or_default();
                if w.samples.len() == self.config.window {
                    w.samples.pop_front();
                }
                w.samples.push_back(ms);
            }
        }
        Ok(read)
    }

    /// Figures per operation (all, or the one named), sorted by operation.
    pub fn stats(&self, operation: Option<&str>) -> Vec<OperationStats> {
        let snapshot: Vec<((Source, String), Vec<f64>)> = match self.windows.lock() {
            Ok(windows) => Source::ALL
                .into_iter()
                .flat_map(|source| {
                    windows[source as usize]
                        .iter()
                        .filter(|(op, _)| operation.is_none_or(|o| o == op.as_str()))
                        .map(move |(op, w)| {
                            ((source, op.clone()), w.samples.iter().copied().collect())
                        })
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut out: Vec<OperationStats> = snapshot
            .into_iter()
            .filter_map(|((source, operation), mut samples)| {
                summarize(&mut samples).map(|summary| OperationStats {
                    operation,
                    source,
                    summary,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.operation, a.source).cmp(&(&b.operation, b.source)));
        out
    }

    /// Whether this sample is one at which degradation is checked: every
    /// fifth of `recent` samples, once the window is big enough, outside the
    /// cooldown.
    fn due_for_check(&self, w: &Window) -> bool {
        let d = &self.config.degradation;
        let every = (d.recent / 5).max(1) as u64;
        d.enabled
            && w.samples.len() >= d.min_samples
            && w.added.is_multiple_of(every)
            && self.cooled_down(w)
    }

    /// Whether the window's last alert, if any, is past the cooldown.
    fn cooled_down(&self, w: &Window) -> bool {
        let cooldown = Duration::from_secs(self.config.degradation.cooldown_secs);
        w.last_alert.is_none_or(|t| t.elapsed() >= cooldown)
    }

    /// The alert, if the recent samples' p95 is past the baseline's by the
    /// configured factor and margin. `all` is the window, oldest first.
    fn degraded(&self, mut all: Vec<f64>, operation: &str, source: Source) -> Option<Alert> {
        let d = &self.config.degradation;
        if all.len() <= d.recent {
            return None;
        }
        // The baseline is the window before the recent samples, so a burst
        // of slow calls does not raise the figure it is compared with.
        let mut recent = all.split_off(all.len() - d.recent);
        let long = p95(&mut all)?;
        let now = p95(&mut recent)?;
        if now <= long * d.factor || now - long < d.min_increase_ms {
            return None;
        }
        let what = match source {
            Source::Tracked => "operation",
            Source::Server => "server RPC",
        };
        Some(Alert {
            kind: AlertKind::Performance,
            rule: operation.to_owned(),
            count: d.recent as u64,
            window_secs: 0,
            workflow: None,
            messages: vec![format!(
                "{what} {operation}: p95 of the last {} calls is {now:.1} ms, {:.1}x the p95 of \
                 the {} calls before them ({long:.1} ms); threshold {}x",
                d.recent,
                now / long.max(f64::MIN_POSITIVE),
                all.len(),
                d.factor
            )],
            at: now_micros(),
        })
    }
}

/// The operation and duration a `performance` event carries.
pub(crate) fn measurement(record: &Record) -> Option<(&str, f64)> {
    if record.event_type != EVENT_TYPE {
        return None;
    }
    let op = record.details.get("operation")?.as_str()?;
    let ms = record.details.get("duration_ms")?.as_f64()?;
    (ms.is_finite() && ms >= 0.0 && !op.is_empty()).then_some((op, ms))
}

/// Figures per tracked operation from the `performance` events of a time
/// range (every one of them, not a window), sorted by operation.
pub(crate) fn stats_from_log(
    store: &Store,
    operation: Option<&str>,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<OperationStats>, crate::store::StoreError> {
    let filter = Filter {
        event_types: vec![EVENT_TYPE.to_owned()],
        since,
        until,
        ..Filter::default()
    };
    let mut samples: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let page = |records: Vec<Record>| {
        for (op, ms) in records.iter().filter_map(measurement) {
            if operation.is_none_or(|o| o == op) {
                samples.entry(op.to_owned()).or_default().push(ms);
            }
        }
        std::ops::ControlFlow::Continue(())
    };
    store.scan(&filter, Order::OldestFirst, None, u64::MAX, page)?;
    Ok(samples
        .into_iter()
        .filter_map(|(operation, mut v)| {
            summarize(&mut v).map(|summary| OperationStats {
                operation,
                source: Source::Tracked,
                summary,
            })
        })
        .collect())
}

/// Where the nearest-rank `p`th percentile of `n` sorted samples is: the
/// ceil(p/100 * n)-th smallest, as a 0-based index. `n` must not be 0.
fn nearest_rank(p: f64, n: usize) -> usize {
    let k = ((p / 100.0) * n as f64).ceil() as usize;
    k.clamp(1, n) - 1
}

/// The p95 of `samples` (reordered), as [`summarize`] gives it, by
/// selection rather than a full sort.
fn p95(samples: &mut [f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let k = nearest_rank(95.0, samples.len());
    Some(*samples.select_nth_unstable_by(k, f64::total_cmp).1)
}

/// Exact figures over `samples` (sorted in place); `None` when empty.
pub(crate) fn summarize(samples: &mut [f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let rank = |p: f64| samples[nearest_rank(p, n)];
    Some(Summary {
        count: n as u64,
        min: samples[0],
        max: samples[n - 1],
        avg: samples.iter().sum::<f64>() / n as f64,
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
    })
}

/// The longest duration TrackPerformance accepts: a day.
const MAX_DURATION_MS: f64 = 86_400_000.0;

/// An operation name: 1 to 128 of letters, digits and `_ . : / -`.
pub(crate) fn check_operation(op: &str) -> Result<(), String> {
    if op.is_empty() {
        return Err("is required, e.g. crm.create_record".into());
    }
    if op.len() > 128 {
        return Err(format!("is {} characters; at most 128", op.len()));
    }
    if let Some(c) = op
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-')))
    {
        return Err(format!(
            "{op:?} contains {c:?}; use letters, digits and _ . : / -"
        ));
    }
    Ok(())
}

/// A duration TrackPerformance accepts: 0 to a day, in milliseconds.
pub(crate) fn check_duration(ms: f64) -> Result<(), String> {
    if ms.is_finite() && (0.0..=MAX_DURATION_MS).contains(&ms) {
        Ok(())
    } else {
        Err(format!(
            "is {ms}; it must be a number of milliseconds from 0 to 86400000 (a day)"
        ))
    }
}

/// What the `performance` events of a group about to be appended measure,
/// one entry per event; recorded only once the group is written, and not
/// for an event that was a duplicate of one already counted.
pub(crate) struct Measurements(Vec<Option<(String, f64)>>);

impl Measurements {
    pub(crate) fn of(events: &[NewEvent]) -> Measurements {
        if !events.iter().any(|e| e.event_type == EVENT_TYPE) {
            return Measurements(Vec::new());
        }
        Measurements(events.iter().map(Self::measurement_of).collect())
    }

    /// Records what the written events measure.
    pub(crate) fn written(self, performance: &Performance, receipts: &[Receipt]) {
        for (m, r) in self.0.into_iter().zip(receipts) {
            if let (Some((op, ms)), false) = (m, r.duplicate) {
                performance.record(Source::Tracked, &op, ms);
            }
        }
    }

    fn measurement_of(event: &NewEvent) -> Option<(String, f64)> {
        if event.event_type != EVENT_TYPE {
            return None;
        }
        let op = event.details.get("operation")?.as_str()?;
        let ms = event.details.get("duration_ms")?.as_f64()?;
        (ms.is_finite() && ms >= 0.0 && check_operation(op).is_ok()).then(|| (op.to_owned(), ms))
    }
}

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
fn rpc_name(path: &str) -> Option<&'static str> {
    const RPCS: &[&str] = &[
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
    let method = path
        .strip_prefix("/auditlog.v1.AuditService/")
        .or_else(|| path.strip_prefix("/auditlog.v1.AdminService/"))?;
    RPCS.iter().copied().find(|r| *r == method)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: sort, then index by nearest rank, written out plainly.
    fn reference(samples: &[f64], p: f64) -> f64 {
        let mut sorted = samples.to_vec();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut k = 1;
        while (k as f64) < p / 100.0 * sorted.len() as f64 {
            k += 1;
        }
        sorted[k - 1]
    }

    #[test]
    fn percentiles_match_a_sorted_reference_on_random_data() {
        for n in [1usize, 2, 3, 19, 20, 21, 99, 100, 101, 1000, 1234] {
            let samples: Vec<f64> = (0..n)
                .map(|_| (rand::random::<f64>() * 1000.0).round() / 10.0)
                .collect();
            let s = summarize(&mut samples.clone()).unwrap();
            assert_eq!(s.count, n as u64);
            assert_eq!(s.p50, reference(&samples, 50.0), "p50 of {n}");
            assert_eq!(s.p95, reference(&samples, 95.0), "p95 of {n}");
            assert_eq!(
                p95(&mut samples.clone()),
                Some(s.p95),
                "selected p95 of {n}"
            );
            assert_eq!(s.p99, reference(&samples, 99.0), "p99 of {n}");
            let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
            let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!((s.min, s.max), (min, max));
            let avg = samples.iter().sum::<f64>() / n as f64;
            assert!((s.avg - avg).abs() < 1e-9);
        }
        assert_eq!(summarize(&mut []), None);
    }

    #[test]
    fn known_values() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&mut v).unwrap();
        assert_eq!((s.p50, s.p95, s.p99, s.avg), (50.0, 95.0, 99.0, 50.5));
    }

    #[test]
    fn the_window_keeps_the_latest_samples() {
        let p = Performance::new(PerformanceConfig {
            window: 10,
            degradation: DegradationConfig {
                recent: 2,
                min_samples: 5,
                ..DegradationConfig::default()
            },
            ..PerformanceConfig::default()
        });
        for i in 1..=25 {
            p.record(Source::Tracked, "op", f64::from(i));
        }
        p.record(Source::Server, "op", 1.0);
        let stats = p.stats(Some("op"));
        assert_eq!(stats.len(), 2);
        assert_eq!(stats[0].source, Source::Tracked);
        assert_eq!(stats[0].summary.count, 10);
        assert_eq!(stats[0].summary.min, 16.0);
        assert!(p.stats(Some("other")).is_empty());
    }

    #[test]
    fn degradation_fires_once_per_cooldown() {
        let p = Performance::new(PerformanceConfig {
            window: 100,
            ..PerformanceConfig {
                degradation: DegradationConfig {
                    factor: 2.0,
                    recent: 10,
                    min_samples: 50,
                    min_increase_ms: 10.0,
                    cooldown_secs: 3600,
                    enabled: true,
                },
                ..PerformanceConfig::default()
            }
        });
        let mut fired = Vec::new();
        for i in 0..100u32 {
            fired.extend(p.push(Source::Tracked, "crm", 10.0 + f64::from(i % 3)));
        }
        assert!(fired.is_empty(), "steady durations must not alert");
        for _ in 0..20 {
            fired.extend(p.push(Source::Tracked, "crm", 100.0));
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].kind, AlertKind::Performance);
        assert!(fired[0].messages[0].contains("crm"), "{:?}", fired[0]);
    }

    #[test]
    fn only_auditlog_rpcs_are_timed() {
        assert_eq!(rpc_name("/auditlog.v1.AuditService/Log"), Some("Log"));
        assert_eq!(rpc_name("/auditlog.v1.AdminService/Rotate"), Some("Rotate"));
        assert_eq!(rpc_name("/grpc.health.v1.Health/Check"), None);
        assert_eq!(rpc_name("/auditlog.v1.AuditService/Nope"), None);
    }
}
