//! The deployment files in `deploy/` as an operator's tools read them: the
//! systemd unit passes `systemd-analyze verify` (with `ExecStart` pointed at
//! the binary this workspace builds) and keeps its sandboxing.
//!
//! The Prometheus alerting rules (`deploy/prometheus/alerts.yml`) pass
//! `promtool check rules`.
//!
//! Without `systemd-analyze` the check prints why it did not run, unless
//! `REQUIRE_SYSTEMD=1` (CI), where that is a failure; likewise without
//! `promtool`, unless `REQUIRE_PROMETHEUS=1`. The Dockerfile is not
//! built here: no Docker engine runs on the test machines.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::path::Path;
use std::process::Command;

use common::workspace_bin;

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

/// Where the unit expects the binary.
const INSTALLED: &str = "/usr/local/bin/auditlog-server";

fn unit_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/auditlog.service"))
        .unwrap()
}

#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let unit = unit_text();
    // The directives that keep the server to its state directory and the
    // network, each as the unit must set it.
    for line in [
        "DynamicUser=yes",
        "StateDirectory=auditlog",
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
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "deploy/auditlog.service lacks {line:?}"
        );
    }
    assert!(unit.contains(&format!("ExecStart={INSTALLED} ")), "{unit}");

    if !Path::new(SYSTEMD_ANALYZE).exists() {
        assert!(
            std::env::var_os("REQUIRE_SYSTEMD").is_none(),
            "REQUIRE_SYSTEMD is set but {SYSTEMD_ANALYZE} is missing"
        );
        eprintln!("skipped: {SYSTEMD_ANALYZE} is not installed");
        return;
    }
    // verify checks that ExecStart's binary exists and is executable.
    let server = workspace_bin("auditlog-server", "auditlog-server");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditlog.service");
    std::fs::write(&path, unit.replace(INSTALLED, server.to_str().unwrap())).unwrap();
    let out = Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    // A directive it does not know, or a value it cannot parse, is a warning
    // on stderr with a zero exit: none is allowed.
    let own: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("auditlog.service"))
        .collect();
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
