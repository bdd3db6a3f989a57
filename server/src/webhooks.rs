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
//! Signing: `webhook-signature: v1,<base64 HMAC-SHA256(secret,
//! "<webhook-id>.<webhook-timestamp>.<body>")>` with the secret given as
//! `whsec_<base64>`. An endpoint configured without a secret (a URL alone,
//! as the old logger's `add_webhook(url)` took) signs with one the server
//! generates on its first start: 32 random bytes, written as
//! `whsec_<base64>` to `<data_dir>/webhooks/<name>.secret` with mode 0600
//! and read back on every later start, so the receiver's copy stays valid.
//! GetWebhookSecret (admin) shows it; a configured secret is never shown.
//!
//! The URL may carry a credential (user info, a token in the query string):
//! statuses, log lines and `Debug` show it through `crate::redaction`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::{format_timestamp, now_micros};
use crate::durable;
use crate::hub::{self, Subscription};
use crate::keys::{self, Secret};
use crate::redaction::{self, PathIs};
use crate::store::{Filter, Record, Store};

/// One endpoint, as configured. Its `Debug` shows the URL redacted
/// (`crate::redaction`): user info and query values may be credentials.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A name for status and logs; unique. Required.
    pub name: String,
    /// Where to POST (`http://` or `https://`). Required.
    pub url: String,
    /// Only these event types; empty (the default) means all.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Only events of these workflows; empty (the default) means all.
    #[serde(default)]
    pub workflows: Vec<String>,
    /// Sent as `Authorization: Bearer <token>`. Default: none.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// The Standard Webhooks signing secret, `whsec_<base64>` of 16 bytes
    /// or more. Default: none, and the server generates one, kept in
    /// `<data_dir>/webhooks/<name>.secret` (`auditlog webhooks secret NAME`
    /// shows it).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// A file holding the signing secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Where a new endpoint starts: `now` (the default: events from its
    /// first start on) or `beginning` (the whole log).
    #[serde(default)]
    pub start: Start,
    /// Per-request timeout in seconds. Default 10.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The longest wait between retries, in seconds. Default 60.
    #[serde(default = "default_backoff")]
    pub max_backoff_secs: u64,
}

fn default_timeout() -> u64 {
    10
}

fn default_backoff() -> u64 {
    60
}

/// Where a new endpoint's delivery starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    #[default]
    Now,
    Beginning,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let WebhookConfig {
            name,
            url,
            event_types,
            workflows,
            bearer_token,
            secret,
            secret_file,
            start,
            timeout_secs,
            max_backoff_secs,
        } = self;
        f.debug_struct("WebhookConfig")
            .field("name", name)
            .field("url", &redaction::url(url, PathIs::Shown))
            .field("event_types", event_types)
            .field("workflows", workflows)
            .field("bearer_token", bearer_token)
            .field("secret", secret)
            .field("secret_file", secret_file)
            .field("start", start)
            .field("timeout_secs", timeout_secs)
            .field("max_backoff_secs", max_backoff_secs)
            .finish()
    }
}

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
}

/// The running webhooks, for status.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    endpoints: Vec<Arc<Mutex<EndpointStatus>>>,
    /// Each endpoint's name and, when the server generated its secret, that
    /// secret.
    secrets: Vec<(String, Option<Secret>)>,
}

/// An endpoint's signing key, and its secret when the server generated it.
pub(crate) struct SigningKey {
    key: Vec<u8>,
    generated: Option<Secret>,
}

/// Why GetWebhookSecret has no secret to show.
#[derive(Debug)]
pub(crate) enum NoSecret {
    /// No endpoint has this name; the names there are.
    Unknown(Vec<String>),
    /// The endpoint's secret comes from its config, which is not shown.
    Configured,
}

/// Why the webhook configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[error("webhooks[{index}] ({name}): {reason}")]
pub struct WebhookConfigError {
    pub index: usize,
    pub name: String,
    pub reason: String,
}

/// The bytes of a random secret the server generates.
const GENERATED_SECRET_BYTES: usize = 32;
/// The fewest bytes a signing secret may hold.
const MIN_SECRET_BYTES: usize = 16;
/// What a signing secret is, for every refusal of one.
const SECRET_FORM: &str = "a Standard Webhooks secret is whsec_ followed by the standard \
    base64 (A-Z, a-z, 0-9, + and /, padded with =) of at least 16 random bytes, \
    e.g. whsec_$(openssl rand -base64 32); or leave secret out and the server generates one";

