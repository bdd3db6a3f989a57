//! Setting up: the mail's sender and recipients, the channel and rule
//! configuration, and the numbered errors the tests log.

use auditlog_client::{Client, NewEvent};
use auditlog_server::config::{EmailConfig, HookConfig, RuleConfig};

use crate::common::endpoints::email_config;

pub(crate) const FROM: &str = "auditlog@example.com";
pub(crate) const TO: [&str; 2] = ["ops@example.com", "oncall@example.net"];

pub(crate) fn email(port: u16) -> EmailConfig {
    email_config(port, &TO)
}

pub(crate) fn hook(url: &str) -> Option<HookConfig> {
    Some(HookConfig { url: url.into() })
}

pub(crate) fn rule(
    name: &str,
    event_types: &[&str],
    threshold: u32,
    window_secs: u64,
    cooldown_secs: u64,
    workflow: Option<&str>,
) -> RuleConfig {
    RuleConfig {
        name: name.into(),
        event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
        threshold,
        window_secs,
        workflow: workflow.map(Into::into),
        cooldown_secs,
    }
}

/// The text of error number `i` of `tag`, as the tests log it.
pub(crate) fn error_text(tag: &str, i: usize) -> String {
    format!("{tag} call {i} timed out")
}

/// Logs `n` errors numbered from `first`, in `workflow` (none when empty);
/// returns their seqs.
pub(crate) async fn log_errors(
    client: &Client,
    tag: &str,
    first: usize,
    n: usize,
    workflow: &str,
) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in first..first + n {
        let receipt = client
            .log(
                NewEvent::error("Timeout", &error_text(tag, i))
                    .workflow(workflow)
                    .lead(format!("LEAD-{i}")),
            )
            .await
            .unwrap();
        seqs.push(receipt.seq);
    }
    seqs
}
