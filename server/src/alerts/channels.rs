//! Where alerts go: email over SMTP (lettre), Slack and Discord incoming
//! webhooks, and a generic JSON webhook. Each is optional; several can be on
//! at once. Sending is retried with backoff, then logged and counted.
//!
//! A Slack, Discord or webhook URL is the channel's credential: an error
//! from sending to one is passed through `crate::redaction` before it is
//! logged, counted in the status or answered to `TestAlerts`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Alert;
use crate::keys::Secret;
use crate::redaction::{self, PathIs};

/// SMTP settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server. Required.
    pub host: String,
    /// Its port. Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (the default), `tls` (implicit TLS) or `none`.
    #[serde(default)]
    pub security: Security,
    /// Login name, if the server wants one. Default: none (no login).
    #[serde(default)]
    pub username: Option<String>,
    /// Password; better given as `AUDITLOG_ALERTS__EMAIL__PASSWORD` or in
    /// `password_file` than written in the config file. Needs `username`:
    /// a password without one is refused at start.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The sender address. Required.
    pub from: String,
    /// The recipients: one address (`to = "ops@example.com"`) or a list.
    /// Required, at least one.
    #[serde(deserialize_with = "one_or_many")]
    pub to: Vec<String>,
}

/// `to` as written: one address or a list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Addresses;
    impl<'de> serde::de::Visitor<'de> for Addresses {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an address (\"ops@example.com\") or a list of addresses")
        }
        fn visit_str<E: serde::de::Error>(self, address: &str) -> Result<Vec<String>, E> {
            Ok(vec![address.to_owned()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut addresses = Vec::new();
            while let Some(address) = seq.next_element()? {
                addresses.push(address);
            }
            Ok(addresses)
        }
    }
    d.deserialize_any(Addresses)
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    #[default]
    Starttls,
    Tls,
    None,
}

/// An incoming-webhook URL (Slack, Discord, or a generic JSON receiver).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Where to POST. Required.
    pub url: Secret,
}

/// What happened to one channel's last attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelStatus {
    pub channel: String,
    pub sent: u64,
    pub failed: u64,
    pub last_error: String,
}

/// A configured channel, ready to send.
pub(super) struct Channel {
    pub name: &'static str,
    kind: Kind,
    pub status: Arc<Mutex<ChannelStatus>>,
}

struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    /// A message from the sender to every recipient, to finish.
    fn message(&self) -> lettre::message::MessageBuilder {
        self.to
            .iter()
            .fold(Message::builder().from(self.from.clone()), |m, t| {
                m.to(t.clone())
            })
    }
}

enum Kind {
    Email(Box<Email>),
    Slack(String),
    Discord(String),
    Webhook(String),
}

/// How many times a send is tried before it counts as failed.
const ATTEMPTS: u32 = 3;

impl EmailConfig {
    /// Checks addresses and builds the transport.
    pub(super) fn build(&self) -> Result<Channel, String> {
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| format!("alerts.email.from {:?}: {e}", self.from))?;
        // A password is only ever sent with a login name. Taking `from` as
        // that name would be a guess, and a wrong one for many relays (SES,
        // SendGrid, Mailgun log in with a key id or `apikey`); it would show
        // only as a failed login at the first alert. So refuse at start.
        if self.username.is_none() && (self.password.is_some() || self.password_file.is_some()) {
            return Err(format!(
                "alerts.email.password is set but alerts.email.username is not, so the password \
                 would never be sent; set username to the SMTP login (often the sender address, \
                 username = {:?}), or remove the password if the server needs no login",
                self.from
            ));
        }
        if self.to.is_empty() {
            return Err("alerts.email.to needs at least one address".into());
        }
        let to = self
            .to
            .iter()
            .map(|t| t.parse().map_err(|e| format!("alerts.email.to {t:?}: {e}")))
            .collect::<Result<Vec<Mailbox>, _>>()?;
        let builder = match self.security {
            Security::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host),
            Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host),
            Security::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &self.host,
            )),
        }
        .map_err(|e| format!("alerts.email.host {:?}: {e}", self.host))?;
        let port = self.port.unwrap_or(match self.security {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        });
        let mut builder = builder.port(port).timeout(Some(Duration::from_secs(10)));
        let password = match (&self.password, &self.password_file) {
            (Some(p), _) => Some(p.expose().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("alerts.email.password_file {}: {e}", path.display()))?
                    .trim_end()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if let Some(user) = &self.username {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.unwrap_or_default()));
        }
        Ok(Channel::new(
            "email",
            Kind::Email(Box::new(Email {
                transport: builder.build(),
                from,
                to,
            })),
        ))
    }
}