impl WebhookConfig {
    /// Checks the endpoint and decodes its secret; `None` when none is
    /// configured (the server generates one, see [`signing_keys`]).
    pub fn validate(
        &self,
        index: usize,
        all: &[WebhookConfig],
    ) -> Result<Option<Vec<u8>>, WebhookConfigError> {
        let fail = |reason: String| WebhookConfigError {
            index,
            name: self.name.clone(),
            reason,
        };
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(fail("name must be letters, digits, '-' or '_'".into()));
        }
        if all.iter().filter(|w| w.name == self.name).count() > 1 {
            return Err(fail("name is used by another webhook".into()));
        }
        let url = reqwest::Url::parse(&self.url).map_err(|e| fail(format!("url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail("url must be http:// or https://".into()));
        }
        let (secret, from) = match (&self.secret, &self.secret_file) {
            (Some(s), None) => (s.expose().to_owned(), "secret".to_owned()),
            (None, Some(path)) => {
                let from = format!("secret_file {}", path.display());
                let text =
                    std::fs::read_to_string(path).map_err(|e| fail(format!("{from}: {e}")))?;
                (text.trim().to_owned(), from)
            }
            (Some(_), Some(_)) => return Err(fail("set secret or secret_file, not both".into())),
            (None, None) => return Ok(None),
        };
        decode_secret(&secret)
            .map(Some)
            .map_err(|reason| fail(format!("{from} {reason}")))
    }
}

/// The key a `whsec_<base64>` secret holds (the prefix may be left out), or
/// what is wrong with it, in words. The secret itself is never repeated.
fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = BASE64.decode(encoded).map_err(|e| {
        let wrong = match e {
            base64::DecodeError::InvalidByte(at, b @ (b'-' | b'_')) => format!(
                "has {:?} at character {} of its base64 part: that is URL-safe base64, \
                 write + for - and / for _",
                char::from(b),
                at + 1
            ),
            base64::DecodeError::InvalidByte(at, b) => format!(
                "has {} at character {} of its base64 part, which is not a base64 character",
                if b.is_ascii_graphic() {
                    format!("{:?}", char::from(b))
                } else {
                    format!("byte {b:#04x}")
                },
                at + 1
            ),
            base64::DecodeError::InvalidLength(n) => format!(
                "has a base64 part of {n} characters, which no padded base64 text has \
                 (a multiple of 4, ending in = or == if need be): is it cut short?"
            ),
            base64::DecodeError::InvalidLastSymbol(at, _) => format!(
                "has a base64 part whose last character (character {}) does not end \
                 base64 text: is it cut short or mistyped?",
                at + 1
            ),
            base64::DecodeError::InvalidPadding => {
                "has a base64 part with the = padding in the wrong place or missing".to_owned()
            }
        };
        format!("is not a whsec_ secret: it {wrong}; {SECRET_FORM}")
    })?;
    if key.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "is too short: it holds {} bytes, and at least {MIN_SECRET_BYTES} bytes are needed; \
             {SECRET_FORM}",
            key.len()
        ));
    }
    Ok(key)
}

/// Each endpoint's signing key, in config order: its configured secret, or
/// the one generated for it in `<data_dir>/webhooks/<name>.secret` (made on
/// the first start, mode 0600, then read back). Fails, naming the endpoint
/// and the file, when a secret is unusable or the file cannot be made.
pub(crate) fn signing_keys(
    configs: &[WebhookConfig],
    data_dir: &Path,
) -> Result<Vec<SigningKey>, WebhookConfigError> {
    let dir = data_dir.join("webhooks");
    let mut keys = Vec::with_capacity(configs.len());
    for (index, config) in configs.iter().enumerate() {
        let fail = |reason: String| WebhookConfigError {
            index,
            name: config.name.clone(),
            reason,
        };
        if let Some(key) = config.validate(index, configs)? {
            keys.push(SigningKey {
                key,
                generated: None,
            });
            continue;
        }
        let path = dir.join(format!("{}.secret", config.name));
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        let text = keys::load_or_generate_with(&path, "webhook signing", || {
            let mut raw = [0u8; GENERATED_SECRET_BYTES];
            rand::fill(&mut raw);
            format!("whsec_{}", BASE64.encode(raw)).into_bytes()
        })
        .map_err(|e| fail(e.to_string()))?;
        let text = String::from_utf8(text).unwrap_or_default();
        let key = decode_secret(&text).map_err(|reason| {
            fail(format!(
                "the generated secret in {} {reason} (delete the file to have a new one \
                 generated, then set the receiver up with it again)",
                path.display()
            ))
        })?;
        keys.push(SigningKey {
            key,
            generated: Some(Secret::from(text.as_str())),
        });
    }
    Ok(keys)
}

