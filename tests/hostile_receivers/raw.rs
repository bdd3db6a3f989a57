//! A raw HTTP/1.1 receiver whose answer to each request the test scripts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt as _;

use crate::common::endpoints::read_http_request;

/// A receiver on 127.0.0.1 answering request number `n` (from 0) with the
/// raw bytes `answer(n)`, then closing the connection.
pub(crate) struct RawHttp {
    pub port: u16,
    attempts: Arc<AtomicU64>,
}

impl RawHttp {
    pub(crate) async fn start(answer: impl Fn(u64) -> String + Send + Sync + 'static) -> RawHttp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let attempts = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&attempts);
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (answer, counted) = (Arc::clone(&answer), Arc::clone(&counted));
                tokio::spawn(async move {
                    if read_http_request(&mut socket).await {
                        let n = counted.fetch_add(1, Ordering::SeqCst);
                        let _ = socket.write_all(answer(n).as_bytes()).await;
                    }
                });
            }
        });
        RawHttp { port, attempts }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests read whole so far.
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::SeqCst)
    }
}

/// An answer with no body.
pub(crate) fn answer(status: &str, headers: &str) -> String {
    format!("HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n")
}
