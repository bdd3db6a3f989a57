//! Threshold rules: a sliding window of matching events per rule, fired at
//! the threshold and then quiet for the rule's cooldown.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::config::RuleConfig;
use super::{Alert, AlertKind, MESSAGES};
use crate::clock::now_micros;
use crate::store::Record;

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

/// One rule and its window of matching events.
pub(super) struct RuleState {
    pub(super) config: RuleConfig,
    pub(super) window: VecDeque<(i64, String)>,
    pub(super) last_fired: Option<Instant>,
    pub(super) fired: u64,
    pub(super) last_fired_at: i64,
}

impl RuleState {
    fn window_micros(&self) -> i64 {
        i64::try_from(self.config.window_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
    }

    /// Matching events still inside the window at `now` (the window itself
    /// is trimmed only when the next matching event arrives).
    pub(super) fn in_window(&self, now: i64) -> u64 {
        let from = now.saturating_sub(self.window_micros());
        self.window.iter().filter(|(t, _)| *t >= from).count() as u64
    }

    /// Adds `record` to the window if it matches; returns an alert when the
    /// threshold is reached outside the cooldown.
    pub(super) fn count(&mut self, record: &Record) -> Option<Alert> {
        let c = &self.config;
        let matches = c.event_types.iter().any(|t| *t == *record.event_type)
            && c.workflow
                .as_ref()
                .is_none_or(|w| record.workflow.as_deref() == Some(w.as_str()));
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
    let details = record.details.to_map();
    let field = |k: &str| details.get(k).and_then(Value::as_str);
    let text = match (
        field("error_type"),
        field("error_message").or(field("message")),
    ) {
        (Some(t), Some(m)) => format!("{t}: {m}"),
        (None, Some(m)) => m.to_owned(),
        (Some(t), None) => t.to_owned(),
        (None, None) => record.event_type.to_string(),
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
            id: crate::store::Short::new(),
            timestamp: ts_secs * 1_000_000,
            event_type: "error".into(),
            actor: "a".into(),
            caller: None,
            lead_id: None,
            workflow: workflow.map(Into::into),
            details: details.into(),
            idempotency_key: None,
            batch: None,
            key_id: crate::store::Short::new(),
            prev: crate::store::Short::new(),
            signature: crate::store::Short::new(),
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
}
