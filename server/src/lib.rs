//! auditlog-server: a tamper-evident, append-only audit log served over gRPC.
//!
//! Bird's-eye view: [`service`] turns gRPC calls into store calls; the
//! [`store`] owns the log file through a single writer thread (group commit,
//! one `fdatasync` per group), an in-memory index, recovery, and the
//! verification of the chain; [`hub`] turns committed groups into gap-free
//! live streams. [`config`] is loaded once and passed by value. The ground
//! floor, which imports nothing from the crate above it: [`keys`] (HMAC keys
//! and secrets), [`clock`] (the log's timestamps) and `durable` (replacing a
//! file whole and durably).
//!
//! [`run`] takes the listener and the shutdown signal as plain values, so tests
//! bind `127.0.0.1:0` and drive shutdown themselves.

mod alerts;
mod auth;
#[doc(hidden)]
pub mod bench;
mod checkpoint;
mod clock;
mod cluster;
mod compliance;
pub mod config;
mod durable;
mod duty;
#[cfg(any(test, feature = "fault-injection"))]
mod faults;
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod hub;
mod keys;
mod limits;
mod listener;
mod lock;
mod metrics;
mod offline;
mod performance;
mod redaction;
mod service;
mod store;
pub mod telemetry;
mod webhooks;
mod wire;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use auditlog_proto::v1::admin_service_server::AdminServiceServer;
use service::api::audit_service_server::AuditServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

pub use checkpoint::Rotated;
pub use config::Config;
pub use offline::{Verified, verify};

use alerts::Alerts;
use checkpoint::Checkpoints;
use compliance::Compliance;
use keys::{KeyFile, Keyring};
use performance::Performance;
use service::{AdminSvc, AuditSvc};
use store::{Store, StoreConfig};
use webhooks::Webhooks;

/// What runs once the log is recovered; handlers reach it through a cell
/// that is empty while recovery runs.
pub struct Running {
    pub store: Arc<Store>,
    pub alerts: Alerts,
    pub webhooks: Webhooks,
    pub compliance: Arc<Compliance>,
    pub performance: Arc<Performance>,
    pub checkpoints: Arc<Checkpoints>,
    /// In cluster mode: the link to the stream, which takes the writes.
    pub(crate) cluster: Option<cluster::Node>,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    CheckpointKey(#[from] checkpoint::CheckpointKeyError),
    #[error("recovery task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error("cannot serve metrics on {addr} (metrics_listen): {source}")]
    MetricsListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "{dir} holds no log (no audit.log with records, manifest.json or segment): nothing to \
         verify; name the directory with --data-dir"
    )]
    NoLog { dir: String },
}

