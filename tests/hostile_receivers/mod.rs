//! The server's receivers turned hostile or broken. What must hold: no
//! answer kills a channel's sender, makes it spin, makes the server take in
//! more than a bounded amount of what the receiver sends, or puts control
//! characters in a status; no receiver slows ingest or stops the shutdown.
//!
//! One file per receiver: HTTP alert channels (`alert_http.rs`), SMTP
//! relays (`smtp.rs`), webhook endpoints under load (`webhooks.rs`), an
//! OTLP collector that never answers (`otlp.rs`). Each builds its hostile
//! receiver from a raw tokio `TcpListener` (`raw.rs` for scripted HTTP
//! answers).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod alert_http;
mod otlp;
mod raw;
mod smtp;
mod webhooks;

/// One alert rule that fires on every `error` event, no cooldown: each
/// error is a fresh alert to every channel configured.
pub(crate) fn alert_on_every_error(c: &mut auditlog_server::Config) {
    c.alerts.rules = Some(vec![auditlog_server::config::RuleConfig {
        name: "each".into(),
        event_types: vec!["error".into()],
        threshold: 1,
        window_secs: 60,
        workflow: None,
        cooldown_secs: 0,
    }]);
}
