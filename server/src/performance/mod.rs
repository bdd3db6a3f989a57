//! Performance tracking: a window of recent durations per operation, exact
//! percentiles over it, and degradation alerts.
//!
//! Two sources feed it. Callers report durations (TrackPerformance, or any
//! logged event of type `performance` with `details.operation` and
//! `details.duration_ms`, or `details.duration` in seconds, see
//! `tracked.rs`); those are events in the log, so the windows are
//! rebuilt from the log at start. The server also times its own RPCs through
//! `TimingLayer` (`timing.rs`); those are not written to the log (that would double every
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

mod config;
mod percentiles;
mod timing;
mod tracked;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::alerts::{Alert, AlertKind, Alerts};
use crate::clock::now_micros;
use crate::store::{Filter, Order, Record, Store};

pub use config::{DegradationConfig, PerformanceConfig};
use percentiles::{p95, p95_satisfies, summarize};
pub(crate) use timing::{RPCS, TimingLayer, rpc_index, rpc_name};
use tracked::measurement;
pub(crate) use tracked::{Measurements, check_duration, check_operation, stats_from_log};

/// The event type performance measurements are logged as.
pub(crate) const EVENT_TYPE: &str = "performance";

/// The most operations each source keeps a window for. Operation names come
/// from callers: without a bound, a writer logging `performance` events
/// with a new name each held a new window each in memory, for ever.
const MAX_OPERATIONS: usize = 10_000;

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
    /// When an operation past [`MAX_OPERATIONS`] was last reported in the
    /// server's log (at most once a minute).
    untracked_said: Mutex<Option<Instant>>,
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
            untracked_said: Mutex::new(None),
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
            let Some(w) = window_of(by_op, operation) else {
                drop(windows);
                self.untracked(operation);
                return None;
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
            self.record(Source::Tracked, &op, ms);
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
                let Some(w) = window_of(&mut windows[Source::Tracked as usize], &op) else {
                    continue;
                };
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
        let split = all.len() - d.recent;
        let (baseline, recent) = all.split_at_mut(split);
        let now = p95(recent)?;
        // Degraded: the recent p95 is past the baseline's by the factor and
        // the margin. That is a bound from above on the baseline's p95, so
        // it is decided without selecting the baseline's p95 (which cost
        // most of every timed call: this runs every `recent / 5` samples
        // over the whole window); only an alert needs its value.
        let degraded = |long: f64| now > long * d.factor && now - long >= d.min_increase_ms;
        if !p95_satisfies(baseline, degraded) {
            return None;
        }
        let long = p95(baseline)?;
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
                baseline.len(),
                d.factor
            )],
            at: now_micros(),
        })
    }
}

/// The window of `operation`, made if there is room for one more.
fn window_of<'a>(
    by_op: &'a mut HashMap<String, Window>,
    operation: &str,
) -> Option<&'a mut Window> {
    if !by_op.contains_key(operation) {
        if by_op.len() >= MAX_OPERATIONS {
            return None;
        }
        by_op.insert(operation.to_owned(), Window::default());
    }
    by_op.get_mut(operation)
}

impl Performance {
    /// Says, at most once a minute, that measurements of a new operation
    /// are not kept.
    fn untracked(&self, operation: &str) {
        let Ok(mut said) = self.untracked_said.lock() else {
            return;
        };
        if said.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
            return;
        }
        *said = Some(Instant::now());
        tracing::warn!(
            operation = ?operation.chars().take(128).collect::<String>(),
            max = MAX_OPERATIONS,
            "performance: already tracking the most operations; measurements of new ones are \
             logged but not kept in the windows (GetPerformanceStats with a time range reads them \
             from the log)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_past_the_cap_are_not_kept() {
        let perf = Performance::new(PerformanceConfig::default());
        for i in 0..MAX_OPERATIONS + 5 {
            perf.record(Source::Tracked, &format!("op{i}"), 1.0);
        }
        perf.record(Source::Tracked, "op0", 2.0);
        let windows = perf.windows.lock().unwrap();
        assert_eq!(windows[Source::Tracked as usize].len(), MAX_OPERATIONS);
        assert_eq!(windows[Source::Tracked as usize]["op0"].samples.len(), 2);
        assert!(!windows[Source::Tracked as usize].contains_key("op10004"));
    }

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

    /// A bound from above holds of the p95 exactly when the pass over the
    /// samples says so, at every threshold around the samples' values.
    #[test]
    fn a_bound_on_the_p95_is_decided_without_selecting_it() {
        for n in [1usize, 2, 19, 20, 21, 100, 950] {
            let samples: Vec<f64> = (0..n)
                .map(|_| (rand::random::<f64>() * 100.0).round() / 10.0)
                .collect();
            let p = p95(&mut samples.clone()).unwrap();
            for t in (0..=110).map(|i| f64::from(i) / 10.0) {
                let below = |s: f64| s < t;
                assert_eq!(p95_satisfies(&samples, below), p < t, "{n} below {t}");
                let degraded = |s: f64| t > s * 2.0 && t - s >= 1.0;
                assert_eq!(
                    p95_satisfies(&samples, degraded),
                    degraded(p),
                    "{n} degraded at {t}"
                );
            }
        }
        assert!(!p95_satisfies(&[], |_| true));
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
}