/// Serves the audit log on `listener` until `shutdown` completes.
///
/// Health reports NOT_SERVING while the log is being recovered and again once
/// shutdown begins. On shutdown: follow streams end, in-flight calls finish
/// (up to `shutdown_grace_secs`), the writer commits and syncs what it was
/// given, and the function returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let key = config.hmac_key_bytes()?;
    let retired = config.retired_hmac_key_bytes()?;
    // Before anything is written: a start that fails on a port taken must
    // leave no data directory, and no generated key, behind.
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::MetricsListen { addr, source })?,
        ),
        None => None,
    };
    // Before anything in the data directory is read or written; held until
    // this function returns (or the process ends).
    let _lock = lock::DirLock::acquire(&config.data_dir)?;
    if let Some(warning) = lock::open_to_others(&config.data_dir) {
        tracing::warn!("{warning}");
    }
    // What can be known about the data directory without recovering it is
    // checked before anything is announced: the key, and the manifest.
    // So is the checkpoint signing key: the identity the log's checkpoints
    // were signed with (a cluster's is shared, never generated).
    let (keyring, key_file, checkpoints) = {
        let dir = config.data_dir.clone();
        let key_id = config.hmac_key_id.clone();
        let shared_checkpoint_key = shared_checkpoint_key(&config);
        let origin = config.checkpoint_origin();
        let checkpoint_key = config.checkpoint_key_file.clone();
        let clustered = config.cluster.is_some();
        tokio::task::spawn_blocking(move || {
            let keyring = Keyring::load(&key_id, key.as_deref(), &dir, store::holds_log(&dir)?)?
                .with_retired(retired);
            store::check_before_start(&dir, &keyring)?;
            if let Some(path) = &shared_checkpoint_key {
                checkpoint::require_shared_key(path)?;
            }
            let checkpoints =
                Checkpoints::load(&origin, checkpoint_key.as_deref(), &dir, !clustered)?;
            Ok::<_, ServerError>((keyring, KeyFile::of(&dir, key.is_some()), checkpoints))
        })
        .await??
    };
    let cancel = CancellationToken::new();
    // Stopped with the server, and whenever `run` returns early: the watch
    // never outlives the server, which could write a key file after it.
    let key_watch_stop = cancel.child_token();
    let key_watch = key_file.map(|file| tokio::spawn(file.watch(key_watch_stop.clone())));
    let _key_watch_stop = key_watch_stop.clone().drop_guard();
    let cluster = match config.cluster.clone() {
        Some(c) => Some(
            cluster::Node::start(c, config.tls.as_ref(), keyring.clone(), cancel.clone()).await?,
        ),
        None => None,
    };
    let cell: Arc<OnceLock<Running>> = Arc::new(OnceLock::new());
    // One crypto provider for every TLS client (webhooks, alerts), installed
    // before any is built, so no dependency can pick another and make the
    // first handshake fail. An error means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let metrics = Arc::new(metrics::Metrics::new());
    if let Some(listener) = metrics_listener {
        tracing::info!(addr = ?listener.local_addr().ok(), "serving metrics at /metrics");
        tokio::spawn(metrics::serve(
            listener,
            Arc::clone(&metrics),
            Arc::clone(&cell),
            cancel.clone(),
        ));
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    set_serving(&health, false).await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(auditlog_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(auditlog_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // VerifyIntegrity calls and the scheduled verification take turns.
    let verifications = store::Verifications::new(config.max_queued_verifications);
    let svc = AuditSvc::new(Arc::clone(&cell), cancel.clone(), verifications.clone());
    let admin = AdminSvc::new(svc.clone(), config.retention());
    let addr = listener.local_addr().ok();

    // Recover in the background while health (NOT_SERVING) and reflection
    // already answer.
    let store_config = store_config(&config);
    // Off only in a benchmark measuring the tree's cost (`bench::Switches`).
    let tree = config.bench.tree;
    let publish_config = config.checkpoints.clone();
    let retention = config.retention();
    let check_every = Duration::from_secs(config.retention_check_secs);
    let alerts_config = config.alerts.clone();
    let webhooks_config = config.webhooks.clone();
    let compliance_config = config.compliance.clone();
    let performance = Performance::new(config.performance.clone());
    let opening = {
        let metrics = Arc::clone(&metrics);
        let performance = Arc::clone(&performance);
        let cell = Arc::clone(&cell);
        let health = health.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let rebuilding = Arc::clone(&performance);
            let store = tokio::task::spawn_blocking(move || {
                let dir = &store_config.data_dir;
                std::fs::create_dir_all(dir).map_err(|source| store::StoreError::Open {
                    path: dir.display().to_string(),
                    source,
                })?;
                let compliance = Compliance::load(&compliance_config, &store_config.data_dir)?;
                let webhook_keys = webhooks::signing_keys(&webhooks_config, dir).map_err(|e| {
                    config::ConfigError::Invalid {
                        key: "webhooks",
                        reason: e.to_string(),
                    }
                })?;
                let store = metrics::recovering(&metrics, &dir.clone(), || {
                    Store::open_with(store_config, keyring, Arc::clone(&metrics), tree)
                })?;
                let rebuilt = rebuilding.rebuild(&store)?;
                tracing::debug!(events = rebuilt, "performance windows rebuilt from the log");
                Ok::<_, ServerError>((
                    store,
                    compliance,
                    webhooks_config,
                    webhook_keys,
                    checkpoints,
                ))
            })
            .await??;
            let (store, compliance, webhooks_config, webhook_keys, checkpoints) = store;

            tracing::info!(head = store.head(), dir = %store.dir().display(), "log recovered");
            let store = Arc::new(store);
            let checkpoints = Arc::new(checkpoints);
            if tree {
                tokio::spawn(checkpoint::run(
                    Arc::clone(&checkpoints),
                    Arc::clone(&store),
                    cancel.clone(),
                ));
            }
            // Who sends what must go out once per deployment: this node,
            // or in a cluster the leader (`duty.rs`).
            let duty = cluster
                .as_ref()
                .map_or_else(duty::Duty::always, cluster::Node::duty);
            let alerts = Alerts::start(
                alerts_config,
                Arc::clone(&store),
                verifications,
                duty.clone(),
                cancel.clone(),
            )
            .map_err(|reason| config::ConfigError::Invalid {
                key: "alerts",
                reason,
            })?;
            let webhooks = Webhooks::start(
                webhooks_config,
                webhook_keys,
                Arc::clone(&store),
                (&checkpoints, &publish_config.webhooks),
                duty.clone(),
                cancel.clone(),
            );
            tokio::spawn(checkpoint::publish(
                publish_config,
                Arc::clone(&checkpoints),
                alerts.clone(),
                duty,
                cancel.clone(),
            ));
            performance.set_alerts(alerts.clone());
            if let Some(node) = &cluster {
                node.attach(Arc::clone(&store), cancel.clone());
            }
            let _ = cell.set(Running {
                cluster: cluster.clone(),
                store: Arc::clone(&store),
                alerts,
                webhooks,
                compliance: Arc::new(compliance),
                performance,
                checkpoints,
            });
            if let Some(max_age) = retention {
                tokio::spawn(retention_task(
                    Arc::clone(&store),
                    cluster.clone(),
                    max_age,
                    check_every,
                    cancel.clone(),
                ));
            }
            set_serving(&health, true).await;
            tokio::spawn(watch_store(
                Arc::clone(&store),
                cluster,
                health.clone(),
                cancel.clone(),
            ));
            Ok::<_, ServerError>(())
        })
    };

    let signal = {
        let cancel = cancel.clone();
        let health = health.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight calls");
            set_serving(&health, false).await;
            cancel.cancel();
        }
    };

    let secure = config.tls.is_some() && !config.tokens.is_empty();
    if !secure && addr.is_some_and(|a| !a.ip().is_loopback()) {
        tracing::warn!(
            addr = ?addr,
            "allow_insecure: serving a network address without both TLS and tokens; anyone who \
             can reach it can read and write the log"
        );
    }
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(config.max_streams_per_connection))
        .http2_keepalive_interval(Some(Duration::from_secs(config.keepalive_secs)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // HTTP/1 only to answer it with a readable refusal (`wire.rs`).
        .accept_http1(true);
    if let Some(tls) = &config.tls {
        builder = builder.tls_config(tls_config(tls)?)?;
    }
    tracing::info!(
        addr = ?addr,
        tls = config.tls.is_some(),
        tokens = config.tokens.len(),
        "serving auditlog.v1.AuditService"
    );
    let max_connections = listener::raise_fd_limit(config.max_connections);
    let incoming = listener::Incoming::new(
        listener,
        max_connections,
        Duration::from_secs(config.handshake_timeout_secs),
        Duration::from_secs(config.keepalive_secs),
    );
    let serve = builder
        .layer(telemetry::TraceLayer::new(config.tracing.on()))
        // Without a listener nobody reads the call metrics: the layer then
        // passes calls straight through (`metrics/rpc.rs`).
        .layer(metrics::RpcLayer::new(
            &metrics,
            config.metrics_listen.is_some(),
        ))
        // Inside the trace and metrics layers, so both see the
        // DEADLINE_EXCEEDED it answers.
        .layer(limits::DeadlineLayer::new(Duration::from_secs(
            config.handler_timeout_secs,
        )))
        .layer(wire::WireLayer)
        .layer(limits::ShedLayer::new(
            config.max_in_flight,
            Duration::from_secs(config.request_read_timeout_secs),
        ))
        .layer(limits::AnswersLayer::new())
        .layer(auth::AuthLayer::new(&config.tokens))
        .layer(limits::RateLayer::new(
            &config.tokens,
            config.max_in_flight_per_token,
        ))
        .layer(performance::TimingLayer::new(&performance))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AuditServiceServer::new(svc))
        .add_service(AdminServiceServer::new(admin))
        .serve_with_incoming_shutdown(incoming, signal);

    // A failed recovery stops the server; so does a stopped transport.
    tokio::pin!(serve);
    let mut opening = opening;
    let served = tokio::select! {
        opened = &mut opening => {
            opened??;
            serve_until_done(&mut serve, config.shutdown_grace_secs, &cancel).await
        }
        served = &mut serve => {
            // Stopped before recovery finished: let it finish so the store
            // below is shut down cleanly.
            opening.await??;
            served.map_err(ServerError::from)
        }
    };

    if let Some(store) = cell.get().map(|r| Arc::clone(&r.store)) {
        tokio::task::spawn_blocking(move || store.shutdown()).await?;
    }
    key_watch_stop.cancel();
    if let Some(watch) = key_watch {
        let _ = watch.await;
    }
    tracing::info!("stopped");
    served
}

