//! The `auditlog-server` binary as an operator runs it: configuration errors
//! name the offending key; `--listen` takes a host name; the binary the
//! tests spawn is built like their own server, fault injection included.
//! (SIGTERM under load, and a second signal, are `shutdown.rs`.)

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::process::Command;
use std::time::Duration;

use auditlog_client::Client;
use common::endpoints::closed_port;
use common::{ServerProcess, TEST_KEY, run_to_end, wait_until, workspace_bin};

/// Runs the binary with `args` and `env` and returns (exit code, stderr).
fn run_server(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(workspace_bin("auditlog-server", "auditlog-server"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn configuration_errors_name_the_key_and_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "listn = \"127.0.0.1:1\"\n").unwrap();
    let (code, err) = run_server(&["--config", "bad.toml"], &[], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("listn") && err.contains("bad.toml"), "{err}");

    let (code, err) = run_server(&[], &[("AUDITLOG_DATA_DIRR", "x")], dir.path());
    assert_ne!(code, 0);
    assert!(
        err.contains("DATA_DIRR") && err.contains("AUDITLOG_"),
        "{err}"
    );

    let (code, err) = run_server(&[], &[("AUDITLOG_HMAC_KEY", "short")], dir.path());
    assert_ne!(code, 0);
    assert!(
        err.contains("hmac_key") && err.contains("at least 32"),
        "{err}"
    );

    let (code, err) = run_server(&["--config", "missing.toml"], &[], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("missing.toml"), "{err}");
    // No data directory was created by a server that refused to start.
    assert!(!dir.path().join("data").exists());
}

/// A value that does not read is refused on one line naming the key as the
/// TOML file spells it and where it came from. Before, `--listen nonsense`
/// ended `for key "default.listen" in server/src/config/mod.rs:396:20
/// auditlog_server::config::Overrides`: figment's profile, a source
/// location and a Rust type name.
#[test]
fn unreadable_values_are_one_line_naming_the_key_and_its_source() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("types.toml"), "max_in_flight = \"many\"\n").unwrap();
    std::fs::write(dir.path().join("syntax.toml"), "listen = \n").unwrap();
    for (args, env, expected) in [
        (
            &["--listen", "nonsense"][..],
            &[][..],
            "auditlog-server: configuration key listen (from the --listen flag): \"nonsense\" \
             is not an address",
        ),
        (
            &["--metrics-listen", "nonsense"][..],
            &[][..],
            "auditlog-server: configuration key metrics_listen (from the --metrics-listen \
             flag): \"nonsense\" is not an address",
        ),
        (
            &[][..],
            &[("AUDITLOG_LISTEN", "nonsense")][..],
            "auditlog-server: configuration key listen (from AUDITLOG_LISTEN): \"nonsense\" is \
             not an address",
        ),
        (
            &[][..],
            &[("AUDITLOG_ALERTS__EMAIL__PORT", "smtp")][..],
            "auditlog-server: configuration key alerts.email.port (from \
             AUDITLOG_ALERTS__EMAIL__PORT): invalid type: found string \"smtp\", expected a \
             whole number from 0 to 65535",
        ),
        (
            &["--config", "types.toml"][..],
            &[][..],
            "auditlog-server: configuration key max_in_flight (in types.toml): invalid type: \
             found string \"many\", expected a whole number, 0 or more",
        ),
        (
            &["--config", "syntax.toml"][..],
            &[][..],
            "auditlog-server: configuration (in syntax.toml): TOML parse error at line 1, \
             column 10: ",
        ),
    ] {
        let (code, err) = run_server(args, env, dir.path());
        assert_eq!(code, 1, "{args:?} {env:?}: {err}");
        assert!(err.starts_with(expected), "{expected}\n{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        for leak in [
            "default.",
            ".rs:",
            "auditlog_server::",
            "environment variable(s)",
        ] {
            assert!(!err.contains(leak), "{leak} in {err}");
        }
    }
    assert!(!dir.path().join("data").exists());
}

