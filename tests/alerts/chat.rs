//! Slack, Discord and the JSON webhook: one firing reaches each in its own
//! shape, and links and mentions from event text are escaped.

use auditlog_client::NewEvent;
use serde_json::Value;

use crate::alerts::checks::{
    assert_latest_messages, assert_no_links, channel, rule_status, status_when,
};
use crate::alerts::setup::{error_text, hook, log_errors, rule};
use crate::common::TestServer;
use crate::common::endpoints::HttpEndpoint;

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
