//! Alerts: rules over the live event stream, and integrity alerts, sent to
//! email, Slack, Discord or a JSON webhook.
//!
//! - A **threshold rule** fires when N events of its types (default: `error`)
//!   occur within a sliding window (default 10 in 5 minutes), optionally
//!   within one workflow, and then keeps quiet for its cooldown (default
//!   300 s): a storm sends one alert, not hundreds.
//! - **Integrity alerts**: a scheduled verification that finds a problem, and
//!   the store failing to write (full disk, I/O error), each with the same
//!   cooldown logic.
//!
//! Nothing here is on the write path: rules read the writer's broadcast of
//! committed events (never blocking it), and alerts go through a bounded
//! queue to a sender task that retries with backoff. A full queue drops the
//! alert and counts it; an unreachable channel never slows a `Log` call.

mod channels;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub use channels::{ChannelStatus, EmailConfig, HookConfig, Security};

use crate::clock::{format_timestamp, now_micros};
use crate::store::{Record, Store, StoreError};
use channels::Channel;

/// The `[alerts]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Threshold rules. Default: one rule named `errors` (10 `error` events
    /// in 300 s, cooldown 300 s). An empty list turns threshold alerts off.
    pub rules: Option<Vec<RuleConfig>>,
    /// Verify the whole log every this many seconds and alert on problems;
    /// 0 turns it off. Default 3600.
    pub verify_interval_secs: u64,
    /// Cooldown of integrity and store-failure alerts, in seconds. Default 300.
    pub integrity_cooldown_secs: u64,
    /// Email over SMTP. Default: off.
    pub email: Option<EmailConfig>,
    /// Slack incoming webhook. Default: off.
    pub slack: Option<HookConfig>,
    /// Discord webhook. Default: off.
    pub discord: Option<HookConfig>,
    /// A generic JSON webhook. Default: off.
    pub webhook: Option<HookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> AlertsConfig {
        AlertsConfig {
            rules: None,
            verify_interval_secs: 3600,
            integrity_cooldown_secs: 300,
            email: None,
            slack: None,
            discord: None,
            webhook: None,
        }
    }
}

/// One threshold rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Names the rule in alerts and status. Required.
    pub name: String,
    /// Which event types count. Default `["error"]`.
    #[serde(default = "default_types")]
    pub event_types: Vec<String>,
    /// How many events within the window fire the rule. Default 10.
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// The sliding window, in seconds. Default 300.
    #[serde(default = "default_secs")]
    pub window_secs: u64,
    /// Only events of this workflow count. Default: any.
    #[serde(default)]
    pub workflow: Option<String>,
    /// After firing, the rule stays quiet this many seconds. Default 300.
    #[serde(default = "default_secs")]
    pub cooldown_secs: u64,
}

fn default_types() -> Vec<String> {
    vec!["error".to_owned()]
}

fn default_threshold() -> u32 {
    10
}

fn default_secs() -> u64 {
    300
}

impl RuleConfig {
    fn default_errors() -> RuleConfig {
        RuleConfig {
            name: "errors".into(),
            event_types: default_types(),
            threshold: default_threshold(),
            window_secs: default_secs(),
            workflow: None,
            cooldown_secs: default_secs(),
        }
    }
}

impl AlertsConfig {
    /// Checks rules and channels; names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        for (i, r) in self.rules.iter().flatten().enumerate() {
            if r.name.is_empty() {
                return Err(format!("alerts.rules[{i}].name is required"));
            }
            if r.threshold == 0 || r.window_secs == 0 || r.event_types.is_empty() {
                return Err(format!(
                    "alerts.rules[{i}] ({}): threshold and window_secs must be at least 1 and \
                     event_types not empty",
                    r.name
                ));
            }
        }
        if let Some(email) = &self.email {
            email.build()?;
        }
        for (key, hook) in [
            ("slack", &self.slack),
            ("discord", &self.discord),
            ("webhook", &self.webhook),
        ] {
            if let Some(h) = hook {
                reqwest::Url::parse(h.url.expose())
                    .map_err(|e| format!("alerts.{key}.url: {e}"))?;
            }
        }
        Ok(())
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Threshold,
    Integrity,
    StoreFailure,
    /// An operation's recent p95 rose well above its longer-run p95.
    Performance,
    Test,
}