impl Webhooks {
    /// Starts one delivery task per endpoint, signing with `keys` (from
    /// [`signing_keys`], one per endpoint, in order).
    pub(crate) fn start(
        configs: Vec<WebhookConfig>,
        keys: Vec<SigningKey>,
        store: Arc<Store>,
        data_dir: &Path,
        cancel: CancellationToken,
    ) -> Webhooks {
        let dir = data_dir.join("webhooks");
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
            let endpoint = Endpoint {
                position: dir.join(format!("{}.pos", config.name)),
                config,
                key,
                status,
            };
            tokio::spawn(endpoint.run(Arc::clone(&store), cancel.clone()));
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

impl Endpoint {
    async fn run(self, store: Arc<Store>, cancel: CancellationToken) {
        let name = self.config.name.clone();
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(self.config.timeout_secs))
            .user_agent(concat!("auditlog/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(webhook = %name, error = %e, "cannot build the HTTP client");
                return;
            }
        };
        let delivered = match self.load_position(&store) {
            Ok(seq) => seq,
            Err(e) => {
                tracing::error!(webhook = %name, error = %e, "cannot read or write the delivery position; not delivering");
                return;
            }
        };
        self.update(|s| s.delivered_seq = delivered);
        // Unfiltered: events this endpoint skips must still advance its
        // position, or it would be reported behind for ever.
        let filter = Filter::default();
        let (tx, mut rx) = mpsc::channel(64);
        let sub = Subscription {
            filter,
            from_seq: delivered + 1,
            follow: true,
        };
        tokio::spawn(hub::run(Arc::clone(&store), sub, cancel.clone(), tx));
        tracing::info!(webhook = %name, from_seq = delivered + 1, "webhook delivery started");
        while let Some(item) = rx.recv().await {
            let record = match item {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(webhook = %name, error = %e, "reading the log for delivery failed; delivery stops until restart");
                    return;
                }
            };
            let wanted = (self.config.event_types.is_empty()
                || self.config.event_types.contains(&record.event_type))
                && (self.config.workflows.is_empty()
                    || record
                        .workflow
                        .as_ref()
                        .is_some_and(|w| self.config.workflows.contains(w)));
            if wanted && !self.deliver(&client, &record, &cancel).await {
                return;
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

    /// Delivers one event, retrying with exponential backoff until it is
    /// accepted. False when shutdown interrupted it.
    async fn deliver(
        &self,
        client: &reqwest::Client,
        record: &Record,
        cancel: &CancellationToken,
    ) -> bool {
        let body = payload(record).to_string();
        let mut backoff = Duration::from_millis(500);
        let max = Duration::from_secs(self.config.max_backoff_secs.max(1));
        loop {
            let result = self.post(client, record, &body).await;
            match result {
                Ok(()) => {
                    self.update(|s| {
                        s.delivered += 1;
                        s.consecutive_failures = 0;
                    });
                    return true;
                }
                Err(error) => {
                    tracing::warn!(webhook = %self.config.name, seq = record.seq, %error, retry_in = ?backoff, "webhook delivery failed");
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
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep(backoff + jitter) => {}
            }
            backoff = (backoff * 2).min(max);
        }
    }

    async fn post(
        &self,
        client: &reqwest::Client,
        record: &Record,
        body: &str,
    ) -> Result<(), String> {
        let timestamp = (now_micros() / 1_000_000).to_string();
        let signature = sign(&self.key, &record.id, &timestamp, body);
        let mut request = client
            .post(&self.config.url)
            .header("content-type", "application/json")
            .header("webhook-id", &record.id)
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", signature)
            .body(body.to_owned());
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token.expose());
        }
        // reqwest's error names the URL, which may hold a credential.
        let response = request
            .send()
            .await
            .map_err(|e| redaction::send_error(e, &self.config.url, PathIs::Shown))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the endpoint answered HTTP {status}"))
        }
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
    json!({
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
    })
}

/// The `webhook-signature` header value.
pub(crate) fn sign(key: &[u8], id: &str, timestamp: &str, body: &str) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let key = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn config_requires_a_valid_secret_and_unique_names() {
        let base = WebhookConfig {
            name: "crm".into(),
            url: "http://127.0.0.1:9/hook".into(),
            event_types: vec![],
            workflows: vec![],
            bearer_token: None,
            secret: Some(Secret::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
            secret_file: None,
            start: Start::Now,
            timeout_secs: 10,
            max_backoff_secs: 60,
        };
        assert!(base.validate(0, std::slice::from_ref(&base)).is_ok());
        let no_secret = WebhookConfig {
            secret: None,
            ..base.clone()
        };
        // No secret: the server generates one.
        assert_eq!(no_secret.validate(0, &[]).unwrap(), None);
        let bad_url = WebhookConfig {
            url: "ftp://x".into(),
            ..base.clone()
        };
        assert!(bad_url.validate(0, &[]).is_err());
        let twice = [base.clone(), base.clone()];
        assert!(
            base.validate(0, &twice)
                .unwrap_err()
                .reason
                .contains("another")
        );
    }

    #[test]
    fn a_malformed_secret_is_explained_in_words() {
        for (secret, words) in [
            // URL-safe base64: "Invalid symbol 45, offset 2" before.
            (
                "whsec_ab-cdefghijklmnopqrstuvw",
                &["'-'", "character 3", "URL-safe"][..],
            ),
            (
                "whsec_abc$defghijklmnopqrstuvw",
                &["'$'", "character 4", "not a base64"],
            ),
            ("whsec_abcde", &["5 characters", "cut short"]),
            ("whsec_c2hvcnQ=", &["too short", "5 bytes", "at least 16"]),
        ] {
            let reason = decode_secret(secret).unwrap_err();
            for word in words.iter().chain(&["whsec_", "base64", "openssl rand"]) {
                assert!(reason.contains(word), "{secret}: {word:?} not in {reason}");
            }
            assert!(!reason.contains(secret), "{reason}");
        }
        let generated = format!("whsec_{}", BASE64.encode([7u8; GENERATED_SECRET_BYTES]));
        assert_eq!(
            decode_secret(&generated).unwrap(),
            [7u8; GENERATED_SECRET_BYTES]
        );
    }
}
