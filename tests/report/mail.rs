//! `report --mail`: the report sent through the alert SMTP settings, and a
//! clear refusal from a server without them.

use auditlog_client::NewEvent;
use time::OffsetDateTime;

use crate::common::{self, TestServer};
use crate::report::running::auditlog;

/// `report --mail`: each report also goes, as the HTML part of one mail,
/// to the alert email recipients through the server's SMTP settings; a
/// server without an email channel refuses in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_mailed_through_the_alert_smtp_settings() {
    use common::endpoints::{SmtpServer, email_config};

    let smtp = SmtpServer::start().await;
    let server = TestServer::start_with(|c| {
        c.alerts.email = Some(email_config(
            smtp.port,
            &["ops@example.com", "sales@example.net"],
        ));
    })
    .await;
    let client = server.client().await;
    client
        .log(
            NewEvent::new("lead_created")
                .lead("LEAD-MAIL")
                .workflow("sales"),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let out = auditlog(
        &server.url,
        &["report", "--daily", "--mail", "--output", dir_arg],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("mailed to 2 recipient(s)"), "{out:?}");

    let mails = smtp.wait_for(1).await;
    let mail = &mails[0];
    let mut to = mail.rcpt_to.clone();
    to.sort();
    assert_eq!(to, ["ops@example.com", "sales@example.net"]);
    let today = OffsetDateTime::now_utc().date();
    assert!(
        mail.header("subject").starts_with("auditlog daily report ")
            && mail.header("subject").contains(&today.year().to_string()),
        "{}",
        mail.header("subject")
    );
    // The HTML part is the page the run wrote to the directory.
    let parts = mail.parts();
    let html = parts
        .iter()
        .find(|p| p.header("content-type").starts_with("text/html"))
        .unwrap_or_else(|| panic!("no HTML part in {}", mail.data));
    let written = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "html"))
        .unwrap();
    assert_eq!(
        html.body().trim_end(),
        std::fs::read_to_string(written)
            .unwrap()
            .replace("\r\n", "\n")
            .trim_end()
    );
    let text = parts
        .iter()
        .find(|p| p.header("content-type").starts_with("text/plain"))
        .unwrap();
    assert!(text.body().contains("1 events"), "{}", text.body());

    // Without an email channel: one line that says what to configure.
    let plain = TestServer::start().await;
    let out = auditlog(
        &plain.url,
        &["report", "--daily", "--mail", "--output", dir_arg],
    )
    .await;
    assert_ne!(out.code, 0, "{out:?}");
    let err = out.stderr.trim();
    assert!(
        err.lines().count() == 1 && err.contains("[alerts.email]"),
        "{out:?}"
    );
}
