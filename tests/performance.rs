//! Performance tracking end to end: TrackPerformance writes audited events,
//! GetPerformanceStats returns exact percentiles over each operation's
//! window (checked against a sorted reference), the windows come back after
//! a restart, the server times its own RPCs, a degradation raises an alert
//! through a real HTTP channel, and `auditlog performance` prints the table.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::time::Duration;

use auditlog_client::{Client, NewEvent, Query, pb};
use auditlog_server::Config;
use common::TestServer;
use common::endpoints::HttpEndpoint;
use serde_json::Value;

/// Nearest rank, written out plainly: the smallest sample with at least p%
/// of the samples at or below it.
fn reference(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut k = 1;
    while (k as f64) < p / 100.0 * sorted.len() as f64 {
        k += 1;
    }
    sorted[k - 1]
}

/// Deterministic pseudo-random durations in ms, with 3 decimals.
fn durations(seed: u64, n: usize) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % 500_000) as f64 / 1000.0
        })
        .collect()
}

async fn track_all(client: &Client, operation: &str, samples: &[f64]) {
    for ms in samples {
        client
            .track_performance_with(pb::TrackPerformanceRequest {
                operation: operation.into(),
                duration_ms: *ms,
                workflow: "sales".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

fn tracked<'a>(stats: &'a pb::GetPerformanceStatsResponse, op: &str) -> &'a pb::OperationStats {
    stats
        .operations
        .iter()
        .find(|o| o.operation == op && o.source == pb::PerformanceSource::Tracked as i32)
        .unwrap_or_else(|| panic!("no tracked stats for {op}: {stats:?}"))
}

fn assert_matches_reference(got: &pb::OperationStats, samples: &[f64]) {
    assert_eq!(got.count, samples.len() as u64, "{got:?}");
    assert_eq!(got.p50_ms, reference(samples, 50.0), "p50 {got:?}");
    assert_eq!(got.p95_ms, reference(samples, 95.0), "p95 {got:?}");
    assert_eq!(got.p99_ms, reference(samples, 99.0), "p99 {got:?}");
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!((got.min_ms, got.max_ms), (min, max));
    let avg = samples.iter().sum::<f64>() / samples.len() as f64;
    assert!((got.avg_ms - avg).abs() < 1e-6, "{got:?} vs {avg}");
}

fn small_window(c: &mut Config) {
    c.performance.window = 150;
    c.performance.degradation.recent = 10;
    c.performance.degradation.min_samples = 50;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentiles_are_exact_over_the_window_and_survive_a_restart() {
    let server = TestServer::start_with(|c| {
        small_window(c);
        c.performance.degradation.enabled = false;
    })
    .await;
    let client = server.client().await;
    let crm = durations(1, 200);
    let scoring = durations(2, 37);
    track_all(&client, "crm.create_record", &crm).await;
    track_all(&client, "lead_scoring", &scoring).await;

    let stats = client.performance_stats(None).await.unwrap();
    assert_eq!(stats.window, 150);
    // The window holds the latest 150 of crm's 200.
    assert_matches_reference(tracked(&stats, "crm.create_record"), &crm[50..]);
    assert_matches_reference(tracked(&stats, "lead_scoring"), &scoring);
    // One operation only.
    let one = client
        .performance_stats(Some("lead_scoring"))
        .await
        .unwrap();
    assert!(one.operations.iter().all(|o| o.operation == "lead_scoring"));

    // Each measurement is an audited event.
    let events = client
        .query(Query::new().event_type("performance").limit(1000))
        .await
        .unwrap()
        .events;
    assert_eq!(events.len(), 237);
    let last = auditlog_proto::json::struct_to_json(events[0].details.as_ref().unwrap()).unwrap();
    assert_eq!(last["operation"], "lead_scoring");
    assert_eq!(last["duration_ms"].as_f64(), scoring.last().copied());
    assert_eq!(events[0].workflow, "sales");

    // The server timed its own calls: at least the 237 TrackPerformance.
    let own = stats
        .operations
        .iter()
        .find(|o| {
            o.operation == "TrackPerformance" && o.source == pb::PerformanceSource::Server as i32
        })
        .unwrap();
    assert_eq!(own.count, 150, "{own:?}");
    assert!(own.min_ms > 0.0 && own.min_ms <= own.p50_ms && own.p99_ms <= own.max_ms);

    // After a restart the tracked windows are rebuilt from the log.
    let server = server
        .restart(|c| {
            small_window(c);
            c.performance.degradation.enabled = false;
        })
        .await;
    let client = server.client().await;
    let again = client.performance_stats(None).await.unwrap();
    assert_eq!(
        tracked(&again, "crm.create_record"),
        tracked(&stats, "crm.create_record")
    );
    assert_eq!(
        tracked(&again, "lead_scoring"),
        tracked(&stats, "lead_scoring")
    );

    // A time range reads every performance event of the range instead.
    let all = client
        .performance_stats_with(pb::GetPerformanceStatsRequest {
            operation: "crm.create_record".into(),
            since: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            until: None,
        })
        .await
        .unwrap();
    assert_eq!(all.window, 0);
    assert_eq!(all.operations.len(), 1);
    assert_matches_reference(&all.operations[0], &crm);

    // The CLI's table and JSON.
    let (code, text, err) =
        common::cli(&server.url, &["performance", "--operation", "lead_scoring"]).await;
    assert_eq!(code, 0, "{err}");
    let row = text
        .lines()
        .find(|l| l.starts_with("lead_scoring"))
        .unwrap();
    let p95 = format!("{:.2}", reference(&scoring, 95.0));
    assert!(
        row.contains("tracked") && row.contains(" 37 ") && row.contains(&p95),
        "{text}"
    );
    let (_, out, _) = common::cli(&server.url, &["performance", "--json"]).await;
    let json: Value = serde_json::from_str(&out).unwrap();
    let ops = json["operations"].as_array().unwrap();
    let crm_json = ops
        .iter()
        .find(|o| o["operation"] == "crm.create_record" && o["source"] == "tracked")
        .unwrap();
    assert_eq!(crm_json["count"], 150);
    assert_eq!(
        crm_json["p99_ms"].as_f64().unwrap(),
        reference(&crm[50..], 99.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn performance_events_logged_directly_count_too_and_bad_input_is_refused() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // A Python service that logs `performance` events with Log, as the
    // original logger did.
    client
        .log(
            NewEvent::new("performance")
                .detail("operation", "email.send")
                .detail("duration_ms", 42.0),
        )
        .await
        .unwrap();
    let stats = client.performance_stats(Some("email.send")).await.unwrap();
    assert_eq!(tracked(&stats, "email.send").count, 1);

    for (request, field) in [
        (
            pb::TrackPerformanceRequest {
                operation: "".into(),
                duration_ms: 1.0,
                ..Default::default()
            },
            "operation",
        ),
        (
            pb::TrackPerformanceRequest {
                operation: "has space".into(),
                duration_ms: 1.0,
                ..Default::default()
            },
            "operation",
        ),
        (
            pb::TrackPerformanceRequest {
                operation: "ok".into(),
                duration_ms: -1.0,
                ..Default::default()
            },
            "duration_ms",
        ),
        (
            pb::TrackPerformanceRequest {
                operation: "ok".into(),
                duration_ms: f64::NAN,
                ..Default::default()
            },
            "duration_ms",
        ),
    ] {
        let err = client.track_performance_with(request).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
        let fields: Vec<String> = err.field_violations().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, [field], "{err}");
    }
    // Nothing was written by the refused calls.
    assert_eq!(client.stats(None).await.unwrap().total_events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_operation_raises_an_alert() {
    let hook = HttpEndpoint::start().await;
    let url = hook.url("/alerts");
    let server = TestServer::start_with(|c| {
        small_window(c);
        c.performance.degradation.factor = 3.0;
        // Only the tracked operation is under test: on a loaded machine the
        // server's own TrackPerformance timings can degrade too, and raise
        // an alert of their own.
        c.performance.track_server = false;
        c.alerts.webhook = Some(auditlog_server::config::HookConfig {
            url: url.as_str().into(),
        });
    })
    .await;
    let client = server.client().await;
    // Steady at 10-12 ms: no alert.
    let steady: Vec<f64> = (0..100).map(|i| 10.0 + f64::from(i % 3)).collect();
    track_all(&client, "crm.create_record", &steady).await;
    // A second, unaffected operation.
    track_all(&client, "lead_scoring", &steady[..60]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hook.requests().is_empty(), "{:?}", hook.requests());
    // Then ten calls at 80 ms: the recent p95 is 80 > 3 x 12.
    track_all(&client, "crm.create_record", &[80.0; 10]).await;
    let got = hook.wait_for(1).await;
    let alert = &got[0].json;
    assert_eq!(alert["kind"], "performance", "{alert}");
    assert_eq!(alert["rule"], "crm.create_record", "{alert}");
    let message = alert["messages"][0].as_str().unwrap();
    assert!(
        message.contains("80.0 ms") && message.contains("12.0 ms"),
        "{message}"
    );
    // Once per cooldown: ten more slow calls send nothing more.
    track_all(&client, "crm.create_record", &[90.0; 10]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.requests().len(), 1, "{:?}", hook.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_loggers_duration_in_seconds_counts_and_is_rebuilt_after_a_restart() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // What the Python logger's `track_performance` wrote: `duration` in
    // seconds.
    for seconds in [0.25, 1.5, 0.125] {
        client
            .log(
                NewEvent::new("performance")
                    .detail("operation", "crm.sync")
                    .detail("duration", seconds),
            )
            .await
            .unwrap();
    }
    // `duration_ms` wins when both are given.
    client
        .log(
            NewEvent::new("performance")
                .detail("operation", "crm.sync")
                .detail("duration_ms", 40.0)
                .detail("duration", 99.0),
        )
        .await
        .unwrap();
    let expect = |stats: &pb::GetPerformanceStatsResponse| {
        let s = tracked(stats, "crm.sync");
        assert_eq!(s.count, 4, "{s:?}");
        assert_eq!((s.min_ms, s.max_ms), (40.0, 1500.0), "{s:?}");
        assert_eq!(s.p50_ms, 125.0, "{s:?}");
    };
    expect(&client.performance_stats(Some("crm.sync")).await.unwrap());
    // From the log over a time range, and from the windows rebuilt at start.
    let ranged = client
        .performance_stats_with(pb::GetPerformanceStatsRequest {
            operation: "crm.sync".into(),
            since: Some(prost_types::Timestamp::default()),
            until: None,
        })
        .await
        .unwrap();
    expect(&ranged);
    let server = server.restart(|_| {}).await;
    let client = server.client().await;
    expect(&client.performance_stats(Some("crm.sync")).await.unwrap());
}
