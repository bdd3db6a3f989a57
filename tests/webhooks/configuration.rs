//! Configuration: an endpoint configured by URL alone signs with a secret
//! the server generates once and keeps, which `auditlog webhooks secret`
//! shows; a malformed secret or a zero timeout stops the server with words.

use std::time::Duration;

use auditlog_server::config::Start;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::common::endpoints::{Check, HttpEndpoint, Request, closed_port};
use crate::common::{self, TEST_KEY, TestServer, cli};
use crate::webhooks::checks::{assert_complete_in_order, delivered, log_n, status_of};
use crate::webhooks::receiver::{SECRET, config, verify};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_alone_signs_with_a_generated_secret_kept_across_restarts() {
    // The receiver learns the secret from `auditlog webhooks secret`, as its
    // operator would; until then it rejects everything.
    let learned = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let check: Check = {
        let learned = std::sync::Arc::clone(&learned);
        Box::new(move |r: &Request| {
            let secret = learned.lock().unwrap().clone();
            if secret.is_empty() {
                return Err("the receiver has no secret yet".into());
            }
            verify(r, &secret, None)
        })
    };
    let hook = HttpEndpoint::start_checked(Some(check)).await;
    let url = hook.url("/hook");
    let endpoints = move |c: &mut auditlog_server::Config| {
        let mut bare = config("bare", url.clone(), Start::Now);
        (bare.secret, bare.bearer_token) = (None, None);
        c.webhooks = vec![bare, config("configured", closed_port_url(), Start::Now)];
    };
    let server = TestServer::start_with(endpoints.clone()).await;

    let (code, stdout, stderr) = cli(&server.url, &["webhooks", "secret", "bare"]).await;
    assert_eq!(code, 0, "{stderr}");
    let secret = stdout.trim().to_owned();
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").expect(&secret))
        .unwrap();
    assert_eq!(key.len(), 32, "{secret}");
    *learned.lock().unwrap() = secret.clone();
    // Kept in the data directory, readable by the server's user alone.
    let file = server.data_dir.join("webhooks").join("bare.secret");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), secret);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let client = server.client().await;
    let mut seqs = log_n(&client, 3, "first").await;
    delivered(&hook, &seqs).await;
    assert!(status_of(&client, "bare").await.secret_generated);
    assert!(!status_of(&client, "configured").await.secret_generated);
    let (code, stdout, stderr) = cli(&server.url, &["webhooks", "status"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("auditlog webhooks secret bare"), "{stdout}");
    assert!(!stdout.contains("secret configured"), "{stdout}");

    // The same secret after a restart: the receiver needs no new setup.
    let server = server.restart(endpoints).await;
    let client = server.client().await;
    assert_eq!(client.webhook_secret("bare").await.unwrap(), secret);
    seqs.extend(log_n(&client, 2, "after").await);
    let got = delivered(&hook, &seqs).await;
    assert_eq!(assert_complete_in_order(&got, &seqs), 0);
    assert!(hook.rejected().is_empty(), "{:?}", hook.rejected());

    // A configured secret is never shown; an unknown name is named.
    let err = client.webhook_secret("configured").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition), "{err}");
    assert!(!err.to_string().contains(SECRET), "{err}");
    let err = client.webhook_secret("nope").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
    assert!(err.to_string().contains("bare, configured"), "{err}");
    let (code, stdout, stderr) = cli(&server.url, &["webhooks", "secret", "nope"]).await;
    assert_ne!(code, 0, "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
}

/// A URL where nothing listens.
fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}/hook", closed_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_secret_stops_the_server_with_words() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = |config: String| {
        let config_file = dir.path().join("auditlog.toml");
        std::fs::write(&config_file, config).unwrap();
        let args = [
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--data-dir".to_owned(),
            data.display().to_string(),
            "--config".to_owned(),
            config_file.display().to_string(),
        ];
        let bin = common::workspace_bin("auditlog-server", "auditlog-server");
        let env = vec![("AUDITLOG_HMAC_KEY".to_owned(), TEST_KEY.to_owned())];
        common::run_to_end(bin, args.to_vec(), env, Duration::from_secs(60))
    };
    let hook = |secret: &str| {
        format!("[[webhooks]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/hook\"\n{secret}")
    };
    for (secret, words) in [
        // URL-safe base64, which the base64 crate reported as "Invalid
        // symbol 45, offset 2".
        ("whsec_ab-cdefghijklmnopqrstuvw", &["'-'", "URL-safe"][..]),
        ("whsec_c2hvcnQ=", &["too short", "at least 16 bytes"]),
    ] {
        let out = start(hook(&format!("secret = \"{secret}\"\n"))).await;
        assert_ne!(out.code, 0, "{out:?}");
        let err = out.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{err}");
        for word in words
            .iter()
            .chain(&["webhooks[0] (crm)", "whsec_ followed by", "base64"])
        {
            assert!(err.contains(word), "{word:?} not in: {err}");
        }
        assert!(
            !err.contains("Invalid symbol") && !err.contains(secret),
            "{err}"
        );
    }
    // A generated secret file that was damaged names the file to delete.
    std::fs::create_dir_all(data.join("webhooks")).unwrap();
    std::fs::write(data.join("webhooks").join("crm.secret"), "whsec_x-y\n").unwrap();
    let out = start(hook("")).await;
    assert_ne!(out.code, 0, "{out:?}");
    for word in ["crm.secret", "delete the file", "URL-safe"] {
        assert!(out.stderr.contains(word), "{word:?} not in: {}", out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_timeout_stops_the_server_with_words() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("auditlog.toml");
    std::fs::write(
        &config_file,
        "[[webhooks]]\nname = \"z\"\nurl = \"http://127.0.0.1:9/zero\"\ntimeout_secs = 0\n",
    )
    .unwrap();
    let args = [
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--data-dir".to_owned(),
        dir.path().join("data").display().to_string(),
        "--config".to_owned(),
        config_file.display().to_string(),
    ];
    let bin = common::workspace_bin("auditlog-server", "auditlog-server");
    let env = vec![("AUDITLOG_HMAC_KEY".to_owned(), TEST_KEY.to_owned())];
    let out = common::run_to_end(bin, args.to_vec(), env, Duration::from_secs(60)).await;
    assert_ne!(out.code, 0, "{out:?}");
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    for word in ["webhooks[0] (z)", "timeout_secs", "1 or more"] {
        assert!(err.contains(word), "{word:?} not in: {err}");
    }
}