/// One alert, as every channel renders it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub kind: AlertKind,
    /// The rule's name (`integrity`, `store` and `test` for the built-in ones).
    pub rule: String,
    /// How many events (or problems) triggered it.
    pub count: u64,
    pub window_secs: u64,
    pub workflow: Option<String>,
    /// The last few messages, newest last.
    pub messages: Vec<String>,
    /// When it fired, in µs since the epoch.
    pub at: i64,
}

impl Alert {
    /// The email subject.
    pub fn subject(&self) -> String {
        let scope = self
            .workflow
            .as_deref()
            .map(|w| format!(" in workflow {w}"))
            .unwrap_or_default();
        match self.kind {
            AlertKind::Threshold => format!(
                "[auditlog] {}: {} events in {} s{scope}",
                self.rule, self.count, self.window_secs
            ),
            AlertKind::Integrity => format!(
                "[auditlog] integrity: verification found {} problem(s)",
                self.count
            ),
            AlertKind::StoreFailure => "[auditlog] store: writes are failing".to_owned(),
            AlertKind::Performance => format!("[auditlog] performance: {} is slower", self.rule),
            AlertKind::Test => "[auditlog] test alert".to_owned(),
        }
    }

    /// The plain-text body: a summary with no links.
    pub fn text(&self) -> String {
        let mut text = self.subject();
        text.push_str("\n\n");
        let what = match self.kind {
            AlertKind::Threshold => format!(
                "Rule {:?} saw {} matching events within {} seconds{}.",
                self.rule,
                self.count,
                self.window_secs,
                self.workflow
                    .as_deref()
                    .map(|w| format!(" in workflow {w:?}"))
                    .unwrap_or_default()
            ),
            AlertKind::Integrity => format!(
                "A scheduled verification of the audit log found {} problem(s). Run \
                 `auditlog integrity` for the full report.",
                self.count
            ),
            AlertKind::StoreFailure => {
                "The audit log could not write events; callers receive errors until it is \
                 fixed."
                    .to_owned()
            }
            AlertKind::Performance => format!(
                "The recent durations of {:?} have degraded. Run `auditlog performance \
                 --operation {}` for the figures.",
                self.rule, self.rule
            ),
            AlertKind::Test => {
                "This is a test alert sent by `auditlog alerts test`; this channel works."
                    .to_owned()
            }
        };
        text.push_str(&what);
        if !self.messages.is_empty() {
            text.push_str("\n\nLatest:\n");
            for m in &self.messages {
                text.push_str("- ");
                text.push_str(m);
                text.push('\n');
            }
        }
        text.push_str(&format!("\nTime: {}\n", format_timestamp(self.at)));
        text
    }

    /// The generic webhook's JSON.
    pub fn json(&self) -> Value {
        json!({
            "kind": self.kind,
            "rule": self.rule,
            "count": self.count,
            "window_secs": self.window_secs,
            "workflow": self.workflow,
            "messages": self.messages,
            "subject": self.subject(),
            "text": self.text(),
            "timestamp": format_timestamp(self.at),
        })
    }
}

/// A rule's state, for status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleStatus {
    pub name: String,
    /// Matching events in the window now.
    pub in_window: u64,
    /// How many times it fired.
    pub fired: u64,
    /// When it last fired (µs; 0: never).
    pub last_fired: i64,
}

/// The running alerting, shared by the service handlers.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    queue: mpsc::Sender<Alert>,
    channels: Vec<Channel>,
    http: reqwest::Client,
    rules: Mutex<Vec<RuleState>>,
    /// The cooldown of integrity and store alerts, and when each last fired.
    integrity_cooldown: Duration,
    last_integrity: Mutex<Option<Instant>>,
    last_store: Mutex<Option<Instant>>,
    dropped: AtomicU64,
    missed_events: AtomicU64,
}

struct RuleState {
    config: RuleConfig,
    window: VecDeque<(i64, String)>,
    last_fired: Option<Instant>,
    fired: u64,
    last_fired_at: i64,
}

/// How many alerts may wait for the sender.
const QUEUE: usize = 64;
/// How many messages an alert carries.
const MESSAGES: usize = 5;

