//! HTTP alert channels (Slack here; Discord and the generic webhook share
//! the sender) answering `429` with a `Retry-After` the sender must not
//! take at its word: one past what a duration holds, and zero.

use std::time::Duration;

use crate::common::{TestServer, wait_until_within};
use crate::hostile_receivers::raw::{RawHttp, answer};

fn every_error_alerts(c: &mut auditlog_server::Config, slack: &RawHttp) {
    crate::hostile_receivers::alert_on_every_error(c);
    c.alerts.slack = Some(auditlog_server::config::HookConfig {
        url: slack.url("/services/T0/B0/secret").as_str().into(),
    });
}

async fn slack_status(client: &auditlog_client::Client) -> (u64, u64, String) {
    let status = client.alert_status().await.unwrap();
    let slack = status
        .channels
        .iter()
        .find(|c| c.channel == "slack")
        .unwrap();
    (slack.sent, slack.failed, slack.last_error.clone())
}

/// Two 503s, then `Retry-After: 18446744073709551615` (u64::MAX seconds)
/// once, then 200:
/// the alert is given up (the pause is past the retry window), and the
/// channel's sender lives on to deliver the next one. It used to panic
/// adding the pause to the time spent (`Duration` overflow), which ended
/// the channel's sender: every later alert to Slack was dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_past_any_duration_gives_up_one_alert_and_the_channel_lives_on() {
    let slack = RawHttp::start(|n| {
        match n {
            // 1.5 s of backoff first: the overflow needs a second spent.
            0 | 1 => answer("503 Service Unavailable", ""),
            2 => answer(
                "429 Too Many Requests",
                &format!("Retry-After: {}\r\n", u64::MAX),
            ),
            _ => answer("200 OK", ""),
        }
    })
    .await;
    let server = TestServer::start_with(|c| every_error_alerts(c, &slack)).await;
    let client = server.client().await;

    client
        .log(auditlog_client::NewEvent::error("Timeout", "first"))
        .await
        .unwrap();
    let (_, _, error) = wait_until_within(
        Duration::from_secs(10),
        "the first alert to be given up",
        || async {
            let s = slack_status(&client).await;
            if s.1 == 1 {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    assert!(error.contains("429"), "{error}");

    client
        .log(auditlog_client::NewEvent::error("Timeout", "second"))
        .await
        .unwrap();
    wait_until_within(
        Duration::from_secs(10),
        "the second alert on Slack",
        || async {
            let s = slack_status(&client).await;
            if s.0 == 1 {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    assert_eq!(slack.attempts(), 4);
}

/// `Retry-After: 0` on every answer: the sender still backs off (0.5 s
/// doubling), so a few attempts in three seconds, not a request loop as
/// fast as the receiver answers for the whole 30 s retry window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_zero_does_not_make_the_sender_spin() {
    let slack = RawHttp::start(|_| answer("429 Too Many Requests", "Retry-After: 0\r\n")).await;
    let server = TestServer::start_with(|c| every_error_alerts(c, &slack)).await;
    let client = server.client().await;

    client
        .log(auditlog_client::NewEvent::error("Timeout", "storm"))
        .await
        .unwrap();
    wait_until_within(Duration::from_secs(10), "a first attempt", || async {
        let n = slack.attempts();
        if n >= 1 { Ok(()) } else { Err(format!("{n}")) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = slack.attempts();
    // 0.5 + 1 + 2 s of backoff: 4 attempts, 5 with slack for a slow CI.
    assert!(attempts <= 6, "{attempts} attempts in about 3 s");
    let (sent, _, error) = slack_status(&client).await;
    assert_eq!(sent, 0);
    assert!(error.contains("429"), "{error}");
}
