//! One `[[webhooks]]` entry as configured: where to POST, what to send,
//! its secret, and the checks `validate` makes. Its `Debug` never shows a
//! credential.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::signing::decode_secret;
use crate::keys::Secret;
use crate::redaction::{self, PathIs};

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
    /// Per-request timeout in seconds, 1 or more. Default 10.
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

/// Why the webhook configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[error("webhooks[{index}] ({name}): {reason}")]
pub struct WebhookConfigError {
    pub index: usize,
    pub name: String,
    pub reason: String,
}

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
        if self.timeout_secs == 0 {
            return Err(fail(
                "timeout_secs must be 1 or more (seconds): 0 would cut every delivery short".into(),
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let no_time = WebhookConfig {
            timeout_secs: 0,
            ..base.clone()
        };
        let err = no_time.validate(3, &[]).unwrap_err().to_string();
        assert!(
            err.contains("webhooks[3] (crm)") && err.contains("timeout_secs must be 1 or more"),
            "{err}"
        );
        let twice = [base.clone(), base.clone()];
        assert!(
            base.validate(0, &twice)
                .unwrap_err()
                .reason
                .contains("another")
        );
    }
}
