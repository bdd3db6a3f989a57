//! What the types of a [`Config`] cannot say: keys that exclude each other,
//! ranges, and the sections' own checks, each refused naming the key.

use super::{Config, ConfigError};
use crate::keys::MIN_KEY_LEN;

/// The longest `max_segment_age_secs` accepted: 100 years, far past any
/// retention, and small enough that the age in microseconds cannot
/// overflow.
const MAX_SEGMENT_AGE_SECS: u64 = 100 * 366 * 86_400;
/// The longest `retention_days` accepted: the same 100 years (a larger one
/// overflowed the retention period's `Duration` and stopped the server
/// with a panic).
const MAX_RETENTION_DAYS: f64 = 100.0 * 366.0;

impl Config {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hmac_key.is_some() && self.hmac_key_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "hmac_key",
                reason: "set either hmac_key or hmac_key_file, not both".into(),
            });
        }
        if let Some(key) = &self.hmac_key
            && key.expose().len() < MIN_KEY_LEN
        {
            return Err(ConfigError::Invalid {
                key: "hmac_key",
                reason: format!(
                    "the key is {} bytes long; use at least {} (e.g. `openssl rand -hex 32`)",
                    key.expose().len(),
                    MIN_KEY_LEN
                ),
            });
        }
        self.compliance
            .validate(self.hmac_key.as_ref())
            .and_then(|()| self.performance.validate())
            .and_then(|()| self.tracing.validate())
            .map_err(|(key, reason)| ConfigError::Invalid { key, reason })?;
        let bad_id = |id: &str| format!("{id:?} is not 1 to 32 letters, digits, '-' or '_'");
        if !key_id_ok(&self.hmac_key_id) {
            return Err(ConfigError::Invalid {
                key: "hmac_key_id",
                reason: bad_id(&self.hmac_key_id),
            });
        }
        for (i, retired) in self.retired_hmac_keys.iter().enumerate() {
            let reason = if !key_id_ok(&retired.id) {
                bad_id(&retired.id)
            } else if retired.id == self.hmac_key_id {
                format!(
                    "{:?} is hmac_key_id, the key that signs: a rotation gives the new key a \
                     new id and keeps the old one here",
                    retired.id
                )
            } else if self.retired_hmac_keys[..i]
                .iter()
                .any(|r| r.id == retired.id)
            {
                format!("{:?} is named twice", retired.id)
            } else {
                continue;
            };
            return Err(ConfigError::Invalid {
                key: "retired_hmac_keys",
                reason,
            });
        }
        if let Some(origin) = &self.checkpoint_origin
            && (origin.is_empty() || origin.contains(|c: char| c.is_whitespace() || c == '+'))
        {
            return Err(ConfigError::Invalid {
                key: "checkpoint_origin",
                reason: format!(
                    "{origin:?} is not a key name: it must be non-empty, without spaces or '+' \
                     (e.g. auditlog/example.com)"
                ),
            });
        }
        let endpoints: Vec<&str> = self.webhooks.iter().map(|w| w.name.as_str()).collect();
        if let Some((key, reason)) = self.checkpoints.problem(&endpoints) {
            return Err(ConfigError::Invalid { key, reason });
        }
        if !(self.max_file_size_mb > 0.0 && self.max_file_size_mb.is_finite()) {
            return Err(ConfigError::Invalid {
                key: "max_file_size_mb",
                reason: format!(
                    "is {}; it must be a positive number of MiB",
                    self.max_file_size_mb
                ),
            });
        }
        if self.max_segment_age_secs > MAX_SEGMENT_AGE_SECS {
            return Err(ConfigError::Invalid {
                key: "max_segment_age_secs",
                reason: format!(
                    "is {}; it must be 0 (seal by size only) or a number of seconds up to {} \
                     (100 years)",
                    self.max_segment_age_secs, MAX_SEGMENT_AGE_SECS
                ),
            });
        }
        if !(self.retention_days >= 0.0 && self.retention_days <= MAX_RETENTION_DAYS) {
            return Err(ConfigError::Invalid {
                key: "retention_days",
                reason: format!(
                    "is {}; it must be 0 (keep everything) or a positive number of days up \
                     to {MAX_RETENTION_DAYS} (100 years)",
                    self.retention_days
                ),
            });
        }
        // Counts and seconds past these once stopped the server with a
        // panic (a semaphore's permit limit, an `Instant` overflowed).
        const MAX_COUNT: u64 = 1 << 20;
        const MAX_SECS: u64 = MAX_SEGMENT_AGE_SECS;
        for (key, value, max) in [
            ("max_in_flight", self.max_in_flight as u64, MAX_COUNT),
            (
                "max_streams_per_connection",
                u64::from(self.max_streams_per_connection),
                MAX_COUNT,
            ),
            ("keepalive_secs", self.keepalive_secs, MAX_SECS),
            ("handler_timeout_secs", self.handler_timeout_secs, MAX_SECS),
            (
                "request_read_timeout_secs",
                self.request_read_timeout_secs,
                MAX_SECS,
            ),
            (
                "handshake_timeout_secs",
                self.handshake_timeout_secs,
                MAX_SECS,
            ),
            ("max_connections", self.max_connections as u64, MAX_COUNT),
            (
                "max_in_flight_per_token",
                self.max_in_flight_per_token as u64,
                MAX_COUNT,
            ),
            ("retention_check_secs", self.retention_check_secs, MAX_SECS),
        ] {
            if value == 0 || value > max {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("is {value}; it must be from 1 to {max}"),
                });
            }
        }
        for (key, value, max) in [
            ("shutdown_grace_secs", self.shutdown_grace_secs, MAX_SECS),
            (
                "max_queued_verifications",
                self.max_queued_verifications as u64,
                MAX_COUNT,
            ),
        ] {
            if value > max {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("is {value}; it must be from 0 to {max}"),
                });
            }
        }
        self.alerts
            .validate()
            .map_err(|reason| ConfigError::Invalid {
                key: "alerts",
                reason,
            })?;
        for (i, w) in self.webhooks.iter().enumerate() {
            w.validate(i, &self.webhooks)
                .map_err(|e| ConfigError::Invalid {
                    key: "webhooks",
                    reason: e.to_string(),
                })?;
        }
        for (i, t) in self.tokens.iter().enumerate() {
            t.validate(i, &self.tokens)
                .map_err(|reason| ConfigError::Invalid {
                    key: "tokens",
                    reason,
                })?;
        }
        if !self.listen.ip().is_loopback()
            && (self.tls.is_none() || self.tokens.is_empty())
            && !self.allow_insecure
        {
            return Err(ConfigError::Invalid {
                key: "listen",
                reason: format!(
                    "{} is reachable from the network, but TLS and tokens are not both \
                     configured, so anyone there could read and write the log; configure [tls] \
                     and [[tokens]], listen on 127.0.0.1, or set allow_insecure = true to accept \
                     that risk",
                    self.listen
                ),
            });
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "data_dir",
                reason: "must not be empty".into(),
            });
        }
        if let Some(cluster) = &self.cluster {
            cluster
                .validate()
                .map_err(|(key, reason)| ConfigError::Invalid { key, reason })?;
            // Whichever node leads signs the deliveries; a secret the server
            // generates would differ from node to node.
            if let Some(w) = self
                .webhooks
                .iter()
                .find(|w| w.secret.is_none() && w.secret_file.is_none())
            {
                return Err(ConfigError::Invalid {
                    key: "webhooks",
                    reason: format!(
                        "webhook {}: in cluster mode set secret or secret_file, the same on \
                         every node; a generated secret differs from node to node, and the \
                         receiver could not verify what the next leader delivers",
                        w.name
                    ),
                });
            }
            // Whichever node leads pseudonymises, and any node matches a
            // data subject: a key generated into each data directory would
            // give one person a token per node.
            let c = &self.compliance;
            if c.enabled && c.pseudonym_key.is_none() && c.pseudonym_key_file.is_none() {
                return Err(ConfigError::Invalid {
                    key: "compliance.pseudonym_key",
                    reason: "in cluster mode every node must pseudonymise with the same key: set \
                             compliance.pseudonym_key or pseudonym_key_file to one key shared \
                             by every node"
                        .into(),
                });
            }
            // Whichever node a witness asks signs the checkpoint: one key
            // and one origin for the cluster, so the nodes' checkpoints of
            // one tree size are the same bytes (checkpoint.rs).
            if self.checkpoint_key_file.is_none() {
                return Err(ConfigError::Invalid {
                    key: "checkpoint_key_file",
                    reason: "in cluster mode every node signs checkpoints with one shared key: \
                             make it once with `openssl rand -hex 32 > checkpoint.key && chmod \
                             600 checkpoint.key`, copy that file to every node and set \
                             checkpoint_key_file to it; a key generated into each data \
                             directory would give the cluster one identity per node, and a \
                             witness could follow only one node"
                        .into(),
                });
            }
            if self.checkpoint_origin.is_none() {
                return Err(ConfigError::Invalid {
                    key: "checkpoint_origin",
                    reason: "in cluster mode set checkpoint_origin to one name for the whole \
                             cluster, the same on every node (e.g. auditlog/audit.example.com); \
                             the default names this host, so each node would sign under its \
                             own name"
                        .into(),
                });
            }
        }
        Ok(())
    }
}

/// Whether `id` may name an HMAC key: 1 to 32 letters, digits, `-` or `_`.
fn key_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
