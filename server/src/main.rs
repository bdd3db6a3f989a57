//! `auditlog-server`: parses flags, loads the configuration, and calls
//! [`auditlog_server::run`] until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use auditlog_server::config::{Config, LogFormat, Overrides, TracingOverrides};
use auditlog_server::telemetry::Telemetry;
use clap::Parser;

/// The auditlog server: a tamper-evident audit log over gRPC.
///
/// With no arguments it serves on 127.0.0.1:50051 with its data in ./data.
/// Configuration comes from defaults, then --config FILE, then AUDITLOG_*
/// environment variables, then these flags.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// A TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The address to serve on, IP:PORT or HOST:PORT (a host name is
    /// resolved at start, IPv4 first) [env: AUDITLOG_LISTEN] [default:
    /// 127.0.0.1:50051].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The data directory [env: AUDITLOG_DATA_DIR] [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// How the server logs to stderr: text lines, or one JSON object per
    /// line [env: AUDITLOG_LOG_FORMAT] [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Serve Prometheus metrics at http://ADDR/metrics, IP:PORT or
    /// HOST:PORT [env: AUDITLOG_METRICS_LISTEN] [default: off].
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Export OpenTelemetry traces to this OTLP/gRPC endpoint, e.g.
    /// http://127.0.0.1:4317 [env: AUDITLOG_TRACING__OTLP_ENDPOINT]
    /// [default: off].
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Print the effective configuration as TOML (secrets left out) and
    /// exit.
    #[arg(long)]
    print_config: bool,
    /// Print the verifier key of the signed checkpoints (generating the
    /// signing key into the data directory if there is none) and exit.
    #[arg(long)]
    print_verifier_key: bool,
    /// Rotate the checkpoint signing key, with the server stopped: sign a
    /// handover checkpoint with the old key and a new one, keep the old
    /// verifier key in <data_dir>/checkpoint.retired.json, print both keys
    /// and exit.
    #[arg(long, conflicts_with = "print_verifier_key")]
    rotate_checkpoint_key: bool,
    /// Publish the data directory's log (a single node's, verified clean)
    /// into the empty stream of the cluster the `[cluster]` section names,
    /// then exit; run it with a node's configuration, before any node
    /// starts (docs/cluster.md).
    #[arg(long)]
    cluster_import: bool,
    /// Verify the data directory's log with no server running on it (a
    /// stopped server's directory, a backup), print the report and exit: 0
    /// clean, 1 problems found, 2 not verified. It recovers the directory
    /// as a start does (docs/verifying.md).
    #[arg(long, conflicts_with_all = ["print_verifier_key", "rotate_checkpoint_key", "cluster_import"])]
    verify: bool,
    /// With --verify: print the report as one JSON object (the fields
    /// `auditlog --json integrity` prints, and `checkpoint_unchecked`).
    #[arg(long, requires = "verify")]
    json: bool,
}

