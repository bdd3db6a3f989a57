//! The server's configuration: defaults, then a TOML file (`--config`), then
//! `AUDITLOG_*` environment variables, then command-line flags, each layer
//! overriding the one before.
//!
//! Every key `foo_bar` is also `AUDITLOG_FOO_BAR`; a nested key
//! (`[alerts.email] host`) is `AUDITLOG_ALERTS__EMAIL__HOST`. Unknown keys are
//! rejected, naming the key and where it came from. Secrets are never printed:
//! they are wrapped in [`Secret`] (from `keys`), whose `Debug` is redacted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use describe::describe;
use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::redaction::{self, PathIs};

// The sections of a `Config` and the types of their values, for whoever
// builds one in code (an embedding program, the tests).
pub use crate::alerts::{AlertsConfig, EmailConfig, HookConfig, RuleConfig, Security};
pub use crate::auth::{Role, TokenConfig};
pub use crate::checkpoint::CheckpointsConfig;
pub use crate::cluster::ClusterConfig;
pub use crate::compliance::ComplianceConfig;
pub use crate::keys::Secret;
pub use crate::performance::{DegradationConfig, PerformanceConfig};
pub use crate::store::Durability;
pub use crate::telemetry::TracingConfig;
pub use crate::webhooks::{Start, WebhookConfig};

/// Client-side variables (the CLI's, `AUDITLOG_` left off, in lower case)
/// that may be set in the same shell and are not server configuration:
/// every `AUDITLOG_*` variable the `auditlog` CLI reads (a unit test checks
/// the list against the CLI's sources, so a variable it adds is not taken
/// for an unknown key here).
const CLIENT_VARS: &[&str] = &[
    "server",
    "token",
    "ca_cert",
    "client_cert",
    "client_key",
    "verifier_key",
];

