//! The JetStream side of the log: the stream (the source of truth in cluster
//! mode), the key-value bucket of the leader lease and the one of delivery
//! positions, created when missing and checked when present, and the
//! stream's tail, where a new leader continues the chain.
//!
//! The stream keeps everything (no age, size or count limit, so `discard`
//! never drops a message), on file storage, in `replicas` copies; a message
//! cannot be deleted one by one (`deny_delete`), while purges stay allowed
//! for retention. Publish retries within two minutes are recognised by
//! their `Nats-Msg-Id` (seqs and last signature, `leader.rs`) and stored
//! once.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use super::{ClusterConfig, ClusterError};

/// How long JetStream remembers a `Nats-Msg-Id`, so a publish retried after
/// a lost acknowledgement is stored once.
pub(crate) const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The last message of the stream: where the chain continues.
#[derive(Debug, Clone)]
pub(crate) struct Tail {
    /// The stream sequence of the message.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) stream_seq: u64,
    /// The message: a group of record lines, each ending in `\n`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) lines: bytes::Bytes,
    /// The seq of its last record (its `Auditlog-Seq` header).
    pub(crate) last_record: u64,
}

/// The stream's configuration as this node would create it.
pub(crate) fn stream_config(config: &ClusterConfig) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        description: Some("auditlog: signed record lines, one group commit per message".into()),
        subjects: vec![config.subject()],
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates the stream, or checks that the one there is fit to hold the log.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    config: &ClusterConfig,
) -> Result<stream::Stream, ClusterError> {
    let mut found = js
        .get_or_create_stream(stream_config(config))
        .await
        .map_err(|e| ClusterError::Setup(format!("stream {}: {e}", config.stream)))?;
    let have = &found
        .info()
        .await
        .map_err(|e| ClusterError::Setup(format!("stream {}: {e}", config.stream)))?
        .config;
    match unfit(have, config) {
        None => Ok(found),
        // Not NATS being slow: an operator must fix it, asking again won't.
        Some(why) => Err(ClusterError::Unfit(why)),
    }
}

/// Why the stream configured `have` cannot hold the log (it could drop or
/// delete messages, or is not the stream `config` names), or `None`. Asked
/// at setup and again every second while the node runs (`Node::watch_lag`),
/// since anyone with NATS access can edit the stream under a running
/// cluster.
pub(crate) fn unfit(have: &stream::Config, config: &ClusterConfig) -> Option<String> {
    let want = stream_config(config);
    let mut wrong = Vec::new();
    if have.subjects != want.subjects {
        wrong.push(format!(
            "subjects {:?}, not {:?}",
            have.subjects, want.subjects
        ));
    }
    if have.num_replicas != want.num_replicas {
        wrong.push(format!(
            "{} replicas, not the {} of cluster.replicas",
            have.num_replicas, want.num_replicas
        ));
    }
    if have.storage != stream::StorageType::File {
        wrong.push("memory storage, not file".into());
    }
    if !have.deny_delete {
        wrong.push("deny_delete off".into());
    }
    if have.sealed {
        wrong.push(
            "the stream sealed (it takes no message any more, and cannot be unsealed: \
             only another stream takes writes)"
                .into(),
        );
    }
    if have.max_age != Duration::ZERO || have.max_messages > 0 || have.max_bytes > 0 {
        wrong.push("limits that drop old messages (max_age, max_msgs or max_bytes)".into());
    }
    if have.duplicate_window < DUPLICATE_WINDOW {
        wrong.push(format!(
            "a duplicate window of {:?}, under {DUPLICATE_WINDOW:?}",
            have.duplicate_window
        ));
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "stream {} exists with {}; fix it with `nats stream edit` or name another stream \
             in cluster.stream",
            config.stream,
            wrong.join(", ")
        )
    })
}

/// Creates the lease bucket, or opens the one there when its entries live
/// as long as `lease_ttl_ms` says.
pub(crate) async fn ensure_lease_bucket(
    js: &jetstream::Context,
    config: &ClusterConfig,
) -> Result<kv::Store, ClusterError> {
    let bucket = config.lease_bucket();
    let created = js
        .create_key_value(kv::Config {
            bucket: bucket.clone(),
            description: "auditlog: the leader lease".into(),
            history: 1,
            max_age: config.lease_ttl(),
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await;
    let store = match created {
        Ok(store) => return Ok(store),
        Err(create) => js.get_key_value(&bucket).await.map_err(|get| {
            ClusterError::Setup(format!(
                "lease bucket {bucket}: cannot create it ({create}) nor open it ({get})"
            ))
        })?,
    };
    let age = store
        .status()
        .await
        .map_err(|e| ClusterError::Setup(format!("lease bucket {bucket}: {e}")))?
        .max_age();
    if age != config.lease_ttl() {
        return Err(ClusterError::Setup(format!(
            "lease bucket {bucket} keeps entries {age:?}, but cluster.lease_ttl_ms says {:?}; \
             give every node the same lease_ttl_ms",
            config.lease_ttl()
        )));
    }
    Ok(store)
}

/// Creates the bucket of delivery positions (`<stream>_cursors`: one key
/// per webhook endpoint, kept like the stream: file storage, `replicas`
/// copies, no expiry), or opens the one there.
pub(crate) async fn ensure_cursor_bucket(
    js: &jetstream::Context,
    config: &ClusterConfig,
) -> Result<kv::Store, ClusterError> {
    let bucket = config.cursor_bucket();
    let created = js
        .create_key_value(kv::Config {
            bucket: bucket.clone(),
            description: "auditlog: where each webhook endpoint's delivery stands".into(),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        Err(create) => js.get_key_value(&bucket).await.map_err(|get| {
            ClusterError::Setup(format!(
                "cursor bucket {bucket}: cannot create it ({create}) nor open it ({get})"
            ))
        }),
    }
}

/// Whether a stream ending at message `last` lost messages a replica holds
/// that took in messages up to `applied` and holds records up to `head`:
/// it ends before them, or is empty while the replica holds records (its
/// `cluster.pos`, written lazily, may be missing or behind; retention never
/// empties the stream).
pub(crate) fn lost_by(last: u64, applied: u64, head: u64) -> bool {
    last < applied || (last == 0 && head > 0)
}

/// Why a node refuses a stream that ends at message `last` when its replica
/// took in messages up to `applied`, further: the stream lost messages the
/// replica holds (deleted and created again, or NATS lost its store).
pub(crate) fn lost(stream: &str, last: u64, applied: u64, head: u64) -> String {
    format!(
        "stream {stream} ends at message {last}, but this node's replica holds records up to \
         seq {head}, taken in from stream messages up to {applied}: the stream lost messages \
         this replica holds (it was deleted and created again, or NATS lost its store); no \
         node signs on top of it. Restore the stream (docs/cluster.md, \"A stream that lost \
         messages\")"
    )
}

/// The stream's last message, `None` while it is empty.
pub(crate) async fn tail(
    stream: &stream::Stream,
    subject: &str,
) -> Result<Option<Tail>, ClusterError> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => {
            let last_record = message
                .headers
                .get(super::leader::SEQ_HEADER)
                .and_then(|v| v.as_str().rsplit('-').next()?.parse().ok())
                .ok_or_else(|| {
                    ClusterError::Nats(format!(
                        "stream message {} has no {} header: it was not written by auditlog",
                        message.sequence,
                        super::leader::SEQ_HEADER
                    ))
                })?;
            Ok(Some(Tail {
                stream_seq: message.sequence,
                lines: message.payload,
                last_record,
            }))
        }
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(ClusterError::Nats(format!(
            "reading the tail of the stream: {e}"
        ))),
    }
}
