//! The deployment files in `deploy/` as an operator's tools read them: the
//! systemd units (the server's and the witness's) pass `systemd-analyze
//! verify` (with `ExecStart` pointed at the binary this workspace builds)
//! and keep their sandboxing.
//!
//! The Prometheus alerting rules (`deploy/prometheus/alerts.yml`) pass
//! `promtool check rules`.
//!
//! Without `systemd-analyze` the check prints why it did not run, unless
//! `REQUIRE_SYSTEMD=1` (CI), where that is a failure; likewise without
//! `promtool`, unless `REQUIRE_PROMETHEUS=1`. The Dockerfile is not
//! built here: no Docker engine runs on the test machines.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;
use std::process::Command;

use common::workspace_bin;

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

/// The directives that keep a service to its state directory and the
/// network, each as both units must set it.
const SANDBOX: [&str; 11] = [
    "DynamicUser=yes",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "CapabilityBoundingSet=",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter=@system-service",
    "MemoryDenyWriteExecute=yes",
    "UMask=0077",
];

#[test]
fn the_servers_systemd_unit_verifies_and_is_sandboxed() {
    check_unit(
        "auditlog.service",
        &["StateDirectory=auditlog"],
        ("/usr/local/bin/auditlog-server", "auditlog-server"),
    );
}

#[test]
fn the_witnesss_systemd_unit_verifies_and_is_sandboxed() {
    check_unit(
        "auditlog-witness.service",
        // Never restarted after a finding (exit 1): its files are the evidence.
        &["StateDirectory=auditlog-witness", "Restart=on-abnormal"],
        ("/usr/local/bin/auditlog", "auditlog"),
    );
}

/// Checks `deploy/<name>`: every [`SANDBOX`] line and each of `lines`,
/// `ExecStart` running `installed.0` (the workspace's binary `installed.1`),
/// and `systemd-analyze verify` passing with no warning about it.
fn check_unit(name: &str, lines: &[&str], installed: (&str, &str)) {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(name),
    )
    .unwrap();
    for line in SANDBOX.iter().chain(lines) {
        assert!(
            unit.lines().any(|l| l.trim() == *line),
            "deploy/{name} lacks {line:?}"
        );
    }
    let (path, binary) = installed;
    assert!(unit.contains(&format!("ExecStart={path} ")), "{unit}");

    if !Path::new(SYSTEMD_ANALYZE).exists() {
        assert!(
            std::env::var_os("REQUIRE_SYSTEMD").is_none(),
            "REQUIRE_SYSTEMD is set but {SYSTEMD_ANALYZE} is missing"
        );
        eprintln!("skipped: {SYSTEMD_ANALYZE} is not installed");
        return;
    }
    // verify checks that ExecStart's binary exists and is executable.
    let built = workspace_bin("", binary);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(name);
    std::fs::write(&copy, unit.replace(path, built.to_str().unwrap())).unwrap();
    let out = Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify {name} failed: {stderr}"
    );
    // A directive it does not know, or a value it cannot parse, is a warning
    // on stderr with a zero exit: none is allowed.
    let own: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
    assert!(own.is_empty(), "systemd-analyze verify warned: {stderr}");
}

const PROMTOOL: &str = "/usr/bin/promtool";

#[test]
fn the_alert_rules_pass_promtool() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    assert!(rules.exists(), "{} is missing", rules.display());
    if !Path::new(PROMTOOL).exists() {
        assert!(
            std::env::var_os("REQUIRE_PROMETHEUS").is_none(),
            "REQUIRE_PROMETHEUS is set but {PROMTOOL} is missing"
        );
        eprintln!("skipped: {PROMTOOL} is not installed (apt-get install prometheus)");
        return;
    }
    let out = Command::new(PROMTOOL)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
