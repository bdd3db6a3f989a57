//! The real server in-process, as the ingest and peers benchmarks run it:
//! on a runtime of its own (the client has another, as two processes on
//! one machine would), on 127.0.0.1 port 0, stopped through a oneshot.
//!
//! Included by the ingest and peers benchmarks with
//! `#[path = "common/server.rs"]`.

use std::error::Error;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cpu;

type BoxError = Box<dyn Error + Send + Sync>;

/// A server task on the servers' runtime, and how to stop it.
pub(crate) struct Served {
    pub(crate) url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), BoxError>>,
}

impl Served {
    /// Binds 127.0.0.1 port 0 and runs `serve` on `runtime` with that
    /// listener and the stop signal (the receiver completes on stop).
    pub(crate) fn spawn<F, Fut>(runtime: &Handle, serve: F) -> Result<Served, BoxError>
    where
        F: FnOnce(TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            // `from_std` registers it with the runtime that serves it.
            let listener = TcpListener::from_std(listener)?;
            serve(listener, stopped).await
        });
        Ok(Served { url, stop, task })
    }

    /// The real server with `config`; returns once it answers, with a
    /// client connected to it.
    pub(crate) async fn auditlog(
        runtime: &Handle,
        config: auditlog_server::Config,
    ) -> Result<(Served, auditlog_client::Client), BoxError> {
        // The bench build has the test hooks (a dev-dependency's feature).
        auditlog_server::bench::without_fault_hooks();
        let served = Served::spawn(runtime, |listener, stopped| async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            auditlog_server::run(config, listener, shutdown)
                .await
                .map_err(BoxError::from)
        })?;
        let client = wait_until_serving(&served.url).await?;
        Ok((served, client))
    }

    pub(crate) async fn stop(self) -> Result<(), BoxError> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// The servers' runtime and the client's. The servers get one worker per
/// core; so does the client by default (`current_thread` false): a call
/// always crosses threads, as it does in production, and never runs client
/// and server on one worker by chance, which makes the figures far more
/// repeatable. With `current_thread` every client task runs on the thread
/// that drives the bench, as in a program whose callers share one thread.
pub(crate) fn runtimes(current_thread: bool) -> std::io::Result<(Runtime, Runtime)> {
    let servers = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-server")
        .enable_all()
        .build()?;
    let mut client = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let client = client
        .thread_name(cpu::CLIENT_THREAD)
        .enable_all()
        .build()?;
    Ok((servers, client))
}

/// Whether the client runtime named by `name` (`multi`, the default, or
/// `current`) is tokio's current-thread one.
pub(crate) fn current_thread_client(name: &str) -> Result<bool, String> {
    match crate::env::var(name, "multi".to_owned())?.as_str() {
        "multi" => Ok(false),
        "current" => Ok(true),
        other => Err(format!("{name}={other:?}: use multi or current")),
    }
}

/// Waits (at most 30 s) until the server at `url` has recovered its log
/// and answers.
async fn wait_until_serving(url: &str) -> Result<auditlog_client::Client, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = match auditlog_client::Client::connect(url.to_owned()).await {
            Ok(client) => client
                .stats(None)
                .await
                .map(|_| client)
                .map_err(BoxError::from),
            Err(e) => Err(e.into()),
        };
        match answer {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("the server at {url} did not start serving: {e}").into());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
