//! The ingest bench's A/B variants of the real server
//! (`AUDITLOG_BENCH_VARIANTS`): each is one more server measured in the
//! same rounds as the others, and printed beside the default one, so the
//! cost of a feature is read from one run on one machine state.
//!
//! - `metrics`: with a metrics listener, so every call is counted and timed
//!   (without one the RPC metrics layer lets calls straight through);
//! - `tracing`: with traces exported over OTLP/gRPC (`sample_ratio` 1) to a
//!   sink in this process that decodes each export and drops it;
//! - `notree`: without the Merkle tree's builder and the checkpoint signer
//!   (`auditlog_server::bench::Switches`, which no configuration can set),
//!   so the default row less this one is what the tree costs;
//! - `noseal`: segments of 1 TB, so no segment is sealed (compressed, its
//!   lead copy written) during a run: the default row less this one is what
//!   sealing costs while ingest runs.

use std::path::Path;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::runtime::Handle;

use super::{BoxError, Measurement, Row};

/// A variant of the real server's configuration.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    Metrics,
    Tracing,
    NoTree,
    NoSeal,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Metrics => "+metrics",
            Variant::Tracing => "+tracing",
            Variant::NoTree => "-tree",
            Variant::NoSeal => "-seal",
        }
    }

    /// Its name in `AUDITLOG_BENCH_VARIANTS` and `AUDITLOG_BENCH_ONLY`.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Variant::Metrics => "metrics",
            Variant::Tracing => "tracing",
            Variant::NoTree => "notree",
            Variant::NoSeal => "noseal",
        }
    }

    /// `AUDITLOG_BENCH_VARIANTS`: a comma-separated list of `metrics`,
    /// `tracing` and `notree` (none).
    pub(crate) fn from_env() -> Result<Vec<Variant>, BoxError> {
        let Ok(list) = std::env::var("AUDITLOG_BENCH_VARIANTS") else {
            return Ok(Vec::new());
        };
        list.split(',')
            .filter(|name| !name.trim().is_empty())
            .map(|name| match name.trim() {
                "metrics" => Ok(Variant::Metrics),
                "tracing" => Ok(Variant::Tracing),
                "notree" => Ok(Variant::NoTree),
                "noseal" => Ok(Variant::NoSeal),
                other => Err(format!(
                    "unknown variant {other:?} in AUDITLOG_BENCH_VARIANTS: use metrics, tracing, notree, noseal"
                )
                .into()),
            })
            .collect()
    }

    /// The real server's configuration for this variant, data in `dir`;
    /// `otlp` is the sink's URL.
    pub(crate) fn config(self, dir: &Path, otlp: &str) -> auditlog_server::Config {
        let mut config = auditlog_server::Config {
            data_dir: dir.to_path_buf(),
            ..auditlog_server::Config::default()
        };
        match self {
            Variant::Metrics => config.metrics_listen = Some(([127, 0, 0, 1], 0).into()),
            Variant::Tracing => config.tracing.otlp_endpoint = Some(otlp.to_owned()),
            Variant::NoTree => config.bench = auditlog_server::bench::Switches::without_tree(),
            Variant::NoSeal => config.max_file_size_mb = 1_000_000.0,
        }
        config
    }
}

/// With a `tracing` variant: starts the OTLP sink on `servers` and
/// installs the exporter's layer as this process's subscriber (the
/// servers without tracing make no spans). Returns the sink's URL and the
/// exporter, to flush at the end.
pub(crate) async fn start_tracing(
    variants: &[Variant],
    servers: &Handle,
) -> Result<(String, Option<auditlog_server::telemetry::Telemetry>), BoxError> {
    use tracing_subscriber::layer::SubscriberExt as _;
    if !variants.contains(&Variant::Tracing) {
        return Ok((String::new(), None));
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}", listener.local_addr()?);
    servers.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Sink))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .map_err(BoxError::from)
    });
    let config = auditlog_server::telemetry::TracingConfig {
        otlp_endpoint: Some(url.clone()),
        ..Default::default()
    };
    // The exporter's channel runs on the servers' runtime.
    let telemetry = {
        let _on_servers = servers.enter();
        auditlog_server::telemetry::Telemetry::start(&config)?
    };
    if let Some(t) = &telemetry {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(t.layer()))?;
    }
    Ok((url, telemetry))
}

/// Receives exports and drops them.
struct Sink;

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        _request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Each variant beside the default server, scenario by scenario.
pub(crate) fn print(rows: &[Row], variants: &[Variant]) {
    if variants.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<26} {:<11} {:>9} {:>9} {:>7} {:>7} {:>9}",
        "scenario", "server", "events/s", "/default", "p50 ms", "p99 ms", "cpu us/ev"
    );
    println!("{}", "-".repeat(84));
    for row in rows {
        let line = |label: &str, name: &str, m: &Measurement| {
            let per_event = m.cpu.map_or("?".to_owned(), |cpu| {
                format!("{:.1}", cpu.own * 1e6 / m.events.max(1) as f64)
            });
            println!(
                "{:<26} {:<11} {:>9.0} {:>9.3} {:>7.3} {:>7.3} {:>9}",
                label,
                name,
                m.events_per_sec(),
                m.events_per_sec() / row.ours.events_per_sec(),
                super::ms(m.percentile(50.0)),
                super::ms(m.percentile(99.0)),
                per_event,
            );
        };
        line(row.scenario.label, "default", &row.ours);
        for (variant, m) in variants.iter().zip(&row.variants) {
            line("", variant.name(), m);
        }
    }
    println!("default: metrics off (no listener), tracing off");
    println!("+metrics: metrics_listen set; +tracing: spans exported over OTLP/gRPC, all sampled");
    println!("-tree: no Merkle tree builder, no checkpoint signer (bench only)");
    println!("-seal: no segment sealed during the run (1 TB segments)");
}
