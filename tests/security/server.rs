//! An in-process server on 127.0.0.1:0 whose readiness is checked through
//! health over TLS when it serves TLS (common::TestServer checks over
//! plaintext only); channels to it, its health, and calls that never hang.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use auditlog_client::{Client, Options};
use auditlog_server::Config;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::common::{self, TEST_KEY};
use crate::security::tokens::token_configs;

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server on a fresh temp dir with `adjust`ed config; `tls`
    /// is how the readiness check connects (None: plaintext).
    pub(crate) async fn start(
        adjust: impl FnOnce(&mut Config),
        tls: Option<ClientTlsConfig>,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            hmac_key: Some(TEST_KEY.into()),
            ..Config::default()
        };
        adjust(&mut config);
        config.validate().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(auditlog_server::run(config, listener, async move {
            let _ = stopped.await;
        }));
        for _ in 0..400 {
            if task.is_finished() {
                panic!("the server stopped while starting: {:?}", task.await);
            }
            if let Ok(ch) = channel(addr, tls.clone()).await
                && health(&ch, "").await == Ok(ServingStatus::Serving)
            {
                return Server {
                    addr,
                    stop: Some(stop),
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server at {addr} did not report SERVING");
    }

    /// A server that requires the five tokens.
    pub(crate) async fn with_tokens() -> Server {
        Server::start(|c| c.tokens = token_configs(), None).await
    }

    fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A plaintext client sending `token`.
    pub(crate) async fn client(&self, token: &str) -> Client {
        let options = Options {
            token: Some(token.into()),
            ..Options::default()
        };
        Client::connect_with(self.http_url(), options)
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A channel to `addr`'s port on 127.0.0.1: plaintext, or TLS with `tls`.
pub(crate) async fn channel(
    addr: SocketAddr,
    tls: Option<ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://127.0.0.1:{}", addr.port()))
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    endpoint.connect().await
}

/// Health of `service` ("" for the server), or the refusal's code and
/// message.
pub(crate) async fn health(ch: &Channel, service: &str) -> Result<ServingStatus, String> {
    common::health_of(ch, service)
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// `future`, or a panic naming `what` when it takes more than 10 s: a
/// refusal must be an answer, never a hang.
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 10 s"))
}
