//! The binaries: `auditlog-server` as a child with its output in files,
//! a free port for it, and the `auditlog` CLI run to its end.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tonic::transport::ClientTlsConfig;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::common::workspace_bin;
use crate::security::server::{channel, health};

/// The `auditlog-server` binary as a child, its stdout and stderr in files;
/// killed when dropped.
pub(crate) struct Spawned {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Spawned {
    /// Starts the server binary in `dir` with `args` and `env` and no other
    /// `AUDITLOG_*` variables.
    pub(crate) fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Spawned {
        let out = dir.join("server.stdout");
        let err = dir.join("server.stderr");
        let mut command = Command::new(workspace_bin("auditlog-server", "auditlog-server"));
        for (key, _) in std::env::vars() {
            if key.starts_with("AUDITLOG_") {
                command.env_remove(key);
            }
        }
        let child = command
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Spawned { child, out, err }
    }

    /// Waits up to 10 s for the process to exit by itself.
    pub(crate) fn exit_code(&mut self) -> Option<i32> {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    /// Waits until health on `addr` (over TLS with `tls`) reports SERVING.
    pub(crate) async fn wait_serving(&mut self, addr: SocketAddr, tls: Option<ClientTlsConfig>) {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "auditlog-server exited ({status}) instead of serving: {}",
                    self.stderr()
                );
            }
            if let Ok(ch) = channel(addr, tls.clone()).await
                && health(&ch, "").await == Ok(ServingStatus::Serving)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("auditlog-server on {addr} did not serve: {}", self.stderr());
    }

    pub(crate) fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago on `ip`.
pub(crate) fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the `auditlog` CLI with `args`; (exit code, stdout, stderr).
pub(crate) fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(workspace_bin("auditlog-client", "auditlog"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDITLOG_") {
            command.env_remove(key);
        }
    }
    let out = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