/// How long the exit waits for blocking work still running once the server
/// has stopped and the store is synced and closed.
const LEFTOVER_WAIT: Duration = Duration::from_secs(1);

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
        log_format: args.log_format,
        metrics_listen: args.metrics_listen,
        tracing: args.otlp_endpoint.map(|url| TracingOverrides {
            otlp_endpoint: Some(url),
        }),
    };
    let config = match Config::load(args.config.as_deref(), overrides) {
        Ok(config) => config,
        Err(e) => return fail(&anyhow::Error::new(e)),
    };
    if args.print_config {
        return match config.to_toml() {
            Ok(text) => {
                print!("{text}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => fail(&anyhow::Error::msg(e)),
        };
    }
    if args.print_verifier_key {
        return match auditlog_server::verifier_key(&config) {
            Ok(key) => {
                println!("{key}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => fail(&anyhow::Error::new(e)),
        };
    }
    if args.rotate_checkpoint_key {
        return match auditlog_server::rotate_checkpoint_key(&config) {
            Ok(rotated) => {
                println!(
                    "rotated the checkpoint signing key; the handover at tree size {} is signed \
                     by both keys\nnew verifier key: {}\nretired verifier key: {}",
                    rotated.handover_size, rotated.new_key, rotated.old_key
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => fail(&anyhow::Error::new(e)),
        };
    }
    if args.verify {
        init_logging(config.log_format, None);
        return match auditlog_server::verify(&config) {
            Ok(verified) => {
                if args.json {
                    println!("{}", verified.to_json());
                } else {
                    print!("{}", verified.to_text());
                }
                if verified.ok() {
                    std::process::ExitCode::SUCCESS
                } else {
                    std::process::ExitCode::from(1)
                }
            }
            Err(e) => {
                fail(&anyhow::Error::new(e));
                std::process::ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("auditlog-server: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if args.cluster_import {
        init_logging(config.log_format, None);
        return match runtime.block_on(auditlog_server::cluster_import(config)) {
            Ok(imported) => {
                println!("{imported}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => fail(&anyhow::Error::new(e)),
        };
    }
    // The exporter's channel to the collector runs on the server's runtime.
    let telemetry = match runtime.block_on(async { Telemetry::start(&config.tracing) }) {
        Ok(telemetry) => telemetry,
        Err(e) => return fail(&anyhow::Error::new(e)),
    };
    init_logging(config.log_format, telemetry.as_ref());
    let served = runtime.block_on(serve(config));
    // The last spans go out while the runtime still runs.
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    // Every acknowledged event is synced and the store is closed. Blocking
    // work may still run: a verification of a large log that was in flight
    // when the grace ran out, which only reads. Dropping the runtime would
    // wait for it without limit, deaf to a second signal (its listener is a
    // task, dropped with the runtime): the drain would not be bounded.
    runtime.shutdown_timeout(LEFTOVER_WAIT);
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// What is logged: `RUST_LOG` (`info` without it, or when it does not
/// read), but the HTTP/2 library's warnings only from `error` up unless
/// `RUST_LOG` names `h2` itself. Those warnings are about a peer's conduct
/// and come when the peer chooses: one per connection the library closes
/// for resetting too many streams (the "rapid reset" flood), so an attacker
/// who reconnects would write a line per connection (about 150 a second in
/// `tests/adversarial.rs`), for something the library has dealt with.
fn log_filter(rust_log: Option<String>) -> tracing_subscriber::EnvFilter {
    let spec = rust_log.unwrap_or_else(|| "info".into());
    let names_h2 = spec
        .split(',')
        .any(|directive| directive.trim().starts_with("h2"));
    let spec = if names_h2 {
        spec
    } else {
        format!("{spec},h2=error")
    };
    tracing_subscriber::EnvFilter::try_new(spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,h2=error"))
}

/// Logs go to stderr, like every diagnostic of the server: text with colour
/// only on a terminal, or JSON lines. `RUST_LOG` filters the log alone: with
/// tracing on, the exporter gets the server's spans whatever it says.
fn init_logging(format: LogFormat, telemetry: Option<&Telemetry>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = log_filter(std::env::var("RUST_LOG").ok());
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = match format {
        LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => log
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(telemetry.map(Telemetry::layer))
        .with(log.with_filter(filter))
        .init();
}

/// Prints `e` as one line, with those of its causes it does not already
/// spell out, and fails.
fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
    }
    eprintln!("auditlog-server: {line}");
    std::process::ExitCode::FAILURE
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    auditlog_server::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM. A second one, while the server
/// drains, exits at once with the shell's status for a process that signal
/// killed (130 for SIGINT, 143 for SIGTERM): nothing more is synced, and a
/// restart recovers as after a crash.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    // Both listen from the start and keep listening, so a second signal
    // sent right after the first is not missed.
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(int), Ok(term)) => (int, term),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for SIGINT and SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tokio::spawn(async move {
        let (name, status) = tokio::select! {
            _ = int.recv() => ("SIGINT", 130),
            _ = term.recv() => ("SIGTERM", 143),
        };
        eprintln!("auditlog-server: second signal ({name}), exiting now");
        std::process::exit(status);
    });
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn the_http2_librarys_warnings_are_kept_out_unless_rust_log_names_it() {
        for (rust_log, shown) in [
            (None, "info,h2=error"),
            (Some("warn"), "warn,h2=error"),
            (
                Some("auditlog_server=debug"),
                "auditlog_server=debug,h2=error",
            ),
            (Some("info,h2=debug"), "info,h2=debug"),
            (Some("not a filter=[="), "info,h2=error"),
        ] {
            let filter = log_filter(rust_log.map(str::to_owned)).to_string();
            let mut got: Vec<&str> = filter.split(',').collect();
            let mut want: Vec<&str> = shown.split(',').collect();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "RUST_LOG={rust_log:?}");
        }
    }
}
