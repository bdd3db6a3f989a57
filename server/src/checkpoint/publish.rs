//! Signed checkpoints pushed out, to where the operator cannot take them
//! back (`[checkpoints]`): every `publish_interval_secs`, when a newer
//! checkpoint was signed since the last push, its note replaces `file`
//! whole (`durable`: a crash leaves the old note or the new one) and is
//! appended to `history_file`, followed by an empty line. It is also
//! announced to the `[[webhooks]]` endpoints named in `webhooks`, whose
//! own tasks POST it (`crate::webhooks`).
//!
//! Invariants: this task only reads the latest signed checkpoint; nothing
//! on the write path or the signing path waits for it. A failed push is
//! counted, logged once when it starts failing, then as a summary at most
//! every [`SUMMARY_EVERY`], and once when it works again; the next round
//! retries.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Checkpoints;
use crate::alerts::{Alert, AlertKind, Alerts};

/// How often a failing push is logged again, with the count.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// The `[checkpoints]` section: where signed checkpoints are pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointsConfig {
    /// How often the latest signed checkpoint is pushed out, when one newer
    /// than the last pushed was signed: 1 or more. Default 60.
    pub publish_interval_secs: u64,
    /// A file replaced whole with the latest signed note at each push (for
    /// example on a mounted bucket). Default: none.
    pub file: Option<PathBuf>,
    /// A file each pushed note is appended to, followed by an empty line,
    /// keeping every checkpoint pushed. Default: none.
    pub history_file: Option<PathBuf>,
    /// The alert channels (`[alerts]`) each pushed checkpoint is also sent
    /// to, a short message with the note: any of `email`, `slack`,
    /// `discord`, `webhook`. Default: none.
    pub alert_channels: Vec<String>,
    /// The `[[webhooks]]` endpoints, by name, each pushed checkpoint is
    /// also POSTed to, as a message of type `auditlog.checkpoint`
    /// (docs/integrations.md). Default: none.
    pub webhooks: Vec<String>,
}

impl Default for CheckpointsConfig {
    fn default() -> CheckpointsConfig {
        CheckpointsConfig {
            publish_interval_secs: 60,
            file: None,
            history_file: None,
            alert_channels: Vec::new(),
            webhooks: Vec::new(),
        }
    }
}

impl CheckpointsConfig {
    /// The key at fault and why, if any; `endpoints` are the configured
    /// webhooks' names.
    pub(crate) fn problem(&self, endpoints: &[&str]) -> Option<(&'static str, String)> {
        if let Some(bad) = self
            .webhooks
            .iter()
            .find(|w| !endpoints.contains(&w.as_str()))
        {
            return Some((
                "checkpoints.webhooks",
                format!("{bad:?} is not the name of a [[webhooks]] endpoint"),
            ));
        }
        if self.publish_interval_secs == 0 {
            return Some((
                "checkpoints.publish_interval_secs",
                "must be at least 1 (seconds between pushes of the signed checkpoint)".into(),
            ));
        }
        for (key, path) in [
            ("checkpoints.file", &self.file),
            ("checkpoints.history_file", &self.history_file),
        ] {
            if path.as_ref().is_some_and(|p| p.file_name().is_none()) {
                return Some((key, "must name a file, not a directory".into()));
            }
        }
        if let Some(bad) = self
            .alert_channels
            .iter()
            .find(|c| !["email", "slack", "discord", "webhook"].contains(&c.as_str()))
        {
            return Some((
                "checkpoints.alert_channels",
                format!("{bad:?} is not an alert channel: use email, slack, discord or webhook"),
            ));
        }
        None
    }

    fn publishes(&self) -> bool {
        self.file.is_some()
            || self.history_file.is_some()
            || !self.alert_channels.is_empty()
            || !self.webhooks.is_empty()
    }
}

/// Failed pushes, for the log's rate limit.
#[derive(Default)]
struct Failures {
    count: u64,
    since_summary: u64,
    last_summary: Option<Instant>,
}

impl Failures {
    fn failed(&mut self, why: &str) {
        self.count += 1;
        self.since_summary += 1;
        let due = self
            .last_summary
            .is_none_or(|t| t.elapsed() >= SUMMARY_EVERY);
        if self.count == 1 {
            tracing::error!(error = %why, "cannot push the signed checkpoint out; retrying each round");
            self.last_summary = Some(Instant::now());
            self.since_summary = 0;
        } else if due {
            tracing::warn!(error = %why, failed = self.since_summary, total = self.count, "pushing the signed checkpoint out still fails");
            self.last_summary = Some(Instant::now());
            self.since_summary = 0;
        }
    }

    fn worked(&mut self) {
        if self.count > 0 {
            tracing::info!(
                failed = self.count,
                "the signed checkpoint is pushed out again"
            );
        }
        *self = Failures::default();
    }
}

/// Pushes the latest signed checkpoint out every interval, when a newer
/// one was signed, until shutdown.
pub(crate) async fn run(
    config: CheckpointsConfig,
    checkpoints: Arc<Checkpoints>,
    alerts: Alerts,
    cancel: CancellationToken,
) {
    if !config.publishes() {
        return;
    }
    let config = Arc::new(config);
    let mut tick = tokio::time::interval(Duration::from_secs(config.publish_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A note already in `file` is not pushed again after a restart.
    let kept = config
        .file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok());
    let mut pushed = checkpoints
        .latest()
        .filter(|l| kept.as_deref() == Some(l.note.as_str()))
        .map_or(0, |l| l.size);
    let mut failures = Failures::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(latest) = checkpoints.latest() else {
            continue;
        };
        // Every round, also after a restart: an endpoint that has not got
        // the latest yet gets it without waiting for a newer one.
        checkpoints.announce(&latest);
        if latest.size <= pushed {
            continue;
        }
        if !config.alert_channels.is_empty() {
            // Queued, never waited for: the alerts' sender retries and
            // counts what it drops.
            alerts.raise_to(
                Alert {
                    kind: AlertKind::Checkpoint,
                    rule: "checkpoint".into(),
                    count: latest.size,
                    window_secs: 0,
                    workflow: None,
                    messages: vec![latest.note.clone()],
                    at: crate::clock::now_micros(),
                },
                &config.alert_channels,
            );
        }
        let c = Arc::clone(&config);
        let note = latest.note;
        match tokio::task::spawn_blocking(move || push(&c, &note)).await {
            Ok(Ok(())) => {
                pushed = latest.size;
                failures.worked();
            }
            Ok(Err(e)) => failures.failed(&e),
            Err(e) => failures.failed(&e.to_string()),
        }
    }
}

/// Writes `note` to the configured places.
fn push(config: &CheckpointsConfig, note: &str) -> Result<(), String> {
    if let Some(file) = &config.file {
        crate::durable::replace(file, note.as_bytes())
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    if let Some(history) = &config.history_file {
        append(history, note).map_err(|e| format!("{}: {e}", history.display()))?;
    }
    Ok(())
}

fn append(path: &Path, note: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut entry = note.to_owned();
    if !entry.ends_with('\n') {
        entry.push('\n');
    }
    entry.push('\n');
    file.write_all(entry.as_bytes())?;
    file.sync_data()
}
