//! Signed checkpoints pushed out (`[checkpoints]`): on the interval, when
//! a newer checkpoint was signed, its note replaces the configured file
//! whole and is appended to the history file, and goes to the alert
//! channels opted in (a mail to the SMTP sink); each note found there
//! verifies with the verifier key `--print-verifier-key` gives, and the
//! last one covers what was logged. A webhook endpoint that takes
//! checkpoints gets them POSTed (retried, the latest superseding an older
//! one not yet delivered), signed like its events.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use auditlog_server::config::{CheckpointsConfig, Secret, WebhookConfig};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::endpoints::{HttpEndpoint, Request, SmtpServer, email_config, webhook_config};
use common::witness::{log_leads, trusted_key};
use common::{TestServer, wait_until};
use hmac::Mac as _;

#[tokio::test]
async fn the_signed_checkpoint_reaches_the_file_and_the_history() {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("auditlog.checkpoint");
    let history = out.path().join("checkpoints.history");
    let (f, h) = (file.clone(), history.clone());
    let server = TestServer::start_with(move |c| {
        c.checkpoints.publish_interval_secs = 1;
        c.checkpoints.file = Some(f);
        c.checkpoints.history_file = Some(h);
    })
    .await;
    let key = trusted_key(&server.data_dir);
    let client = server.client().await;
    log_leads(&client, "L", 1, 3).await;
    let pushed = wait_until("a checkpoint of 3 records in the file", || async {
        let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
        let c = key.open_checkpoint(&text).map_err(|e| e.to_string())?;
        if c.size == 3 {
            Ok(c)
        } else {
            Err(format!("size {}", c.size))
        }
    })
    .await;
    let served = client.verified_checkpoint(&key, false).await.unwrap();
    assert!(served.checkpoint.size >= 3);

    // Each note (body, an empty line, one signature line) is followed by
    // an empty line. The history is appended after the file is replaced,
    // so it is waited for.
    let history_sizes = || {
        let text = std::fs::read_to_string(&history).unwrap_or_default();
        let parts: Vec<&str> = text.split("\n\n").collect();
        if parts.last() != Some(&"") {
            return Vec::new(); // a note being appended: read again
        }
        parts[..parts.len() - 1]
            .chunks(2)
            .map(|pair| {
                let note = format!("{}\n\n{}\n", pair[0], pair[1]);
                key.open_checkpoint(&note).unwrap().size
            })
            .collect::<Vec<u64>>()
    };
    let sizes = wait_until("the history to end with the pushed checkpoint", || async {
        let sizes = history_sizes();
        if sizes.last() == Some(&pushed.size) {
            Ok(sizes)
        } else {
            Err(format!("sizes {sizes:?}"))
        }
    })
    .await;
    assert!(
        sizes.windows(2).all(|w| w[0] < w[1]),
        "the history only grows: {sizes:?}"
    );
}

#[tokio::test]
async fn the_signed_checkpoint_is_mailed_to_an_opted_in_alert_channel() {
    let smtp = SmtpServer::start().await;
    let port = smtp.port;
    let server = TestServer::start_with(move |c| {
        c.checkpoints.publish_interval_secs = 1;
        c.checkpoints.alert_channels = vec!["email".into()];
        c.alerts.email = Some(email_config(port, &["ops@example.com"]));
    })
    .await;
    let key = trusted_key(&server.data_dir);
    let client = server.client().await;
    log_leads(&client, "L", 1, 1).await;
    let mails = smtp.wait_for(1).await;
    let mail = &mails[0];
    assert!(
        mail.header("Subject").contains("checkpoint: tree size 1"),
        "{mail:?}"
    );
    // The note, from its origin line to its signature line, verbatim.
    let body = mail.body().replace("\r\n", "\n");
    let start = body
        .find(&format!("{}\n", key.name))
        .expect("the note's origin line");
    let note = &body[start..];
    let end = note.find("\n\u{2014} ").unwrap();
    let sig_end = note[end + 1..].find('\n').unwrap() + end + 2;
    let c = key.open_checkpoint(&note[..sig_end]).unwrap();
    assert_eq!(c.size, 1);
}

/// What validating a configuration with `checkpoints` says.
fn refusal(checkpoints: CheckpointsConfig) -> String {
    let config = auditlog_server::Config {
        checkpoints,
        ..auditlog_server::Config::default()
    };
    config.validate().unwrap_err().to_string()
}

