//! Redirects: a receiver answering 301, 302, 307 or 308 is never followed,
//! to another host or to itself, but retried as a failure until it answers
//! 200.

use auditlog_server::config::Start;
use serde_json::Value;

use crate::common::TestServer;
use crate::common::endpoints::HttpEndpoint;
use crate::webhooks::checks::{log_n, status_when};
use crate::webhooks::receiver::config;

/// What a [`Redirector`] answers: a redirect status with a Location, or 200.
struct Redirect {
    status: u16,
    location: String,
}

/// Each request a [`Redirector`] got: its method and `data.seq`.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<u64>)>>>;

/// A receiver answering every request with a redirect (or 200 once told),
/// recording each request's method and `data.seq`.
struct Redirector {
    port: u16,
    answer: std::sync::Arc<std::sync::Mutex<Redirect>>,
    requests: Seen,
}

impl Redirector {
    async fn start() -> Redirector {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = std::sync::Arc::new(std::sync::Mutex::new(Redirect {
            status: 200,
            location: String::new(),
        }));
        let requests: Seen = Seen::default();
        let (a, r) = (answer.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (a, r) = (a.clone(), r.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 16 * 1024];
                    // One request per connection: the head, then the body.
                    let (head_end, length) = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse().unwrap());
                            break (end + 4, length);
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buf.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let method = String::from_utf8_lossy(&buf[..head_end])
                        .split(' ')
                        .next()
                        .unwrap()
                        .to_owned();
                    let body: Value = serde_json::from_slice(&buf[head_end..head_end + length])
                        .unwrap_or(Value::Null);
                    r.lock()
                        .unwrap()
                        .push((method, body["data"]["seq"].as_u64()));
                    let reply = {
                        let a = a.lock().unwrap();
                        format!(
                            "HTTP/1.1 {} Status\r\nlocation: {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                            a.status, a.location
                        )
                    };
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        Redirector {
            port,
            answer,
            requests,
        }
    }

    fn answer(&self, status: u16, location: &str) {
        *self.answer.lock().unwrap() = Redirect {
            status,
            location: location.to_owned(),
        };
    }

    fn requests(&self) -> Vec<(String, Option<u64>)> {
        self.requests.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_never_followed_but_retried_as_a_failure() {
    // Where the redirects point: it must never hear from the server.
    let elsewhere = HttpEndpoint::start().await;
    let hook = Redirector::start().await;
    let server = TestServer::start_with(|c| {
        c.webhooks = vec![config(
            "hook",
            format!("http://127.0.0.1:{}/hook", hook.port),
            Start::Beginning,
        )];
    })
    .await;
    let client = server.client().await;
    let mut failures = 0;
    for (i, status) in [301u16, 302, 307, 308].into_iter().enumerate() {
        let (absolute, relative) = (elsewhere.url(&format!("/moved{status}")), "/here");
        // An absolute Location to another host, then a relative one.
        for (j, location) in [absolute.as_str(), relative].into_iter().enumerate() {
            hook.answer(status, location);
            let seq = log_n(&client, 1, &format!("redirect-{status}-{j}")).await[0];
            let shown = if j == 0 {
                absolute.clone()
            } else {
                format!("http://127.0.0.1:{}/here", hook.port)
            };
            let s = status_when(&client, "hook", &format!("HTTP {status} failing"), |s| {
                s.failures >= failures + 2 && s.consecutive_failures >= 2
            })
            .await;
            assert_eq!(s.delivered_seq, seq - 1, "{s:?}");
            assert_eq!(s.behind, 1, "{s:?}");
            for word in [
                &format!("HTTP {status}"),
                "redirect",
                shown.as_str(),
                "the configured url must be the final one",
            ] {
                assert!(s.last_error.contains(word), "{word:?} not in {s:?}");
            }
            // Neither followed (nothing elsewhere, no GET to itself) nor
            // counted as delivered: only POSTs of this event, retried.
            assert!(
                elsewhere.requests().is_empty(),
                "{:?}",
                elsewhere.requests()
            );
            let got = hook.requests();
            assert!(
                got.iter().all(|(m, _)| m == "POST"),
                "redirect followed: {got:?}"
            );
            let tried = got.iter().filter(|(_, s)| *s == Some(seq)).count();
            assert!(tried >= 2, "{got:?}");
            // Once it answers 200 the event is delivered.
            hook.answer(200, "");
            let s = status_when(&client, "hook", "delivered after 200", |s| {
                s.delivered_seq == seq && s.consecutive_failures == 0
            })
            .await;
            assert_eq!(s.delivered, (2 * i + j + 1) as u64, "{s:?}");
            failures = s.failures;
        }
    }
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
}
