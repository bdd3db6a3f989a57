//! Failures and retries: unreachable channels never fail a `Log` call and
//! are counted as failed, a silent SMTP relay never delays Slack, a channel
//! answering 503 for a while still gets the alert, and a redirect is a
//! failure that is not followed.

use std::time::{Duration, Instant};

use auditlog_client::NewEvent;
use serde_json::Value;

use crate::alerts::checks::{channel, rule_status, status_when};
use crate::alerts::setup::{email, error_text, hook, log_errors, rule};
use crate::common::endpoints::{HttpEndpoint, closed_port, read_http_request, silent_port};
use crate::common::{TestServer, cli, wait_until, wait_until_within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_channels_never_fail_log_and_are_counted_as_failed() {
    let (smtp_port, slack_port) = (closed_port(), closed_port());
    let server = TestServer::start_with(|c| {
        c.alerts.rules = Some(vec![
            rule("errors", &["error"], 5, 60, 300, None),
            // Fires on every error: far more alerts than the queue holds.
            rule("every-error", &["error"], 1, 60, 0, None),
        ]);
        c.alerts.email = Some(email(smtp_port));
        c.alerts.slack = hook(&format!("http://127.0.0.1:{slack_port}/slack"));
    })
    .await;
    let client = server.client().await;

    for i in 0..200 {
        let event = if i % 2 == 0 {
            NewEvent::error("Timeout", &error_text("storm", i))
        } else {
            NewEvent::lead_ingested(format!("LEAD-{i}"), "web")
        };
        let receipt = client
            .log(event)
            .await
            .unwrap_or_else(|e| panic!("log call {i} failed: {e}"));
        assert_eq!(receipt.seq, i as u64 + 1);
    }
    assert_eq!(client.stats(None).await.unwrap().head_seq, 200);

    // Sending is retried with backoff for up to 30 s, then counted as
    // failed.
    let status = wait_until_within(
        Duration::from_secs(60),
        "both channels to count a failure",
        || async {
            let s = client.alert_status().await.unwrap();
            if channel(&s, "email").failed >= 1
                && channel(&s, "slack").failed >= 1
                && rule_status(&s, "errors").in_window == 100
            {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    for name in ["email", "slack"] {
        let c = channel(&status, name);
        assert_eq!(c.sent, 0, "{status:?}");
        assert!(!c.last_error.is_empty(), "{status:?}");
    }
    assert_eq!(rule_status(&status, "errors").fired, 1, "{status:?}");
    assert_eq!(rule_status(&status, "every-error").fired, 100, "{status:?}");
    // 100 alerts, one sender retrying unreachable channels, a bounded
    // queue: the overflow is dropped and counted, never waited for.
    assert!(status.dropped > 0, "{status:?}");

    // The CLI shows the same.
    let (code, stdout, stderr) = cli(&server.url, &["alerts", "status", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let email = json["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "email")
        .unwrap();
    assert!(email["failed"].as_u64().unwrap() >= 1, "{json}");
    assert!(!email["last_error"].as_str().unwrap().is_empty(), "{json}");
    assert!(json["dropped"].as_u64().unwrap() > 0, "{json}");

    // And writes still go through while the sender keeps failing.
    let receipts = client
        .log_batch(
            (0..50)
                .map(|i| NewEvent::error("Timeout", &error_text("late", i)))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_eq!(receipts.len(), 50);
}

/// An HTTP server answering every request `302 Found` to `location`.
async fn redirecting(location: String) -> u16 {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let location = location.clone();
            tokio::spawn(async move {
                if !read_http_request(&mut socket).await {
                    return;
                }
                let answer = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_smtp_server_never_delays_slack_and_its_timeout_is_visible() {
    let smtp = silent_port().await;
    let slack = HttpEndpoint::start().await;
    let server = TestServer::start_with(|c| {
        // Every error fires: each one is a fresh alert to both channels.
        c.alerts.rules = Some(vec![rule("each", &["error"], 1, 60, 0, None)]);
        c.alerts.email = Some(email(smtp));
        c.alerts.slack = hook(&slack.url("/slack"));
    })
    .await;
    let client = server.client().await;

    // The first alert, then a second one while the mail still hangs: both
    // reach Slack at once, neither waits for the mail relay.
    log_errors(&client, "stall", 0, 1, "").await;
    wait_until_within(
        Duration::from_secs(5),
        "the first alert on Slack",
        || async {
            let n = slack.accepted().len();
            if n >= 1 { Ok(()) } else { Err(format!("{n}")) }
        },
    )
    .await;
    let second = Instant::now();
    log_errors(&client, "stall", 1, 1, "").await;
    wait_until_within(
        Duration::from_secs(5),
        "the second alert on Slack",
        || async {
            let n = slack.accepted().len();
            if n >= 2 { Ok(()) } else { Err(format!("{n}")) }
        },
    )
    .await;
    assert!(second.elapsed() < Duration::from_secs(5));

    // The hanging mail ends at the SMTP timeout (10 s), and the status
    // says why, well before any retry window is over.
    let status = wait_until_within(
        Duration::from_secs(16),
        "the email channel to report its timeout",
        || async {
            let status = client.alert_status().await.unwrap();
            let email = channel(&status, "email");
            if email.last_error.contains("timed out") {
                Ok(status)
            } else {
                Err(format!("{status:?}"))
            }
        },
    )
    .await;
    assert_eq!(channel(&status, "email").sent, 0, "{status:?}");
    assert_eq!(channel(&status, "slack").sent, 2, "{status:?}");

    // `TestAlerts` answers each channel's own result within the timeout.
    let started = Instant::now();
    let results = tokio::time::timeout(Duration::from_secs(20), client.test_alerts())
        .await
        .expect("TestAlerts waited for the silent relay")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    let result = |name: &str| results.iter().find(|r| r.channel == name).unwrap();
    assert!(result("slack").ok, "{results:?}");
    assert!(
        !result("email").ok && result("email").error.contains("timed out"),
        "{results:?}"
    );
    // A given-up send counts as failed.
    let status = wait_until_within(
        Duration::from_secs(60),
        "the email channel to count a failure",
        || async {
            let status = client.alert_status().await.unwrap();
            if channel(&status, "email").failed >= 1 {
                Ok(status)
            } else {
                Err(format!("{status:?}"))
            }
        },
    )
    .await;
    assert!(
        channel(&status, "email").last_error.contains("timed out"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_channel_that_answers_503_for_two_seconds_still_gets_the_alert() {
    let slack = HttpEndpoint::start().await;
    slack.answer(503);
    let server = TestServer::start_with(|c| {
        c.alerts.rules = Some(vec![rule("blip", &["error"], 1, 60, 300, None)]);
        c.alerts.slack = hook(&slack.url("/slack"));
    })
    .await;
    let client = server.client().await;
    log_errors(&client, "blip", 0, 1, "").await;
    wait_until("a first attempt", || async {
        if slack.attempts() >= 1 {
            Ok(())
        } else {
            Err("none".into())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    slack.answer(200);
    slack.wait_for(1).await;
    let status = status_when(&client, "slack to count it sent", |s| {
        channel(s, "slack").sent == 1
    })
    .await;
    assert_eq!(channel(&status, "slack").failed, 0, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_alert_receiver_is_a_failure_and_is_not_followed() {
    let target = HttpEndpoint::start().await;
    let redirect = redirecting(target.url("/internal")).await;
    let server = TestServer::start_with(|c| {
        c.alerts.rules = Some(vec![rule("moved", &["error"], 1, 60, 300, None)]);
        c.alerts.webhook = hook(&format!("http://127.0.0.1:{redirect}/hook"));
    })
    .await;
    let client = server.client().await;
    log_errors(&client, "moved", 0, 1, "").await;
    let status = status_when(&client, "the webhook to count a failure", |s| {
        channel(s, "webhook").failed >= 1 || channel(s, "webhook").sent >= 1
    })
    .await;
    let webhook = channel(&status, "webhook");
    assert_eq!((webhook.sent, webhook.failed), (0, 1), "{status:?}");
    assert!(webhook.last_error.contains("redirect"), "{status:?}");
    assert!(webhook.last_error.contains("final"), "{status:?}");
    assert_eq!(target.attempts(), 0, "the redirect was followed");
    // `TestAlerts` says the same.
    let results = client.test_alerts().await.unwrap();
    assert!(
        !results[0].ok && results[0].error.contains("redirect"),
        "{results:?}"
    );
    assert_eq!(target.attempts(), 0, "the redirect was followed");
}
