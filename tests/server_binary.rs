//! The `auditlog-server` binary as an operator runs it: configuration errors
//! name the offending key, and SIGTERM under load loses nothing that was
//! acknowledged.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditlog_client::{Client, NewEvent, Query};
use common::{ServerProcess, workspace_bin};
use futures::StreamExt as _;

/// Runs the binary with `args` and `env` and returns (exit code, stderr).
fn run_server(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(workspace_bin("auditlog-server", "auditlog-server"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn configuration_errors_name_the_key_and_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "listn = \"127.0.0.1:1\"\n").unwrap();
    let (code, err) = run_server(&["--config", "bad.toml"], &[], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("listn") && err.contains("bad.toml"), "{err}");

    let (code, err) = run_server(&[], &[("AUDITLOG_DATA_DIRR", "x")], dir.path());
    assert_ne!(code, 0);
    assert!(
        err.contains("DATA_DIRR") && err.contains("AUDITLOG_"),
        "{err}"
    );

    let (code, err) = run_server(&[], &[("AUDITLOG_HMAC_KEY", "short")], dir.path());
    assert_ne!(code, 0);
    assert!(
        err.contains("hmac_key") && err.contains("at least 32"),
        "{err}"
    );

    let (code, err) = run_server(&["--config", "missing.toml"], &[], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("missing.toml"), "{err}");
    // No data directory was created by a server that refused to start.
    assert!(!dir.path().join("data").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_keeps_every_acknowledged_event_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path()).await;
    let client = Client::connect(&server.url).await.unwrap();

    // A follow stream must end by itself when the server shuts down.
    let mut follow = client.stream(Query::new(), 1, true).await.unwrap();
    let follower = tokio::spawn(async move {
        let mut seen = 0u64;
        while let Some(Ok(_)) = follow.next().await {
            seen += 1;
        }
        seen
    });

    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let client = client.clone();
            let acked = Arc::clone(&acked);
            tokio::spawn(async move {
                for i in 0.. {
                    let event = NewEvent::email_sent(format!("L{w}"), "a@example.com", "hi")
                        .idempotency_key(format!("w{w}-{i}"));
                    match client.log(event).await {
                        Ok(r) => acked.lock().unwrap().push((r.seq, r.signature)),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, server)
    });
    let (status, server) = tokio::time::timeout(Duration::from_secs(20), status)
        .await
        .expect("the server did not exit within 20 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    for w in writers {
        w.await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the follow stream did not end on shutdown")
        .unwrap();
    drop(server);

    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "no write was acknowledged before SIGTERM"
    );
    let restarted = ServerProcess::spawn(dir.path()).await;
    let client = Client::connect(&restarted.url).await.unwrap();
    let events = client
        .query_all(Query::new().oldest_first().limit(1000))
        .await
        .unwrap();
    let stored: std::collections::HashMap<u64, String> =
        events.into_iter().map(|e| (e.seq, e.signature)).collect();
    for (seq, signature) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(signature),
            "acknowledged seq {seq} lost"
        );
    }
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
}
