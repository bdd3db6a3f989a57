//! The servers whose start-up the segments bench measures: the
//! `auditlog-server` binary (built unless given) run as a process, its
//! memory from /proc, and the in-process server; both until their first
//! successful `GetStats`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auditlog_client::{Client, Retry};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::build::{InProcess, config_for, target_dir};
use crate::machine::status_kib;
use crate::output::mb;
use crate::{BoxError, READY_TIMEOUT, Settings};

/// Where the `auditlog-server` binary is; builds it unless given.
pub(crate) fn server_binary(settings: &Settings) -> Result<PathBuf, BoxError> {
    if let Some(bin) = &settings.server_bin {
        return Ok(bin.clone());
    }
    // Its own target dir: built alone, the server resolves its dependencies'
    // features differently from this bench (which enables test hooks), so
    // sharing one dir would rebuild half the tree on every run.
    let target = target_dir()?.join("bench-server");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!(
        "building the server: cargo build --release -p auditlog-server --target-dir {}",
        target.display()
    );
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "auditlog-server"])
        .args(["--bin", "auditlog-server", "--target-dir"])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()?;
    if !status.success() {
        return Err(format!("building auditlog-server failed ({status})").into());
    }
    let bin = target.join("release").join("auditlog-server");
    if !bin.exists() {
        return Err(format!("{} does not exist after building it", bin.display()).into());
    }
    Ok(bin)
}

/// A running `auditlog-server` process; killed if dropped while running.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) client: Client,
}

impl ServerProcess {
    /// Spawns the server on `dir` and waits for its first GetStats; returns
    /// it and the time that took.
    pub(crate) async fn start(
        bin: &Path,
        dir: &Path,
    ) -> Result<(ServerProcess, Duration), BoxError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = Command::new(bin);
        command
            .arg("--data-dir")
            .arg(dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .env("RUST_LOG", "warn");
        // The server rejects unknown AUDITLOG_* variables, such as ours.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AUDITLOG_") {
                command.env_remove(name);
            }
        }
        command.env("AUDITLOG_RETENTION_DAYS", "0");
        let started = Instant::now();
        let mut child = command.spawn()?;
        let client = wait_ready(&format!("http://127.0.0.1:{port}"), || {
            match child.try_wait()? {
                Some(status) => Err(format!("the server exited: {status}").into()),
                None => Ok(()),
            }
        })
        .await;
        let elapsed = started.elapsed();
        let server = match client {
            Ok(client) => ServerProcess { child, client },
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok((server, elapsed))
    }

    pub(crate) fn memory(&self) -> Result<Memory, BoxError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let get = |key: &str| {
            status_kib(&status, key)
                .map(|kib| kib * 1024)
                .ok_or_else(|| format!("no {key} in /proc/<pid>/status"))
        };
        Ok(Memory {
            rss: get("VmRSS:")?,
            anon: get("RssAnon:")?,
            hwm: get("VmHWM:")?,
        })
    }

    /// Stops the server with SIGTERM (a clean shutdown) and waits for it.
    pub(crate) fn stop(mut self) -> Result<(), BoxError> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            return Err(format!("kill -TERM {} failed", self.child.id()).into());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                return Err("the server did not stop within 30 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A process's memory, in bytes.
#[derive(Clone, Copy)]
pub(crate) struct Memory {
    pub(crate) rss: u64,
    anon: u64,
    pub(crate) hwm: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VmRSS {} (RssAnon {}), VmHWM {}",
            mb(self.rss),
            mb(self.anon),
            mb(self.hwm)
        )
    }
}

/// Connects to `url` and calls GetStats until it succeeds (UNAVAILABLE means
/// "still recovering"); `alive` fails when the server has stopped.
pub(crate) async fn wait_ready(
    url: &str,
    mut alive: impl FnMut() -> Result<(), BoxError>,
) -> Result<Client, BoxError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut client: Option<Client> = None;
    loop {
        alive()?;
        if Instant::now() > deadline {
            return Err(format!("{url} did not answer GetStats within {READY_TIMEOUT:?}").into());
        }
        if client.is_none() {
            // No retries in the client: its backoff (100, 200, 400 ms ...)
            // would round the figure up to its next try.
            let once = Retry {
                attempts: 1,
                ..Retry::default()
            };
            client = Client::builder().node(url).retry(once).connect().await.ok();
        }
        if let Some(c) = &client {
            match c.stats(None).await {
                Ok(_) => return Ok(c.clone()),
                Err(e) if e.code() == Some(tonic::Code::Unavailable) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub(crate) async fn startup_in_process(dir: &Path) -> Result<Duration, BoxError> {
    let config = config_for(dir, 1024.0);
    config.validate()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(auditlog_server::run(config, listener, async {
        let _ = stopped.await;
    }));
    let server = InProcess { url, stop, task };
    let ready = wait_ready(&server.url, || {
        if server.task.is_finished() {
            Err("the in-process server stopped".into())
        } else {
            Ok(())
        }
    })
    .await;
    let elapsed = started.elapsed();
    server.shutdown().await?;
    ready?;
    Ok(elapsed)
}