impl Channel {
    fn new(name: &'static str, kind: Kind) -> Channel {
        Channel {
            name,
            kind,
            status: Arc::new(Mutex::new(ChannelStatus {
                channel: name.to_owned(),
                ..ChannelStatus::default()
            })),
        }
    }

    pub(super) fn slack(c: &HookConfig) -> Channel {
        Channel::new("slack", Kind::Slack(c.url.expose().to_owned()))
    }

    pub(super) fn discord(c: &HookConfig) -> Channel {
        Channel::new("discord", Kind::Discord(c.url.expose().to_owned()))
    }

    pub(super) fn webhook(c: &HookConfig) -> Channel {
        Channel::new("webhook", Kind::Webhook(c.url.expose().to_owned()))
    }

    /// Sends `alert`, retrying with backoff; counts and logs the outcome.
    pub(super) async fn send(
        &self,
        http: &reqwest::Client,
        alert: &Alert,
        retries: bool,
    ) -> Result<(), String> {
        let attempts = if retries { ATTEMPTS } else { 1 };
        let mut backoff = Duration::from_millis(500);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.send_once(http, alert).await {
                Ok(()) => {
                    if let Ok(mut s) = self.status.lock() {
                        s.sent += 1;
                    }
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(channel = self.name, attempt, error = %e, "sending an alert failed");
                    last = e;
                }
            }
            if attempt < attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        tracing::error!(channel = self.name, rule = %alert.rule, error = %last, "alert not delivered");
        if let Ok(mut s) = self.status.lock() {
            s.failed += 1;
            s.last_error.clone_from(&last);
        }
        Err(last)
    }

    /// Mails an HTML page (a report) with its plain-text summary as the
    /// alternative part, once; `None` when this is not the email channel.
    pub(super) async fn mail_page(
        &self,
        subject: &str,
        html: String,
        text: String,
    ) -> Option<Result<usize, String>> {
        let Kind::Email(email) = &self.kind else {
            return None;
        };
        let sent = match email
            .message()
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(text, html))
        {
            Ok(message) => email
                .transport
                .send(message)
                .await
                .map(|_| email.to.len())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Ok(mut s) = self.status.lock() {
            match &sent {
                Ok(_) => s.sent += 1,
                Err(e) => {
                    s.failed += 1;
                    s.last_error.clone_from(e);
                }
            }
        }
        Some(sent)
    }

    async fn send_once(&self, http: &reqwest::Client, alert: &Alert) -> Result<(), String> {
        let text = alert.text();
        match &self.kind {
            Kind::Email(email) => {
                let message = email
                    .message()
                    .subject(alert.subject())
                    .header(ContentType::TEXT_PLAIN)
                    .body(text)
                    .map_err(|e| e.to_string())?;
                email
                    .transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Kind::Slack(url) => post(http, url, &json!({ "text": text })).await,
            // Discord rejects content over 2,000 characters.
            Kind::Discord(url) => {
                let content: String = text.chars().take(2000).collect();
                post(http, url, &json!({ "content": content })).await
            }
            Kind::Webhook(url) => post(http, url, &alert.json()).await,
        }
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> Result<(), String> {
    // reqwest's error names the URL, which is the channel's credential.
    let response = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| redaction::send_error(e, url, PathIs::Secret))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", response.status()))
    }
}
