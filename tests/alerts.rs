//! Alerts end to end, against real endpoints on 127.0.0.1: a minimal SMTP
//! server speaking the protocol over TCP, and HTTP receivers standing in for
//! Slack, Discord and a generic JSON webhook.
//!
//! What must hold: a threshold rule mails one alert per cooldown, to every
//! recipient, naming the rule, the count, the workflow and the latest error
//! messages in plain text; a workflow-scoped rule ignores other workflows;
//! one firing reaches every channel in its own shape; `auditlog alerts test`
//! and `TestAlerts` report each channel; unreachable channels never fail a
//! `Log` call and show up as failures in `GetAlertStatus`, which also shows
//! the rules' windows and firings.
//!
//! "Nothing more was sent" is never judged by waiting and seeing: the rules'
//! counters in `GetAlertStatus` prove the watcher has seen every event, and
//! the channels' `sent` counters prove the sender is done.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::time::{Duration, Instant};

use auditlog_client::{Client, NewEvent, pb};
use auditlog_server::config::{EmailConfig, HookConfig, RuleConfig};
use common::endpoints::{HttpEndpoint, Mail, SmtpServer, closed_port, email_config};
use common::{TestServer, cli, wait_until, wait_until_within};
use serde_json::Value;

const FROM: &str = "auditlog@example.com";
const TO: [&str; 2] = ["ops@example.com", "oncall@example.net"];

fn email(port: u16) -> EmailConfig {
    email_config(port, &TO)
}

fn hook(url: &str) -> Option<HookConfig> {
    Some(HookConfig { url: url.into() })
}

fn rule(
    name: &str,
    event_types: &[&str],
    threshold: u32,
    window_secs: u64,
    cooldown_secs: u64,
    workflow: Option<&str>,
) -> RuleConfig {
    RuleConfig {
        name: name.into(),
        event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
        threshold,
        window_secs,
        workflow: workflow.map(Into::into),
        cooldown_secs,
    }
}

/// The text of error number `i` of `tag`, as the tests log it.
fn error_text(tag: &str, i: usize) -> String {
    format!("{tag} call {i} timed out")
}

/// Logs `n` errors numbered from `first`, in `workflow` (none when empty);
/// returns their seqs.
async fn log_errors(
    client: &Client,
    tag: &str,
    first: usize,
    n: usize,
    workflow: &str,
) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in first..first + n {
        let receipt = client
            .log(
                NewEvent::error("Timeout", &error_text(tag, i))
                    .workflow(workflow)
                    .lead(format!("LEAD-{i}")),
            )
            .await
            .unwrap();
        seqs.push(receipt.seq);
    }
    seqs
}

fn channel(status: &pb::GetAlertStatusResponse, name: &str) -> pb::AlertChannelStatus {
    status
        .channels
        .iter()
        .find(|c| c.channel == name)
        .unwrap_or_else(|| panic!("no channel {name} in {status:?}"))
        .clone()
}

fn rule_status(status: &pb::GetAlertStatusResponse, name: &str) -> pb::AlertRuleStatus {
    status
        .rules
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no rule {name} in {status:?}"))
        .clone()
}

