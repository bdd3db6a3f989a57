//! [`ServerProcess`]: the built `auditlog-server` binary as a child process
//! on a free port. Use it instead of `TestServer` when the test needs a real
//! process: SIGKILL, signals, exit codes, a config file.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use auditlog_client::Client;

use super::endpoints::closed_port;
use super::runs::workspace_bin;
use super::server::TEST_KEY;
use super::wait::wait_until;

/// The `auditlog-server` binary running as a child process.
pub(crate) struct ServerProcess {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
}

impl ServerProcess {
    /// Starts the binary on `dir` and a free port, waiting until it serves.
    pub(crate) async fn spawn(dir: &Path) -> ServerProcess {
        ServerProcess::spawn_with(dir, &[]).await
    }

    /// [`ServerProcess::spawn`] with more environment variables, e.g.
    /// `("AUDITLOG_SHUTDOWN_GRACE_SECS", "5")`.
    pub(crate) async fn spawn_with(dir: &Path, env: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::spawn_args(dir, [] as [&OsStr; 0], env).await
    }

    /// [`ServerProcess::spawn_with`] with more arguments after `--listen`
    /// and `--data-dir`, e.g. `--config <file>`. It signs with [`TEST_KEY`]
    /// and logs at `warn` unless `env` says otherwise.
    pub(crate) async fn spawn_args(
        dir: &Path,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
        env: &[(&str, &str)],
    ) -> ServerProcess {
        ServerProcess::spawn_at(closed_port(), dir, args, env).await
    }

    /// [`ServerProcess::spawn_args`] on `port`, for a config that must know
    /// the address beforehand (a cluster node's `advertise`).
    pub(crate) async fn spawn_at(
        port: u16,
        dir: &Path,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let bin = workspace_bin("auditlog-server", "auditlog-server");
        let child = Command::new(bin)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .env("AUDITLOG_HMAC_KEY", TEST_KEY)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let process = ServerProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: dir.to_path_buf(),
        };
        let url = &process.url;
        wait_until("auditlog-server to serve", || async move {
            match Client::connect(url).await {
                // A server with tokens refusing this tokenless call serves.
                Ok(c) => match c.stats(None).await {
                    Err(e) if e.code() == Some(tonic::Code::Unauthenticated) => Ok(()),
                    r => r.map(|_| ()).map_err(|e| e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        process
    }

    /// SIGKILL: no chance to flush or clean up.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends the signal `name` (`TERM`, `INT`) with kill(1).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// The exit status, if the process has exited.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for the process to exit, failing the test when it is still
    /// running after `limit`.
    pub(crate) async fn wait_exit_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "auditlog-server is still running {limit:?} later"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
