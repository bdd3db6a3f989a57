//! The metrics listener (`metrics_listen`): `GET /metrics` answers the
//! exposition in the OpenMetrics text format to a scraper that asks for it
//! (Prometheus does), and in the Prometheus text format 0.0.4 otherwise
//! (`curl`, `promtool check metrics`); anything else is 404.
//!
//! It runs as its own task on its own port and cannot stall the gRPC
//! server: a scrape is encoded on a blocking thread, and at most
//! [`SCRAPES`] at a time (another answers 503 at once).

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Metrics, scrape};
use crate::Running;

/// Scrapes encoded at once.
const SCRAPES: usize = 2;

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
