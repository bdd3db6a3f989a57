//! The admin subcommands: rotate and retention, which act on the log's
//! segments, and those that report on alerting and webhooks.

use auditlog_client::Client;
use serde_json::json;

use crate::CliError;
use crate::format::{Table, timestamp_text};

/// `auditlog rotate`: seals the active segment now.
pub(crate) async fn rotate(client: &Client, wait: bool, json: bool) -> Result<(), CliError> {
    let r = client.rotate(wait).await?;
    if json {
        say!(
            "{}",
            serde_json::json!({"rotated": r.rotated, "file": r.file, "first_seq": r.first_seq, "last_seq": r.last_seq})
        );
    } else if r.rotated {
        say!("sealed {} (seqs {}..={})", r.file, r.first_seq, r.last_seq);
    } else {
        say!("nothing to rotate: the active segment is empty");
    }
    Ok(())
}

/// `auditlog retention`: purges the segments older than the retention period.
pub(crate) async fn retention(client: &Client, json: bool) -> Result<(), CliError> {
    let r = client.apply_retention().await?;
    if json {
        say!(
            "{}",
            serde_json::json!({"segments": r.segments, "first_seq": r.first_seq, "through_seq": r.through_seq, "event_seq": r.event_seq})
        );
    } else if r.segments.is_empty() {
        say!("nothing to purge: no segment is older than the retention period");
    } else {
        say!(
            "purged {} segment(s), seqs {}..={}; recorded as event seq {}",
            r.segments.len(),
            r.first_seq,
            r.through_seq,
            r.event_seq
        );
    }
    Ok(())
}

pub(crate) async fn alerts_test(client: &Client, json: bool) -> Result<(), CliError> {
    let results = client.test_alerts().await?;
    if json {
        let all: Vec<_> = results
            .iter()
            .map(|r| json!({"channel": r.channel, "ok": r.ok, "error": r.error}))
            .collect();
        say!("{}", serde_json::Value::Array(all));
    } else if results.is_empty() {
        say!(
            "no alert channel is configured ([alerts.email], [alerts.slack], [alerts.discord], [alerts.webhook])"
        );
    } else {
        for r in &results {
            if r.ok {
                say!("{:<8} ok", r.channel);
            } else {
                say!("{:<8} FAILED: {}", r.channel, r.error);
            }
        }
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        return Err(CliError::Failed(format!(
            "{failed} of {} alert channel(s) failed",
            results.len()
        )));
    }
    Ok(())
}

pub(crate) async fn alerts_status(client: &Client, json: bool) -> Result<(), CliError> {
    let s = client.alert_status().await?;
    if json {
        let value = json!({
            "channels": s.channels.iter().map(|c| json!({
                "channel": c.channel, "sent": c.sent, "failed": c.failed, "last_error": c.last_error,
            })).collect::<Vec<_>>(),
            "rules": s.rules.iter().map(|r| json!({
                "name": r.name, "in_window": r.in_window, "fired": r.fired,
                "last_fired": r.last_fired.as_ref().map(|t| timestamp_text(Some(t))),
            })).collect::<Vec<_>>(),
            "dropped": s.dropped,
            "missed": s.missed,
        });
        say!("{value}");
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let mut channels = Table::new(vec!["CHANNEL", "SENT", "FAILED", "LAST ERROR"]);
    for c in &s.channels {
        channels.row(vec![
            c.channel.clone(),
            c.sent.to_string(),
            c.failed.to_string(),
            c.last_error.clone(),
        ]);
    }
    channels.print(&mut out)?;
    let mut rules = Table::new(vec!["RULE", "IN WINDOW", "FIRED", "LAST FIRED"]);
    for r in &s.rules {
        rules.row(vec![
            r.name.clone(),
            r.in_window.to_string(),
            r.fired.to_string(),
            timestamp_text(r.last_fired.as_ref()),
        ]);
    }
    std::io::Write::write_all(&mut out, b"\n")?;
    rules.print(&mut out)?;
    if s.dropped > 0 || s.missed > 0 {
        eprintln!(
            "warning: {} alert(s) dropped (queue full), {} committed group(s) not counted",
            s.dropped, s.missed
        );
    }
    Ok(())
}

pub(crate) async fn webhooks_status(client: &Client, json: bool) -> Result<(), CliError> {
    let endpoints = client.webhook_status().await?;
    if json {
        let all: Vec<_> = endpoints
            .iter()
            .map(|w| {
                json!({
                    "name": w.name, "url": w.url, "delivered_seq": w.delivered_seq,
                    "delivered": w.delivered, "failures": w.failures,
                    "consecutive_failures": w.consecutive_failures, "behind": w.behind,
                    "last_error": w.last_error,
                    "last_error_at": w.last_error_at.as_ref().map(|t| timestamp_text(Some(t))),
                    "secret_generated": w.secret_generated, "skipped": w.skipped,
                    "paused": w.paused,
                })
            })
            .collect();
        say!("{}", serde_json::Value::Array(all));
        return Ok(());
    }
    if endpoints.is_empty() {
        say!("no webhook is configured ([[webhooks]] in the server config)");
        return Ok(());
    }
    let mut table = Table::new(vec![
        "NAME",
        "DELIVERED SEQ",
        "BEHIND",
        "DELIVERED",
        "FAILURES",
        "LAST ERROR",
    ]);
    for w in &endpoints {
        let error = if w.last_error.is_empty() {
            String::new()
        } else {
            format!(
                "{} ({})",
                w.last_error,
                timestamp_text(w.last_error_at.as_ref())
            )
        };
        table.row(vec![
            w.name.clone(),
            w.delivered_seq.to_string(),
            w.behind.to_string(),
            w.delivered.to_string(),
            w.failures.to_string(),
            error,
        ]);
    }
    table.print(&mut std::io::stdout().lock())?;
    for w in endpoints.iter().filter(|w| w.paused) {
        say!(
            "{} answered 410 Gone: delivery to it is paused until the server restarts \
             (nothing is skipped)",
            w.name
        );
    }
    for w in endpoints.iter().filter(|w| w.secret_generated) {
        say!(
            "{} signs with a generated secret: `auditlog webhooks secret {}` shows it",
            w.name,
            w.name
        );
    }
    Ok(())
}

/// `auditlog webhooks secret NAME`: the generated signing secret, alone on
/// its line (or `{"name", "secret"}` with `--json`).
pub(crate) async fn webhook_secret(
    client: &Client,
    name: &str,
    json: bool,
) -> Result<(), CliError> {
    let secret = client.webhook_secret(name).await?;
    if json {
        say!("{}", json!({"name": name, "secret": secret}));
    } else {
        say!("{secret}");
    }
    Ok(())
}
