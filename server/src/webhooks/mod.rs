//! Outgoing webhooks: every committed event, POSTed to each configured
//! endpoint in seq order, signed the way the Standard Webhooks specification
//! says, so receivers verify it with the `standardwebhooks` libraries.
//!
//! Each endpoint has its own task, which reads the log through an ordinary
//! subscription ([`crate::hub`]): history from the endpoint's position, then
//! live events. So delivery never blocks ingest and its queue never grows
//! without bound: while an endpoint is down its task waits, its subscription
//! falls behind, and when the endpoint is back it catches up from the log
//! itself. The position (the last seq delivered) is saved in
//! `<data_dir>/webhooks/<name>.pos` after each delivery, replaced whole and
//! durably (`crate::durable`), so delivery resumes where it stopped after a
//! restart, even one of the machine. Delivery is at least once: an event
//! whose delivery was cut short by a crash is sent again, with the same
//! `webhook-id` (the event's id) and `seq`, which receivers can deduplicate.
//!
//! In cluster mode only the node on duty (the leader, `crate::duty`)
//! delivers: each endpoint's task starts delivering when the node takes the
//! lease and stops when it loses it. The position is then also kept in the
//! cluster (`cursor.rs`): written at most every second while delivering and
//! once at the step down; a node taking over resumes after the cluster's
//! position, or after its own file's when the cluster has none yet. Across a
//! failover a receiver gets every event at least once; what the old leader
//! delivered after its last saved position comes again.
//!
//! Signing: `webhook-signature: v1,<base64 HMAC-SHA256(secret,
//! "<webhook-id>.<webhook-timestamp>.<body>")>` with the secret given as
//! `whsec_<base64>`. An endpoint configured without a secret (a URL alone,
//! as the old logger's `add_webhook(url)` took) signs with one the server
//! generates on its first start: 32 random bytes, written as
//! `whsec_<base64>` to `<data_dir>/webhooks/<name>.secret` with mode 0600
//! and read back on every later start, so the receiver's copy stays valid.
//! GetWebhookSecret (admin) shows it; a configured secret is never shown.
//!
//! An endpoint named in `[checkpoints] webhooks` also gets each signed
//! checkpoint pushed out, from a second task with its own position
//! (`checkpoints.rs`).
//!
//! An endpoint that answers `410 Gone` says, as the Standard Webhooks
//! specification has it, that it wants no more: delivery to it (events and
//! checkpoints) pauses until the server restarts, and its status says so.
//! Nothing is skipped: its position stays where it was, and after a restart
//! delivery resumes from there, so a receiver that comes back (or a URL
//! answered 410 by mistake) still gets every event. Every other failure,
//! 4xx included, is retried: a misconfigured receiver fixed later misses
//! nothing.
//!
//! The URL may carry a credential (user info, a token in the query string):
//! statuses, log lines and `Debug` show it through `crate::redaction`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Checkpoints;
use crate::clock::{format_timestamp, now_micros};
use crate::durable;
use crate::duty::{Duty, OnDuty};
use crate::hub::{self, Subscription};
use crate::keys::Secret;
use crate::redaction::{self, PathIs};
use crate::store::{Filter, Record, Store};

mod checkpoints;
mod config;
mod cursor;
mod signing;

pub(crate) use config::WebhookConfigError;
pub use config::{Start, WebhookConfig};
pub(crate) use signing::{NoSecret, SigningKey, sign, signing_keys};

/// What an endpoint's delivery looks like now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointStatus {
    pub name: String,
    /// The URL as it may be shown (`crate::redaction::url`).
    pub url: String,
    /// The last seq delivered (0: none yet).
    pub delivered_seq: u64,
    pub delivered: u64,
    /// Failed attempts (errors and non-2xx answers), all told.
    pub failures: u64,
    /// Failed attempts since the last success.
    pub consecutive_failures: u64,
    pub last_error: String,
    /// When the last error happened (µs since the epoch; 0: never).
    pub last_error_at: i64,
    /// True when it signs with a secret the server generated.
    pub secret_generated: bool,
    /// Events retention purged before they could be delivered (skipped,
    /// each run logged once and noted in `last_error`).
    pub skipped: u64,
    /// The endpoint answered `410 Gone`: delivery to it is paused until
    /// the server restarts (nothing is skipped).
    pub paused: bool,
}

/// The running webhooks, for status.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    endpoints: Vec<Arc<Mutex<EndpointStatus>>>,
    /// Each endpoint's name and, when the server generated its secret, that
    /// secret.
    secrets: Vec<(String, Option<Secret>)>,
}

