//! A threshold alert by email, through a real SMTP conversation over TCP
//! with a minimal SMTP server in the test: once inside the cooldown, again
//! after it.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditlog_client::NewEvent;
use auditlog_server::alerts::{EmailConfig, RuleConfig, Security};
use common::TestServer;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
struct Mail {
    recipients: Vec<String>,
    data: String,
}

/// Accepts SMTP sessions on 127.0.0.1 and records every message.
async fn smtp_server() -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&mails);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 test ESMTP\r\n").await;
                let mut recipients = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 test\r\n"
                    } else if upper.starts_with("MAIL FROM") {
                        recipients.clear();
                        b"250 ok\r\n"
                    } else if upper.starts_with("RCPT TO") {
                        recipients.push(line[8..].trim().to_owned());
                        b"250 ok\r\n"
                    } else if upper == "DATA" {
                        let _ = write.write_all(b"354 go on\r\n").await;
                        let mut data = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            data.push_str(&l);
                            data.push('\n');
                        }
                        store.lock().unwrap().push(Mail {
                            recipients: recipients.clone(),
                            data,
                        });
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, mails)
}

async fn wait_for_mails(mails: &Mutex<Vec<Mail>>, n: usize) -> Vec<Mail> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = mails.lock().unwrap().clone();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn errors(client: &auditlog_client::Client, n: usize, workflow: &str) {
    for i in 0..n {
        client
            .log(
                NewEvent::error("Timeout", &format!("CRM did not answer ({i})")).workflow(workflow),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_alert_is_mailed_once_per_cooldown() {
    let (port, mails) = smtp_server().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| {
        c.alerts.rules = Some(vec![RuleConfig {
            name: "sales-errors".into(),
            event_types: vec!["error".into()],
            threshold: 5,
            window_secs: 60,
            workflow: Some("sales".into()),
            cooldown_secs: 3,
        }]);
        c.alerts.email = Some(EmailConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            security: Security::None,
            username: None,
            password: None,
            password_file: None,
            from: "auditlog@example.com".into(),
            to: vec!["ops@example.com".into(), "oncall@example.com".into()],
        });
    })
    .await;
    let client = server.client().await;

    // Another workflow's errors do not count.
    errors(&client, 10, "billing").await;
    // Four are under the threshold; the fifth fires.
    errors(&client, 4, "sales").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        mails.lock().unwrap().is_empty(),
        "fired below the threshold"
    );
    errors(&client, 1, "sales").await;
    let got = wait_for_mails(&mails, 1).await;
    assert_eq!(got.len(), 1);
    let mail = &got[0];
    assert_eq!(mail.recipients.len(), 2, "{:?}", mail.recipients);
    assert!(
        mail.data
            .contains("Subject: [auditlog] sales-errors: 5 events in 60 s in workflow sales"),
        "{}",
        mail.data
    );
    assert!(
        mail.data.contains("Timeout: CRM did not answer (0)"),
        "{}",
        mail.data
    );
    assert!(!mail.data.contains("http"), "links in {}", mail.data);

    // A storm inside the cooldown sends nothing more.
    errors(&client, 20, "sales").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        mails.lock().unwrap().len(),
        1,
        "mailed again inside the cooldown"
    );

    // After the cooldown, the next error over the threshold mails again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    errors(&client, 1, "sales").await;
    let got = wait_for_mails(&mails, 2).await;
    assert_eq!(got.len(), 2, "no second mail after the cooldown");

    let status = client.alert_status().await.unwrap();
    let email = status
        .channels
        .iter()
        .find(|c| c.channel == "email")
        .unwrap();
    assert_eq!((email.sent, email.failed), (2, 0));
    assert_eq!(status.rules[0].fired, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_alert_reports_each_channel() {
    let (port, mails) = smtp_server().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| {
        c.alerts.email = Some(EmailConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            security: Security::None,
            username: None,
            password: None,
            password_file: None,
            from: "auditlog@example.com".into(),
            to: vec!["ops@example.com".into()],
        });
        c.alerts.slack = Some(auditlog_server::alerts::HookConfig {
            url: "http://127.0.0.1:1/closed".into(),
        });
    })
    .await;
    let client = server.client().await;
    let results = client.test_alerts().await.unwrap();
    let by_name = |n: &str| results.iter().find(|r| r.channel == n).unwrap().clone();
    assert!(by_name("email").ok, "{results:?}");
    assert!(
        !by_name("slack").ok && !by_name("slack").error.is_empty(),
        "{results:?}"
    );
    assert!(
        wait_for_mails(&mails, 1).await[0]
            .data
            .contains("test alert")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_discord_and_json_webhooks_get_their_shapes() {
    let receiver = common::receivers::HttpReceiver::start().await;
    let (port, got) = (receiver.port, Arc::clone(&receiver.requests));
    let url = |path: &str| format!("http://127.0.0.1:{port}/{path}");
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| {
        c.alerts.rules = Some(vec![RuleConfig {
            name: "errors".into(),
            event_types: vec!["error".into()],
            threshold: 3,
            window_secs: 60,
            workflow: None,
            cooldown_secs: 300,
        }]);
        c.alerts.slack = Some(auditlog_server::alerts::HookConfig {
            url: url("slack").as_str().into(),
        });
        c.alerts.discord = Some(auditlog_server::alerts::HookConfig {
            url: url("discord").as_str().into(),
        });
        c.alerts.webhook = Some(auditlog_server::alerts::HookConfig {
            url: url("json").as_str().into(),
        });
    })
    .await;
    let client = server.client().await;
    errors(&client, 3, "sales").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got: Vec<(String, serde_json::Value)> = got
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.path.clone(), r.json.clone()))
        .collect();
    let body = |path: &str| {
        got.iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("nothing posted to {path}: {got:?}"))
    };
    let slack = body("/slack");
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .contains("errors: 3 events in 60 s"),
        "{slack}"
    );
    let discord = body("/discord");
    assert!(
        discord["content"]
            .as_str()
            .unwrap()
            .contains("CRM did not answer"),
        "{discord}"
    );
    let json = body("/json");
    assert_eq!(json["rule"], "errors");
    assert_eq!(json["count"], 3);
    assert_eq!(json["messages"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_verification_that_finds_tampering_alerts() {
    let receiver = common::receivers::HttpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| {
        c.alerts.verify_interval_secs = 1;
        c.alerts.webhook = Some(auditlog_server::alerts::HookConfig {
            url: format!("http://127.0.0.1:{}/integrity", receiver.port)
                .as_str()
                .into(),
        });
    })
    .await;
    let client = server.client().await;
    for i in 0..5 {
        client
            .log(NewEvent::lead_ingested(format!("LEAD-{i}"), "web"))
            .await
            .unwrap();
    }
    // Nothing to report while the log is intact.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(receiver.received().is_empty(), "{:?}", receiver.received());
    // Change a byte of seq 3 behind the server's back.
    let path = server.log_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("LEAD-2", "LEAD-9", 1)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.received().is_empty() {
        assert!(Instant::now() < deadline, "no integrity alert");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alert = &receiver.received()[0].json;
    assert_eq!(alert["kind"], "integrity", "{alert}");
    assert!(
        alert["messages"][0].as_str().unwrap().contains("seq 3"),
        "{alert}"
    );
}
