//! The metrics listener (`metrics_listen`): `GET /metrics` answers the
//! exposition in the OpenMetrics text format to a scraper that asks for it
//! (Prometheus does), and in the Prometheus text format 0.0.4 otherwise
//! (`curl`, `promtool check metrics`); anything else is 404.
//!
//! It runs as its own task on its own port and cannot stall the gRPC
//! server: a scrape is encoded on a blocking thread, and at most
//! [`SCRAPES`] at a time (another answers 503 at once); at most
//! [`CONNECTIONS`] are open at a time (one more is closed at once), and each
//! for at most [`CONNECTION_LIFETIME`], busy or idle. The port has no token
//! check: before these bounds (2026-12-05) some 20,000 connections held open
//! on it used every file descriptor the process had, and the gRPC server
//! could no longer accept (found by probing the server from outside).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::{Metrics, scrape};
use crate::Running;

/// Scrapes encoded at once.
const SCRAPES: usize = 2;

/// Connections open at once: a scraper or two (an HA pair), and someone with
/// `curl`. Well inside the descriptors `listener::RESERVED_FDS` keeps beside
/// the gRPC connections.
const CONNECTIONS: usize = 16;

/// How long one connection stays open, however busy: a scrape takes
/// milliseconds, and a scraper that keeps its connection between scrapes
/// opens another. An idle or slow connection gives its slot back by then.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// The exposition's media types.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
struct Scraper {
    metrics: Arc<Metrics>,
    running: Arc<OnceLock<Running>>,
    busy: Arc<Semaphore>,
}

/// Serves `/metrics` on `listener` until `cancel`; the running server's
/// figures are read from `running` once the log is recovered.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    running: Arc<OnceLock<Running>>,
    cancel: CancellationToken,
) {
    let scraper = Scraper {
        metrics,
        running,
        busy: Arc::new(Semaphore::new(SCRAPES)),
    };
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(metrics_page).fallback(not_found),
        )
        .fallback(not_found)
        .with_state(scraper);
    let listener = Bounded {
        listener,
        slots: Arc::new(Semaphore::new(CONNECTIONS)),
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

async fn metrics_page(State(scraper): State<Scraper>, headers: axum::http::HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let Ok(_permit) = Arc::clone(&scraper.busy).try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many scrapes at once; scrape less often",
        )
            .into_response();
    };
    let encoded = tokio::task::spawn_blocking(move || {
        let text = scrape::encode(&scraper.metrics, scraper.running.get());
        if openmetrics {
            (OPENMETRICS, text)
        } else {
            (TEXT_004, scrape::to_text_004(&text))
        }
    })
    .await;
    match encoded {
        Ok((media_type, text)) => ([(header::CONTENT_TYPE, media_type)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding the metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The metrics port's listener: at most [`CONNECTIONS`] open at a time.
struct Bounded {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl axum::serve::Listener for Bounded {
    type Io = Held;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Held, SocketAddr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(slot) => {
                    let deadline = Box::pin(tokio::time::sleep(CONNECTION_LIFETIME));
                    return (
                        Held {
                            stream,
                            _slot: slot,
                            deadline,
                        },
                        addr,
                    );
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "metrics connection closed at once: {CONNECTIONS} are open");
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection to the metrics port: its slot is given back when it is
/// dropped, and once [`CONNECTION_LIFETIME`] has passed every read or write
/// fails, so the server closes it.
struct Held {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    deadline: Pin<Box<Sleep>>,
}

impl Held {
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.deadline.as_mut().poll(cx).is_ready().then(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "a metrics connection stays open at most {} s",
                    CONNECTION_LIFETIME.as_secs()
                ),
            )
        })
    }
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
