//! Where alerts go: email over SMTP (lettre), Slack and Discord incoming
//! webhooks, and a generic JSON webhook. Each is optional; several can be on
//! at once. Sending is retried with backoff, then logged and counted.
//!
//! Every attempt has a deadline: an HTTP POST ends within
//! [`HTTP_TIMEOUT`], and the whole SMTP conversation (connect, greeting,
//! login, message) within [`SMTP_TIMEOUT`] — lettre's own timeout covers
//! only the connect, so a relay that accepts and never greets would
//! otherwise hang the channel for good. Retries go on for up to
//! [`RETRY_WINDOW`] (honouring `Retry-After`), each channel on its own
//! task, so a slow or stuck channel never delays the others.
//!
//! Slack and Discord get plain text that cannot ping or link: Slack's
//! control characters `&`, `<`, `>` are escaped as Slack documents, and
//! Discord gets the text as one code block with `allowed_mentions` empty.
//! Redirects are never followed: a 3xx answer is a failed send.
//!
//! A Slack, Discord or webhook URL is the channel's credential: an error
//! from sending to one is passed through `crate::redaction` before it is
//! logged, counted in the status or answered to `TestAlerts`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::Message;
use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Alert;
use super::smtp::{Relay, SmtpError, relay_said};
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
    relay: Relay,
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

/// The deadline of one SMTP conversation, connect to the last answer.
pub(super) const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The deadline of one HTTP POST to a chat or webhook channel.
pub(super) const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a failing send is retried before it counts as failed: a
/// receiver's blip of a few seconds loses no alert.
const RETRY_WINDOW: Duration = Duration::from_secs(30);
/// The first pause between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Discord refuses content over 2,000 characters.
const DISCORD_MAX: usize = 2000;

/// Why one attempt failed, and whether trying again may help.
struct Failure {
    error: String,
    /// Trying again cannot help (a redirect, a 4xx, an SMTP 5xx).
    permanent: bool,
    /// The receiver's `Retry-After`, in seconds.
    retry_after: Option<Duration>,
}

impl Failure {
    fn transient(error: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            permanent: false,
            retry_after: None,
        }
    }
}