/// The server configuration. Every field documents its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The address gRPC is served on, `IP:PORT` or `HOST:PORT`; a host name
    /// (`localhost:50051`) is resolved once, at start, to its first IPv4
    /// address, else its first address. Default `127.0.0.1:50051`.
    #[serde(deserialize_with = "listen_addr")]
    pub listen: SocketAddr,
    /// Where the log, its quarantine and the generated key live. Default
    /// `./data`.
    pub data_dir: PathBuf,
    /// The HMAC key records are signed with: at least 32 bytes, used as the
    /// bytes of the string. Default: none, in which case a random key is
    /// generated once into `<data_dir>/hmac.key` and reused.
    pub hmac_key: Option<Secret>,
    /// A file holding the HMAC key (trailing whitespace ignored); an
    /// alternative to `hmac_key`. Default: none.
    pub hmac_key_file: Option<PathBuf>,
    /// The id recorded in each record's `key_id`, naming the key that signed
    /// it. Default `k1`.
    pub hmac_key_id: String,
    /// Keys that signed earlier records and now only verify them, after a
    /// rotation of the HMAC key: each an `id` (the `key_id` those records
    /// carry) and a `key_file`. Default: none.
    pub retired_hmac_keys: Vec<RetiredHmacKey>,
    /// When an acknowledged event is on stable storage: `fsync` (default;
    /// `fdatasync` before every acknowledgement, shared by all callers of a
    /// group commit) or `os_buffered` (acknowledged once in the OS page cache;
    /// survives a server crash but not a power loss).
    pub durability: Durability,
    /// How long shutdown waits for in-flight calls before giving up, in
    /// seconds. Default 10.
    pub shutdown_grace_secs: u64,
    /// Seal the active segment and start a new one once it passes this size,
    /// in MiB (fractions allowed). Default 50. The sealer holds a sealed
    /// segment of up to 64 MiB in memory while it compresses it (larger ones
    /// in 64 MiB slabs), so this is also the server's transient memory for
    /// sealing.
    pub max_file_size_mb: f64,
    /// Seal the active segment once its first record is this many seconds
    /// old, even if nothing more is written; 0 seals by size only. Retention
    /// deletes only sealed segments, so an event is purged at the latest
    /// `retention_days` + this + `retention_check_secs` after it was logged.
    /// Default 86400 (one day).
    pub max_segment_age_secs: u64,
    /// Write a lead copy beside each compressed segment: the records that
    /// name a lead, grouped by lead, so a lead's history inflates a few KiB
    /// per segment instead of one gzip member per event. In the benchmark log
    /// the copies took 1.3 times the space of the compressed segments.
    /// Default true.
    pub lead_copies: bool,
    /// Delete compressed segments whose newest event is older than this many
    /// days (fractions allowed); 0 keeps everything. Default 90.
    pub retention_days: f64,
    /// How often the retention task runs, in seconds. Default 3600.
    pub retention_check_secs: u64,
    /// Alert rules and channels (`[alerts]`, `[[alerts.rules]]`,
    /// `[alerts.email]`, `[alerts.slack]`, ...). Default: the `errors` rule,
    /// hourly verification, no channel (alerts are only logged).
    pub alerts: AlertsConfig,
    /// Outgoing webhook endpoints (`[[webhooks]]`). Default: none.
    pub webhooks: Vec<WebhookConfig>,
    /// TLS (`[tls]`): certificate and key files, and optionally a client CA
    /// for mutual TLS. Default: none (plaintext).
    pub tls: Option<TlsConfig>,
    /// Bearer tokens with roles (`[[tokens]]`), by SHA-256. Default: none, and
    /// then every call is allowed.
    pub tokens: Vec<TokenConfig>,
    /// Serve a non-loopback address without both TLS and tokens. Default
    /// false: such a server refuses to start.
    pub allow_insecure: bool,
    /// Calls in flight across the server before new ones are refused with
    /// RESOURCE_EXHAUSTED (health and reflection exempt). Default 1024.
    pub max_in_flight: usize,
    /// Concurrent HTTP/2 streams (calls) per connection. Default 256.
    pub max_streams_per_connection: u32,
    /// HTTP/2 keepalive ping interval in seconds; a peer that does not answer
    /// within 20 s more is dropped. Default 30.
    pub keepalive_secs: u64,
    /// How long a call may take before it is answered DEADLINE_EXCEEDED (a
    /// stream: until it starts answering); a caller's shorter `grpc-timeout`
    /// wins. Default 60.
    pub handler_timeout_secs: u64,
    /// How long a call's request message may take to arrive after its
    /// headers before the call is answered DEADLINE_EXCEEDED. A call holds no
    /// slot of `max_in_flight` until its message is read. Default 10.
    pub request_read_timeout_secs: u64,
    /// How long a new connection may take to send its first 33 bytes (the
    /// HTTP/2 preface and SETTINGS, or a TLS ClientHello) before it is
    /// closed. Default 10.
    pub handshake_timeout_secs: u64,
    /// Open client connections; one more is closed as soon as it is
    /// accepted. Lowered at start to leave 256 file descriptors for the log
    /// when the process's limit is tighter. Default 4096.
    pub max_connections: usize,
    /// Calls in flight for any one token (with `[[tokens]]`), so one token
    /// cannot take every slot of `max_in_flight`. Default 256.
    pub max_in_flight_per_token: usize,
    /// VerifyIntegrity calls that may wait while one runs; one more is
    /// refused with RESOURCE_EXHAUSTED. Verifications run one at a time at
    /// the lowest CPU priority. Default 2.
    pub max_queued_verifications: usize,
    /// Compliance mode (`[compliance]`): PII pseudonymisation. Default off.
    pub compliance: ComplianceConfig,
    /// Performance tracking (`[performance]`, `[performance.degradation]`):
    /// window size, server RPC timing, degradation alerts.
    pub performance: PerformanceConfig,
    /// The origin line of the signed checkpoints, also the name of their
    /// signing key: no spaces or `+`. Default `auditlog/<host name>`;
    /// required in cluster mode, one name for the whole cluster.
    pub checkpoint_origin: Option<String>,
    /// A file holding the checkpoint signing key (an Ed25519 private key
    /// as 64 hex characters), generated there if missing. Default:
    /// `<data_dir>/checkpoint.key`, generated on first start. Required in
    /// cluster mode, where the file must exist (it is never generated) and
    /// hold the one key every node shares.
    pub checkpoint_key_file: Option<PathBuf>,
    /// Where signed checkpoints are pushed out (`[checkpoints]`): a file,
    /// a history file, on an interval. Default: nowhere.
    pub checkpoints: CheckpointsConfig,
    /// How the server's own log (stderr) is written: `text`, one readable
    /// line per event, or `json`, one JSON object per line for a log
    /// shipper. Default `text`. Which lines are written is `RUST_LOG`'s
    /// (default `info`).
    pub log_format: LogFormat,
    /// Where Prometheus metrics are served (`GET /metrics`), `IP:PORT` or
    /// `HOST:PORT`, resolved as `listen` is. Default: none, no metrics
    /// listener. The endpoint has no authentication: keep it on loopback or
    /// a network only the scraper reaches.
    #[serde(deserialize_with = "metrics_addr")]
    pub metrics_listen: Option<SocketAddr>,
    /// OpenTelemetry traces (`[tracing]`: `otlp_endpoint`, `sample_ratio`,
    /// `service_name`). Default: off.
    pub tracing: TracingConfig,
    /// Cluster mode on NATS JetStream (`[cluster]`, see docs/cluster.md).
    /// Default: none, a single node with its own log.
    pub cluster: Option<ClusterConfig>,
    /// Parts a benchmark switches off (`auditlog_server::bench`); not a
    /// configuration key: no file, flag or variable sets it.
    #[doc(hidden)]
    #[serde(skip)]
    pub bench: crate::bench::Switches,
}

