//! Thresholds, windows and cooldown: a rule mails one alert per cooldown to
//! every recipient over SMTP, counts only its workflow and types, and
//! forgets errors older than its window.

use std::time::{Duration, Instant};

use auditlog_client::NewEvent;

use crate::alerts::checks::{
    assert_addressed_to_everyone, assert_latest_messages, assert_no_links, channel, rule_status,
    status_when,
};
use crate::alerts::setup::{email, error_text, hook, log_errors, rule};
use crate::common::TestServer;
use crate::common::endpoints::{HttpEndpoint, SmtpServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_alert_is_mailed_once_per_cooldown_to_every_recipient() {
    const COOLDOWN: Duration = Duration::from_secs(3);
    let smtp = SmtpServer::start().await;
    let server = TestServer::start_with(|c| {
        c.alerts.rules = Some(vec![rule(
            "sales-errors",
            &["error"],
            5,
            60,
            COOLDOWN.as_secs(),
            Some("sales"),
        )]);
        c.alerts.email = Some(email(smtp.port));
    })
    .await;
    let client = server.client().await;

    // Four are under the threshold: counted, nothing sent.
    let mut errors: Vec<(u64, String)> = Vec::new();
    for (i, seq) in log_errors(&client, "crm", 0, 4, "sales")
        .await
        .into_iter()
        .enumerate()
    {
        errors.push((seq, error_text("crm", i)));
    }
    let status = status_when(&client, "4 errors in the window", |s| {
        rule_status(s, "sales-errors").in_window == 4
    })
    .await;
    assert_eq!(rule_status(&status, "sales-errors").fired, 0);
    assert!(smtp.mails().is_empty(), "mailed below the threshold");

    // The fifth fires: exactly one mail, to both recipients.
    let seq = log_errors(&client, "crm", 4, 1, "sales").await[0];
    errors.push((seq, error_text("crm", 4)));
    let mails = smtp.wait_for(1).await;
    let fired_seen = Instant::now();
    let mail = &mails[0];
    assert_addressed_to_everyone(mail);
    assert_eq!(
        mail.header("Subject"),
        "[auditlog] sales-errors: 5 events in 60 s in workflow sales"
    );
    let content_type = mail.header("Content-Type").to_ascii_lowercase();
    assert!(
        content_type.starts_with("text/plain"),
        "not plain text: {content_type}"
    );
    let body = mail.body();
    for needle in ["sales-errors", "5", "60", "sales"] {
        assert!(body.contains(needle), "{needle:?} not in the body:\n{body}");
    }
    for (seq, text) in &errors {
        assert!(
            body.contains(&format!("seq {seq}")) && body.contains(text.as_str()),
            "error seq {seq} ({text}) not in the body:\n{body}"
        );
    }
    assert_no_links(&body);

    // A storm of 20 more inside the cooldown: the rule sees every one of
    // them and stays quiet.
    log_errors(&client, "crm", 5, 20, "sales").await;
    let status = status_when(&client, "25 errors in the window", |s| {
        rule_status(s, "sales-errors").in_window == 25
    })
    .await;
    assert_eq!(
        rule_status(&status, "sales-errors").fired,
        1,
        "fired again inside the cooldown: {status:?}"
    );
    let status = status_when(&client, "the mail to be counted as sent", |s| {
        channel(s, "email").sent >= 1
    })
    .await;
    assert_eq!(channel(&status, "email").sent, 1, "{status:?}");
    assert_eq!(channel(&status, "email").failed, 0, "{status:?}");
    assert_eq!(smtp.mails().len(), 1, "mailed again inside the cooldown");

    // Once the cooldown has passed, the next error mails again, counting
    // every error still in the window.
    let wait = (fired_seen + COOLDOWN + Duration::from_millis(200))
        .saturating_duration_since(Instant::now());
    tokio::time::sleep(wait).await;
    log_errors(&client, "crm", 25, 1, "sales").await;
    let mails = smtp.wait_for(2).await;
    assert_eq!(mails.len(), 2);
    assert_addressed_to_everyone(&mails[1]);
    assert_eq!(
        mails[1].header("Subject"),
        "[auditlog] sales-errors: 26 events in 60 s in workflow sales"
    );
    assert!(
        mails[1].body().contains(&error_text("crm", 25)),
        "{}",
        mails[1].body()
    );
    let status = status_when(&client, "the second mail to be counted", |s| {
        channel(s, "email").sent >= 2
    })
    .await;
    assert_eq!(rule_status(&status, "sales-errors").fired, 2, "{status:?}");
    assert_eq!(smtp.mails().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_rule_ignores_other_workflows_and_other_types() {
    let receiver = HttpEndpoint::start().await;
    let server = TestServer::start_with(|c| {
        c.alerts.rules = Some(vec![
            rule("sales-errors", &["error"], 3, 60, 300, Some("sales")),
            // Several types count together.
            rule(
                "mail-trouble",
                &["email_cancelled", "error"],
                4,
                60,
                300,
                Some("mail"),
            ),
            // Counts every error, never fires: shows the watcher's progress.
            rule("probe", &["error"], 1_000, 60, 300, None),
        ]);
        c.alerts.webhook = hook(&receiver.url("/alerts"));
    })
    .await;
    let client = server.client().await;

    log_errors(&client, "billing", 0, 10, "billing").await;
    log_errors(&client, "unscoped", 0, 5, "").await;
    for i in 0..5 {
        client
            .log(NewEvent::lead_ingested(format!("LEAD-{i}"), "web").workflow("sales"))
            .await
            .unwrap();
    }
    let status = status_when(&client, "the probe to count 15 errors", |s| {
        rule_status(s, "probe").in_window == 15
    })
    .await;
    let sales = rule_status(&status, "sales-errors");
    assert_eq!(
        (sales.in_window, sales.fired),
        (0, 0),
        "other workflows' errors or other types counted: {status:?}"
    );
    assert_eq!(receiver.attempts(), 0, "{:?}", receiver.requests());

    // Two sales errors: counted, under the threshold.
    let mut errors = Vec::new();
    for (i, seq) in log_errors(&client, "sales", 0, 2, "sales")
        .await
        .into_iter()
        .enumerate()
    {
        errors.push((seq, error_text("sales", i)));
    }
    let status = status_when(&client, "the probe to count 17 errors", |s| {
        rule_status(s, "probe").in_window == 17
    })
    .await;
    let sales = rule_status(&status, "sales-errors");
    assert_eq!((sales.in_window, sales.fired), (2, 0), "{status:?}");
    // The third fires, naming the workflow and only its errors.
    let seq = log_errors(&client, "sales", 2, 1, "sales").await[0];
    errors.push((seq, error_text("sales", 2)));
    let got = receiver.wait_for(1).await;
    let alert = &got[0].json;
    assert_eq!(alert["rule"], "sales-errors", "{alert}");
    assert_eq!(alert["count"], 3, "{alert}");
    assert_eq!(alert["workflow"], "sales", "{alert}");
    let messages: Vec<String> = serde_json::from_value(alert["messages"].clone()).unwrap();
    assert_latest_messages(&messages, &errors);
    assert!(
        !alert["text"].as_str().unwrap().contains("billing"),
        "{alert}"
    );

    // Either listed type counts toward "mail-trouble", only in its workflow.
    for _ in 0..3 {
        client
            .log(NewEvent::email_cancelled("LEAD-1", "bounced").workflow("other"))
            .await
            .unwrap();
    }
    client
        .log(NewEvent::email_cancelled("LEAD-1", "bounced").workflow("mail"))
        .await
        .unwrap();
    client
        .log(NewEvent::email_cancelled("LEAD-2", "bounced").workflow("mail"))
        .await
        .unwrap();
    log_errors(&client, "mail", 0, 1, "mail").await;
    let status = status_when(&client, "the probe to count 19 errors", |s| {
        rule_status(s, "probe").in_window == 19
    })
    .await;
    let mail = rule_status(&status, "mail-trouble");
    assert_eq!((mail.in_window, mail.fired), (3, 0), "{status:?}");
    log_errors(&client, "mail", 1, 1, "mail").await;
    let got = receiver.wait_for(2).await;
    let alert = &got[1].json;
    assert_eq!(alert["rule"], "mail-trouble", "{alert}");
    assert_eq!(alert["count"], 4, "{alert}");
    assert_eq!(alert["workflow"], "mail", "{alert}");
    let status = client.alert_status().await.unwrap();
    assert_eq!(rule_status(&status, "sales-errors").fired, 1);
    assert_eq!(rule_status(&status, "mail-trouble").fired, 1);
    assert_eq!(rule_status(&status, "probe").fired, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_slides_old_errors_do_not_count() {
    const WINDOW: Duration = Duration::from_secs(2);
    let receiver = HttpEndpoint::start().await;
    let server = TestServer::start_with(|c| {
        c.alerts.rules = Some(vec![rule(
            "burst",
            &["error"],
            3,
            WINDOW.as_secs(),
            0,
            None,
        )]);
        c.alerts.webhook = hook(&receiver.url("/alerts"));
    })
    .await;
    let client = server.client().await;
    log_errors(&client, "old", 0, 2, "").await;
    status_when(&client, "2 errors counted", |s| {
        rule_status(s, "burst").in_window == 2
    })
    .await;
    // Let the window pass: those two are no longer recent.
    tokio::time::sleep(WINDOW + Duration::from_millis(500)).await;
    log_errors(&client, "new", 0, 1, "").await;
    // 0 while the window is empty and the new error not yet seen; 2 while
    // the old ones are still counted.
    let status = status_when(&client, "the third error counted", |s| {
        !matches!(rule_status(s, "burst").in_window, 0 | 2)
    })
    .await;
    let burst = rule_status(&status, "burst");
    assert_eq!(
        (burst.in_window, burst.fired),
        (1, 0),
        "errors older than the window counted: {status:?}"
    );
    // Two more within the window make three: it fires, counting three.
    log_errors(&client, "new", 1, 2, "").await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].json["count"], 3, "{}", got[0].json);
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_window_forgets_errors_older_than_the_window() {
    // GetAlertStatus's `in_window` is "matching events currently in its
    // window": once the window has passed with no new error, that is none.
    const WINDOW: Duration = Duration::from_secs(1);
    let server = TestServer::start_with(|c| {
        c.alerts.rules = Some(vec![rule(
            "burst",
            &["error"],
            10,
            WINDOW.as_secs(),
            300,
            None,
        )]);
    })
    .await;
    let client = server.client().await;
    log_errors(&client, "old", 0, 3, "").await;
    status_when(&client, "3 errors counted", |s| {
        rule_status(s, "burst").in_window == 3
    })
    .await;
    tokio::time::sleep(WINDOW + Duration::from_millis(500)).await;
    let status = client.alert_status().await.unwrap();
    assert_eq!(
        rule_status(&status, "burst").in_window,
        0,
        "errors older than the {WINDOW:?} window still reported in it: {status:?}"
    );
}
