//! An OTLP collector that accepts the connection and never answers: no
//! `Log` call waits for the export, and the server still stops on SIGTERM
//! within its drain.

use std::time::{Duration, Instant};

use auditlog_client::NewEvent;

use crate::common::ServerProcess;
use crate::common::endpoints::silent_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_collector_neither_holds_calls_nor_the_shutdown() {
    let port = silent_port().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!("[tracing]\notlp_endpoint = \"http://127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let mut server = ServerProcess::spawn_logging(
        &dir.path().join("data"),
        ["--config".as_ref(), config.as_os_str()],
        &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
        dir.path().join("server.stderr"),
    )
    .await;
    let client = auditlog_client::Client::connect(&server.url).await.unwrap();
    let started = Instant::now();
    for i in 0..300 {
        client
            .log(NewEvent::lead_ingested(format!("LEAD-{i}"), "web"))
            .await
            .unwrap();
    }
    println!(
        "300 Log calls with a silent collector: {:?}",
        started.elapsed()
    );
    drop(client);
    let stopping = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit_within(Duration::from_secs(40)).await;
    println!("stopped in {:?}: {status:?}", stopping.elapsed());
    assert!(status.success(), "{status:?}\n{}", server.stderr());
}