/// The store's settings in `config`.
pub(crate) fn store_config(config: &Config) -> StoreConfig {
    StoreConfig {
        data_dir: config.data_dir.clone(),
        durability: config.durability,
        max_segment_bytes: config.max_segment_bytes(),
        max_segment_age: config.max_segment_age(),
        lead_copies: config.lead_copies,
        // In cluster mode the store appends only what the leader signed and
        // published (cluster/), never from its own writer.
        replica: config.cluster.is_some(),
    }
}

/// The verifier key of the server's signed checkpoints for `config`
/// (`auditlog-server --print-verifier-key`); generates the signing key into
/// the data directory when there is none yet.
pub fn verifier_key(config: &Config) -> Result<String, ServerError> {
    lock::create_data_dir(&config.data_dir)?;
    let checkpoints = Checkpoints::load(
        &config.checkpoint_origin(),
        config.checkpoint_key_file.as_deref(),
        &config.data_dir,
        config.cluster.is_none(),
    )?;
    Ok(checkpoints.verifier_key())
}

/// In cluster mode, the checkpoint key file every node shares (required by
/// `Config::validate`); `None` for a single node, whose key may be
/// generated.
fn shared_checkpoint_key(config: &Config) -> Option<std::path::PathBuf> {
    config
        .cluster
        .as_ref()
        .and(config.checkpoint_key_file.clone())
}