/// A data directory that is a file, or under one, is refused saying so.
/// Before: `cannot lock data directory /etc/passwd (LOCK): File exists (os
/// error 17)`, and `Not a directory` under it without saying which path.
#[test]
fn a_data_directory_that_is_a_file_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    std::fs::write(&file, "root:x:0:0\n").unwrap();
    let under = file.join("data");
    for (path, args, says) in [
        (
            &file,
            &[][..],
            format!("{} is not a directory (it is a file)", file.display()),
        ),
        (
            &under,
            &[][..],
            format!(
                "{} cannot be created: {} is not a directory (it is a file)",
                under.display(),
                file.display()
            ),
        ),
        (
            &file,
            &["--print-verifier-key"][..],
            format!("{} is not a directory (it is a file)", file.display()),
        ),
    ] {
        let mut all = vec![
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path.to_str().unwrap(),
        ];
        all.extend(args);
        let (code, err) = run_server(&all, &[("AUDITLOG_HMAC_KEY", TEST_KEY)], dir.path());
        assert_ne!(code, 0, "{all:?}: {err}");
        let refusal: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("data directory"))
            .collect();
        assert_eq!(refusal.len(), 1, "{err}");
        assert!(
            refusal[0].contains(&says) && refusal[0].contains("set data_dir (--data-dir"),
            "{all:?}: {err}"
        );
        assert!(!err.contains("os error"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "root:x:0:0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_data_directory_in_use_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let mut first = ServerProcess::spawn(&data).await;
    let pid = first.child.id();

    // Without the lock this second server would serve: the deadline makes
    // that a failure rather than a hang.
    let second = run_to_end(
        workspace_bin("auditlog-server", "auditlog-server"),
        ["--listen", "127.0.0.1:0", "--data-dir", data_arg]
            .map(String::from)
            .to_vec(),
        vec![("AUDITLOG_HMAC_KEY".to_owned(), TEST_KEY.to_owned())],
        Duration::from_secs(30),
    )
    .await;
    let (code, err) = (second.code, second.stderr);
    assert_ne!(code, 0, "{err}");
    let refusal: Vec<&str> = err.lines().filter(|l| l.contains("in use")).collect();
    assert_eq!(refusal.len(), 1, "{err}");
    assert!(
        refusal[0].contains(data_arg) && refusal[0].contains(&format!("pid {pid}")),
        "{err}"
    );
    assert!(first.exited().is_none(), "the first server stopped");

    // The OS releases the lock of a process that died: no stale lock.
    first.kill9();
    let _second = ServerProcess::spawn(&data).await;
}

/// `common::workspace_bin` builds the binaries with the features the test
/// build resolved, so the spawned server has the `fault-injection` hooks
/// (a dev-dependency feature): a file `FAIL_NEXT_FSYNC` fails the next
/// fdatasync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawned_binary_has_the_test_builds_fault_injection() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path()).await;
    let client = Client::connect(&server.url).await.unwrap();
    let event = || auditlog_client::NewEvent::new("lead_created");
    client.log(event()).await.unwrap();
    std::fs::write(dir.path().join("FAIL_NEXT_FSYNC"), b"").unwrap();
    let e = client.log(event()).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unavailable), "{e}");
    assert!(e.to_string().contains("fsync"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_takes_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let child = Command::new(workspace_bin("auditlog-server", "auditlog-server"))
        .args(["--listen", &format!("localhost:{port}"), "--data-dir"])
        .arg(dir.path())
        .env("AUDITLOG_HMAC_KEY", TEST_KEY)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Dropped at the end: kills the child.
    let _server = ServerProcess {
        child,
        url: format!("http://127.0.0.1:{port}"),
        stderr_file: None,
    };
    // localhost is served on its IPv4 address.
    let url = format!("http://127.0.0.1:{port}");
    let url = &url;
    wait_until("the server on localhost to serve", || async move {
        match Client::connect(url).await {
            Ok(c) => c.stats(None).await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;

    // A name that does not resolve is one line naming the key.
    let (code, err) = run_server(&["--listen", "no-such-host.invalid:1"], &[], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("listen") && err.contains("HOST:PORT"), "{err}");
}

/// `--log-format json`: every line the server writes to stderr is one JSON
/// object a log shipper can read, with level, target and message, from the
/// start to the end of a run (a logged event and a clean shutdown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn_logging(
        &dir.path().join("data"),
        ["--log-format", "json"],
        &[("RUST_LOG", "info")],
        dir.path().join("stderr"),
    )
    .await;
    let client = Client::connect(&server.url).await.unwrap();
    client
        .log(auditlog_client::NewEvent::new("lead_created"))
        .await
        .unwrap();
    server.signal("TERM");
    assert!(
        server
            .wait_exit_within(Duration::from_secs(60))
            .await
            .success()
    );

    let text = server.stderr();
    assert!(!text.is_empty(), "nothing was logged");
    let mut messages = Vec::new();
    for line in text.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(value[key].is_string(), "no {key} in {line}");
        }
        messages.push(
            value["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(
        messages.iter().any(|m| m.contains("serving")),
        "no start-up line in {messages:?}"
    );
}

#[test]
fn the_old_loggers_alert_keys_are_refused_naming_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, old, new) in [
        (
            "[alerts]\nerror_threshold = 5\n",
            "error_threshold",
            "`threshold` in an [[alerts.rules]] entry",
        ),
        (
            "[alerts]\ncooldown_seconds = 60\n",
            "cooldown_seconds",
            "`cooldown_secs`",
        ),
        (
            "[alerts]\nslack_webhook = \"https://hooks.slack.com/services/x\"\n",
            "slack_webhook",
            "`url` under [alerts.slack]",
        ),
        (
            "[alerts]\ndiscord_webhook = \"https://discord.com/api/webhooks/x\"\n",
            "discord_webhook",
            "`url` under [alerts.discord]",
        ),
        (
            "[alerts]\nsmtp_server = \"mx.example.com\"\n",
            "smtp_server",
            "`host` under [alerts.email]",
        ),
        (
            "[alerts]\nsmtp_port = 587\n",
            "smtp_port",
            "`port` under [alerts.email]",
        ),
        (
            "[alerts]\nfrom_email = \"a@example.com\"\n",
            "from_email",
            "`from` under [alerts.email]",
        ),
        (
            "[alerts]\nto_email = \"b@example.com\"\n",
            "to_email",
            "`to` under [alerts.email]",
        ),
        (
            "[alerts]\nsmtp_password = \"x\"\n",
            "smtp_password",
            "`password` under [alerts.email]",
        ),
    ] {
        std::fs::write(dir.path().join("old.toml"), toml).unwrap();
        let (code, err) = run_server(&["--config", "old.toml", "--print-config"], &[], dir.path());
        assert_ne!(code, 0, "{toml}");
        assert!(
            err.contains(&format!("`{old}` is the old logger's key")) && err.contains(new),
            "{toml}: {err}"
        );
        // The value (here a would-be secret URL) is not echoed.
        assert!(!err.contains("hooks.slack.com"), "{err}");
    }
    // From the environment too.
    let (code, err) = run_server(
        &["--print-config"],
        &[("AUDITLOG_ALERTS__SMTP_USERNAME", "auditlog")],
        dir.path(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("`username` under [alerts.email]"), "{err}");
}

#[test]
fn smtp_to_is_one_address_or_a_list_and_a_password_needs_a_username() {
    let dir = tempfile::tempdir().unwrap();
    let email = "[alerts.email]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\nfrom = \"auditlog@example.com\"\n";
    let print = |toml: String, env: &[(&str, &str)]| {
        std::fs::write(dir.path().join("mail.toml"), toml).unwrap();
        let out = Command::new(workspace_bin("auditlog-server", "auditlog-server"))
            .args(["--config", "mail.toml", "--print-config"])
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = print(format!("{email}to = \"ops@example.com\"\n"), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"ops@example.com\""), "{out}");
    let (code, out, err) = print(
        format!("{email}to = [\"ops@example.com\", \"oncall@example.net\"]\n"),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"oncall@example.net\""), "{out}");

    // A password without a username would never be sent: refused, naming
    // both keys and suggesting the sender address, without the password.
    let (code, _, err) = print(
        format!("{email}to = \"ops@example.com\"\n"),
        &[("AUDITLOG_ALERTS__EMAIL__PASSWORD", "hunter22-secret")],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("alerts.email.password")
            && err.contains("alerts.email.username")
            && err.contains("auditlog@example.com"),
        "{err}"
    );
    assert!(!err.contains("hunter22-secret"), "{err}");
    let (code, _, err) = print(
        format!("{email}to = \"ops@example.com\"\nusername = \"auditlog@example.com\"\n"),
        &[("AUDITLOG_ALERTS__EMAIL__PASSWORD", "hunter22-secret")],
    );
    assert_eq!(code, 0, "{err}");
}

/// A start that fails on a metrics port already taken says which, and
/// leaves nothing behind: no data directory, so no generated HMAC key that
/// the next start (given the intended key) would find and refuse.
#[test]
fn a_metrics_port_in_use_fails_the_start_before_the_data_directory_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run_server(
        &["--listen", "127.0.0.1:0", "--metrics-listen", &addr],
        &[],
        dir.path(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("metrics_listen") && err.contains(&addr),
        "{err}"
    );
    assert!(!dir.path().join("data").exists(), "{err}");
}
