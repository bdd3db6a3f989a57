//! SMTP relays gone wrong: one whose greeting never ends (a line without
//! end, as fast as it can send), and one that offers no STARTTLS when the
//! channel requires it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use auditlog_server::config::{EmailConfig, Security};

use crate::common::TestServer;
use crate::common::endpoints::email_config;

/// What the test lets the endless relay send at most, per connection.
const CAP: u64 = 256 << 20;

/// A relay that greets with `220 ` and then never ends the line. Returns
/// its port and the bytes it got written, per connection.
async fn endless_greeting() -> (u16, Arc<Mutex<Vec<u64>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = Arc::new(Mutex::new(Vec::new()));
    let all = Arc::clone(&written);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let index = {
                let mut w = all.lock().unwrap();
                w.push(0);
                w.len() - 1
            };
            let all = Arc::clone(&all);
            tokio::spawn(async move {
                let chunk = vec![b'a'; 64 << 10];
                let mut sent = 0u64;
                if socket.write_all(b"220 ").await.is_err() {
                    return;
                }
                while sent < CAP {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent += chunk.len() as u64;
                    all.lock().unwrap()[index] = sent;
                }
                // Holds the connection: the sender must give up itself.
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    (port, written)
}

fn every_error_mails(c: &mut auditlog_server::Config, email: EmailConfig) {
    crate::hostile_receivers::alert_on_every_error(c);
    c.alerts.email = Some(email);
}

/// A greeting line without end: the sender stops reading after a bounded
/// amount and the attempt fails at once, saying so. Lettre checks a
/// response line's length only once the line has ended, so it read (and
/// kept in memory) everything the relay sent for the whole 10 s deadline:
/// gigabytes from a relay on a fast link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greeting_without_end_is_cut_off_not_read_into_memory() {
    let (port, written) = endless_greeting().await;
    let server =
        TestServer::start_with(|c| every_error_mails(c, email_config(port, &["ops@example.com"])))
            .await;
    let client = server.client().await;

    let results = tokio::time::timeout(Duration::from_secs(20), client.test_alerts())
        .await
        .unwrap()
        .unwrap();
    let email = results.iter().find(|r| r.channel == "email").unwrap();
    assert!(!email.ok, "{results:?}");
    let sent = written.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    // What the relay got into the socket: what the sender read, plus what
    // the kernel's buffers hold (a few MiB at most).
    assert!(
        sent[0] < 32 << 20,
        "the sender took {} bytes of one greeting line ({})",
        sent[0],
        email.error
    );
    assert!(
        email.error.contains("too long") || email.error.contains("more than"),
        "{}",
        email.error
    );
}

/// A relay in clear text that offers AUTH and no STARTTLS; records every
/// line it hears. Returns its port and what it heard.
async fn clear_text_relay() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = Arc::new(Mutex::new(Vec::<String>::new()));
    let h = Arc::clone(&heard);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let h = Arc::clone(&h);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).split(b'\n');
                h.lock().unwrap().push("<connected>".into());
                let _ = write.write_all(b"220 relay ready\r\n").await;
                while let Ok(Some(line)) = lines.next_segment().await {
                    let line = String::from_utf8_lossy(&line).to_string();
                    h.lock().unwrap().push(line.clone());
                    let upper = line.to_ascii_uppercase();
                    let answer: &[u8] = if upper.starts_with("EHLO") {
                        b"250-relay\r\n250 AUTH PLAIN LOGIN\r\n"
                    } else if upper.starts_with("QUIT") {
                        b"221 bye\r\n"
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = write.write_all(answer).await;
                }
            });
        }
    });
    (port, heard)
}

/// A relay in clear text where the channel requires TLS: `starttls` (a
/// relay, or someone in between, offering no STARTTLS: a downgrade) and
/// `tls` (implicit TLS, the relay answering in clear). The login and the
/// message are never sent in clear text, and the failure says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_in_clear_text_gets_neither_password_nor_mail_when_tls_is_required() {
    for (security, why) in [
        (Security::Starttls, "starttls"),
        (Security::Tls, "connection error"),
    ] {
        let (port, heard) = clear_text_relay().await;
        let mut email = email_config(port, &["ops@example.com"]);
        email.security = security;
        email.username = Some("auditlog".into());
        email.password = Some("hunter2-smtp-password".into());
        let mut server = TestServer::start_with(|c| every_error_mails(c, email)).await;
        let client = server.client().await;

        let results = client.test_alerts().await.unwrap();
        let result = results.iter().find(|r| r.channel == "email").unwrap();
        assert!(!result.ok, "{security:?}: {results:?}");
        assert!(
            result.error.to_ascii_lowercase().contains(why),
            "{security:?}: {}",
            result.error
        );
        assert!(!result.error.contains("hunter2"), "{}", result.error);
        // The relay's task may not have run yet when the sender gave up.
        crate::common::wait_until_within(
            Duration::from_secs(5),
            "the relay to be reached",
            || async {
                let n = heard.lock().unwrap().len();
                if n >= 1 { Ok(()) } else { Err(format!("{n}")) }
            },
        )
        .await;
        let heard = heard.lock().unwrap().clone();
        assert_eq!(heard.first().map(String::as_str), Some("<connected>"));
        for line in &heard {
            let upper = line.to_ascii_uppercase();
            assert!(
                !["AUTH", "MAIL", "RCPT", "DATA"]
                    .iter()
                    .any(|c| upper.starts_with(c))
                    && !line.contains("hunter2")
                    && !line.contains("AHUAcA"),
                "{security:?}: the relay heard {line:?} without TLS: {heard:?}"
            );
        }
        server.stop().await;
    }
}

/// A relay whose refusal is 100 lines of terminal escapes (`ESC[2J`, a
/// window title, bidi overrides): what reaches `TestAlerts` and
/// `GetAlertStatus` holds no control character, and is short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relays_refusal_reaches_the_status_without_control_characters() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).split(b'\n');
                let _ = write.write_all(b"220 relay ready\r\n").await;
                while let Ok(Some(line)) = lines.next_segment().await {
                    let answer = if line.to_ascii_uppercase().starts_with(b"EHLO") {
                        b"250 relay\r\n".to_vec()
                    } else {
                        let evil = "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}txt.exe ";
                        let mut a = String::new();
                        for _ in 0..99 {
                            a.push_str(&format!("550-{}\r\n", evil.repeat(9)));
                        }
                        a.push_str("550 no\r\n");
                        a.into_bytes()
                    };
                    let _ = write.write_all(&answer).await;
                }
            });
        }
    });
    let server = TestServer::start_with(|c| {
        every_error_mails(c, email_config(port, &["ops@example.com"]));
    })
    .await;
    let client = server.client().await;
    let results = client.test_alerts().await.unwrap();
    let result = results.iter().find(|r| r.channel == "email").unwrap();
    assert!(!result.ok, "{results:?}");
    let status = client.alert_status().await.unwrap();
    let email = status
        .channels
        .iter()
        .find(|c| c.channel == "email")
        .unwrap();
    for error in [&result.error, &email.last_error] {
        assert!(error.contains("550"), "{error}");
        assert!(
            !error
                .chars()
                .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
            "{error:?}"
        );
        assert!(error.len() <= 2048, "{} bytes: {error:?}", error.len());
    }
}
