//! `bench`: rates and ordered percentiles.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_rates_and_ordered_percentiles() {
    let server = TestServer::start().await;
    let client = server.client().await;

    let out = auditlog(
        &server,
        &[
            "bench",
            "--concurrency",
            "4",
            "--duration",
            "1s",
            "--warmup",
            "0s",
        ],
    )
    .await;
    let text = out.ok();
    let events_line = text
        .lines()
        .find(|l| l.starts_with("events:"))
        .unwrap_or_else(|| panic!("no events line: {out:?}"));
    let events: u64 = word_after(events_line, "events:").parse().unwrap();
    assert!(events > 0, "{out:?}");
    assert!(text.contains("latency ms: p50"), "{out:?}");
    assert_eq!(word_after(text, "errors:"), "0", "{out:?}");
    // With no warm-up, every event written is an event counted.
    let total = client.stats(None).await.unwrap().total_events;
    assert_eq!(total, events, "{out:?}");

    let out = auditlog(
        &server,
        &[
            "--json",
            "bench",
            "--concurrency",
            "4",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--batch",
            "10",
        ],
    )
    .await;
    let report = out.json();
    assert_eq!(report["concurrency"], 4, "{report}");
    assert_eq!(report["batch"], 10, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let calls = report["calls"].as_u64().unwrap();
    let events = report["events"].as_u64().unwrap();
    assert!(calls > 0, "{report}");
    assert_eq!(events, calls * 10, "{report}");
    assert!(report["events_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    let latency = &report["latency_ms"];
    let p = |k: &str| {
        latency[k]
            .as_f64()
            .unwrap_or_else(|| panic!("no latency_ms.{k}: {report}"))
    };
    assert!(p("p50") > 0.0, "{report}");
    assert!(p("p50") <= p("p95"), "{report}");
    assert!(p("p95") <= p("p99"), "{report}");
    assert!(p("p99") <= p("max"), "{report}");
    let after = client.stats(None).await.unwrap().total_events;
    assert_eq!(after - total, events, "{report}");
    // What bench wrote is a valid log like any other.
    assert!(client.verify().await.unwrap().ok);
}

/// A benchmark of no time at all is refused in one line; one too short to
/// make a call reports 0/s: never NaN or inf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_never_reports_nan_or_infinity() {
    let server = TestServer::start().await;
    for duration in ["0s", "0ms"] {
        let out = auditlog(&server, &["bench", "--duration", duration]).await;
        let line = out.one_line_error();
        assert!(
            line.contains("--duration") && line.contains("more than 0"),
            "{out:?}"
        );
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    let args = ["bench", "--duration", "1ns", "--warmup", "0s"];
    let text = auditlog(&server, &args).await;
    let json_args = [&["--json"][..], &args].concat();
    let json = auditlog(&server, &json_args).await;
    for out in [&text, &json] {
        let all = out.ok().to_lowercase();
        assert!(!all.contains("nan") && !all.contains("inf"), "{out:?}");
    }
    let report = json.json();
    for key in ["events_per_sec", "calls_per_sec"] {
        assert!(report[key].as_f64().is_some_and(f64::is_finite), "{report}");
    }
}
