//! Signed checkpoints POSTed to an endpoint named in `[checkpoints]
//! webhooks`: each checkpoint the publish task pushes out (at most every
//! `publish_interval_secs`, when a newer one was signed) is sent as a
//! message of type `auditlog.checkpoint`, signed like the events, with
//! `webhook-id` `checkpoint-<tree size>`. The body is documented in
//! docs/integrations.md.
//!
//! Each such endpoint has a second task for them, apart from its events'
//! task, with its own position: `<data_dir>/webhooks/<name>.checkpoint`,
//! the tree size of the last checkpoint delivered, replaced whole and
//! durably after each delivery. So events and checkpoints never wait for
//! each other, and neither waits on the write path: the task reads a watch
//! of the latest checkpoint pushed out. Only the latest matters: one still
//! being retried when a newer one is pushed is dropped for the newer one,
//! which vouches for everything the older one did. Delivery is at least
//! once, as for events: a crash between the POST and the saved position
//! sends that checkpoint again, with the same `webhook-id`.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Endpoint, Message, Undelivered, save_position};
use crate::checkpoint::{Checkpoints, Signed};
use crate::clock::{format_timestamp, now_micros};

/// How one checkpoint's delivery ended.
enum Outcome {
    Delivered,
    /// A newer checkpoint was pushed while this one was retried.
    Superseded,
    Shutdown,
    /// The endpoint answered `410 Gone` (to this task or the events'):
    /// paused until restart.
    Gone,
}

/// Delivers each checkpoint announced by `checkpoints` to `endpoint`,
/// until shutdown.
pub(super) async fn run(
    endpoint: Arc<Endpoint>,
    checkpoints: Arc<Checkpoints>,
    position: PathBuf,
    cancel: CancellationToken,
) {
    let name = endpoint.config.name.clone();
    let client = match endpoint.http_client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(webhook = %name, error = %e, "cannot build the HTTP client for checkpoints");
            return;
        }
    };
    let mut delivered = match std::fs::read_to_string(&position) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(size) => size,
            Err(_) => {
                tracing::error!(webhook = %name, path = %position.display(), "the checkpoint position is not a tree size; not delivering checkpoints");
                return;
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::error!(webhook = %name, path = %position.display(), error = %e, "cannot read the checkpoint position; not delivering checkpoints");
            return;
        }
    };
    let origin = checkpoints.origin().to_owned();
    let mut published = checkpoints.published();
    loop {
        let latest = published.borrow_and_update().clone();
        if let Some(signed) = latest.filter(|s| s.size > delivered) {
            match deliver(
                &endpoint,
                &client,
                &origin,
                &signed,
                &mut published,
                &cancel,
            )
            .await
            {
                Outcome::Delivered => {
                    delivered = signed.size;
                    let path = position.clone();
                    let saved =
                        tokio::task::spawn_blocking(move || save_position(&path, signed.size))
                            .await
                            .map_err(std::io::Error::other)
                            .and_then(|r| r);
                    if let Err(e) = saved {
                        tracing::warn!(webhook = %name, error = %e, "could not save the checkpoint position");
                    }
                }
                Outcome::Superseded => {}
                Outcome::Shutdown | Outcome::Gone => return,
            }
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = published.changed() => if changed.is_err() { return },
        }
    }
}

/// POSTs `signed`, retrying until it is accepted, a newer checkpoint is
/// announced, or shutdown.
async fn deliver(
    endpoint: &Endpoint,
    client: &reqwest::Client,
    origin: &str,
    signed: &Signed,
    published: &mut watch::Receiver<Option<Signed>>,
    cancel: &CancellationToken,
) -> Outcome {
    let body = payload(origin, signed).to_string();
    let id = format!("checkpoint-{}", signed.size);
    let stop = async {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Outcome::Shutdown,
                changed = published.changed() => {
                    if changed.is_err() {
                        return Outcome::Shutdown;
                    }
                    if published.borrow().as_ref().is_some_and(|l| l.size > signed.size) {
                        return Outcome::Superseded;
                    }
                }
            }
        }
    };
    let message = Message::Checkpoint {
        tree_size: signed.size,
    };
    match endpoint
        .deliver_with_retry(client, message, &id, &body, stop)
        .await
    {
        Ok(()) => Outcome::Delivered,
        Err(Undelivered::Stopped(stopped)) => stopped,
        Err(Undelivered::Gone) => Outcome::Gone,
    }
}

/// The JSON body: the Standard Webhooks envelope around the checkpoint.
fn payload(origin: &str, signed: &Signed) -> Value {
    json!({
        "type": "auditlog.checkpoint",
        "timestamp": format_timestamp(now_micros()),
        "data": {
            "origin": origin,
            "tree_size": signed.size,
            "root_hash": STANDARD.encode(signed.root),
            "note": signed.note,
        }
    })
}
