//! Real receivers for what the server sends out: a minimal HTTP/1.1 server
//! that records every request and can be told to fail.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub json: serde_json::Value,
}

/// An HTTP receiver on 127.0.0.1. It answers `status` (200 unless changed),
/// and records only requests it answered with 2xx.
pub struct HttpReceiver {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

impl HttpReceiver {
    pub async fn start() -> HttpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let (store, answer) = (Arc::clone(&requests), Arc::clone(&status));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&store), Arc::clone(&answer)));
            }
        });
        HttpReceiver {
            port,
            requests,
            status,
        }
    }

    /// From now on, answer every request with `status`.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// What was received so far.
    pub fn received(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
) {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 8192];
        let n = match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let headers: HashMap<String, String> = head
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                })
                .collect();
            let length: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + length {
                break;
            }
            let body = buf[end + 4..end + 4 + length].to_vec();
            buf.drain(..end + 4 + length);
            let code = status.load(Ordering::SeqCst);
            if (200..300).contains(&code) {
                store.lock().unwrap().push(Received {
                    path: head.split_whitespace().nth(1).unwrap_or("").to_owned(),
                    json: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                    headers,
                    body,
                });
            }
            let reply = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
            if socket.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}