/// Waits until `GetAlertStatus` satisfies `ready`; returns that status.
async fn status_when(
    client: &Client,
    what: &str,
    ready: impl Fn(&pb::GetAlertStatusResponse) -> bool,
) -> pb::GetAlertStatusResponse {
    let ready = &ready;
    wait_until(what, || async move {
        let status = client.alert_status().await.unwrap();
        if ready(&status) {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await
}

/// Asserts `text` holds no link of any kind.
fn assert_no_links(text: &str) {
    for link in ["http://", "https://", "www.", "<a ", "href", "mailto:"] {
        assert!(!text.contains(link), "{link:?} in {text}");
    }
}

/// Checks the latest messages an alert carries: at least one, newest last,
/// each the message of one of `errors` (their seqs and texts), consecutive
/// and ending with the newest error.
fn assert_latest_messages(messages: &[String], errors: &[(u64, String)]) {
    assert!(!messages.is_empty(), "no messages");
    assert!(messages.len() <= errors.len(), "{messages:?}");
    let tail = &errors[errors.len() - messages.len()..];
    for (message, (seq, text)) in messages.iter().zip(tail) {
        assert!(
            message.contains(&format!("seq {seq}")) && message.contains(text.as_str()),
            "expected seq {seq} ({text}) in {message:?}; all: {messages:?}"
        );
    }
}

/// The mail's recipients as its header and its envelope name them.
fn assert_addressed_to_everyone(mail: &Mail) {
    let mut envelope = mail.rcpt_to.clone();
    envelope.sort();
    let mut expected: Vec<String> = TO.iter().map(|t| (*t).to_owned()).collect();
    expected.sort();
    assert_eq!(envelope, expected, "envelope recipients");
    assert_eq!(mail.mail_from, FROM, "envelope sender");
    let to = mail.header("To");
    for t in TO {
        assert!(to.contains(t), "{t} not in To: {to}");
    }
    assert!(mail.header("From").contains(FROM), "{}", mail.data);
}

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
async fn one_firing_reaches_slack_discord_and_the_json_webhook_in_their_shapes() {
    let slack = HttpEndpoint::start().await;
    let discord = HttpEndpoint::start().await;
    let webhook = HttpEndpoint::start().await;
    let server = TestServer::start_with(|c| {
        c.alerts.rules = Some(vec![rule(
            "crm-errors",
            &["error"],
            7,
            120,
            300,
            Some("crm"),
        )]);
        c.alerts.slack = hook(&slack.url("/services/T000/B000/XXXX"));
        c.alerts.discord = hook(&discord.url("/api/webhooks/1/abc"));
        c.alerts.webhook = hook(&webhook.url("/alerts"));
    })
    .await;
    let client = server.client().await;
    let mut errors = Vec::new();
    for (i, seq) in log_errors(&client, "crm", 0, 7, "crm")
        .await
        .into_iter()
        .enumerate()
    {
        errors.push((seq, error_text("crm", i)));
    }
    let status = status_when(&client, "every channel to have sent", |s| {
        ["slack", "discord", "webhook"]
            .iter()
            .all(|c| channel(s, c).sent >= 1)
    })
    .await;
    for c in ["slack", "discord", "webhook"] {
        let c = channel(&status, c);
        assert_eq!((c.sent, c.failed), (1, 0), "{status:?}");
    }
    assert_eq!(rule_status(&status, "crm-errors").fired, 1);

    let one = |endpoint: &HttpEndpoint, path: &str| {
        let got = endpoint.requests();
        assert_eq!(got.len(), 1, "{got:?}");
        let r = got[0].clone();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", path));
        assert!(
            r.headers
                .get("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{:?}",
            r.headers
        );
        r.json
    };
    let slack = one(&slack, "/services/T000/B000/XXXX");
    let discord = one(&discord, "/api/webhooks/1/abc");
    let webhook = one(&webhook, "/alerts");

    // Slack: exactly {"text": ...}; Discord: {"content": ...} with no
    // mention allowed, the same text as one code block.
    let keys = |v: &Value| {
        let mut keys = v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        keys.sort();
        keys
    };
    assert_eq!(keys(&slack), ["text"], "{slack}");
    assert_eq!(keys(&discord), ["allowed_mentions", "content"], "{discord}");
    assert_eq!(
        discord["allowed_mentions"],
        serde_json::json!({ "parse": [] })
    );
    let text = slack["text"].as_str().unwrap();
    assert_eq!(
        discord["content"].as_str().unwrap(),
        format!("```\n{}\n```", text.trim_end())
    );
    assert!(text.chars().count() <= 2000, "too long for Discord");
    for needle in ["crm-errors", "7", "crm"] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert_no_links(text);

    // The generic webhook: the same alert as structured JSON.
    assert_eq!(webhook["kind"], "threshold", "{webhook}");
    assert_eq!(webhook["rule"], "crm-errors", "{webhook}");
    assert_eq!(webhook["count"], 7, "{webhook}");
    assert_eq!(webhook["window_secs"], 120, "{webhook}");
    assert_eq!(webhook["workflow"], "crm", "{webhook}");
    assert_eq!(webhook["text"].as_str().unwrap(), text, "{webhook}");
    assert_eq!(
        webhook["subject"],
        "[auditlog] crm-errors: 7 events in 120 s in workflow crm"
    );
    assert!(
        webhook["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{webhook}"
    );
    let messages: Vec<String> = serde_json::from_value(webhook["messages"].clone()).unwrap();
    assert_latest_messages(&messages, &errors);
    // The text carries the same latest messages.
    for m in &messages {
        assert!(text.contains(m.as_str()), "{m:?} not in {text}");
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_to_write_raises_one_alert_per_cooldown() {
    let smtp = SmtpServer::start().await;
    let server = TestServer::start_with(|c| {
        c.alerts.email = Some(email(smtp.port));
        c.alerts.integrity_cooldown_secs = 300;
    })
    .await;
    let client = server.client().await;
    for i in 0..3 {
        client
            .log(NewEvent::lead_ingested(format!("LEAD-{i}"), "web"))
            .await
            .unwrap();
    }
    // The fault-injection feature (on for tests) fails the next fdatasync;
    // the store then refuses every write.
    std::fs::write(server.data_dir.join("FAIL_NEXT_FSYNC"), b"").unwrap();
    for i in 0..10 {
        let e = client
            .log(NewEvent::lead_ingested(format!("LEAD-X{i}"), "web"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::Unavailable), "{e}");
    }
    let mails = smtp.wait_for(1).await;
    assert_eq!(
        mails[0].header("Subject"),
        "[auditlog] store: writes are failing"
    );
    let body = mails[0].body();
    assert!(body.contains("fsync"), "the cause is not named:\n{body}");
    assert_no_links(&body);
    assert_addressed_to_everyone(&mails[0]);
    // Raised by the failing calls themselves, before they answered: once the
    // first is sent, any other would be right behind it.
    status_when(&client, "the store alert counted as sent", |s| {
        channel(s, "email").sent >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails().len(), 1, "more than one store alert");
    assert_eq!(
        channel(&client.alert_status().await.unwrap(), "email").sent,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_verification_that_finds_tampering_alerts() {
    let receiver = HttpEndpoint::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = receiver.url("/integrity");
    let server = TestServer::start_in(dir.path(), |c| {
        c.alerts.verify_interval_secs = 1;
        c.alerts.webhook = hook(&url);
    })
    .await;
    let client = server.client().await;
    for i in 0..5 {
        client
            .log(NewEvent::lead_ingested(format!("LEAD-{i}"), "web"))
            .await
            .unwrap();
    }
    // Nothing to report while the log is intact: two scheduled runs pass.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(receiver.requests().is_empty(), "{:?}", receiver.requests());
    // Change a byte of seq 3 behind the server's back.
    let path = server.log_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("LEAD-2", "LEAD-9", 1)).unwrap();
    let got = receiver.wait_for(1).await;
    let alert = &got[0].json;
    assert_eq!(alert["kind"], "integrity", "{alert}");
    assert!(
        alert["messages"][0].as_str().unwrap().contains("seq 3"),
        "{alert}"
    );
}

/// An SMTP server that accepts connections and never says a word (no
/// greeting): the relay that hangs. Returns its port; the connections stay
/// open as long as the test runs.
async fn silent_smtp() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

/// An HTTP server answering every request `302 Found` to `location`.
async fn redirecting(location: String) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let location = location.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read the head and a body of Content-Length bytes.
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + length {
                            break;
                        }
                    }
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
    let smtp = silent_smtp().await;
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
async fn chat_alerts_escape_links_and_mentions_from_event_text() {
    let slack = HttpEndpoint::start().await;
    let discord = HttpEndpoint::start().await;
    let server = TestServer::start_with(|c| {
        c.alerts.rules = Some(vec![rule("inject", &["error"], 1, 60, 300, None)]);
        c.alerts.slack = hook(&slack.url("/slack"));
        c.alerts.discord = hook(&discord.url("/discord"));
    })
    .await;
    let client = server.client().await;
    let hostile = "<!channel> please <https://evil.example/reset|re-authenticate here> \
                   @everyone <@123> [click](https://evil.example) ``` & done";
    client
        .log(NewEvent::error("Timeout", hostile))
        .await
        .unwrap();

    let slack = slack.wait_for(1).await[0].json.clone();
    let text = slack["text"].as_str().unwrap();
    for live in ["<!channel>", "<https://", "<@123>", " & "] {
        assert!(!text.contains(live), "{live:?} live in Slack text {text}");
    }
    for escaped in [
        "&lt;!channel&gt;",
        "&lt;https://evil.example/reset|re-authenticate here&gt;",
        "&amp; done",
    ] {
        assert!(
            text.contains(escaped),
            "{escaped:?} not in Slack text {text}"
        );
    }

    let discord = discord.wait_for(1).await[0].json.clone();
    assert_eq!(
        discord["allowed_mentions"],
        serde_json::json!({ "parse": [] }),
        "{discord}"
    );
    let content = discord["content"].as_str().unwrap();
    assert!(content.chars().count() <= 2000);
    // The whole text in one code block: no mention, Markdown or link is
    // rendered inside it, and nothing in the text can close it early.
    let inner = content
        .strip_prefix("```\n")
        .and_then(|c| c.strip_suffix("\n```"))
        .unwrap_or_else(|| panic!("not one code block: {content}"));
    assert!(!inner.contains("``"), "{inner}");
    assert!(
        inner.contains("@everyone") && inner.contains("[click]"),
        "{inner}"
    );
    assert!(inner.contains("[auditlog] inject"), "{inner}");
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
