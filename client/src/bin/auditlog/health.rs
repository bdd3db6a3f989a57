//! `auditlog health`: the standard gRPC health check, with the exit codes of
//! `grpc_health_probe` so it drops into container probes and scripts:
//! 0 serving, 1 bad arguments, 2 connection failed, 3 RPC failed, 4 not
//! serving.

use std::time::Duration;

use clap::Args;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::CliError;

#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// The service to check; empty means the server as a whole.
    #[arg(long, default_value = "")]
    service: String,
    /// How long to wait for the connection.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// How long to wait for the answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    rpc_timeout: Duration,
}

const EXIT_BAD_ARGS: u8 = 1;
const EXIT_CONNECTION: u8 = 2;
const EXIT_RPC: u8 = 3;
const EXIT_UNHEALTHY: u8 = 4;

pub(crate) async fn run(
    url: &str,
    options: &auditlog_client::Options,
    args: HealthArgs,
    json: bool,
) -> Result<(), CliError> {
    let fail = |code: u8, msg: String| {
        eprintln!("auditlog: {msg}");
        CliError::Exit(code)
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| fail(EXIT_BAD_ARGS, format!("invalid server URL {url:?}: {e}")))?
        .connect_timeout(args.connect_timeout)
        .timeout(args.rpc_timeout);
    if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(options.tls())
            .map_err(|e| fail(EXIT_BAD_ARGS, format!("TLS settings: {e}")))?;
    }
    let channel = tokio::time::timeout(args.connect_timeout, endpoint.connect())
        .await
        .map_err(|_| {
            fail(
                EXIT_CONNECTION,
                format!(
                    "timed out connecting to {url} after {:?}",
                    args.connect_timeout
                ),
            )
        })?
        .map_err(|e| fail(EXIT_CONNECTION, format!("cannot connect to {url}: {e}")))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .map_err(|s| {
            fail(
                EXIT_RPC,
                format!("health check failed: {:?}: {}", s.code(), s.message()),
            )
        })?;
    let status = response.into_inner().status();
    let name = status.as_str_name();
    if json {
        say!(
            "{}",
            serde_json::json!({ "service": args.service, "status": name })
        );
    } else {
        say!("status: {name}");
    }
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(CliError::Exit(EXIT_UNHEALTHY))
    }
}
