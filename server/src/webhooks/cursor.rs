//! An endpoint's delivery position as the cluster keeps it: the key
//! `webhook.<name>` in the bucket `<stream>_cursors`, its value the last
//! seq delivered, in decimal. The leader writes it at most every
//! [`SAVE_EVERY`] while it delivers and once more when it steps down; a
//! node taking over reads it and resumes after it.
//!
//! The value only ever grows: a write compares and sets on the entry's
//! revision and leaves a higher value alone, so a deposed leader's late
//! write never moves a newer leader's position back (that would only
//! repeat events, but needlessly).

use std::time::Duration;

use async_nats::jetstream::kv;

/// How often, at most, a leader writes an advancing position.
pub(super) const SAVE_EVERY: Duration = Duration::from_secs(1);

/// How many times a write that lost a race is tried again.
const ATTEMPTS: usize = 5;

fn key(name: &str) -> String {
    // Endpoint names are letters, digits, '-' and '_' (`config.rs`), all
    // valid in a key.
    format!("webhook.{name}")
}

/// The position the cluster holds for endpoint `name`, with the revision
/// it was read at; `None` when no leader saved one yet.
async fn read(kv: &kv::Store, name: &str) -> Result<Option<(u64, u64)>, String> {
    let Some(entry) = kv
        .entry(key(name))
        .await
        .map_err(|e| format!("reading the position of webhook {name}: {e}"))?
    else {
        return Ok(None);
    };
    if entry.operation != kv::Operation::Put {
        return Ok(None);
    }
    let seq = std::str::from_utf8(&entry.value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "the position of webhook {name} in bucket {} is not a seq number",
                kv.name
            )
        })?;
    Ok(Some((seq, entry.revision)))
}

/// The last seq delivered to endpoint `name`, as the cluster holds it.
pub(super) async fn load(kv: &kv::Store, name: &str) -> Result<Option<u64>, String> {
    Ok(read(kv, name).await?.map(|(seq, _)| seq))
}

/// Records that endpoint `name` was delivered up to `seq`, unless the
/// bucket already holds as much or more.
pub(super) async fn advance(kv: &kv::Store, name: &str, seq: u64) -> Result<(), String> {
    let value = bytes::Bytes::from(seq.to_string());
    for _ in 0..ATTEMPTS {
        let written = match read(kv, name).await? {
            Some((held, _)) if held >= seq => return Ok(()),
            Some((_, revision)) => kv
                .update(key(name), value.clone(), revision)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            None => kv
                .create(key(name), value.clone())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        };
        match written {
            Ok(()) => return Ok(()),
            // Another writer came first: look again.
            Err(e) => {
                tracing::debug!(webhook = %name, error = %e, "position write raced; retrying")
            }
        }
    }
    Err(format!(
        "saving the position of webhook {name} in bucket {}: another writer kept changing it",
        kv.name
    ))
}