/// The endpoints' directory in the data directory: their positions and
/// generated secrets.
pub(crate) const DIR: &str = "webhooks";

/// The endpoints' saved positions in the data directory (what a backup
/// copies), as paths in it: `webhooks/<name>.pos`.
pub(crate) fn position_files(data_dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(DIR)) else {
        return Vec::new();
    };
    let mut paths: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".pos") && !name.starts_with('.'))
        .map(|name| format!("{DIR}/{name}"))
        .collect();
    paths.sort();
    paths
}

impl Webhooks {
    /// Starts one delivery task per endpoint, signing with `keys` (from
    /// [`signing_keys`], one per endpoint, in order), delivering while
    /// `duty` is on, and one more for each endpoint named in
    /// `checkpoints.1`, which POSTs the checkpoints `checkpoints.0`
    /// announces (only the node on duty pushes checkpoints, so only it
    /// announces them).
    pub(crate) fn start(
        configs: Vec<WebhookConfig>,
        keys: Vec<SigningKey>,
        store: Arc<Store>,
        checkpoints: (&Arc<Checkpoints>, &[String]),
        duty: Duty,
        cancel: CancellationToken,
    ) -> Webhooks {
        let dir = store.dir().join(DIR);
        let mut webhooks = Webhooks::default();
        for (config, SigningKey { key, generated }) in configs.into_iter().zip(keys) {
            let status = Arc::new(Mutex::new(EndpointStatus {
                name: config.name.clone(),
                url: redaction::url(&config.url, PathIs::Shown),
                secret_generated: generated.is_some(),
                ..EndpointStatus::default()
            }));
            webhooks.endpoints.push(Arc::clone(&status));
            webhooks.secrets.push((config.name.clone(), generated));
            let endpoint = Arc::new(Endpoint {
                position: dir.join(format!("{}.pos", config.name)),
                config,
                key,
                status,
            });
            if checkpoints.1.contains(&endpoint.config.name) {
                tokio::spawn(checkpoints::run(
                    Arc::clone(&endpoint),
                    Arc::clone(checkpoints.0),
                    dir.join(format!("{}.checkpoint", endpoint.config.name)),
                    cancel.clone(),
                ));
            }
            tokio::spawn(endpoint.run(Arc::clone(&store), duty.clone(), cancel.clone()));
        }
        webhooks
    }

    /// The secret the server generated for endpoint `name`.
    pub(crate) fn generated_secret(&self, name: &str) -> Result<&Secret, NoSecret> {
        match self.secrets.iter().find(|(n, _)| n == name) {
            Some((_, Some(secret))) => Ok(secret),
            Some((_, None)) => Err(NoSecret::Configured),
            None => Err(NoSecret::Unknown(
                self.secrets.iter().map(|(n, _)| n.clone()).collect(),
            )),
        }
    }

    /// Every endpoint's status.
    pub fn status(&self) -> Vec<EndpointStatus> {
        self.endpoints
            .iter()
            .map(|s| s.lock().map(|s| s.clone()).unwrap_or_default())
            .collect()
    }
}

struct Endpoint {
    config: WebhookConfig,
    key: Vec<u8>,
    position: PathBuf,
    status: Arc<Mutex<EndpointStatus>>,
}

/// What a delivery carries, for its log lines and counters (only events
/// count as `delivered`).
#[derive(Clone, Copy)]
enum Message {
    Event { seq: u64 },
    Checkpoint { tree_size: u64 },
}

/// Why an endpoint's delivery stopped.
enum Stopped {
    /// Shutdown, or this node went off duty.
    Cancelled,
    /// The log cannot be read, or the position neither: not until restart.
    Broken,
    /// The endpoint answered `410 Gone`: not until restart.
    Gone,
}

/// Why a message was not delivered.
enum Undelivered<T> {
    /// What the caller's `stop` gave.
    Stopped(T),
    /// The endpoint answered `410 Gone`, now or to the other task (events,
    /// checkpoints) delivering to it.
    Gone,
}

/// A failed POST.
enum Refused {
    /// Retried after a backoff.
    Retry(String),
    /// `410 Gone`: the endpoint wants no more.
    Gone(String),
}

