//! Real endpoints for what the server sends out, each speaking its protocol
//! over TCP on 127.0.0.1:
//!
//! - [`SmtpServer`]: a minimal SMTP server (greeting, EHLO/HELO, MAIL FROM,
//!   RCPT TO, DATA, QUIT) that records each message with its envelope;
//! - [`HttpEndpoint`]: a minimal HTTP/1.1 server that records every request,
//!   can check each one itself (a signature, a token) and reject it, can be
//!   told to answer an error status, and can be taken down (its port closed,
//!   open connections cut) and brought back on the same port.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long [`wait_until`] waits before failing the test.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `probe` every 25 ms until it returns `Some`, failing the test with
/// `what` (and the last `describe` of the state) after [`DEADLINE`].
pub async fn wait_until<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    wait_until_within(DEADLINE, what, probe).await
}

/// [`wait_until`] with its own time limit, for waits that should end long
/// before [`DEADLINE`].
pub async fn wait_until_within<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(state) => {
                assert!(
                    Instant::now() < deadline,
                    "waited {limit:?} for {what} in vain; last seen: {state}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A port nothing listens on: bound, noted, released.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------- SMTP

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets.
    pub rcpt_to: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed, lines ending in CRLF.
    pub data: String,
}

impl Mail {
    /// The header fields, unfolded, names in lower case, in order.
    pub fn headers(&self) -> Vec<(String, String)> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded
            .split("\r\n")
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            })
            .collect()
    }

    /// The value of header `name` (any case); panics when it is missing.
    pub fn header(&self, name: &str) -> String {
        let name = name.to_ascii_lowercase();
        self.headers()
            .into_iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {name} header in {}", self.data))
    }

    /// The body, decoded from its Content-Transfer-Encoding (7bit,
    /// quoted-printable or base64), with CRLF turned into LF.
    pub fn body(&self) -> String {
        let raw = self
            .data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("");
        let encoding = self
            .headers()
            .into_iter()
            .find(|(k, _)| k == "content-transfer-encoding")
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_default();
        let decoded = match encoding.as_str() {
            "base64" => {
                let joined: String = raw.split_whitespace().collect();
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(joined)
                        .unwrap(),
                )
                .unwrap()
            }
            "quoted-printable" => quoted_printable(raw),
            _ => raw.to_owned(),
        };
        decoded.replace("\r\n", "\n")
    }
}

fn quoted_printable(raw: &str) -> String {
    let text = raw.replace("=\r\n", "");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A minimal SMTP server on 127.0.0.1 that accepts every message.
pub struct SmtpServer {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&mails);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(smtp_session(socket, Arc::clone(&store)));
            }
        });
        SmtpServer { port, mails }
    }

    /// Every message received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages have arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        wait_until(&format!("{n} mail(s)"), || async move {
            let got = self.mails();
            if got.len() >= n {
                Ok(got)
            } else {
                Err(format!("{} mail(s): {got:?}", got.len()))
            }
        })
        .await
    }
}

/// The address inside `<...>` after `MAIL FROM:` or `RCPT TO:`.
fn address(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_owned(),
        _ => arg.to_owned(),
    }
}

async fn smtp_session(socket: TcpStream, store: Arc<Mutex<Vec<Mail>>>) {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    if write
        .write_all(b"220 test.localhost ESMTP\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let upper = command.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            // Nothing advertised: no STARTTLS, no AUTH, no extensions.
            b"250 test.localhost\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            mail_from = address(&command["MAIL FROM:".len()..]);
            rcpt_to.clear();
            b"250 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            rcpt_to.push(address(&command["RCPT TO:".len()..]));
            b"250 ok\r\n"
        } else if upper == "DATA" {
            if write
                .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut data = String::new();
            loop {
                let mut l = String::new();
                match reader.read_line(&mut l).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                // Dot-unstuffing.
                let l = l.strip_prefix('.').unwrap_or(&l);
                data.push_str(l);
            }
            store.lock().unwrap().push(Mail {
                mail_from: mail_from.clone(),
                rcpt_to: rcpt_to.clone(),
                data,
            });
            b"250 queued\r\n"
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 ok\r\n"
        } else {
            b"502 not implemented\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------- HTTP

/// One HTTP request as received.
#[derive(Debug, Clone)]
pub struct Request {
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
pub type Check = Box<dyn Fn(&Request) -> Result<(), String> + Send + Sync>;

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
pub struct HttpEndpoint {
    pub port: u16,
    shared: Arc<Shared>,
    /// Cancels the listener and its connections while up.
    up: Mutex<Option<CancellationToken>>,
}

impl HttpEndpoint {
    /// Starts one that answers 200 and checks nothing.
    pub async fn start() -> HttpEndpoint {
        HttpEndpoint::start_checked(None).await
    }

    /// Starts one that runs `check` on every request.
    pub async fn start_checked(check: Option<Check>) -> HttpEndpoint {
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
    pub fn url(&self, path: &str) -> String {
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
    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Closes the port and cuts every open connection: senders get
    /// "connection refused" (or a reset) until [`HttpEndpoint::come_up`].
    pub fn go_down(&self) {
        if let Some(token) = self.up.lock().unwrap().take() {
            token.cancel();
        }
    }

    /// Listens again on the same port.
    pub async fn come_up(&self) {
        // The old listener closes asynchronously; retry briefly.
        let listener = wait_until("the port to be free again", || async move {
            listen(self.port).map_err(|e| e.to_string())
        })
        .await;
        self.serve(listener);
    }

    /// Every request so far, in arrival order, whatever it was answered.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests answered with 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Why requests failed the check.
    pub fn rejected(&self) -> Vec<String> {
        self.shared.rejected.lock().unwrap().clone()
    }

    /// How many requests arrived, whatever they were answered.
    pub fn attempts(&self) -> u64 {
        self.shared.attempts.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were accepted; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Request> {
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
