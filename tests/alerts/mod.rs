//! Alerts end to end, against real endpoints on 127.0.0.1: a minimal SMTP
//! server speaking the protocol over TCP, and HTTP receivers standing in for
//! Slack, Discord and a generic JSON webhook.
//!
//! What must hold: a threshold rule mails one alert per cooldown, to every
//! recipient, naming the rule, the count, the workflow and the latest error
//! messages in plain text; a workflow-scoped rule ignores other workflows;
//! one firing reaches every channel in its own shape; `auditlog alerts test`
//! and `TestAlerts` report each channel; unreachable channels never fail a
//! `Log` call and show up as failures in `GetAlertStatus`, which also shows
//! the rules' windows and firings.
//!
//! "Nothing more was sent" is never judged by waiting and seeing: the rules'
//! counters in `GetAlertStatus` prove the watcher has seen every event, and
//! the channels' `sent` counters prove the sender is done.
//!
//! One file per concern. Shared: the configuration and the errors logged
//! (`setup.rs`), reading the status and checking what an alert carries
//! (`checks.rs`). The tests: thresholds, windows and cooldown, mailed over
//! SMTP (`thresholds.rs`); Slack, Discord and the JSON webhook in their
//! shapes, with links and mentions escaped (`chat.rs`); `TestAlerts`,
//! `GetAlertStatus` and the CLI's `alerts test` and `alerts status`
//! (`reporting.rs`); unreachable, silent, failing and redirecting channels
//! (`failures.rs`); and integrity alerts: a store that fails to write, a
//! scheduled verification that finds tampering (`integrity.rs`).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod chat;
mod checks;
mod failures;
mod integrity;
mod reporting;
mod setup;
mod thresholds;
