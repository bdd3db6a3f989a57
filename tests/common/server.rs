//! [`TestServer`]: the server running in this process on 127.0.0.1 port 0,
//! its data in a temp dir, reached through the real client. The default for
//! an end-to-end test; it stops cleanly and restarts on the same directory,
//! optionally after the test edits the files in between.

use std::path::{Path, PathBuf};
use std::time::Duration;

use auditlog_client::Client;
use auditlog_server::Config;
use tokio::sync::oneshot;

use super::health_reflection::serving;

/// A 32-byte test key, so tests can also check signatures themselves.
pub(crate) const TEST_KEY: &str = "test-key-0123456789abcdef0123456789";

/// A config adjustment: sign with [`TEST_KEY`], so the test can sign too.
pub(crate) fn with_test_key(config: &mut Config) {
    config.hmac_key = Some(TEST_KEY.into());
}

/// A server running in this process.
pub(crate) struct TestServer {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub data_dir: PathBuf,
    /// Owns the temp dir unless the test supplied its own directory.
    _temp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), auditlog_server::ServerError>>>,
}

impl TestServer {
    /// Starts a server on a fresh temp dir with the default config.
    pub(crate) async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts a server on a fresh temp dir it owns, letting the test adjust
    /// the config.
    pub(crate) async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let temp = tempfile::tempdir().unwrap();
        let mut server = TestServer::start_in(temp.path(), adjust).await;
        server._temp = Some(temp);
        server
    }

    /// Starts a server on `dir`, letting the test adjust the config.
    pub(crate) async fn start_in(dir: &Path, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestServer::start_on(listener, config).await
    }

    /// Starts a server with `config` on `listener`.
    ///
    /// A server that stops before it serves fails the test with its error.
    /// One refused because its directory is locked is started again (up to
    /// 2 s): a process this test binary spawns (the CLI) holds a copy of
    /// every descriptor between its fork and its exec, the previous server's
    /// lock among them, which outlives that server for a moment.
    pub(crate) async fn start_on(listener: tokio::net::TcpListener, config: Config) -> TestServer {
        let dir = config.data_dir.clone();
        let protected = !config.tokens.is_empty();
        let addr = listener.local_addr().unwrap();
        let mut listener = Some(listener);
        for attempt in 0.. {
            let listener = match listener.take() {
                Some(listener) => listener,
                None => tokio::net::TcpListener::bind(addr).await.unwrap(),
            };
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(auditlog_server::run(config.clone(), listener, async move {
                let _ = stopped.await;
            }));
            let mut server = TestServer {
                url: format!("http://{addr}"),
                addr,
                data_dir: dir.clone(),
                _temp: None,
                stop: Some(stop),
                task: Some(task),
            };
            match server.wait_ready(protected).await {
                Ok(()) => return server,
                Err(auditlog_server::ServerError::Lock(_)) if attempt < 40 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("server at {} stopped before serving: {e}", server.url),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Waits until the log is recovered and calls are served, or returns
    /// the error the server stopped with. A server with tokens refuses an
    /// anonymous GetStats, so there health, which needs no token and turns
    /// SERVING at the same moment, tells.
    async fn wait_ready(&mut self, protected: bool) -> Result<(), auditlog_server::ServerError> {
        for _ in 0..200 {
            if let Some(task) = self.task.take_if(|task| task.is_finished()) {
                task.await.unwrap()?;
                panic!(
                    "server at {} stopped before serving, without an error",
                    self.url
                );
            }
            if let Ok(client) = Client::connect(&self.url).await {
                let ready = if protected {
                    serving(&self.url).await
                } else {
                    client.stats(None).await.is_ok()
                };
                if ready {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server at {} did not become ready", self.url);
    }

    /// A client connected to this server.
    pub(crate) async fn client(&self) -> Client {
        Client::connect(&self.url).await.unwrap()
    }

    /// A plain gRPC channel to this server, for the services the client
    /// does not wrap (health, reflection).
    pub(crate) async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Stops the server cleanly and waits for it.
    pub(crate) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Stops the server and starts a new one on the same directory (and temp
    /// dir ownership), with the same config adjustment.
    pub(crate) async fn restart(self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        self.restart_after(|_| {}, adjust).await
    }

    /// Stops the server, lets `edit` change the files in its data directory
    /// while nothing runs, then starts a new server on the same directory (and
    /// temp dir ownership) with `adjust`.
    pub(crate) async fn restart_after(
        mut self,
        edit: impl FnOnce(&Path),
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        self.stop().await;
        edit(&self.data_dir);
        let temp = self._temp.take();
        let mut next = TestServer::start_in(&self.data_dir, adjust).await;
        next._temp = temp;
        next
    }

    /// Stops the server and starts a new one on the same directory and
    /// the same port, so clients that knew the old one reach the new one.
    pub(crate) async fn restart_on_same_port(mut self) -> TestServer {
        self.stop().await;
        let config = Config {
            data_dir: self.data_dir.clone(),
            ..Config::default()
        };
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let mut next = TestServer::start_on(listener, config).await;
        next._temp = self._temp.take();
        next
    }

    /// The log file.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.data_dir.join("audit.log")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client whose HTTP/2 flow-control windows are the protocol's smallest
/// default (64 KiB), so a stream it does not read backs up into the server
/// after a few hundred events instead of the 2 MiB a default window absorbs.
pub(crate) async fn small_window_client(url: &str) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    Client::from_channel(channel)
}
