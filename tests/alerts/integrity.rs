//! Integrity alerts: a store that fails to write raises one alert per
//! cooldown, and a scheduled verification that finds tampering alerts.

use std::time::Duration;

use auditlog_client::NewEvent;

use crate::alerts::checks::{assert_addressed_to_everyone, assert_no_links, channel, status_when};
use crate::alerts::setup::{email, hook};
use crate::common::TestServer;
use crate::common::endpoints::{HttpEndpoint, SmtpServer};

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
