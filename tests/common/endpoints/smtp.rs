//! [`SmtpServer`]: a minimal SMTP server on 127.0.0.1 (greeting, EHLO/HELO,
//! MAIL FROM, RCPT TO, DATA, QUIT) that accepts every message and records it
//! with its envelope. Use it as the mail relay of an alert channel, then read
//! what arrived as [`Mail`].

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

use auditlog_server::config::{EmailConfig, Security};

use crate::common::wait::wait_until;

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub(crate) struct Mail {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets.
    pub rcpt_to: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed, lines ending in CRLF.
    pub data: String,
}

impl Mail {
    /// The header fields, unfolded, names in lower case, in order.
    pub(crate) fn headers(&self) -> Vec<(String, String)> {
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
    pub(crate) fn header(&self, name: &str) -> String {
        let name = name.to_ascii_lowercase();
        self.headers()
            .into_iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {name} header in {}", self.data))
    }

    /// The body, decoded from its Content-Transfer-Encoding (7bit,
    /// quoted-printable or base64), with CRLF turned into LF.
    pub(crate) fn body(&self) -> String {
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

    /// The parts of a multipart message, each as a `Mail` of its own (its
    /// headers and body), so `header` and `body` read them; empty for a
    /// message of one part.
    pub(crate) fn parts(&self) -> Vec<Mail> {
        let content_type = self.header("content-type");
        let Some((_, boundary)) = content_type.split_once("boundary=") else {
            return Vec::new();
        };
        let boundary = format!("--{}", boundary.trim_matches('"'));
        let body = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        body.split(boundary.as_str())
            .skip(1)
            .filter(|part| !part.starts_with("--"))
            .map(|part| Mail {
                mail_from: self.mail_from.clone(),
                rcpt_to: self.rcpt_to.clone(),
                data: part.trim_start_matches("\r\n").to_owned(),
            })
            .collect()
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
pub(crate) struct SmtpServer {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    pub(crate) async fn start() -> SmtpServer {
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
    pub(crate) fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages have arrived; returns them all.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Mail> {
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

/// Alert email through the SMTP server on 127.0.0.1:`port` (plain, no
/// login), from `auditlog@example.com` to `to`.
pub(crate) fn email_config(port: u16, to: &[&str]) -> EmailConfig {
    EmailConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        security: Security::None,
        username: None,
        password: None,
        password_file: None,
        from: "auditlog@example.com".into(),
        to: to.iter().map(|t| (*t).to_owned()).collect(),
    }
}
