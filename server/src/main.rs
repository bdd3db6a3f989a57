//! `auditlog-server`: parses flags, loads the configuration, and calls
//! [`auditlog_server::run`] until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use auditlog_server::config::{Config, Overrides};
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
    /// The address to serve on [env: AUDITLOG_LISTEN] [default: 127.0.0.1:50051].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The data directory [env: AUDITLOG_DATA_DIR] [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Logs go to stderr, like every diagnostic of the server, with colour
    // only on a terminal.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match serve(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and those of its causes it does not
            // already spell out.
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
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
    };
    let config = Config::load(args.config.as_deref(), overrides)?;
    if args.print_config {
        println!("{config:#?}");
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    auditlog_server::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM. A second signal exits at once.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("auditlog-server: second signal, exiting now");
        std::process::exit(130);
    });
}