impl Alerts {
    /// Builds the channels and starts the rule watcher, the sender and the
    /// scheduled verification. `config` was validated at start.
    pub fn start(
        config: AlertsConfig,
        store: Arc<Store>,
        cancel: CancellationToken,
    ) -> Result<Alerts, String> {
        let mut channels = Vec::new();
        if let Some(email) = &config.email {
            channels.push(email.build()?);
        }
        if let Some(h) = &config.slack {
            channels.push(Channel::slack(h));
        }
        if let Some(h) = &config.discord {
            channels.push(Channel::discord(h));
        }
        if let Some(h) = &config.webhook {
            channels.push(Channel::webhook(h));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let rules = config
            .rules
            .clone()
            .unwrap_or_else(|| vec![RuleConfig::default_errors()])
            .into_iter()
            .map(|config| RuleState {
                config,
                window: VecDeque::new(),
                last_fired: None,
                fired: 0,
                last_fired_at: 0,
            })
            .collect();
        let (queue, rx) = mpsc::channel(QUEUE);
        let alerts = Alerts {
            inner: Arc::new(Inner {
                queue,
                channels,
                http,
                rules: Mutex::new(rules),
                integrity_cooldown: Duration::from_secs(config.integrity_cooldown_secs),
                last_integrity: Mutex::new(None),
                last_store: Mutex::new(None),
                dropped: AtomicU64::new(0),
                missed_events: AtomicU64::new(0),
            }),
        };
        tokio::spawn(alerts.clone().send_loop(rx, cancel.clone()));
        tokio::spawn(alerts.clone().watch(store.subscribe(), cancel.clone()));
        if config.verify_interval_secs > 0 {
            let every = Duration::from_secs(config.verify_interval_secs);
            tokio::spawn(alerts.clone().verify_loop(store, every, cancel));
        }
        Ok(alerts)
    }

    /// Queues an alert for sending; never waits.
    pub fn raise(&self, alert: Alert) {
        if self.inner.channels.is_empty() {
            tracing::warn!(rule = %alert.rule, "alert raised, but no alert channel is configured: {}", alert.subject());
            return;
        }
        if self.inner.queue.try_send(alert).is_err() {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!("alert queue full; an alert was dropped");
        }
    }

    /// Reports a failed write (full disk, I/O error), at most once per
    /// cooldown.
    pub fn store_failed(&self, error: &StoreError) {
        if self.cooled_down(&self.inner.last_store) {
            self.raise(Alert {
                kind: AlertKind::StoreFailure,
                rule: "store".into(),
                count: 1,
                window_secs: 0,
                workflow: None,
                messages: vec![error.to_string()],
                at: now_micros(),
            });
        }
    }

    /// Sends a test alert to every channel now, once each, and reports what
    /// happened per channel.
    pub async fn test(&self) -> Vec<(String, Result<(), String>)> {
        let alert = Alert {
            kind: AlertKind::Test,
            rule: "test".into(),
            count: 0,
            window_secs: 0,
            workflow: None,
            messages: vec![],
            at: now_micros(),
        };
        let sends = self.inner.channels.iter().map(|c| {
            let alert = &alert;
            async move {
                (
                    c.name.to_owned(),
                    c.send(&self.inner.http, alert, false).await,
                )
            }
        });
        futures::future::join_all(sends).await
    }

    /// Channels, rules, and how many alerts were dropped (full queue) or
    /// events missed (the watcher fell behind the writer).
    pub fn status(&self) -> (Vec<ChannelStatus>, Vec<RuleStatus>, u64, u64) {
        let channels = self
            .inner
            .channels
            .iter()
            .map(|c| c.status.lock().map(|s| s.clone()).unwrap_or_default())
            .collect();
        let now = now_micros();
        let rules = self
            .inner
            .rules
            .lock()
            .map(|rules| {
                rules
                    .iter()
                    .map(|r| RuleStatus {
                        name: r.config.name.clone(),
                        in_window: r.in_window(now),
                        fired: r.fired,
                        last_fired: r.last_fired_at,
                    })
                    .collect()
            })
            .unwrap_or_default();
        (
            channels,
            rules,
            self.inner.dropped.load(Ordering::Relaxed),
            self.inner.missed_events.load(Ordering::Relaxed),
        )
    }

    fn cooled_down(&self, last: &Mutex<Option<Instant>>) -> bool {
        let Ok(mut last) = last.lock() else {
            return false;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.inner.integrity_cooldown) {
            return false;
        }
        *last = Some(now);
        true
    }

    async fn send_loop(self, mut rx: mpsc::Receiver<Alert>, cancel: CancellationToken) {
        loop {
            let alert = tokio::select! {
                _ = cancel.cancelled() => return,
                a = rx.recv() => match a { Some(a) => a, None => return },
            };
            let sends = self
                .inner
                .channels
                .iter()
                .map(|c| c.send(&self.inner.http, &alert, true));
            futures::future::join_all(sends).await;
        }
    }

    async fn watch(
        self,
        mut rx: broadcast::Receiver<crate::store::Committed>,
        cancel: CancellationToken,
    ) {
        loop {
            let group = tokio::select! {
                _ = cancel.cancelled() => return,
                g = rx.recv() => g,
            };
            match group {
                Ok(records) => {
                    for alert in self.evaluate(&records) {
                        self.raise(alert);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.inner.missed_events.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(
                        groups = n,
                        "alert rules fell behind the writer; some events were not counted"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Counts `records` against every rule; returns the alerts that fire.
    fn evaluate(&self, records: &[Record]) -> Vec<Alert> {
        let Ok(mut rules) = self.inner.rules.lock() else {
            return Vec::new();
        };
        let mut fired = Vec::new();
        for record in records {
            for rule in rules.iter_mut() {
                if let Some(alert) = rule.count(record) {
                    fired.push(alert);
                }
            }
        }
        fired
    }

    async fn verify_loop(self, store: Arc<Store>, every: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        // The first tick is immediate; verification at start is recovery's
        // business, so wait one period.
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let s = Arc::clone(&store);
            let report = tokio::task::spawn_blocking(move || s.verify(0, 0, &[])).await;
            match report {
                Ok(Ok(report)) if !report.findings.is_empty() => {
                    if self.cooled_down(&self.inner.last_integrity) {
                        self.raise(Alert {
                            kind: AlertKind::Integrity,
                            rule: "integrity".into(),
                            count: report.findings.len() as u64,
                            window_secs: every.as_secs(),
                            workflow: None,
                            messages: report
                                .findings
                                .iter()
                                .take(MESSAGES)
                                .map(|f| f.message.clone())
                                .collect(),
                            at: now_micros(),
                        });
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "scheduled verification failed"),
                Err(e) => tracing::error!(error = %e, "scheduled verification task failed"),
            }
        }
    }
}

impl RuleState {
    fn window_micros(&self) -> i64 {
        i64::try_from(self.config.window_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
    }

    /// Matching events still inside the window at `now` (the window itself
    /// is trimmed only when the next matching event arrives).
    fn in_window(&self, now: i64) -> u64 {
        let from = now.saturating_sub(self.window_micros());
        self.window.iter().filter(|(t, _)| *t >= from).count() as u64
    }

    /// Adds `record` to the window if it matches; returns an alert when the
    /// threshold is reached outside the cooldown.
    fn count(&mut self, record: &Record) -> Option<Alert> {
        let c = &self.config;
        let matches = c.event_types.contains(&record.event_type)
            && c.workflow
                .as_ref()
                .is_none_or(|w| record.workflow.as_ref() == Some(w));
        if !matches {
            return None;
        }
        let window_us = self.window_micros();
        self.window
            .push_back((record.timestamp, message_of(record)));
        while self
            .window
            .front()
            .is_some_and(|(t, _)| *t < record.timestamp.saturating_sub(window_us))
        {
            self.window.pop_front();
        }
        if self.window.len() < c.threshold as usize {
            return None;
        }
        let now = Instant::now();
        let cooldown = Duration::from_secs(c.cooldown_secs);
        if self
            .last_fired
            .is_some_and(|t| now.duration_since(t) < cooldown)
        {
            return None;
        }
        self.last_fired = Some(now);
        self.fired += 1;
        self.last_fired_at = now_micros();
        let skip = self.window.len().saturating_sub(MESSAGES);
        Some(Alert {
            kind: AlertKind::Threshold,
            rule: c.name.clone(),
            count: self.window.len() as u64,
            window_secs: c.window_secs,
            workflow: c.workflow.clone(),
            messages: self
                .window
                .iter()
                .skip(skip)
                .map(|(_, m)| m.clone())
                .collect(),
            at: self.last_fired_at,
        })
    }
}

/// What an event says went wrong: `error_type: error_message` when it has
/// them, else its type.
fn message_of(record: &Record) -> String {
    let field = |k: &str| record.details.get(k).and_then(Value::as_str);
    let text = match (
        field("error_type"),
        field("error_message").or(field("message")),
    ) {
        (Some(t), Some(m)) => format!("{t}: {m}"),
        (None, Some(m)) => m.to_owned(),
        (Some(t), None) => t.to_owned(),
        (None, None) => record.event_type.clone(),
    };
    let lead = record
        .lead_id
        .as_deref()
        .map(|l| format!(" (lead {l})"))
        .unwrap_or_default();
    format!("seq {}: {text}{lead}", record.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(seq: u64, ts_secs: i64, workflow: Option<&str>) -> Record {
        let mut details = serde_json::Map::new();
        details.insert("error_type".into(), "Timeout".into());
        details.insert("error_message".into(), format!("attempt {seq}").into());
        Record {
            seq,
            id: String::new(),
            timestamp: ts_secs * 1_000_000,
            event_type: "error".into(),
            actor: "a".into(),
            lead_id: None,
            workflow: workflow.map(Into::into),
            details,
            idempotency_key: None,
            batch: None,
            key_id: String::new(),
            prev: String::new(),
            signature: String::new(),
        }
    }

    fn rule(threshold: u32, window_secs: u64, workflow: Option<&str>) -> RuleState {
        RuleState {
            config: RuleConfig {
                name: "r".into(),
                threshold,
                window_secs,
                workflow: workflow.map(Into::into),
                ..RuleConfig::default_errors()
            },
            window: VecDeque::new(),
            last_fired: None,
            fired: 0,
            last_fired_at: 0,
        }
    }

    #[test]
    fn fires_at_the_threshold_within_the_window_once_per_cooldown() {
        let mut r = rule(3, 60, None);
        assert!(r.count(&error(1, 0, None)).is_none());
        assert!(r.count(&error(2, 10, None)).is_none());
        let alert = r.count(&error(3, 20, None)).expect("third error fires");
        assert_eq!(alert.count, 3);
        assert_eq!(
            alert.messages.last().map(String::as_str),
            Some("seq 3: Timeout: attempt 3")
        );
        // Inside the cooldown: quiet, however many more.
        for seq in 4..50 {
            assert!(r.count(&error(seq, 20 + seq as i64, None)).is_none());
        }
        assert_eq!(r.fired, 1);
    }

    #[test]
    fn old_events_leave_the_window() {
        let mut r = rule(3, 60, None);
        r.count(&error(1, 0, None));
        r.count(&error(2, 10, None));
        assert!(
            r.count(&error(3, 100, None)).is_none(),
            "the first two are out of the window"
        );
        assert_eq!(r.window.len(), 1);
    }

    #[test]
    fn a_workflow_rule_counts_only_its_workflow() {
        let mut r = rule(2, 60, Some("sales"));
        assert!(r.count(&error(1, 0, Some("other"))).is_none());
        assert!(r.count(&error(2, 1, None)).is_none());
        assert!(r.count(&error(3, 2, Some("sales"))).is_none());
        assert!(r.count(&error(4, 3, Some("sales"))).is_some());
    }

    #[test]
    fn alert_text_names_rule_count_workflow_and_messages_without_links() {
        let alert = Alert {
            kind: AlertKind::Threshold,
            rule: "errors".into(),
            count: 12,
            window_secs: 300,
            workflow: Some("sales".into()),
            messages: vec!["seq 7: Timeout: CRM did not answer".into()],
            at: 0,
        };
        assert_eq!(
            alert.subject(),
            "[auditlog] errors: 12 events in 300 s in workflow sales"
        );
        let text = alert.text();
        assert!(text.contains("Timeout: CRM did not answer"));
        assert!(!text.contains("http"));
    }
}
