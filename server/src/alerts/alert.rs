//! One alert and how every channel renders it: an email subject, a
//! plain-text body with no links, and the generic webhook's JSON.

use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::format_timestamp;

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
    /// The latest signed checkpoint, pushed out (`[checkpoints]`): `count`
    /// is its tree size, `messages` its signed note.
    Checkpoint,
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
            AlertKind::Checkpoint => {
                format!("[auditlog] checkpoint: tree size {}", self.count)
            }
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
            AlertKind::Checkpoint => {
                "The audit log's latest signed checkpoint, below. Keep it: a later checkpoint \
                 that does not extend it shows a rollback or a fork (`auditlog proof \
                 consistency`)."
                    .to_owned()
            }
        };
        text.push_str(&what);
        if self.kind == AlertKind::Checkpoint {
            // The note verbatim: its signature covers every byte.
            for m in &self.messages {
                text.push_str("\n\n");
                text.push_str(m);
            }
        } else if !self.messages.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
