//! The `auditlog-server` binary as an operator runs it: configuration errors
//! name the offending key. (SIGTERM under load, and a second signal, are
//! `shutdown.rs`.)

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::process::Command;

use common::workspace_bin;

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
