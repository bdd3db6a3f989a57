//! Reporting: `TestAlerts` and `auditlog alerts test` report each channel,
//! and `GetAlertStatus` and `auditlog alerts status` show each rule's window
//! and firings.

use std::time::Duration;

use serde_json::Value;

use crate::alerts::checks::{
    assert_addressed_to_everyone, assert_no_links, channel, rule_status, status_when,
};
use crate::alerts::setup::{email, hook, log_errors, rule};
use crate::common::endpoints::{HttpEndpoint, SmtpServer, closed_port};
use crate::common::{TestServer, cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_alert_reports_each_channel_through_the_rpc_and_the_cli() {
    let smtp = SmtpServer::start().await;
    let slack = HttpEndpoint::start().await;
    let failing = HttpEndpoint::start().await;
    failing.answer(500);
    let closed = closed_port();
    let server = TestServer::start_with(|c| {
        c.alerts.email = Some(email(smtp.port));
        c.alerts.slack = hook(&slack.url("/slack"));
        c.alerts.discord = hook(&format!("http://127.0.0.1:{closed}/discord"));
        c.alerts.webhook = hook(&failing.url("/json"));
    })
    .await;
    let client = server.client().await;

    let results = client.test_alerts().await.unwrap();
    let mut names: Vec<&str> = results.iter().map(|r| r.channel.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["discord", "email", "slack", "webhook"],
        "{results:?}"
    );
    let result = |name: &str| results.iter().find(|r| r.channel == name).unwrap();
    assert!(result("email").ok, "{results:?}");
    assert!(result("email").error.is_empty(), "{results:?}");
    assert!(result("slack").ok, "{results:?}");
    assert!(
        !result("discord").ok && !result("discord").error.is_empty(),
        "{results:?}"
    );
    assert!(
        !result("webhook").ok && result("webhook").error.contains("HTTP 500"),
        "{results:?}"
    );
    // The working channels really got it.
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].header("Subject"), "[auditlog] test alert");
    assert_addressed_to_everyone(&mails[0]);
    assert_no_links(&mails[0].body());
    let got = slack.wait_for(1).await;
    assert!(
        got[0].json["text"]
            .as_str()
            .is_some_and(|t| t.contains("test alert")),
        "{:?}",
        got[0].json
    );

    // The CLI: one line per channel, exit code 1 because two failed.
    let (code, stdout, stderr) = cli(&server.url, &["alerts", "test"]).await;
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name} in {stdout}"))
            .to_owned()
    };
    assert!(line("email").contains("ok"), "{stdout}");
    assert!(line("slack").contains("ok"), "{stdout}");
    assert!(line("discord").contains("FAILED"), "{stdout}");
    assert!(
        line("webhook").contains("FAILED") && line("webhook").contains("HTTP 500"),
        "{stdout}"
    );
    assert!(stderr.contains("2 of 4"), "{stderr}");
    let (code, stdout, stderr) = cli(&server.url, &["alerts", "test", "--json"]).await;
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let ok = |name: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|r| r["channel"] == name)
            .unwrap_or_else(|| panic!("no {name} in {json}"))["ok"]
            .as_bool()
            .unwrap()
    };
    assert!(
        ok("email") && ok("slack") && !ok("discord") && !ok("webhook"),
        "{json}"
    );
    // Three test alerts so far, each delivered.
    assert_eq!(smtp.wait_for(3).await.len(), 3);

    // With every channel working, the CLI succeeds.
    let all_good = TestServer::start_with(|c| {
        c.alerts.email = Some(email(smtp.port));
        c.alerts.slack = hook(&slack.url("/slack"));
    })
    .await;
    let (code, stdout, stderr) = cli(&all_good.url, &["alerts", "test"]).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("email") && stdout.contains("slack"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAILED"), "{stdout}");

    // With none configured, the RPC reports none and the CLI says so.
    let none = TestServer::start_with(|_| {}).await;
    assert!(none.client().await.test_alerts().await.unwrap().is_empty());
    let (code, stdout, _) = cli(&none.url, &["alerts", "test"]).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("no alert channel"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_status_shows_each_rules_window_and_firings() {
    let receiver = HttpEndpoint::start().await;
    let server = TestServer::start_with(|c| {
        c.alerts.rules = Some(vec![
            // Fires on the 2nd, 3rd and 4th error: no cooldown.
            // Windows of an hour, so a slow machine cannot see the errors
            // leave the window before the CLI reads the status.
            rule("eager", &["error"], 2, 3600, 0, None),
            // Fires once on the 3rd.
            rule("patient", &["error"], 3, 3600, 300, None),
            rule("quiet", &["crm_update"], 1, 3600, 300, None),
        ]);
        c.alerts.webhook = hook(&receiver.url("/alerts"));
    })
    .await;
    let client = server.client().await;
    let before = std::time::SystemTime::now();
    let status = client.alert_status().await.unwrap();
    let names: Vec<&str> = status.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["eager", "patient", "quiet"]);
    for r in &status.rules {
        assert_eq!((r.in_window, r.fired), (0, 0), "{status:?}");
        assert!(r.last_fired.is_none(), "{status:?}");
    }

    log_errors(&client, "s", 0, 4, "").await;
    let status = status_when(&client, "4 errors counted", |s| {
        rule_status(s, "eager").in_window == 4 && rule_status(s, "patient").in_window == 4
    })
    .await;
    let eager = rule_status(&status, "eager");
    let patient = rule_status(&status, "patient");
    let quiet = rule_status(&status, "quiet");
    assert_eq!(eager.fired, 3, "{status:?}");
    assert_eq!(patient.fired, 1, "{status:?}");
    assert_eq!((quiet.in_window, quiet.fired), (0, 0), "{status:?}");
    assert!(quiet.last_fired.is_none());
    for r in [&eager, &patient] {
        let at = std::time::SystemTime::try_from(r.last_fired.unwrap()).unwrap();
        assert!(at >= before - Duration::from_secs(1), "{r:?}");
        assert!(at <= std::time::SystemTime::now(), "{r:?}");
    }
    // Four alerts, four posts, counted.
    let got = receiver.wait_for(4).await;
    let mut counts: Vec<(String, u64)> = got
        .iter()
        .map(|r| {
            (
                r.json["rule"].as_str().unwrap().to_owned(),
                r.json["count"].as_u64().unwrap(),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("eager".to_owned(), 2),
            ("eager".to_owned(), 3),
            ("eager".to_owned(), 4),
            ("patient".to_owned(), 3)
        ]
    );
    let status = status_when(&client, "4 alerts counted as sent", |s| {
        channel(s, "webhook").sent == 4
    })
    .await;
    assert_eq!(channel(&status, "webhook").failed, 0);
    assert_eq!((status.dropped, status.missed), (0, 0));

    // The CLI's view agrees.
    let (code, stdout, stderr) = cli(&server.url, &["alerts", "status", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let rules = json["rules"].as_array().unwrap();
    assert_eq!(rules[0]["name"], "eager");
    assert_eq!(rules[0]["in_window"], 4);
    assert_eq!(rules[0]["fired"], 3);
    assert_eq!(rules[1]["fired"], 1);
    assert!(rules[2]["last_fired"].is_null(), "{json}");
    let (code, stdout, stderr) = cli(&server.url, &["alerts", "status"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("eager") && stdout.contains("webhook"),
        "{stdout}"
    );
}