/// The format of the server's own log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (with `message`), and `span`/`spans` for the spans it happened in.
    Json,
}

/// The `[tls]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server certificate chain, PEM. Required.
    pub cert_file: PathBuf,
    /// Its private key, PEM. Required.
    pub key_file: PathBuf,
    /// With this CA (PEM), clients must present a certificate it signed
    /// (mutual TLS). Default: none.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("data"),
            hmac_key: None,
            hmac_key_file: None,
            hmac_key_id: "k1".to_owned(),
            retired_hmac_keys: Vec::new(),
            durability: Durability::Fsync,
            shutdown_grace_secs: 10,
            max_file_size_mb: 50.0,
            max_segment_age_secs: 86_400,
            lead_copies: true,
            retention_days: 90.0,
            retention_check_secs: 3600,
            alerts: AlertsConfig::default(),
            webhooks: Vec::new(),
            tls: None,
            tokens: Vec::new(),
            allow_insecure: false,
            max_in_flight: 1024,
            max_streams_per_connection: 256,
            keepalive_secs: 30,
            handler_timeout_secs: 60,
            request_read_timeout_secs: 10,
            handshake_timeout_secs: 10,
            max_connections: 4096,
            max_in_flight_per_token: 256,
            max_queued_verifications: 2,
            compliance: ComplianceConfig::default(),
            performance: PerformanceConfig::default(),
            log_format: LogFormat::Text,
            checkpoint_origin: None,
            checkpoint_key_file: None,
            checkpoints: CheckpointsConfig::default(),
            metrics_listen: None,
            tracing: TracingConfig::default(),
            cluster: None,
            bench: crate::bench::Switches::default(),
        }
    }
}

/// Values given as command-line flags; they override everything else.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `IP:PORT` or `HOST:PORT`, resolved as the `listen` key is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// `IP:PORT` or `HOST:PORT`, resolved as the `metrics_listen` key is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Keys of the `[tracing]` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingOverrides>,
}

/// Flags that set keys of the `[tracing]` section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TracingOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value figment could not read: each error names the key as it is
    /// written in the TOML file and where the value came from (the file, an
    /// `AUDITLOG_*` variable or a flag), on one line ([`describe`]).
    #[error("{}", describe(.0))]
    Parse(Box<figment::Error>),
    /// An unknown key the old Python logger used: the error says what to
    /// write instead.
    #[error("{}; `{key}` is the old logger's key: use {instead}", describe(.error))]
    OldKey {
        error: Box<figment::Error>,
        key: String,
        instead: &'static str,
    },
    #[error("configuration file {0} does not exist")]
    NoFile(String),
    #[error("configuration key {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Reads `listen` as `IP:PORT`, or as `HOST:PORT` with the host resolved.
fn listen_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    resolve_listen(&text).map_err(serde::de::Error::custom)
}

/// Reads `metrics_listen` as `listen` is read; absent is no listener.
fn metrics_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.map(|t| resolve_listen(&t).map_err(serde::de::Error::custom))
        .transpose()
}

/// `IP:PORT` as it is; `HOST:PORT` resolved to the host's first IPv4
/// address, else its first address (`localhost` is 127.0.0.1 wherever it
/// also names ::1, as clients that try IPv4 first expect).
fn resolve_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let hint = "use IP:PORT or HOST:PORT, e.g. 127.0.0.1:50051 or localhost:50051";
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|e| format!("{text:?} is not an address ({e}); {hint}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{text:?} resolves to no address; {hint}"))
}

impl ConfigError {
    /// A figment error; one naming an old logger's key says what replaced it.
    fn parse(error: figment::Error) -> ConfigError {
        let error = without_urls(error);
        let old = error.clone().into_iter().find_map(|e| match e.kind {
            figment::error::Kind::UnknownField(key, _) => {
                crate::alerts::new_place_of(&key).map(|instead| (key, instead))
            }
            _ => None,
        });
        match old {
            Some((key, instead)) => ConfigError::OldKey {
                error: Box::new(error),
                key,
                instead,
            },
            None => ConfigError::Parse(Box::new(error)),
        }
    }
}

