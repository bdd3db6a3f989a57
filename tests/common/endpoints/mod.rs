//! Fake receivers of what the server sends out, each speaking its protocol
//! over TCP on 127.0.0.1: an SMTP sink ([`SmtpServer`], `smtp.rs`) and an
//! HTTP receiver that can fail, go down and come back ([`HttpEndpoint`],
//! `http.rs`). Use them for alert channels and webhooks; [`closed_port`]
//! stands for an endpoint that is not there at all, [`silent_port`] for one
//! that takes the connection and never says a word, and
//! [`read_http_request`] reads a request for receivers a test writes by hand.

mod http;
mod smtp;

pub(crate) use http::{Check, HttpEndpoint, Request, webhook_config};
pub(crate) use smtp::{Mail, SmtpServer, email_config};

/// A port nothing listens on: bound, noted, released.
pub(crate) fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A listener on 127.0.0.1 that accepts connections and holds them open,
/// never saying a word (a relay, collector or endpoint that hangs).
/// Returns its port; the connections stay open as long as the test runs.
pub(crate) async fn silent_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

/// Reads one HTTP/1.1 request's head and its `Content-Length` body from
/// `socket`; false when the connection ended first.
pub(crate) async fn read_http_request(socket: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    loop {
        let Ok(n) = socket.read(&mut buf).await else {
            return false;
        };
        if n == 0 {
            return false;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return true;
            }
        }
    }
}
