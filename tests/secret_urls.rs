//! Secret URLs never printed: the `auditlog-server` binary, configured with
//! Slack, Discord and JSON alert channels and an outgoing webhook whose URLs
//! carry credentials (in the path, the user info and the query string), all
//! of them unreachable. Every way a failure surfaces is read back: `auditlog
//! alerts test` (text and JSON, stdout and stderr), `alerts status` and
//! `webhooks status` (CLI and gRPC), the server's own stderr at `info`
//! (which holds its WARN and ERROR lines), and `--print-config`. None holds a
//! secret part; each still names the host and port, so the operator can
//! tell which endpoint failed.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use auditlog_client::{Client, NewEvent};
use common::endpoints::closed_port;
use common::{TEST_KEY, cli, wait_until, workspace_bin};

/// What the configured URLs hide; none may appear in any output.
const SECRETS: [&str; 8] = [
    "T0SECRET",
    "SlackSecretXyz123",
    "DiscordSecretAbc789",
    "AlertPassword77",
    "AlertQueryToken55",
    "HookPassword88",
    "HookQueryKey66",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
];

/// Fails naming `what` when `text` holds any of [`SECRETS`].
fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
    }
}

/// The config file: four failing destinations on closed ports of 127.0.0.1,
/// and a rule that fires on every error.
fn config_file(dir: &Path, listen_port: u16, ports: [u16; 4]) -> std::path::PathBuf {
    let [slack, discord, alert_hook, hook] = ports;
    let text = format!(
        "listen = \"127.0.0.1:{listen_port}\"\n\
         data_dir = {data:?}\n\
         hmac_key = \"{TEST_KEY}\"\n\
         \n\
         [alerts]\n\
         verify_interval_secs = 0\n\
         \n\
         [[alerts.rules]]\n\
         name = \"every-error\"\n\
         threshold = 1\n\
         window_secs = 60\n\
         cooldown_secs = 0\n\
         \n\
         [alerts.slack]\n\
         url = \"http://127.0.0.1:{slack}/services/T0SECRET/B0SECRET/SlackSecretXyz123\"\n\
         \n\
         [alerts.discord]\n\
         url = \"http://127.0.0.1:{discord}/api/webhooks/42/DiscordSecretAbc789\"\n\
         \n\
         [alerts.webhook]\n\
         url = \"http://alerts:AlertPassword77@127.0.0.1:{alert_hook}/alerts?token=AlertQueryToken55\"\n\
         \n\
         [[webhooks]]\n\
         name = \"crm\"\n\
         url = \"http://crm:HookPassword88@127.0.0.1:{hook}/hook?api_key=HookQueryKey66\"\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
         start = \"beginning\"\n\
         max_backoff_secs = 1\n",
        data = dir.join("data").display().to_string(),
    );
    let path = dir.join("auditlog.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_channel_or_webhook_never_prints_its_secret_url() {
    let dir = tempfile::tempdir().unwrap();
    let listen = closed_port();
    let ports = [closed_port(), closed_port(), closed_port(), closed_port()];
    let config = config_file(dir.path(), listen, ports);
    let config_arg = config.to_str().unwrap();

    // --print-config shows no secret either.
    let printed = Command::new(workspace_bin("auditlog-server", "auditlog-server"))
        .args(["--config", config_arg, "--print-config"])
        .env_remove("AUDITLOG_HMAC_KEY")
        .output()
        .unwrap();
    assert!(printed.status.success(), "{printed:?}");
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert_no_secret("--print-config", &printed);
    assert!(
        printed.contains(&format!("127.0.0.1:{}", ports[3])),
        "{printed}"
    );

    let stderr_path = dir.path().join("server.stderr");
    let mut server = Command::new(workspace_bin("auditlog-server", "auditlog-server"))
        .args(["--config", config_arg])
        .env_remove("AUDITLOG_HMAC_KEY")
        // Info holds every WARN and ERROR line, and more.
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{listen}");
    let url = url.as_str();
    let client = wait_until("auditlog-server to serve", || async move {
        let client = Client::connect(url).await.map_err(|e| e.to_string())?;
        client.stats(None).await.map_err(|e| e.to_string())?;
        Ok(client)
    })
    .await;

    // One error: the rule fires, every channel fails (with retries, each
    // logged at WARN, then ERROR), and the webhook fails to deliver it.
    client
        .log(NewEvent::error("Timeout", "the CRM timed out"))
        .await
        .unwrap();

    let mut outputs = Vec::new();
    for args in [&["alerts", "test"][..], &["alerts", "test", "--json"]] {
        let (code, stdout, stderr) = cli(url, args).await;
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert!(
            stdout.contains("slack") && stdout.contains("discord"),
            "{stdout}"
        );
        outputs.push((format!("auditlog {args:?}"), format!("{stdout}\n{stderr}")));
    }
    let tested = client.test_alerts().await.unwrap();
    assert!(
        tested.iter().all(|r| !r.ok && !r.error.is_empty()),
        "{tested:?}"
    );
    outputs.push(("TestAlerts".into(), format!("{tested:?}")));

    let client = &client;
    let alerts = wait_until("each channel to count a failed alert", || async move {
        let status = client.alert_status().await.unwrap();
        let failed = status.channels.len() == 3
            && status
                .channels
                .iter()
                .all(|c| c.failed >= 1 && !c.last_error.is_empty());
        if failed {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await;
    outputs.push(("GetAlertStatus".into(), format!("{alerts:?}")));
    let hooks = wait_until("the webhook to fail twice", || async move {
        let status = client.webhook_status().await.unwrap();
        if status[0].failures >= 2 {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await;
    // The endpoint is still recognisable.
    assert!(
        hooks[0]
            .url
            .contains(&format!("127.0.0.1:{}/hook", ports[3])),
        "{hooks:?}"
    );
    assert!(!hooks[0].last_error.is_empty(), "{hooks:?}");
    outputs.push(("GetWebhookStatus".into(), format!("{hooks:?}")));
    for args in [
        &["alerts", "status"][..],
        &["alerts", "status", "--json"],
        &["webhooks", "status"],
        &["webhooks", "status", "--json"],
    ] {
        let (code, stdout, stderr) = cli(url, args).await;
        assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
        outputs.push((format!("auditlog {args:?}"), format!("{stdout}\n{stderr}")));
    }

    let _ = server.kill();
    let _ = server.wait();
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    // The failures were logged, at WARN and at ERROR.
    for line in [
        "sending an alert failed",
        "alert not delivered",
        "webhook delivery failed",
    ] {
        assert!(
            log.contains(line),
            "no {line:?} in the server's stderr:\n{log}"
        );
    }
    outputs.push(("the server's stderr".into(), log));

    for (what, text) in &outputs {
        assert_no_secret(what, text);
    }
}