#[tokio::test]
async fn a_zero_interval_is_refused_naming_the_key() {
    let e = refusal(CheckpointsConfig {
        publish_interval_secs: 0,
        ..Default::default()
    });
    assert!(e.contains("checkpoints.publish_interval_secs"), "{e}");
    let e = refusal(CheckpointsConfig {
        alert_channels: vec!["pager".into()],
        ..Default::default()
    });
    assert!(
        e.contains("checkpoints.alert_channels") && e.contains("pager"),
        "{e}"
    );
}

/// The signing secret the webhook endpoint is given.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The checkpoint messages among `requests`, with their tree sizes.
fn checkpoint_messages(requests: &[Request]) -> Vec<(u64, &Request)> {
    requests
        .iter()
        .filter(|r| r.json["type"] == "auditlog.checkpoint")
        .map(|r| (r.json["data"]["tree_size"].as_u64().unwrap(), r))
        .collect()
}

#[tokio::test]
async fn the_signed_checkpoint_is_posted_to_a_webhook_and_the_latest_supersedes() {
    let hook = HttpEndpoint::start().await;
    // Down at first: the checkpoint is retried, and replaced by a newer
    // one while it is.
    hook.answer(503);
    let url = hook.url("/hook");
    let server = TestServer::start_with(move |c| {
        c.checkpoints.publish_interval_secs = 1;
        c.checkpoints.webhooks = vec!["crm".into()];
        c.webhooks = vec![WebhookConfig {
            secret: Some(Secret::from(SECRET)),
            ..webhook_config("crm", url)
        }];
    })
    .await;
    let client = server.client().await;
    let key = trusted_key(&server.data_dir);
    log_leads(&client, "L", 1, 1).await;
    wait_until("the checkpoint of 1 record tried", || async {
        let requests = hook.requests();
        match checkpoint_messages(&requests).first() {
            Some((1, _)) => Ok(()),
            other => Err(format!("{:?}", other.map(|o| o.0))),
        }
    })
    .await;
    log_leads(&client, "L", 2, 3).await;
    wait_until("the checkpoint of 3 records tried", || async {
        let requests = hook.requests();
        let sizes: Vec<u64> = checkpoint_messages(&requests).iter().map(|m| m.0).collect();
        if sizes.contains(&3) {
            Ok(())
        } else {
            Err(format!("{sizes:?}"))
        }
    })
    .await;
    hook.answer(200);
    let accepted = wait_until("the checkpoint of 3 records delivered", || async {
        let accepted = hook.accepted();
        let events = accepted
            .iter()
            .filter(|r| r.json["type"] == "auditlog.event")
            .count();
        if checkpoint_messages(&accepted).is_empty() || events < 3 {
            Err(format!("{events} events, {accepted:?}"))
        } else {
            Ok(accepted)
        }
    })
    .await;
    // Only the latest was delivered: the older one was dropped for it.
    let delivered = checkpoint_messages(&accepted);
    assert!(
        delivered.iter().all(|(size, _)| *size == 3),
        "{delivered:?}"
    );
    let (_, message) = delivered[0];
    let note = message.json["data"]["note"].as_str().unwrap();
    let checkpoint = key.open_checkpoint(note).unwrap();
    assert_eq!(checkpoint.size, 3);
    assert_eq!(message.json["data"]["origin"], key.name.as_str());
    assert_eq!(
        message.json["data"]["root_hash"],
        BASE64.encode(checkpoint.root).as_str()
    );
    // Signed like the events, as message `checkpoint-<size>`.
    let id = &message.headers["webhook-id"];
    assert_eq!(id, "checkpoint-3");
    let timestamp = &message.headers["webhook-timestamp"];
    let secret = BASE64
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&message.body);
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    assert_eq!(message.headers["webhook-signature"], expected);
    let position = server.data_dir.join("webhooks").join("crm.checkpoint");
    wait_until("the checkpoint position saved", || async {
        match std::fs::read_to_string(&position) {
            Ok(text) if text.trim() == "3" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_checkpoint_webhook_must_name_an_endpoint() {
    let e = refusal(CheckpointsConfig {
        webhooks: vec!["nowhere".into()],
        ..Default::default()
    });
    assert!(
        e.contains("checkpoints.webhooks") && e.contains("nowhere"),
        "{e}"
    );
}
