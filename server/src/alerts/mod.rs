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
//! Who sends (cluster mode, `crate::duty`): every node counts every rule
//! over its own replica, the same events with the same timestamps, so each
//! node's windows and cooldowns agree; only the node on duty (the leader)
//! sends a threshold alert, the others count it as fired and drop it. A
//! node that takes over therefore keeps the cooldown of the alert the last
//! leader sent. Integrity, store and performance alerts are about the node
//! itself (its replica failed verification, its disk failed, the calls it
//! timed slowed down) and every node sends its own.
//!
//! Nothing here is on the write path: rules read the writer's broadcast of
//! committed events (never blocking it), and alerts go through a bounded
//! queue per channel to that channel's own sender task, which retries with
//! backoff (every attempt under a deadline, `channels.rs`). A full queue
//! drops the alert for that channel and counts it; an unreachable or
//! hanging channel never slows a `Log` call, nor another channel.

mod alert;
mod channels;
mod config;
mod rules;
mod smtp;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub(crate) use alert::{Alert, AlertKind};
pub(crate) use channels::ChannelStatus;
pub use channels::{EmailConfig, HookConfig, Security};
pub(crate) use config::new_place_of;
pub use config::{AlertsConfig, RuleConfig};
pub(crate) use rules::RuleStatus;

use crate::clock::now_micros;
use crate::duty::Duty;
use crate::store::{Record, Store, StoreError, Verifications};
use channels::Channel;
use rules::RuleState;

/// The running alerting, shared by the service handlers.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    /// Each channel with the queue of its own sender task.
    channels: Vec<(Arc<Channel>, mpsc::Sender<Arc<Alert>>)>,
    http: reqwest::Client,
    rules: Mutex<Vec<RuleState>>,
    /// The cooldown of integrity and store alerts, and when each last fired.
    integrity_cooldown: Duration,
    last_integrity: Mutex<Option<Instant>>,
    last_store: Mutex<Option<Instant>>,
    dropped: AtomicU64,
    missed_events: AtomicU64,
    /// Threshold alerts are sent only while on duty.
    duty: Duty,
}

/// How many alerts may wait for one channel's sender.
const QUEUE: usize = 64;
/// How long the rules' watcher lets published groups gather before it
/// counts them (`Alerts::watch`).
const WATCH_PAUSE: Duration = Duration::from_millis(10);
/// How many messages an alert carries.
pub(super) const MESSAGES: usize = 5;