impl EmailConfig {
    /// The warning to log at start when a password would cross the network
    /// in clear text: `security = "none"`, a password, and a host that is
    /// not this machine (a relay on loopback is a common, safe setup).
    pub(super) fn clear_text_password_warning(&self) -> Option<String> {
        let password = self.password.is_some() || self.password_file.is_some();
        (self.security == Security::None && password && !is_loopback(&self.host)).then(|| {
            format!(
                "alerts.email.security is \"none\" and alerts.email.password is set: the \
                 password goes to {} in clear text; use security = \"starttls\" or \"tls\"",
                self.host
            )
        })
    }

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
        if self.security != Security::None {
            // What the TLS set-up will need, checked now.
            lettre::transport::smtp::client::TlsParameters::new(self.host.clone())
                .map_err(|e| format!("alerts.email.host {:?}: {e}", self.host))?;
        }
        let port = self.port.unwrap_or(match self.security {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        });
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
        let credentials = self
            .username
            .as_ref()
            .map(|user| Credentials::new(user.clone(), password.unwrap_or_default()));
        Ok(Channel::new(
            "email",
            Kind::Email(Box::new(Email {
                relay: Relay {
                    host: self.host.clone(),
                    port,
                    security: self.security,
                    credentials,
                },
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

    /// Sends `alert`, retrying with backoff for up to [`RETRY_WINDOW`]
    /// when `retries` (a permanent failure is not retried); counts and logs
    /// the outcome. Every failed attempt shows at once in the status's
    /// `last_error`.
    pub(super) async fn send(
        &self,
        http: &reqwest::Client,
        alert: &Alert,
        retries: bool,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0u32;
        let last = loop {
            attempt += 1;
            let failure = match self.send_once(http, alert).await {
                Ok(()) => {
                    if let Ok(mut s) = self.status.lock() {
                        s.sent += 1;
                    }
                    return Ok(());
                }
                Err(failure) => failure,
            };
            tracing::warn!(channel = self.name, attempt, error = %failure.error, "sending an alert failed");
            if let Ok(mut s) = self.status.lock() {
                s.last_error.clone_from(&failure.error);
            }
            if !retries || failure.permanent {
                break failure.error;
            }
            // A `Retry-After` never shortens the backoff (`0` would make
            // this a request loop for the whole window), and one past the
            // window gives up now (never added to a time: u64::MAX seconds
            // overflows a `Duration` sum, a panic ending this sender).
            let pause = failure.retry_after.map_or(backoff, |r| r.max(backoff));
            if pause > RETRY_WINDOW.saturating_sub(started.elapsed()) {
                break failure.error;
            }
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        tracing::error!(channel = self.name, rule = %alert.rule, attempts = attempt, error = %last, "alert not delivered");
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
                .send(message)
                .await
                .map(|()| email.to.len())
                .map_err(|f| f.error),
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

    async fn send_once(&self, http: &reqwest::Client, alert: &Alert) -> Result<(), Failure> {
        let text = alert.text();
        match &self.kind {
            Kind::Email(email) => {
                let message = email
                    .message()
                    .subject(alert.subject())
                    .header(ContentType::TEXT_PLAIN)
                    .body(text)
                    .map_err(|e| Failure {
                        error: e.to_string(),
                        permanent: true,
                        retry_after: None,
                    })?;
                email.send(message).await
            }
            Kind::Slack(url) => post(http, url, &json!({ "text": slack_text(&text) })).await,
            Kind::Discord(url) => {
                let body = json!({
                    "content": discord_text(&text),
                    "allowed_mentions": { "parse": [] },
                });
                post(http, url, &body).await
            }
            Kind::Webhook(url) => post(http, url, &alert.json()).await,
        }
    }
}

impl Email {
    /// Sends `message`, the whole conversation within [`SMTP_TIMEOUT`].
    async fn send(&self, message: Message) -> Result<(), Failure> {
        let email = message.formatted();
        let sent = self.relay.send(message.envelope(), &email);
        match tokio::time::timeout(SMTP_TIMEOUT, sent).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(SmtpError::Smtp(e))) => Err(Failure {
                // It quotes the relay, whatever the relay sent.
                error: relay_said(&e.to_string()),
                permanent: e.is_permanent(),
                retry_after: None,
            }),
            Ok(Err(SmtpError::Connect(e))) => Err(Failure::transient(e)),
            Err(_) => Err(Failure::transient(format!(
                "timed out: the SMTP server did not finish within {} s (connected, but no \
                 greeting or no answer)",
                SMTP_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// The HTTP client of the chat and webhook channels: every POST bounded by
/// [`HTTP_TIMEOUT`], redirects never followed.
pub(super) fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// `host` names this machine: a password sent in clear never leaves it.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Slack's text with its control characters escaped (`&`, `<`, `>`, as
/// Slack documents): `<!channel>` or `<https://x|y>` in an event's message
/// stays text, never a ping or a link.
fn slack_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Discord's content: the text as one code block, in which Discord renders
/// no Markdown, mention or link, cut to Discord's 2,000 characters. No two
/// backticks stay adjacent (a zero-width space between them), so the text
/// cannot close the block.
fn discord_text(text: &str) -> String {
    const OPEN: &str = "```\n";
    const CLOSE: &str = "\n```";
    let mut inner = String::with_capacity(text.len());
    let mut previous = None;
    for c in text.trim_end().chars() {
        if c == '`' && previous == Some('`') {
            inner.push('\u{200b}');
        }
        inner.push(c);
        previous = Some(c);
    }
    let room = DISCORD_MAX - OPEN.chars().count() - CLOSE.chars().count();
    let mut inner: String = inner.chars().take(room).collect();
    // A cut may leave a backtick last, next to the closing fence.
    if inner.ends_with('`') {
        inner.pop();
        inner.push('\u{2019}');
    }
    format!("{OPEN}{inner}{CLOSE}")
}

async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> Result<(), Failure> {
    // reqwest's error names the URL, which is the channel's credential.
    let response = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| Failure::transient(redaction::send_error(e, url, PathIs::Secret)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    if status.is_redirection() {
        // Where to, resolved against the URL, and shown like the URL.
        let to = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| reqwest::Url::parse(url).ok()?.join(l).ok())
            .map_or_else(
                || "nowhere stated".to_owned(),
                |l| redaction::url(l.as_str(), PathIs::Secret),
            );
        return Err(Failure {
            error: format!(
                "HTTP {status}: the channel answered a redirect to {to}, which is not followed; \
                 the configured URL must be the final one"
            ),
            permanent: true,
            retry_after: None,
        });
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // A 4xx other than 408 and 429 will be answered the same next time.
    let permanent = status.is_client_error()
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
    Err(Failure {
        error: format!("HTTP {status}"),
        permanent,
        retry_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_text_escapes_its_control_characters() {
        assert_eq!(
            slack_text("<!channel> <https://evil|x> a & b"),
            "&lt;!channel&gt; &lt;https://evil|x&gt; a &amp; b"
        );
    }

    #[test]
    fn discord_text_is_one_code_block_that_nothing_closes() {
        let content = discord_text("a ``` b `x` @everyone [l](https://e)\n");
        let inner = content
            .strip_prefix("```\n")
            .and_then(|c| c.strip_suffix("\n```"))
            .unwrap();
        assert!(!inner.contains("``"), "{inner}");
        assert!(
            inner.contains("`x`") && inner.contains("@everyone"),
            "{inner}"
        );
        let long = discord_text(&"`".repeat(5000));
        assert!(long.chars().count() <= DISCORD_MAX);
        assert!(!long[4..long.len() - 4].contains("``"));
    }

    #[test]
    fn a_clear_text_password_to_another_host_is_warned_about() {
        let config = |host: &str, security: Security, password: Option<&str>| EmailConfig {
            host: host.into(),
            port: None,
            security,
            username: Some("u".into()),
            password: password.map(Into::into),
            password_file: None,
            from: "a@example.com".into(),
            to: vec!["b@example.com".into()],
        };
        let warning = config("smtp.example.com", Security::None, Some("pw"))
            .clear_text_password_warning()
            .unwrap();
        assert!(warning.contains("alerts.email.password"), "{warning}");
        assert!(warning.contains("smtp.example.com"), "{warning}");
        assert!(!warning.contains("pw\""), "{warning}");
        for quiet in [
            config("localhost", Security::None, Some("pw")),
            config("smtp.example.com", Security::Starttls, Some("pw")),
            config("smtp.example.com", Security::None, None),
        ] {
            assert_eq!(quiet.clear_text_password_warning(), None, "{quiet:?}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "::1", "[::1]", "127.0.0.2"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["smtp.example.com", "10.0.0.1", "::2"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
