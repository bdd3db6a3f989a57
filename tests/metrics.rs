//! Prometheus metrics (`metrics_listen`) as an operator's tools read them:
//! a real Prometheus scrapes the server binary and answers its query API
//! with what was written; `promtool check metrics` accepts the exposition;
//! calls, refusals and verification findings move the figures they should;
//! the Grafana dashboard and the alert rules name only metrics that exist.
//!
//! Prometheus and promtool come from Debian's `prometheus` package. Without
//! them a test prints why it did not run, unless `REQUIRE_PROMETHEUS=1`
//! (CI), where that is a failure.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use auditlog_client::{Client, NewEvent, Options, Query};
use auditlog_server::Config;
use auditlog_server::config::{HookConfig, Role, TokenConfig};
use common::endpoints::{closed_port, webhook_config};
use common::{
    ServerProcess, TestServer, deploy_exprs, edit_line, is_exposed, metric_names, tamper,
    wait_until, wait_until_within,
};
use sha2::Digest as _;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// Whether `tool` can run here; without it the test is skipped (and fails
/// under `REQUIRE_PROMETHEUS`).
fn have(tool: &str) -> bool {
    if Path::new(tool).exists() {
        return true;
    }
    assert!(
        std::env::var_os("REQUIRE_PROMETHEUS").is_none(),
        "REQUIRE_PROMETHEUS is set but {tool} is missing (apt-get install prometheus)"
    );
    eprintln!("skipped: {tool} is not installed (apt-get install prometheus)");
    false
}

/// `GET path` from `addr` over HTTP/1.0 (so the answer is neither chunked
/// nor kept alive): the status code and the body.
fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {answer:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// [`http_get`] off the runtime's threads, so a server in this process
/// (a `TestServer`) can answer meanwhile.
async fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let (addr, path) = (addr.to_owned(), path.to_owned());
    tokio::task::spawn_blocking(move || http_get(&addr, &path))
        .await
        .unwrap()
}

/// The exposition at `http://addr/metrics`.
async fn scrape(addr: &str) -> String {
    let (status, body) = get(addr, "/metrics").await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample written exactly as `series` (name and labels)
/// in `text`, if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// A server with `adjust`ed config and its metrics listener on a free
/// port; and that listener's address.
async fn metered(adjust: impl FnOnce(&mut Config)) -> (TestServer, String) {
    let metrics = format!("127.0.0.1:{}", closed_port());
    let addr: std::net::SocketAddr = metrics.parse().unwrap();
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some(addr);
        adjust(c);
    })
    .await;
    (server, metrics)
}