/// Rotates the checkpoint signing key of `config`'s data directory
/// (`auditlog-server --rotate-checkpoint-key`): refused while a server
/// holds the directory. The handover, the retired key and its steps are in
/// `checkpoint/rotation.rs`.
pub fn rotate_checkpoint_key(config: &Config) -> Result<checkpoint::Rotated, ServerError> {
    if config.cluster.is_some() {
        return Err(checkpoint::CheckpointKeyError::Clustered.into());
    }
    let _lock = lock::DirLock::acquire(&config.data_dir)?;
    Ok(checkpoint::rotate(
        &config.checkpoint_origin(),
        config.checkpoint_key_file.as_deref(),
        &config.data_dir,
        store::holds_log(&config.data_dir)?,
    )?)
}

/// `auditlog-server --cluster-import`: publishes the log in the data
/// directory into the empty stream of `config.cluster` (`cluster/import.rs`);
/// what was imported, as one line.
pub async fn cluster_import(config: Config) -> Result<String, ServerError> {
    Ok(cluster::import(config).await?.to_string())
}

/// The server's TLS settings from its files.
fn tls_config(tls: &config::TlsConfig) -> Result<tonic::transport::ServerTlsConfig, ServerError> {
    let read = |key: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| config::ConfigError::Invalid {
            key,
            reason: format!("cannot read {}: {e}", path.display()),
        })
    };
    let identity = tonic::transport::Identity::from_pem(
        read("tls.cert_file", &tls.cert_file)?,
        read("tls.key_file", &tls.key_file)?,
    );
    let mut out = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca_file {
        out = out.client_ca_root(tonic::transport::Certificate::from_pem(read(
            "tls.client_ca_file",
            ca,
        )?));
    }
    Ok(out)
}

