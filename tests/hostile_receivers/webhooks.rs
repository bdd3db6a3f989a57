//! Webhook endpoints gone wrong at once, under load: silent, answering a
//! byte a second, a body without end, headers without end, a redirect to
//! itself, `429` with a `Retry-After` of years, chunked garbage. Ingest
//! goes on (a figure printed beside a server without webhooks), memory
//! stays bounded, each endpoint's status says what happened, and the
//! endpoints that did answer 2xx got every event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog_client::{Client, NewEvent};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{ServerProcess, wait_until_within};

/// A receiver that reads a request's head (and what comes with it), then
/// runs `answer` on the socket; one task per connection.
async fn hostile<F, Fut>(answer: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                answer(socket).await;
            });
        }
    });
    port
}

/// 1,000 events from 4 callers; the time taken.
async fn load(url: &str) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let client = Client::connect(&url).await.unwrap();
                for i in 0..250 {
                    client
                        .log(NewEvent::lead_ingested(format!("LEAD-{t}-{i}"), "web"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_endpoints_under_load_hold_up_neither_ingest_nor_memory() {
    let silent = hostile(|socket| async move {
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(socket);
    })
    .await;
    let byte_a_second = hostile(|mut socket| async move {
        for b in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" {
            if socket.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
    let endless_body = hostile(|mut socket| async move {
        let chunk = format!("ffff\r\n{}\r\n", "x".repeat(0xffff));
        if socket
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        while socket.write_all(chunk.as_bytes()).await.is_ok() {}
    })
    .await;
    let endless_head = hostile(|mut socket| async move {
        let line = format!("X-Pad: {}\r\n", "a".repeat(8000));
        if socket.write_all(b"HTTP/1.1 200 OK\r\n").await.is_err() {
            return;
        }
        while socket.write_all(line.as_bytes()).await.is_ok() {}
    })
    .await;
    let years = hostile(|mut socket| async move {
        let _ = socket
            .write_all(
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 999999999\r\n\
                  Content-Length: 24\r\nConnection: close\r\n\r\n\x1b[2J\x1b]0;pwned\x07 go away\n",
            )
            .await;
    })
    .await;
    let garbage = hostile(|mut socket| async move {
        let _ = socket
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\x1b[31m\r\n")
            .await;
    })
    .await;
    let looping = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let loop_port = looping.local_addr().unwrap().port();
    drop(looping);
    let redirect = hostile(move |mut socket| async move {
        let answer = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{loop_port}/hook\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let _ = socket.write_all(answer.as_bytes()).await;
    })
    .await;
    let endpoints = [
        ("silent", silent),
        ("byte-a-second", byte_a_second),
        ("endless-body", endless_body),
        ("endless-head", endless_head),
        ("retry-after-years", years),
        ("chunked-garbage", garbage),
        ("redirect", redirect),
    ];

    let baseline_dir = tempfile::tempdir().unwrap();
    let mut baseline = ServerProcess::spawn(&baseline_dir.path().join("data")).await;
    let plain = load(&baseline.url).await;
    baseline.kill9();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    let mut toml = String::new();
    for (name, port) in endpoints {
        toml.push_str(&format!(
            "[[webhooks]]\nname = {name:?}\nurl = \"http://127.0.0.1:{port}/hook\"\n\
             start = \"beginning\"\ntimeout_secs = 3\nmax_backoff_secs = 1\n"
        ));
    }
    std::fs::write(&config, toml).unwrap();
    let server = ServerProcess::spawn_logging(
        &dir.path().join("data"),
        ["--config".as_ref(), config.as_os_str()],
        &[("RUST_LOG", "warn")],
        dir.path().join("server.stderr"),
    )
    .await;
    let before = server.memory_kib("VmRSS");
    let hostile = load(&server.url).await;
    let peak = std::sync::atomic::AtomicU64::new(server.memory_kib("VmRSS"));
    println!(
        "1,000 events from 4 callers: {plain:?} without webhooks, {hostile:?} with {} hostile \
         endpoints",
        endpoints.len()
    );
    let client = Client::connect(&server.url).await.unwrap();
    let statuses = wait_until_within(
        Duration::from_secs(30),
        "the endpoints answering 200 to have every event",
        || async {
            peak.fetch_max(
                server.memory_kib("VmRSS"),
                std::sync::atomic::Ordering::SeqCst,
            );
            let s = client.webhook_status().await.unwrap();
            let done = ["endless-body"]
                .iter()
                .all(|n| s.iter().any(|w| w.name == *n && w.delivered_seq == 1000));
            if done { Ok(s) } else { Err(format!("{s:#?}")) }
        },
    )
    .await;
    for _ in 0..10 {
        peak.fetch_max(
            server.memory_kib("VmRSS"),
            std::sync::atomic::Ordering::SeqCst,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peak = peak.into_inner();
    println!("RSS: {before} KiB before the load, peak {peak} KiB");
    for s in &statuses {
        println!(
            "{}: delivered_seq {} failures {} last_error {:?}",
            s.name, s.delivered_seq, s.failures, s.last_error
        );
        assert!(
            !s.last_error.chars().any(char::is_control),
            "{}: {:?}",
            s.name,
            s.last_error
        );
    }
    assert!(
        peak - before < 200 << 10,
        "RSS grew from {before} KiB to {peak} KiB"
    );
    let stderr = std::fs::read_to_string(dir.path().join("server.stderr")).unwrap();
    assert!(
        !stderr.contains("pwned") && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
}