/// A Prometheus server scraping `target` every second, killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: auditlog\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", closed_port());
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The value of an instant query that yields one sample.
    fn query(&self, promql: &str) -> Result<f64, String> {
        let path = format!("/api/v1/query?query={}", promql.replace('"', "%22"));
        let (status, body) = http_get(&self.addr, &path)?;
        let answer: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
        let value = answer["data"]["result"][0]["value"][1]
            .as_str()
            .ok_or_else(|| format!("no sample yet: {body}"))?;
        value.parse().map_err(|e| format!("{value:?}: {e}"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn prometheus_scrapes_what_was_written() {
    if !have(PROMETHEUS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", closed_port());
    let server = ServerProcess::spawn_args(dir.path(), ["--metrics-listen", &metrics], &[]).await;
    let client = Client::connect(&server.url).await.unwrap();
    for i in 0..5 {
        client
            .log(NewEvent::lead_ingested(format!("LEAD-{i}"), "webform"))
            .await
            .unwrap();
    }
    client
        .log_batch((5..25).map(|i| NewEvent::lead_ingested(format!("LEAD-{i}"), "webform")))
        .await
        .unwrap();

    let prometheus = Prometheus::start(&metrics);
    // Prometheus itself takes a while to start on a busy machine.
    wait_until_within(
        Duration::from_secs(120),
        "Prometheus to have scraped the 25 events",
        || async {
            match prometheus.query("auditlog_events_appended_total") {
                Ok(25.0) => Ok(()),
                Ok(v) => Err(format!("auditlog_events_appended_total = {v}")),
                Err(e) => Err(e),
            }
        },
    )
    .await;
    let calls = prometheus
        .query("auditlog_rpc_calls_total{method=\"Log\",code=\"OK\"}")
        .unwrap();
    assert_eq!(calls, 5.0);
    assert_eq!(prometheus.query("auditlog_head_seq").unwrap(), 25.0);
    assert_eq!(prometheus.query("auditlog_build_info").unwrap(), 1.0);
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    if !have(PROMTOOL) {
        return;
    }
    let (server, metrics) = metered(|_| {}).await;
    let client = server.client().await;
    client
        .log(NewEvent::lead_ingested("LEAD-1", "webform"))
        .await
        .unwrap();
    client.verify().await.unwrap();
    let text = scrape(&metrics).await;
    let mut check = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn calls_refusals_and_findings_move_the_figures() {
    const TOKEN: &str = "metrics-test-token-0123456789";
    const SLOW: &str = "metrics-test-slow-token-0123456789";
    let (server, metrics) = metered(|c| {
        c.tokens = vec![TokenConfig {
            name: "ops".into(),
            sha256: hex::encode(sha2::Sha256::digest(TOKEN)),
            roles: vec![Role::Writer, Role::Reader, Role::Auditor],
            rate_per_sec: None,
            burst: None,
            actors: None,
        }];
        // One call, then one an hour.
        c.tokens.push(TokenConfig {
            name: "slow".into(),
            sha256: hex::encode(sha2::Sha256::digest(SLOW)),
            roles: vec![Role::Writer],
            rate_per_sec: Some(1.0 / 3600.0),
            burst: Some(1),
            actors: None,
        });
    })
    .await;
    let options = Options {
        token: Some(TOKEN.into()),
        ..Options::default()
    };
    let client = Client::connect_with(&server.url, options).await.unwrap();
    for i in 1..=3 {
        client
            .log(NewEvent::lead_ingested(format!("LEAD-{i}"), "webform"))
            .await
            .unwrap();
    }
    let anonymous = Client::connect(&server.url).await.unwrap();
    anonymous
        .log(NewEvent::lead_ingested("LEAD-X", "webform"))
        .await
        .unwrap_err();
    let slow = Options {
        token: Some(SLOW.into()),
        ..Options::default()
    };
    let slow = Client::connect_with(&server.url, slow).await.unwrap();
    slow.log(NewEvent::lead_ingested("LEAD-4", "webform"))
        .await
        .unwrap();
    slow.log(NewEvent::lead_ingested("LEAD-Y", "webform"))
        .await
        .unwrap_err();

    let text = scrape(&metrics).await;
    let of = |series: &str| sample(&text, series);
    assert_eq!(
        of("auditlog_rpc_calls_total{method=\"Log\",code=\"OK\"}"),
        Some(4.0)
    );
    assert_eq!(
        of("auditlog_rpc_calls_total{method=\"Log\",code=\"RESOURCE_EXHAUSTED\"}"),
        Some(1.0)
    );
    assert_eq!(of("auditlog_calls_rate_limited_total"), Some(1.0));
    assert_eq!(of("auditlog_calls_shed_total"), Some(0.0));
    assert_eq!(
        of("auditlog_rpc_calls_total{method=\"Log\",code=\"UNAUTHENTICATED\"}"),
        Some(1.0)
    );
    assert_eq!(
        of("auditlog_calls_refused_by_auth_total{reason=\"UNAUTHENTICATED\"}"),
        Some(1.0)
    );
    assert_eq!(of("auditlog_events_appended_total"), Some(4.0));
    // The records' bytes: the file goes on with zeros written ahead.
    let log_len = common::log_bytes(&server.log_path()).len();
    assert_eq!(of("auditlog_written_bytes_total"), Some(log_len as f64));
    assert_eq!(of("auditlog_head_seq"), Some(4.0));
    assert_eq!(
        of("auditlog_rpc_duration_seconds_count{method=\"Log\"}"),
        Some(6.0)
    );
    assert_eq!(of("auditlog_calls_in_flight"), Some(0.0));
    assert_eq!(
        of("auditlog_last_clean_verification_timestamp_seconds"),
        Some(0.0)
    );

    // A clean verification of the whole log vouches for it.
    assert!(client.verify().await.unwrap().problems.is_empty());
    let text = scrape(&metrics).await;
    assert_eq!(sample(&text, "auditlog_verifications_total"), Some(1.0));
    assert_eq!(
        sample(&text, "auditlog_verification_events_checked_total"),
        Some(4.0)
    );
    assert!(sample(&text, "auditlog_last_clean_verification_timestamp_seconds").unwrap() > 0.0);

    // One record edited behind the server's back: one bad signature found.
    tamper(&server.log_path(), |lines| {
        lines[1] = edit_line(&lines[1], "webform", "webfarm");
    });
    assert!(!client.verify().await.unwrap().problems.is_empty());
    let text = scrape(&metrics).await;
    assert_eq!(sample(&text, "auditlog_verifications_total"), Some(2.0));
    assert_eq!(
        sample(
            &text,
            "auditlog_verification_problems_total{kind=\"bad_signature\"}"
        ),
        Some(1.0)
    );
}

/// The proof and admin calls are counted and timed like the rest: each
/// shows in the RPC metrics and among the server's own timings.
#[tokio::test]
async fn every_rpc_is_counted_and_timed() {
    let (server, metrics) = metered(|_| {}).await;
    let client = server.client().await;
    // Whether they succeed does not matter (the log is empty): a refused
    // call counts too.
    let _ = client.checkpoint(true).await;
    let _ = client.inclusion_proof(1, 0).await;
    let _ = client.consistency_proof(1, 1).await;
    client.webhook_secret("nowhere").await.unwrap_err();
    client
        .mail_report("report", "<p>1</p>".into(), "1".into())
        .await
        .unwrap_err();

    const CALLED: [&str; 5] = [
        "GetCheckpoint",
        "GetInclusionProof",
        "GetConsistencyProof",
        "GetWebhookSecret",
        "MailReport",
    ];
    let text = scrape(&metrics).await;
    for method in CALLED {
        let series = format!("auditlog_rpc_duration_seconds_count{{method=\"{method}\"}}");
        assert_eq!(sample(&text, &series), Some(1.0), "{series} in {text}");
    }
    let stats = client.performance_stats(None).await.unwrap();
    for method in CALLED {
        let timed = stats.operations.iter().find(|o| {
            o.operation == method
                && o.source == auditlog_proto::v1::PerformanceSource::Server as i32
        });
        assert_eq!(timed.map(|o| o.count), Some(1), "{method} in {stats:?}");
    }
}

#[tokio::test]
async fn the_listener_answers_only_get_metrics() {
    let (_server, metrics) = metered(|_| {}).await;
    let (status, _) = get(&metrics, "/").await.unwrap();
    assert_eq!(status, 404);
    let (status, _) = get(&metrics, "/metrics/x").await.unwrap();
    assert_eq!(status, 404);
    let text = scrape(&metrics).await;
    assert!(
        text.contains("# TYPE auditlog_events_appended_total counter\n"),
        "{text}"
    );
}

/// The metrics port has no token check, so it bounds its connections: past
/// a few, one more is closed at once (before, 20,000 held-open connections
/// used every descriptor the process had, and the gRPC port stopped
/// accepting); once they close, scrapes work again, and gRPC calls never
/// stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_open_metrics_connections_are_capped_and_grpc_goes_on() {
    let (server, metrics) = metered(|_| {}).await;
    let client = server.client().await;
    let target = metrics.clone();
    let (held, closed) = tokio::task::spawn_blocking(move || {
        let held: Vec<TcpStream> = (0..64)
            .map(|_| TcpStream::connect(&target).unwrap())
            .collect();
        // One closed by the server reads end-of-file at once; one it keeps
        // times out.
        let closed = held
            .iter()
            .filter(|c| {
                let mut c: &TcpStream = c;
                c.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                matches!(c.read(&mut [0u8; 1]), Ok(0))
            })
            .count();
        (held, closed)
    })
    .await
    .unwrap();
    assert!(
        (32..64).contains(&closed),
        "{closed} of 64 held-open connections were closed"
    );
    client.log(NewEvent::new("still_writing")).await.unwrap();
    drop(held);
    wait_until("a scrape is answered again", || async {
        match get(&metrics, "/metrics").await {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_follow_stream_is_open_while_it_runs() {
    let (server, metrics) = metered(|_| {}).await;
    let client = server.client().await;
    let open = |want: f64| {
        let metrics = &metrics;
        async move {
            let text = scrape(metrics).await;
            match sample(&text, "auditlog_open_streams") {
                Some(n) if n == want => Ok(()),
                other => Err(format!("auditlog_open_streams = {other:?}")),
            }
        }
    };
    let stream = client.stream(Query::new(), 1, true).await.unwrap();
    wait_until("the follow stream to count as open", || open(1.0)).await;
    drop(stream);
    wait_until("the closed stream to count no more", || open(0.0)).await;
}

#[tokio::test]
async fn the_dashboard_and_alert_rules_name_only_metrics_that_exist() {
    let exprs = deploy_exprs();

    // A webhook endpoint and an alert channel, so their families have
    // samples: neither is there to answer.
    let nowhere = format!("http://127.0.0.1:{}/hook", closed_port());
    let (server, metrics) = metered(|c| {
        c.alerts.webhook = Some(HookConfig {
            url: nowhere.as_str().into(),
        });
        c.webhooks = vec![webhook_config("crm", nowhere.clone())];
    })
    .await;
    let client = server.client().await;
    client
        .log(NewEvent::lead_ingested("LEAD-1", "webform"))
        .await
        .unwrap();
    let text = wait_until(
        "the exposition to list the running server's figures",
        || {
            let metrics = &metrics;
            async move {
                let text = scrape(metrics).await;
                if text.contains("auditlog_head_seq 1") {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
        },
    )
    .await;
    let exposed = metric_names(&text);
    // A single server has no cluster metrics: a cluster node's exposition
    // is held to those in tests/cluster_attack.rs.
    for name in metric_names(&exprs) {
        if name.starts_with("auditlog_cluster_") {
            continue;
        }
        assert!(
            is_exposed(&exposed, &name),
            "{name} is used by deploy/ but not exposed:\n{text}"
        );
    }
}