impl Endpoint {
    fn http_client(&self) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(self.config.timeout_secs))
            // A redirect is never followed: a 301/302 would turn the POST
            // into a body-less GET counted as delivered, and a 307/308
            // would send the signed event wherever the answer names. It is
            // a failed delivery instead (`post`), retried like a 5xx.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("auditlog/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// Delivers during each of this node's turns on duty, until shutdown.
    async fn run(self: Arc<Self>, store: Arc<Store>, mut duty: Duty, cancel: CancellationToken) {
        let name = self.config.name.clone();
        let client = match self.http_client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(webhook = %name, error = %e, "cannot build the HTTP client");
                return;
            }
        };
        loop {
            let on = tokio::select! {
                _ = cancel.cancelled() => return,
                on = duty.on() => match on {
                    Some(on) => on,
                    None => return,
                },
            };
            let turn = cancel.child_token();
            let stopped = tokio::select! {
                s = self.deliver_turn(&client, &store, &on, &turn) => s,
                _ = duty.off() => Stopped::Cancelled,
            };
            turn.cancel();
            if let Some(cursors) = &on.cursors {
                // The step down: the cluster learns how far this node got.
                let seq = self.status.lock().map_or(0, |s| s.delivered_seq);
                if let Err(e) = cursor::advance(cursors, &name, seq).await {
                    tracing::warn!(webhook = %name, error = %e, "could not save the delivery position in the cluster on stepping down");
                }
                tracing::info!(webhook = %name, delivered_seq = seq, "webhook delivery stopped: this node no longer leads");
            }
            if matches!(stopped, Stopped::Broken | Stopped::Gone) {
                return;
            }
        }
    }

    /// One turn on duty: from the position to the live tail, until `turn`
    /// is cancelled or delivery cannot go on.
    async fn deliver_turn(
        &self,
        client: &reqwest::Client,
        store: &Arc<Store>,
        on: &OnDuty,
        turn: &CancellationToken,
    ) -> Stopped {
        let name = &self.config.name;
        let delivered = match self.start_position(store, on, turn).await {
            Some(Ok(seq)) => seq,
            Some(Err(e)) => {
                tracing::error!(webhook = %name, error = %e, "cannot read or write the delivery position; not delivering");
                return Stopped::Broken;
            }
            None => return Stopped::Cancelled,
        };
        self.update(|s| s.delivered_seq = delivered);
        // Unfiltered: events this endpoint skips must still advance its
        // position, or it would be reported behind for ever.
        let filter = Filter::default();
        let sub = Subscription {
            filter,
            from_seq: delivered + 1,
            follow: true,
        };
        let mut rx = hub::spawn::<Record>(Arc::clone(store), sub, turn.clone());
        tracing::info!(webhook = %name, from_seq = delivered + 1, "webhook delivery started");
        let mut shared = delivered;
        // The seq the subscription owes next: it is unfiltered, so a record
        // past it means the events between were purged before delivery.
        let mut next = delivered + 1;
        let mut save = tokio::time::interval(cursor::SAVE_EVERY);
        save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let item = tokio::select! {
                item = rx.recv() => item,
                _ = save.tick(), if on.cursors.is_some() => {
                    let seq = self.status.lock().map_or(shared, |s| s.delivered_seq);
                    if let (Some(cursors), true) = (&on.cursors, seq > shared) {
                        match cursor::advance(cursors, name, seq).await {
                            Ok(()) => shared = seq,
                            Err(e) => tracing::warn!(webhook = %name, error = %e, "could not save the delivery position in the cluster"),
                        }
                    }
                    continue;
                }
            };
            let record = match item {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    tracing::error!(webhook = %name, error = %e, "reading the log for delivery failed; delivery stops until restart");
                    return Stopped::Broken;
                }
                None => return Stopped::Cancelled,
            };
            if record.seq > next {
                self.skipped_purged(next, record.seq - 1);
            }
            next = next.max(record.seq + 1);
            let wanted = (self.config.event_types.is_empty()
                || self
                    .config
                    .event_types
                    .iter()
                    .any(|t| *t == *record.event_type))
                && (self.config.workflows.is_empty()
                    || record
                        .workflow
                        .as_ref()
                        .is_some_and(|w| self.config.workflows.iter().any(|x| *x == **w)));
            if wanted && let Err(stopped) = self.deliver(client, &record, turn).await {
                return stopped;
            }
            // A skipped event is saved only when no more are queued, so a
            // run of skipped events costs one write, not one each.
            if (wanted || rx.is_empty())
                && let Err(e) = self.save_position_async(record.seq).await
            {
                tracing::warn!(webhook = %name, error = %e, "could not save the delivery position");
            }
            self.update(|s| s.delivered_seq = record.seq);
        }
    }

    /// Where this turn starts: the cluster's position if it holds one, else
    /// this node's own (written to the cluster at once, so the next leader
    /// starts there too). `None` when `turn` ended first.
    async fn start_position(
        &self,
        store: &Store,
        on: &OnDuty,
        turn: &CancellationToken,
    ) -> Option<std::io::Result<u64>> {
        let Some(cursors) = &on.cursors else {
            return Some(self.load_position(store));
        };
        let name = &self.config.name;
        loop {
            let held = async {
                let seq = match cursor::load(cursors, name).await? {
                    Some(seq) => seq,
                    None => {
                        let own = self.load_position(store).map_err(|e| e.to_string())?;
                        cursor::advance(cursors, name, own).await?;
                        own
                    }
                };
                self.save_position_async(seq)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(seq)
            };
            match held.await {
                Ok(seq) => return Some(Ok(seq)),
                // Without the cluster's position this node could skip or
                // repeat what another delivered: wait for NATS instead.
                Err(e) => {
                    tracing::warn!(webhook = %name, error = %e, "cannot read the delivery position from the cluster; retrying")
                }
            }
            tokio::select! {
                _ = turn.cancelled() => return None,
                _ = tokio::time::sleep(cursor::SAVE_EVERY) => {}
            }
        }
    }

    /// Delivers one event, retrying until it is accepted; `Err` when
    /// shutdown interrupted it or the endpoint is gone.
    async fn deliver(
        &self,
        client: &reqwest::Client,
        record: &Record,
        cancel: &CancellationToken,
    ) -> Result<(), Stopped> {
        let body = payload(record).to_string();
        let event = Message::Event { seq: record.seq };
        self.deliver_with_retry(client, event, &record.id, &body, cancel.cancelled())
            .await
            .map_err(|undelivered| match undelivered {
                Undelivered::Stopped(()) => Stopped::Cancelled,
                Undelivered::Gone => Stopped::Gone,
            })
    }

    /// POSTs `body` as message `id`, retrying with exponential backoff
    /// until it is accepted, and keeps the endpoint's status. `Err` with
    /// what `stop` gave when it completed first (it is polled only between
    /// attempts, so a POST under way is never cut short), or when the
    /// endpoint answered `410 Gone`.
    async fn deliver_with_retry<T>(
        &self,
        client: &reqwest::Client,
        message: Message,
        id: &str,
        body: &str,
        stop: impl Future<Output = T>,
    ) -> Result<(), Undelivered<T>> {
        let mut stop = std::pin::pin!(stop);
        let mut backoff = Duration::from_millis(500);
        let max = Duration::from_secs(self.config.max_backoff_secs.max(1));
        loop {
            if self.status.lock().is_ok_and(|s| s.paused) {
                return Err(Undelivered::Gone);
            }
            match self.post(client, id, body).await {
                Ok(()) => {
                    self.update(|s| {
                        if let Message::Event { .. } = message {
                            s.delivered += 1;
                        }
                        s.consecutive_failures = 0;
                    });
                    return Ok(());
                }
                Err(Refused::Gone(error)) => {
                    tracing::error!(
                        webhook = %self.config.name,
                        %error,
                        "the webhook endpoint answered 410 Gone: delivery to it is paused until \
                         the server restarts, and resumes from its position then (nothing is \
                         skipped); remove the endpoint from [[webhooks]] if it is gone for good"
                    );
                    self.update(|s| {
                        s.failures += 1;
                        s.consecutive_failures += 1;
                        s.paused = true;
                        s.last_error = format!(
                            "{error}: delivery is paused until the server restarts (nothing is \
                             skipped)"
                        );
                        s.last_error_at = now_micros();
                    });
                    return Err(Undelivered::Gone);
                }
                Err(Refused::Retry(error)) => {
                    let name = &self.config.name;
                    match message {
                        Message::Event { seq } => {
                            tracing::warn!(webhook = %name, seq, %error, retry_in = ?backoff, "webhook delivery failed");
                        }
                        Message::Checkpoint { tree_size } => {
                            tracing::warn!(webhook = %name, tree_size, %error, retry_in = ?backoff, "checkpoint delivery failed");
                        }
                    }
                    self.update(|s| {
                        s.failures += 1;
                        s.consecutive_failures += 1;
                        s.last_error = error;
                        s.last_error_at = now_micros();
                    });
                }
            }
            // Up to a quarter more, so many endpoints do not retry in step.
            let jitter = backoff.mul_f64(rand::random::<f64>() * 0.25);
            tokio::select! {
                stopped = &mut stop => return Err(Undelivered::Stopped(stopped)),
                () = tokio::time::sleep(backoff + jitter) => {}
            }
            backoff = (backoff * 2).min(max);
        }
    }

    /// One signed POST of `body` as message `id`.
    async fn post(&self, client: &reqwest::Client, id: &str, body: &str) -> Result<(), Refused> {
        let timestamp = (now_micros() / 1_000_000).to_string();
        let signature = sign(&self.key, id, &timestamp, body);
        let mut request = client
            .post(&self.config.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", signature)
            .body(body.to_owned());
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token.expose());
        }
        // reqwest's error names the URL, which may hold a credential.
        let response = request.send().await.map_err(|e| {
            Refused::Retry(redaction::send_error(e, &self.config.url, PathIs::Shown))
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            Err(Refused::Retry(redirect_error(
                &self.config.url,
                status,
                &response,
            )))
        } else if status == reqwest::StatusCode::GONE {
            Err(Refused::Gone(format!(
                "the endpoint answered HTTP {status}"
            )))
        } else {
            Err(Refused::Retry(format!(
                "the endpoint answered HTTP {status}"
            )))
        }
    }

    /// Events `first..=last` were purged by retention before this endpoint
    /// got them: said once, counted, and left in the status' `last_error`.
    fn skipped_purged(&self, first: u64, last: u64) {
        let count = last - first + 1;
        let name = &self.config.name;
        tracing::warn!(
            webhook = %name,
            first_seq = first,
            last_seq = last,
            count,
            "events were purged by retention before they could be delivered; skipping them"
        );
        self.update(|s| {
            s.skipped += count;
            s.last_error = format!(
                "events {first}..={last} ({count}) were purged by retention before delivery \
                 and skipped"
            );
            s.last_error_at = now_micros();
        });
    }

    fn update(&self, f: impl FnOnce(&mut EndpointStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// The last seq delivered; for a new endpoint, where it starts (saved at
    /// once so a restart does not move it).
    fn load_position(&self, store: &Store) -> std::io::Result<u64> {
        match std::fs::read_to_string(&self.position) {
            Ok(text) => text.trim().parse().map_err(|_| {
                std::io::Error::other(format!(
                    "{} does not hold a seq number",
                    self.position.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let start = match self.config.start {
                    Start::Now => store.head(),
                    Start::Beginning => 0,
                };
                self.save_position(start)?;
                Ok(start)
            }
            Err(e) => Err(e),
        }
    }

    fn save_position(&self, seq: u64) -> std::io::Result<()> {
        save_position(&self.position, seq)
    }

    /// [`Self::save_position`] off the runtime's workers: it waits for two
    /// fsyncs, which must not hold up the gRPC handlers sharing them.
    async fn save_position_async(&self, seq: u64) -> std::io::Result<()> {
        let path = self.position.clone();
        tokio::task::spawn_blocking(move || save_position(&path, seq))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// Why a 3xx answer is a failed delivery, naming where it pointed (resolved
/// against the configured URL `url`, and redacted like it).
fn redirect_error(url: &str, status: reqwest::StatusCode, response: &reqwest::Response) -> String {
    let to = match response.headers().get(reqwest::header::LOCATION) {
        None => "no Location".to_owned(),
        Some(location) => match location
            .to_str()
            .ok()
            .and_then(|l| reqwest::Url::parse(url).ok()?.join(l).ok())
        {
            Some(target) => redaction::url(target.as_str(), PathIs::Shown),
            None => "an unreadable Location".to_owned(),
        },
    };
    format!(
        "the endpoint answered HTTP {status}, a redirect to {to}: redirects are not followed, \
         so the configured url must be the final one"
    )
}

/// Replaces the position file at `path` with `seq`, durably: a crash leaves
/// the old position or the new one, never an empty file.
fn save_position(path: &std::path::Path, seq: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    durable::replace(path, format!("{seq}\n").as_bytes())
}

/// The JSON body: the Standard Webhooks envelope around the event.
pub(crate) fn payload(record: &Record) -> Value {
    let mut body = json!({
        "type": "auditlog.event",
        "timestamp": format_timestamp(record.timestamp),
        "data": {
            "seq": record.seq,
            "id": record.id,
            "timestamp": format_timestamp(record.timestamp),
            "event_type": record.event_type,
            "actor": record.actor,
            "lead_id": record.lead_id,
            "workflow": record.workflow,
            "details": record.details,
            "key_id": record.key_id,
            "prev": record.prev,
            "signature": record.signature,
        }
    });
    // Only events written under a token have a caller.
    if let (Some(caller), Some(data)) = (&record.caller, body["data"].as_object_mut()) {
        data.insert("caller".to_owned(), Value::String(caller.to_string()));
    }
    body
}
