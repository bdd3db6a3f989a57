//! [`ServerProcess`]: the built `auditlog-server` binary as a child process
//! on a free port. Use it instead of `TestServer` when the test needs a real
//! process: SIGKILL, signals, exit codes, a config file, its stderr, TLS
//! from a config file.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use auditlog_client::Options;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;

use super::endpoints::closed_port;
use super::health_reflection::health_of;
use super::runs::workspace_bin;
use super::server::TEST_KEY;
use super::wait::DEADLINE;

/// The `auditlog-server` binary running as a child process.
pub(crate) struct ServerProcess {
    pub child: Child,
    pub url: String,
    /// The file the server's stderr goes to, if not the test's.
    pub stderr_file: Option<PathBuf>,
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
        ServerProcess::start(None, dir, args, env, None, None).await
    }

    /// [`ServerProcess::spawn_args`] on `port`, for a config that must know
    /// the address beforehand (a cluster node's `advertise`).
    pub(crate) async fn spawn_at(
        port: u16,
        dir: &Path,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
        env: &[(&str, &str)],
    ) -> ServerProcess {
        ServerProcess::start(Some(port), dir, args, env, None, None).await
    }

    /// [`ServerProcess::spawn_at`], its stderr written to `stderr`
    /// ([`ServerProcess::stderr`] reads it).
    pub(crate) async fn spawn_at_logging(
        port: u16,
        dir: &Path,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
        stderr: PathBuf,
    ) -> ServerProcess {
        ServerProcess::start(Some(port), dir, args, &[], None, Some(stderr)).await
    }

    /// [`ServerProcess::spawn_at`] for a server whose config has `[tls]`:
    /// its URL is `https://`, and it counts as serving once its health
    /// answers over TLS with `client`'s CA (and client certificate, for a
    /// server requiring one).
    pub(crate) async fn spawn_tls(
        port: u16,
        dir: &Path,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
        env: &[(&str, &str)],
        client: &Options,
    ) -> ServerProcess {
        ServerProcess::start(Some(port), dir, args, env, Some(client), None).await
    }

    /// [`ServerProcess::spawn_args`] with the server's stderr in the file
    /// `stderr` ([`ServerProcess::stderr`] reads it) rather than the test's.
    pub(crate) async fn spawn_logging(
        dir: &Path,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
        env: &[(&str, &str)],
        stderr: PathBuf,
    ) -> ServerProcess {
        ServerProcess::start(None, dir, args, env, None, Some(stderr)).await
    }

    /// Starts the binary and waits until its health says SERVING, which it
    /// does once calls are served. Health needs no token, so the wait
    /// neither makes a call a test counts (a span, a metric, a refusal in
    /// the log) nor depends on the server's tokens.
    ///
    /// A free port is only free until someone takes it: another test's
    /// server may bind the one picked here before the child does. So the
    /// wait accepts an answer only from a listener the child itself holds,
    /// and a child that exits while starting on a port it did not choose
    /// (`port` is None) is started again on another.
    async fn start(
        given: Option<u16>,
        dir: &Path,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
        env: &[(&str, &str)],
        tls: Option<&Options>,
        stderr: Option<PathBuf>,
    ) -> ServerProcess {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        for _ in 0..5 {
            let port = given.unwrap_or_else(closed_port);
            let bin = workspace_bin("auditlog-server", "auditlog-server");
            let err = match &stderr {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::inherit(),
            };
            let child = Command::new(bin)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data-dir")
                .arg(dir)
                .args(&args)
                .env("AUDITLOG_HMAC_KEY", TEST_KEY)
                .env("RUST_LOG", "warn")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .unwrap();
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut process = ServerProcess {
                child,
                url: format!("{scheme}://127.0.0.1:{port}"),
                stderr_file: stderr.clone(),
            };
            match process.serving(port, tls).await {
                Ok(()) => return process,
                // Someone else listens there: it was taken, not refused.
                Err(status) if given.is_none() && !listeners(port).is_empty() => {
                    eprintln!("auditlog-server exited ({status}): port {port} was taken; another");
                }
                Err(status) => panic!("auditlog-server exited while starting: {status}"),
            }
        }
        panic!("auditlog-server found no free port in 5 tries")
    }

    /// Waits until the child serves on `port`, or returns how it exited.
    async fn serving(&mut self, port: u16, tls: Option<&Options>) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + DEADLINE;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Err(status);
            }
            if listens(self.child.id(), port) {
                match health_over(&self.url, tls).await {
                    Ok(ServingStatus::Serving) => return Ok(()),
                    other => last = format!("{other:?}"),
                }
            } else {
                last = format!("not listening on {port} yet");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("waited {DEADLINE:?} for auditlog-server to serve in vain; last seen: {last}")
    }

    /// What the server wrote to stderr, if it was started with
    /// [`ServerProcess::spawn_logging`]; else nothing.
    pub(crate) fn stderr(&self) -> String {
        self.stderr_file
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// A memory figure of the process from `/proc/PID/status`, in KiB:
    /// `VmRSS` (now) or `VmHWM` (its peak so far).
    pub(crate) fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
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

/// The inodes of the TCP sockets listening on 127.0.0.1:`port` (or any
/// address), from `/proc/net/tcp`.
fn listeners(port: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let ends = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local address, state (0A: LISTEN), inode
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            (ends.contains(&local.to_string()) && *state == "0A").then(|| inode.to_string())
        })
        .collect()
}

/// Whether process `pid` holds the socket listening on `port`.
fn listens(pid: u32, port: u16) -> bool {
    let sockets: Vec<String> = listeners(port)
        .iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    })
}

/// The health of the server at `url`, reached over TLS as `tls` says (the
/// CA it trusts, the client certificate it presents, the name it expects)
/// when given.
async fn health_over(url: &str, tls: Option<&Options>) -> Result<ServingStatus, String> {
    let mut endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| e.to_string())?;
    if let Some(options) = tls {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &options.ca_cert_pem {
            config = config.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &options.identity_pem {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(domain) = &options.domain {
            config = config.domain_name(domain.clone());
        }
        endpoint = endpoint.tls_config(config).map_err(|e| e.to_string())?;
    }
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    health_of(&channel, "")
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// The request of a call to AuditService `method` on `addr`, for a raw
/// HTTP/2 client (`h2`), which sees the server's answer as it is, with no
/// client library between watching deadlines or windows. Add headers, then
/// `.body(())`.
pub(crate) fn raw_call(addr: std::net::SocketAddr, method: &str) -> http::request::Builder {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/auditlog.v1.AuditService/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
}

/// `message` (an encoded protobuf) as one gRPC frame: not compressed, its
/// length, then its bytes.
pub(crate) fn grpc_frame(message: &[u8]) -> bytes::Bytes {
    let mut frame = vec![0];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    frame.into()
}
