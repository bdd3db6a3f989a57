//! [`HttpEndpoint`]: a minimal HTTP/1.1 server on 127.0.0.1 that records
//! every [`Request`], can check each one itself (a signature, a token) and
//! reject it, can be told to answer an error status, and can be taken down
//! (its port closed, open connections cut) and brought back on the same port.
//! Use it as the receiver of a webhook or a chat alert channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use auditlog_server::config::{Start, WebhookConfig};

use crate::common::wait::wait_until;

/// One HTTP request as received.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: serde_json::Value,
    /// The status it was answered with.
    pub status: u16,
}

/// Checks one request; `Err` makes the endpoint answer 400 and record why.
pub(crate) type Check = Box<dyn Fn(&Request) -> Result<(), String> + Send + Sync>;

struct Shared {
    /// The status to answer requests that pass the check.
    status: AtomicU16,
    /// Every request, whatever it was answered.
    requests: Mutex<Vec<Request>>,
    /// Why requests failed the check.
    rejected: Mutex<Vec<String>>,
    attempts: AtomicU64,
    check: Option<Check>,
}

/// A minimal HTTP/1.1 server on 127.0.0.1.
pub(crate) struct HttpEndpoint {
    pub port: u16,
    shared: Arc<Shared>,
    /// Cancels the listener and its connections while up.
    up: Mutex<Option<CancellationToken>>,
}

impl HttpEndpoint {
    /// Starts one that answers 200 and checks nothing.
    pub(crate) async fn start() -> HttpEndpoint {
        HttpEndpoint::start_checked(None).await
    }

    /// Starts one that runs `check` on every request.
    pub(crate) async fn start_checked(check: Option<Check>) -> HttpEndpoint {
        let listener = listen(0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = HttpEndpoint {
            port,
            shared: Arc::new(Shared {
                status: AtomicU16::new(200),
                requests: Mutex::new(Vec::new()),
                rejected: Mutex::new(Vec::new()),
                attempts: AtomicU64::new(0),
                check,
            }),
            up: Mutex::new(None),
        };
        endpoint.serve(listener);
        endpoint
    }

    /// Its URL for `path` (which starts with `/`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn serve(&self, listener: TcpListener) {
        let token = CancellationToken::new();
        *self.up.lock().unwrap() = Some(token.clone());
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            loop {
                let socket = tokio::select! {
                    _ = token.cancelled() => return,
                    a = listener.accept() => match a {
                        Ok((s, _)) => s,
                        Err(_) => return,
                    },
                };
                let (shared, token) = (Arc::clone(&shared), token.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = http_connection(socket, shared) => {}
                    }
                });
            }
        });
    }

    /// From now on, answer requests that pass the check with `status`.
    pub(crate) fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Closes the port and cuts every open connection: senders get
    /// "connection refused" (or a reset) until [`HttpEndpoint::come_up`].
    pub(crate) fn go_down(&self) {
        if let Some(token) = self.up.lock().unwrap().take() {
            token.cancel();
        }
    }

    /// Listens again on the same port.
    pub(crate) async fn come_up(&self) {
        // The old listener closes asynchronously; retry briefly.
        let listener = wait_until("the port to be free again", || async move {
            listen(self.port).map_err(|e| e.to_string())
        })
        .await;
        self.serve(listener);
    }

    /// Every request so far, in arrival order, whatever it was answered.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests answered with 2xx, in arrival order.
    pub(crate) fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Why requests failed the check.
    pub(crate) fn rejected(&self) -> Vec<String> {
        self.shared.rejected.lock().unwrap().clone()
    }

    /// How many requests arrived, whatever they were answered.
    pub(crate) fn attempts(&self) -> u64 {
        self.shared.attempts.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were accepted; returns them.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Request> {
        wait_until(&format!("{n} accepted request(s)"), || async move {
            let got = self.accepted();
            if got.len() >= n {
                Ok(got)
            } else {
                Err(format!(
                    "{} accepted, {} attempts, rejected {:?}",
                    got.len(),
                    self.attempts(),
                    self.rejected()
                ))
            }
        })
        .await
    }
}

impl Drop for HttpEndpoint {
    fn drop(&mut self) {
        self.go_down();
    }
}

/// A listener on 127.0.0.1:`port` with SO_REUSEADDR, so a port just closed
/// can be listened on again.
fn listen(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(128)
}

/// Serves the requests of one connection (keep-alive) until it closes.
async fn http_connection(mut socket: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    loop {
        let request = loop {
            if let Some((request, used)) = parse_request(&buf) {
                buf.drain(..used);
                break request;
            }
            let mut chunk = [0u8; 16 * 1024];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let Some(mut request) = request else {
            let _ = socket
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        shared.attempts.fetch_add(1, Ordering::SeqCst);
        let checked = shared
            .check
            .as_ref()
            .map_or(Ok(()), |check| check(&request));
        request.status = match &checked {
            Ok(()) => shared.status.load(Ordering::SeqCst),
            Err(_) => 400,
        };
        if let Err(why) = checked {
            shared.rejected.lock().unwrap().push(why);
        }
        let status = request.status;
        shared.requests.lock().unwrap().push(request);
        let reply = format!("HTTP/1.1 {status} Status\r\ncontent-length: 0\r\n\r\n");
        if socket.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One complete request from the front of `buf` and the bytes it used;
/// `None` while incomplete, `Some((None, _))` when it cannot be parsed.
fn parse_request(buf: &[u8]) -> Option<(Option<Request>, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or("").split_whitespace();
    let (method, path) = (
        start.next().unwrap_or("").to_owned(),
        start.next().unwrap_or("").to_owned(),
    );
    let headers: HashMap<String, String> = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    let rest = &buf[end + 4..];
    let (body, used) = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        let (body, used) = dechunk(rest)?;
        (body, end + 4 + used)
    } else {
        let length: usize = match headers.get("content-length") {
            Some(v) => match v.parse() {
                Ok(n) => n,
                Err(_) => return Some((None, buf.len())),
            },
            None => 0,
        };
        if rest.len() < length {
            return None;
        }
        (rest[..length].to_vec(), end + 4 + length)
    };
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    Some((
        Some(Request {
            method,
            path,
            headers,
            body,
            json,
            status: 0,
        }),
        used,
    ))
}

/// A chunked body from the front of `buf` and the bytes it used; `None`
/// while incomplete.
fn dechunk(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&buf[at..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // No trailers from our senders: the final CRLF.
            if buf.len() < at + 2 {
                return None;
            }
            return Some((body, at + 2));
        }
        if buf.len() < at + size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// Webhook endpoint `name` at `url`, delivering from the log's start, with
/// no filter, token or secret, a 5 s timeout and at most 1 s between
/// retries; a test sets what it checks on top.
pub(crate) fn webhook_config(name: &str, url: String) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url,
        event_types: vec![],
        workflows: vec![],
        bearer_token: None,
        secret: None,
        secret_file: None,
        start: Start::Beginning,
        timeout_secs: 5,
        max_backoff_secs: 1,
    }
}