impl Alerts {
    /// Builds the channels and starts the rule watcher, the sender and the
    /// scheduled verification. `config` was validated at start.
    pub(crate) fn start(
        config: AlertsConfig,
        store: Arc<Store>,
        verifications: Verifications,
        duty: Duty,
        cancel: CancellationToken,
    ) -> Result<Alerts, String> {
        let mut channels = Vec::new();
        if let Some(email) = &config.email {
            if let Some(warning) = email.clear_text_password_warning() {
                tracing::warn!("{warning}");
            }
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
        let http = channels::http_client()?;
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
        let mut queued = Vec::new();
        let mut receivers = Vec::new();
        for channel in channels {
            let (queue, rx) = mpsc::channel(QUEUE);
            queued.push((Arc::new(channel), queue));
            receivers.push(rx);
        }
        let alerts = Alerts {
            inner: Arc::new(Inner {
                channels: queued,
                http,
                rules: Mutex::new(rules),
                integrity_cooldown: Duration::from_secs(config.integrity_cooldown_secs),
                last_integrity: Mutex::new(None),
                last_store: Mutex::new(None),
                dropped: AtomicU64::new(0),
                missed_events: AtomicU64::new(0),
                duty,
            }),
        };
        for ((channel, _), rx) in alerts.inner.channels.iter().zip(receivers) {
            tokio::spawn(send_loop(
                Arc::clone(channel),
                alerts.inner.http.clone(),
                rx,
                cancel.clone(),
            ));
        }
        tokio::spawn(alerts.clone().watch(store.subscribe(), cancel.clone()));
        if config.verify_interval_secs > 0 {
            let every = Duration::from_secs(config.verify_interval_secs);
            tokio::spawn(
                alerts
                    .clone()
                    .verify_loop(store, verifications, every, cancel),
            );
        }
        Ok(alerts)
    }

    /// Queues an alert for sending; never waits.
    pub fn raise(&self, alert: Alert) {
        self.queue(alert, None);
    }

    /// Queues an alert for the channels named in `only` (`email`, `slack`,
    /// `discord`, `webhook`) that are configured; never waits.
    pub(crate) fn raise_to(&self, alert: Alert, only: &[String]) {
        if !self
            .inner
            .channels
            .iter()
            .any(|(c, _)| only.iter().any(|o| o == c.name))
        {
            return;
        }
        self.queue(alert, Some(only.to_vec()));
    }

    fn queue(&self, alert: Alert, only: Option<Vec<String>>) {
        if self.inner.channels.is_empty() {
            tracing::warn!(rule = %alert.rule, "alert raised, but no alert channel is configured: {}", alert.subject());
            return;
        }
        let alert = Arc::new(alert);
        for (channel, queue) in &self.inner.channels {
            if only
                .as_ref()
                .is_some_and(|o| !o.iter().any(|n| n == channel.name))
            {
                continue;
            }
            if queue.try_send(Arc::clone(&alert)).is_err() {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(channel = channel.name, rule = %alert.rule, "alert queue full; an alert was dropped");
            }
        }
    }

    /// Reports a failed append: a store alert when the store itself failed
    /// (full disk, I/O error, a poisoned writer), at most once per cooldown.
    pub fn append_failed(&self, error: &StoreError) {
        // A caller's own mistake is answered, not alerted on: only the disk
        // or the writer failing deserves someone's attention.
        let the_store_failed = matches!(
            error,
            StoreError::DiskFull(_)
                | StoreError::Write(_)
                | StoreError::Poisoned(_)
                | StoreError::ActiveFileGone(_)
                | StoreError::SealBroken(_)
        );
        if the_store_failed && self.cooled_down(&self.inner.last_store) {
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

    /// Sends a test alert to every channel now, once each, all at once, and
    /// reports what happened per channel: each within its channel's
    /// deadline, so a hanging channel cannot hold back the others' results.
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
        let sends = self.inner.channels.iter().map(|(c, _)| {
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

    /// Mails a page (an HTML report, with `text` as its plain alternative)
    /// through the email channel, once: the number of recipients, or why
    /// not. `None` when no email channel is configured.
    pub async fn mail_page(
        &self,
        subject: &str,
        html: String,
        text: String,
    ) -> Option<Result<usize, String>> {
        let (email, _) = self
            .inner
            .channels
            .iter()
            .find(|(c, _)| c.name == "email")?;
        let sent = email.mail_page(subject, html, text).await?;
        if let Err(e) = &sent {
            tracing::warn!(channel = "email", error = %e, "mailing a report failed");
        }
        Some(sent)
    }

    /// Channels, rules, and how many alerts were dropped (full queue) or
    /// events missed (the watcher fell behind the writer).
    pub fn status(&self) -> (Vec<ChannelStatus>, Vec<RuleStatus>, u64, u64) {
        let channels = self
            .inner
            .channels
            .iter()
            .map(|(c, _)| c.status.lock().map(|s| s.clone()).unwrap_or_default())
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

    async fn watch(
        self,
        mut rx: broadcast::Receiver<crate::store::Committed>,
        cancel: CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                _ = cancel.cancelled() => return,
                g = rx.recv() => g,
            };
            if !self.take(first) {
                return;
            }
            // Then everything published since, and a pause: the groups of
            // the next `WATCH_PAUSE` wait in the broadcast and are counted
            // together, so a busy writer wakes this task a hundred times a
            // second, not once per group commit (each such wake is a futex
            // call and a sleeping runtime worker woken, on the commit's
            // path; issue 20). No pause while groups come faster than a
            // quarter of the broadcast per pause (a replica catching up):
            // the pause must never make this task fall behind.
            let mut taken = 0;
            loop {
                match rx.try_recv() {
                    Ok(group) => _ = self.take(Ok(group)),
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        _ = self.take(Err(broadcast::error::RecvError::Lagged(n)));
                    }
                    Err(broadcast::error::TryRecvError::Closed) => return,
                }
                taken += 1;
            }
            if taken > crate::store::HUB_CAPACITY / 4 {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(WATCH_PAUSE) => {}
            }
        }
    }

    /// Counts one group, or the groups missed; false once the broadcast
    /// is closed.
    fn take(&self, group: Result<crate::store::Committed, broadcast::error::RecvError>) -> bool {
        match group {
            Ok(records) => {
                let fired = self.evaluate(&records);
                if !self.inner.duty.is_on() {
                    for alert in &fired {
                        tracing::debug!(rule = %alert.rule, "threshold reached; the leader sends the alert");
                    }
                    return true;
                }
                for alert in fired {
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
            Err(broadcast::error::RecvError::Closed) => return false,
        }
        true
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

    /// Verifies the whole log every `every`, in turn with VerifyIntegrity
    /// calls (one at a time, at the lowest CPU priority), and alerts on
    /// problems.
    async fn verify_loop(
        self,
        store: Arc<Store>,
        verifications: Verifications,
        every: Duration,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        // The first tick is immediate; verification at start is recovery's
        // business, so wait one period.
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let report = verifications.verify_scheduled(Arc::clone(&store)).await;
            match report {
                Ok(report) if !report.findings.is_empty() => {
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
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "scheduled verification failed"),
            }
        }
    }
}

/// One channel's sender: its alerts in turn, each retried until sent or
/// given up, whatever the other channels are doing.
async fn send_loop(
    channel: Arc<Channel>,
    http: reqwest::Client,
    mut rx: mpsc::Receiver<Arc<Alert>>,
    cancel: CancellationToken,
) {
    loop {
        let alert = tokio::select! {
            _ = cancel.cancelled() => return,
            a = rx.recv() => match a { Some(a) => a, None => return },
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = channel.send(&http, &alert, true) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keyring;
    use crate::store::{NewEvent, StoreConfig};

    /// The watcher counts groups together after a pause; every group
    /// published meanwhile still counts, whether groups come one at a time
    /// or many at once.
    #[tokio::test]
    async fn every_group_published_during_the_watchers_pause_is_counted() {
        // As the server does at start, for the alert channels' HTTP client.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::for_test(dir.path(), false);
        let store = Arc::new(Store::open(config, Keyring::new("k1", vec![3; 32])).unwrap());
        let rule = RuleConfig {
            threshold: 1_000_000,
            ..RuleConfig::default_errors()
        };
        let config = AlertsConfig {
            rules: Some(vec![rule]),
            verify_interval_secs: 0,
            ..AlertsConfig::default()
        };
        let cancel = CancellationToken::new();
        let verifications = Verifications::new(1);
        let alerts = Alerts::start(
            config,
            Arc::clone(&store),
            verifications,
            Duty::always(),
            cancel.clone(),
        )
        .unwrap();
        let error = || NewEvent {
            event_type: "error".into(),
            ..NewEvent::for_test(None, serde_json::json!({}))
        };
        // One group at a time, then 600 groups at once (more than the
        // watcher takes before it stops pausing).
        for _ in 0..20 {
            store.append(vec![error()]).await.unwrap();
        }
        let calls = (0..600).map(|_| store.append(vec![error()]));
        for receipt in futures::future::join_all(calls).await {
            receipt.unwrap();
        }
        store
            .append(vec![NewEvent::for_test(None, serde_json::json!({}))])
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, rules, _, missed) = alerts.status();
            if rules[0].in_window == 620 {
                assert_eq!(missed, 0);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "counted {} of 620 errors",
                rules[0].in_window
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
        store.shutdown();
    }
}
