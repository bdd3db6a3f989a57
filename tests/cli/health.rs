//! `health`: the exit codes of `grpc_health_probe`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_uses_grpc_health_probe_exit_codes() {
    let server = TestServer::start().await;

    let out = auditlog(&server, &["health"]).await;
    assert!(out.ok().contains("SERVING"), "{out:?}");

    let out = auditlog(
        &server,
        &["health", "--service", "auditlog.v1.AuditService"],
    )
    .await;
    assert!(out.ok().contains("SERVING"), "{out:?}");

    let value = auditlog(
        &server,
        &["--json", "health", "--service", "auditlog.v1.AuditService"],
    )
    .await
    .json();
    assert_eq!(value["status"], "SERVING", "{value}");
    assert_eq!(value["service"], "auditlog.v1.AuditService", "{value}");
    let value = auditlog(&server, &["--json", "health"]).await.json();
    assert_eq!(value["status"], "SERVING", "{value}");

    // An unknown service: the RPC fails (NOT_FOUND), exit 3.
    let out = auditlog(&server, &["health", "--service", "no.such.Service"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.one_line_error().contains("NotFound") || out.stderr.contains("NOT_FOUND"),
        "{out:?}"
    );

    // Nothing listening: exit 2, naming the URL.
    let out = auditlog_at(DEAD_URL, &["health", "--connect-timeout", "2s"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.one_line_error().contains("127.0.0.1:1"), "{out:?}");

    // A URL that is not one: bad arguments, exit 1.
    let out = auditlog_at("not a url", &["health"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_no_panic(&out);
}
