//! The `[alerts]` section: threshold rules, the integrity cooldown and the
//! channels, each field with its default; `validate` names the key at fault.
//! The old Python logger's alert keys are listed with their new places
//! ([`new_place_of`]), so refusing one can say what to write instead.

use serde::{Deserialize, Serialize};

use super::channels::{EmailConfig, HookConfig};

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

/// The old Python logger's alert keys and where each lives now. Its config
/// was flat; here rules, email and each webhook have their own table.
const OLD_KEYS: &[(&str, &str)] = &[
    (
        "error_threshold",
        "`threshold` in an [[alerts.rules]] entry",
    ),
    (
        "cooldown_seconds",
        "`cooldown_secs` in an [[alerts.rules]] entry (`integrity_cooldown_secs` under [alerts] \
         for integrity alerts)",
    ),
    ("time_window", "`window_secs` in an [[alerts.rules]] entry"),
    (
        "window_seconds",
        "`window_secs` in an [[alerts.rules]] entry",
    ),
    ("slack_webhook", "`url` under [alerts.slack]"),
    ("slack_webhook_url", "`url` under [alerts.slack]"),
    ("discord_webhook", "`url` under [alerts.discord]"),
    ("discord_webhook_url", "`url` under [alerts.discord]"),
    (
        "webhook_url",
        "`url` under [alerts.webhook] for alerts, or in a [[webhooks]] entry for every event",
    ),
    ("smtp_server", "`host` under [alerts.email]"),
    ("smtp_host", "`host` under [alerts.email]"),
    ("smtp_port", "`port` under [alerts.email]"),
    ("smtp_username", "`username` under [alerts.email]"),
    ("smtp_user", "`username` under [alerts.email]"),
    (
        "smtp_password",
        "`password` under [alerts.email] (or AUDITLOG_ALERTS__EMAIL__PASSWORD, or \
         `password_file`)",
    ),
    (
        "smtp_use_tls",
        "`security` under [alerts.email] (\"starttls\", \"tls\" or \"none\")",
    ),
    (
        "use_tls",
        "`security` under [alerts.email] (\"starttls\", \"tls\" or \"none\")",
    ),
    ("from_email", "`from` under [alerts.email]"),
    (
        "to_email",
        "`to` under [alerts.email] (one address or a list)",
    ),
    (
        "to_emails",
        "`to` under [alerts.email] (one address or a list)",
    ),
];

/// Where the old logger's `key` lives now, if it is one of its alert keys.
pub(crate) fn new_place_of(key: &str) -> Option<&'static str> {
    OLD_KEYS
        .iter()
        .find(|(old, _)| old.eq_ignore_ascii_case(key))
        .map(|(_, new)| *new)
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
    /// The rule that applies when none is configured.
    pub(crate) fn default_errors() -> RuleConfig {
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
