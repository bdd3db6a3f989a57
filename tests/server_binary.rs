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