/// `error` with every URL it quotes shown as `redaction::url` shows a
/// secret one: a value of the wrong type (a Slack URL where a table belongs)
/// is echoed by serde, and a URL in the config may be a credential.
fn without_urls(error: figment::Error) -> figment::Error {
    use figment::error::{Actual, Kind};
    let errors: Vec<figment::Error> = error
        .into_iter()
        .map(|mut e| {
            if let Kind::InvalidType(Actual::Str(value), _)
            | Kind::InvalidValue(Actual::Str(value), _)
            | Kind::Unsupported(Actual::Str(value))
            | Kind::UnsupportedKey(Actual::Str(value), _) = &mut e.kind
                && value.contains("://")
            {
                *value = redaction::url(value, PathIs::Secret);
            }
            e
        })
        .collect();
    // `into_iter` yields the newest first; `chain` puts its argument first.
    errors
        .into_iter()
        .rev()
        .reduce(|older, newer| older.chain(newer))
        .unwrap_or_else(|| figment::Error::from("invalid configuration"))
}

impl Config {
    /// Loads defaults, then `file`, then the environment, then `overrides`,
    /// and validates the result.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        Config::load_from(file, Env::prefixed("AUDITLOG_"), overrides)
    }

    fn load_from(
        file: Option<&Path>,
        env: Env,
        overrides: Overrides,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::NoFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: Config = figment
            .merge(env.split("__").ignore(CLIENT_VARS))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(ConfigError::parse)?;
        config.validate()?;
        Ok(config)
    }

    /// The checkpoints' origin: `checkpoint_origin` or the default.
    pub fn checkpoint_origin(&self) -> String {
        self.checkpoint_origin
            .clone()
            .unwrap_or_else(crate::checkpoint::default_origin)
    }

    /// The size at which the active segment is sealed, in bytes.
    pub fn max_segment_bytes(&self) -> u64 {
        (self.max_file_size_mb * 1024.0 * 1024.0).max(1.0) as u64
    }

    /// How old the active segment's first record may get before the segment
    /// is sealed; `None` when only its size seals it.
    pub fn max_segment_age(&self) -> Option<std::time::Duration> {
        (self.max_segment_age_secs > 0)
            .then(|| std::time::Duration::from_secs(self.max_segment_age_secs))
    }

    /// The retention period; `None` when retention is off.
    pub fn retention(&self) -> Option<std::time::Duration> {
        (self.retention_days > 0.0)
            .then(|| std::time::Duration::from_secs_f64(self.retention_days * 86_400.0))
    }

    /// The configured HMAC key's bytes, read from `hmac_key_file` if that is
    /// how it was given; `None` means "generate or reuse the key file".
    pub fn hmac_key_bytes(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        if let Some(k) = &self.hmac_key {
            return Ok(Some(k.expose().as_bytes().to_vec()));
        }
        let Some(path) = &self.hmac_key_file else {
            return Ok(None);
        };
        read_key_file(path)
            .map(Some)
            .map_err(|e| ConfigError::Invalid {
                key: "hmac_key_file",
                reason: format!("cannot read {}: {e}", path.display()),
            })
    }

    /// The retired HMAC keys' ids and bytes, read from their files
    /// (trailing whitespace ignored, as `hmac_key_file`'s).
    pub fn retired_hmac_key_bytes(&self) -> Result<Vec<(String, Vec<u8>)>, ConfigError> {
        self.retired_hmac_keys
            .iter()
            .map(|retired| {
                let bytes = read_key_file(&retired.key_file).map_err(|e| ConfigError::Invalid {
                    key: "retired_hmac_keys",
                    reason: format!(
                        "cannot read the key file of {:?}, {}: {e}",
                        retired.id,
                        retired.key_file.display()
                    ),
                })?;
                if bytes.len() < crate::keys::MIN_KEY_LEN {
                    return Err(ConfigError::Invalid {
                        key: "retired_hmac_keys",
                        reason: format!(
                            "the key of {:?} in {} is {} bytes long; an HMAC key is at least {}",
                            retired.id,
                            retired.key_file.display(),
                            bytes.len(),
                            crate::keys::MIN_KEY_LEN
                        ),
                    });
                }
                Ok((retired.id.clone(), bytes))
            })
            .collect()
    }
}

/// The bytes of an HMAC key file, trailing whitespace left out.
fn read_key_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)?;
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    Ok(bytes)
}

/// An HMAC key that verifies the records it signed before a rotation and
/// signs nothing more (`[[retired_hmac_keys]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredHmacKey {
    /// The `key_id` of the records it signed.
    pub id: String,
    /// The file holding the key, as `hmac_key_file` does.
    pub key_file: PathBuf,
}

mod describe;
mod print;
mod validate;

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's own test API
mod tests;