/// Sets the health of the whole server (`""`) and of the audit service
/// together, the two names probes ask for: both are NOT_SERVING while the
/// log is recovered and once shutdown begins.
async fn set_serving(health: &tonic_health::server::HealthReporter, serving: bool) {
    health.set_service_status("", status_of(serving)).await;
    health
        .set_service_status(AUDIT_SERVICE, status_of(serving))
        .await;
}

fn status_of(serving: bool) -> ServingStatus {
    if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// The name health reports the write path under.
const AUDIT_SERVICE: &str = <AuditServiceServer<AuditSvc> as tonic::server::NamedService>::NAME;

/// How often the health of writes is looked at.
const WRITE_HEALTH_EVERY: Duration = Duration::from_millis(250);

/// Keeps the health of `auditlog.v1.AuditService` in step with the write
/// path: NOT_SERVING while the store cannot write (it refuses writes until
/// a restart, or found the disk full and no space came back) or, in cluster
/// mode, while the node cannot reach NATS or its stream, SERVING again
/// once it can, so load balancers stop sending writes here meanwhile. The
/// server-wide `""` stays SERVING: reads are still served.
async fn watch_store(
    store: Arc<Store>,
    cluster: Option<cluster::Node>,
    health: tonic_health::server::HealthReporter,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(WRITE_HEALTH_EVERY);
    let mut refusing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let refusal = store
            .write_refusal()
            .or_else(|| cluster.as_ref().and_then(cluster::Node::refusal));
        if refusal.is_some() == refusing || cancel.is_cancelled() {
            continue;
        }
        refusing = refusal.is_some();
        match refusal {
            Some(reason) => tracing::error!(
                error = %reason,
                "this node cannot take writes: health of {AUDIT_SERVICE} is NOT_SERVING"
            ),
            None => {
                tracing::info!("this node takes writes again: health of {AUDIT_SERVICE} is SERVING")
            }
        }
        health
            .set_service_status(AUDIT_SERVICE, status_of(!refusing))
            .await;
    }
}

/// Applies retention at start and then every `every`, until shutdown. In
/// cluster mode only the leader purges (`cluster/retention.rs`); the other
/// nodes apply its purge event from the stream.
async fn retention_task(
    store: Arc<Store>,
    cluster: Option<cluster::Node>,
    max_age: Duration,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let failed = match &cluster {
            None => store
                .apply_retention(max_age)
                .await
                .err()
                .map(|e| e.to_string()),
            Some(node) => match node.apply_retention(&store, max_age).await {
                Ok(_) | Err(cluster::ClusterError::NotLeader(_)) => None,
                Err(e) => Some(e.to_string()),
            },
        };
        if let Some(e) = failed {
            tracing::error!(error = %e, "retention failed; retrying at the next check");
        }
    }
}

/// Runs the transport; once shutdown has begun, waits at most `grace_secs`
/// for in-flight calls.
async fn serve_until_done(
    mut serve: impl Future<Output = Result<(), tonic::transport::Error>> + Unpin,
    grace_secs: u64,
    cancel: &CancellationToken,
) -> Result<(), ServerError> {
    tokio::select! {
        r = &mut serve => return r.map_err(ServerError::from),
        _ = cancel.cancelled() => {}
    }
    match tokio::time::timeout(Duration::from_secs(grace_secs), serve).await {
        Ok(r) => r.map_err(ServerError::from),
        Err(_) => {
            tracing::warn!(
                grace_secs,
                "in-flight calls did not finish in time; stopping anyway"
            );
            Ok(())
        }
    }
}
