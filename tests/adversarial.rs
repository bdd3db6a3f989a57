//! Attacks from the outside against the `auditlog-server` binary, each
//! showing that the callers who play by the rules are still served. The
//! numbers are small, and the server's limits are set as small in its
//! environment, so an attack takes tens of connections, not thousands.
//!
//! - Slow body: unary calls whose HTTP/2 HEADERS arrive but whose message
//!   never does, sent with a raw HTTP/2 client (`h2`). They take no slot of
//!   `max_in_flight` while they wait, so an ordinary Log is served while
//!   twice as many hang; and each is answered DEADLINE_EXCEEDED once
//!   `request_read_timeout_secs` has passed.
//! - Idle connections: raw TCP connections that send nothing. Those past
//!   `max_connections` are closed at once, the rest after
//!   `handshake_timeout_secs`; a client already connected is served
//!   meanwhile, and a new one afterwards.
//! - Hostile strings: control characters in the short fields are refused
//!   naming the field; escape sequences and line breaks hidden in `details`,
//!   and a spreadsheet formula as the actor, reach `auditlog errors`, `query`
//!   and a CSV export inert: no escape byte on the terminal, no forged row,
//!   no live formula. An honest caller's events show as they were logged.
//! - Answers not read: a caller whose HTTP/2 window is 0 asks for page
//!   after page of large events. Once its connection holds 16 MiB of
//!   answers it has not read, the rest are refused RESOURCE_EXHAUSTED,
//!   naming the cap, instead of waiting in the server's memory; a caller on
//!   another connection reads the same page.
//! - Many large reads at once: 160 `Query` calls for pages of about 2.5 MB
//!   at once are all answered, and the server's peak memory stays far
//!   below what building every page at once would take (each call read on
//!   its own thread before: 250 took the server to 430 MB).
//! - Many large writes at once: 100 `LogBatch` calls of 3.8 MB at once over
//!   four connections. Once the requests being read hold 64 MiB the rest
//!   are refused RESOURCE_EXHAUSTED at once ("buffering"), and the server's
//!   peak memory stays bounded (200 took it to 821 MB before).
//! - Streams reset as soon as opened (HTTP/2 "rapid reset"): tens of
//!   thousands of Log calls on one connection, each cancelled right after
//!   its headers. An ordinary caller is served all along, nothing is
//!   written for a call whose message never came, the server's memory
//!   stays bounded, and it still takes writes afterwards.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use auditlog_client::{Client, NewEvent};
use bytes::Bytes;
use common::{ServerProcess, cli, grpc_frame, raw_call, wait_until};
use futures::FutureExt as _;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

/// The server's address, from its URL.
fn addr_of(server: &ServerProcess) -> SocketAddr {
    server.url.trim_start_matches("http://").parse().unwrap()
}

/// One call that sent its headers and nothing more: the response to come,
/// and the stream kept open (dropping it would cancel the call).
struct HangingCall {
    response: h2::client::ResponseFuture,
    _body: h2::SendStream<Bytes>,
}

/// Opens a raw HTTP/2 connection and starts `calls` Log calls on it that
/// never send their message. Returns once the server has answered a PING
/// sent after them, so it has read their headers.
async fn hanging_calls(addr: SocketAddr, calls: usize) -> Vec<HangingCall> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut ping_pong = connection.ping_pong().unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut started = Vec::new();
    for _ in 0..calls {
        let mut client = client.clone().ready().await.unwrap();
        let request = raw_call(addr, "Log").body(()).unwrap();
        let (response, body) = client.send_request(request, false).unwrap();
        started.push(HangingCall {
            response,
            _body: body,
        });
    }
    ping_pong.ping(h2::Ping::opaque()).await.unwrap();
    started
}

fn event(i: usize) -> NewEvent {
    NewEvent::lead_ingested(format!("LEAD-{i}"), "webform")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_never_send_their_message_leave_the_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn_with(
        dir.path(),
        &[
            ("AUDITLOG_MAX_IN_FLIGHT", "8"),
            ("AUDITLOG_MAX_STREAMS_PER_CONNECTION", "4"),
            // Long enough that the attack holds for the whole test.
            ("AUDITLOG_REQUEST_READ_TIMEOUT_SECS", "120"),
        ],
    )
    .await;
    let addr = addr_of(&server);
    // Twice as many calls as there are slots, four per connection.
    let mut attack = Vec::new();
    for _ in 0..4 {
        attack.extend(hanging_calls(addr, 4).await);
    }
    let client = Client::connect(&server.url).await.unwrap();
    for i in 0..3 {
        client
            .log(event(i))
            .await
            .expect("an ordinary Log is served while 16 calls wait for their message");
    }
    // The attack still holds: not one of its calls has been answered.
    for call in &mut attack {
        assert!(
            (&mut call.response).now_or_never().is_none(),
            "a call without its message was answered before its read timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_never_comes_is_answered_after_the_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn_with(
        dir.path(),
        &[
            ("AUDITLOG_REQUEST_READ_TIMEOUT_SECS", "1"),
            ("AUDITLOG_HANDLER_TIMEOUT_SECS", "120"),
        ],
    )
    .await;
    let mut calls = hanging_calls(addr_of(&server), 2).await;
    for call in calls.drain(..) {
        let response = call.response.await.unwrap();
        let status = tonic::Status::from_header_map(response.headers())
            .expect("the answer is a gRPC status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(
            status.message().contains("request_read_timeout_secs"),
            "{}",
            status.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_the_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn_with(
        dir.path(),
        &[
            ("AUDITLOG_MAX_CONNECTIONS", "16"),
            ("AUDITLOG_HANDSHAKE_TIMEOUT_SECS", "3"),
        ],
    )
    .await;
    let addr = addr_of(&server);
    let client = Client::connect(&server.url).await.unwrap();
    client.log(event(0)).await.unwrap();

    // 24 connections that send nothing, each watched until the server
    // closes it; those it closes before sending anything were refused at
    // once, the others met the handshake timeout.
    const IDLE: usize = 24;
    let closed = Arc::new(AtomicUsize::new(0));
    let closed_unanswered = Arc::new(AtomicUsize::new(0));
    for _ in 0..IDLE {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let closed = Arc::clone(&closed);
        let closed_unanswered = Arc::clone(&closed_unanswered);
        tokio::spawn(async move {
            let mut received = 0;
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                received += n;
            }
            if received == 0 {
                closed_unanswered.fetch_add(1, Ordering::SeqCst);
            }
            closed.fetch_add(1, Ordering::SeqCst);
        });
    }
    client
        .log(event(1))
        .await
        .expect("a connected client is served while idle connections fill the rest");
    let closed = &closed;
    wait_until("the server to close every idle connection", || async move {
        match closed.load(Ordering::SeqCst) {
            IDLE => Ok(()),
            n => Err(format!("{n} of {IDLE} closed")),
        }
    })
    .await;
    // At most 16 open at once, one of them the client's: the rest of the 24
    // were closed as soon as they were accepted.
    assert!(
        closed_unanswered.load(Ordering::SeqCst) >= IDLE - 15,
        "only {} connections were refused at once",
        closed_unanswered.load(Ordering::SeqCst)
    );
    let fresh = Client::connect(&server.url).await.unwrap();
    fresh.log(event(2)).await.unwrap();
    client.log(event(3)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_are_refused_or_shown_inert() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path()).await;
    let client = Client::connect(&server.url).await.unwrap();

    // Control characters in the short fields: refused, naming the field.
    for (field, event) in [
        ("actor", NewEvent::new("lead_created").actor("ops\nFORGED")),
        (
            "lead_id",
            NewEvent::new("lead_created").lead("L-1\u{1b}[2J"),
        ),
        (
            "workflow",
            NewEvent::new("lead_created").workflow("sales\u{85}"),
        ),
    ] {
        let error = client.log(event).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(tonic::Code::InvalidArgument),
            "{field}: {error}"
        );
        assert!(error.to_string().contains(field), "{field}: {error}");
    }

    // What details may hold, and a formula as the actor: logged, and shown
    // inert. An honest event beside them.
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[31mred\nFORGED-ROW\u{202e}";
    client
        .log(
            NewEvent::new("error")
                .actor("=HYPERLINK(\"http://x\",\"ok\")")
                .detail("error_type", hostile)
                .detail("error_message", hostile),
        )
        .await
        .unwrap();
    client
        .log(NewEvent::lead_ingested("LEAD-HONEST", "webform"))
        .await
        .unwrap();

    for args in [&["errors"][..], &["query"][..], &["query", "--verbose"][..]] {
        let (code, out, err) = cli(&server.url, args).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\u{202e}'),
            "{args:?} printed a raw control character: {out:?}"
        );
        assert!(
            !out.lines().any(|l| l.starts_with("FORGED-ROW")),
            "{args:?} printed a forged row: {out}"
        );
    }
    let (_, out, _) = cli(&server.url, &["query"]).await;
    assert!(out.contains("LEAD-HONEST"), "{out}");

    let (code, csv, err) = cli(&server.url, &["export", "--format", "csv"]).await;
    assert_eq!(code, 0, "{err}");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let actors: Vec<String> = reader.records().map(|r| r.unwrap()[4].to_owned()).collect();
    assert!(
        actors.contains(&"'=HYPERLINK(\"http://x\",\"ok\")".to_owned()),
        "{actors:?}"
    );
}

/// A server on `dir` holding 50 events of 50 KB (a page of all of them is
/// about 2.5 MB), and a client of it.
async fn large_events(dir: &std::path::Path) -> (ServerProcess, Client) {
    let server = ServerProcess::spawn(dir).await;
    let client = Client::connect(&server.url).await.unwrap();
    let pad = "x".repeat(50_000);
    for batch in 0..2 {
        let events: Vec<NewEvent> = (0..25)
            .map(|i| event(batch * 25 + i).details(serde_json::json!({ "pad": pad })))
            .collect();
        client.log_batch(events).await.unwrap();
    }
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_a_caller_does_not_read_are_bounded_per_connection() {
    use prost::Message as _;
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = large_events(dir.path()).await;
    let message = grpc_frame(
        &auditlog_proto::v1::QueryRequest {
            limit: 50,
            ..Default::default()
        }
        .encode_to_vec(),
    );

    let addr = addr_of(&server);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (h2, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);
    let (mut waiting, mut refused) = (Vec::new(), None);
    for _ in 0..12 {
        let mut h2 = h2.clone().ready().await.unwrap();
        let request = raw_call(addr, "Query").body(()).unwrap();
        let (response, mut body) = h2.send_request(request, false).unwrap();
        body.send_data(message.clone(), true).unwrap();
        let response = response.await.unwrap();
        match tonic::Status::from_header_map(response.headers()) {
            Some(status) => refused = Some(status),
            // The answer waits for a window that never opens.
            None => waiting.push(response),
        }
    }
    let refused = refused.expect("every answer was let wait unread");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("this connection has")
            && refused.message().contains("at most 16 MiB"),
        "{}",
        refused.message()
    );
    // 16 MiB holds six of these pages, and a seventh goes only alone.
    assert!(
        (1..=6).contains(&waiting.len()),
        "{} answers left waiting",
        waiting.len()
    );
    let page = client
        .query(auditlog_client::Query::new().limit(50))
        .await
        .unwrap();
    assert_eq!(page.events.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_reads_at_once_are_answered_within_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = large_events(dir.path()).await;
    let before = server.memory_kib("VmHWM");
    let reads: Vec<_> = (0..160)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .query(auditlog_client::Query::new().limit(50))
                    .await
                    .map(|page| page.events.len())
            })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().unwrap(), 50);
    }
    let peak = server.memory_kib("VmHWM");
    println!("peak RSS {before} KiB before the reads, {peak} KiB after");
    // 160 pages of 2.5 MB built at once would take 400 MB and more.
    assert!(
        peak < before + 150 * 1024,
        "the reads took the server from {before} to {peak} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_writes_at_once_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // Sending 380 MB on a loaded machine may take longer than the default
    // 10 s a message may take to arrive; that is not what is tested here.
    let server =
        ServerProcess::spawn_with(dir.path(), &[("AUDITLOG_REQUEST_READ_TIMEOUT_SECS", "60")])
            .await;
    let pad = "x".repeat(3_500);
    let batch: Vec<NewEvent> = (0..1000)
        .map(|i| event(i).details(serde_json::json!({ "pad": pad })))
        .collect();
    let before = server.memory_kib("VmHWM");
    let mut writes = Vec::new();
    for _ in 0..4 {
        let client = Client::connect(&server.url).await.unwrap();
        for _ in 0..25 {
            let (client, batch) = (client.clone(), batch.clone());
            writes.push(tokio::spawn(async move { client.log_batch(batch).await }));
        }
    }
    let (mut written, mut refused) = (0, 0);
    for write in writes {
        match write.await.unwrap() {
            Ok(receipts) => {
                assert_eq!(receipts.len(), 1000);
                written += 1;
            }
            Err(auditlog_client::Error::Rpc(status)) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("buffering"), "{status:?}");
                refused += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    let peak = server.memory_kib("VmHWM");
    println!(
        "{written} written, {refused} refused; peak RSS {before} KiB before, {peak} KiB after"
    );
    assert!(
        written > 0 && refused > 0,
        "{written} written, {refused} refused"
    );
    // The 380 MB sent, buffered and decoded at once, would take about twice that.
    assert!(
        peak < before + 500 * 1024,
        "the writes took the server from {before} to {peak} KiB"
    );
}

/// Opens `streams` Log calls over raw HTTP/2 connections, each reset
/// (RST_STREAM, CANCEL) right after its headers, as fast as a connection
/// takes them: the "rapid reset" flood. When the server closes a
/// connection, the flood goes on over a new one. Returns how many
/// connections the server closed.
async fn reset_flood(addr: SocketAddr, streams: usize) -> usize {
    let mut sent = 0;
    let mut closed = 0;
    while sent < streams {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        while sent < streams {
            let Ok(mut client) = client.clone().ready().await else {
                break;
            };
            let request = raw_call(addr, "Log").body(()).unwrap();
            let Ok((_response, mut body)) = client.send_request(request, false) else {
                break;
            };
            body.send_reset(h2::Reason::CANCEL);
            sent += 1;
            if sent % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        closed += usize::from(sent < streams);
    }
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_reset_as_soon_as_opened_write_nothing_and_leave_the_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let data = dir.path().join("data");
    let no_args: [&str; 0] = [];
    let server = ServerProcess::spawn_logging(&data, no_args, &[], log).await;
    let addr = addr_of(&server);
    let client = Client::connect(&server.url).await.unwrap();
    client.log(event(0)).await.unwrap();
    let before = server.memory_kib("VmHWM");
    let lines_before = server.stderr().lines().count();

    let floods: Vec<_> = (0..2)
        .map(|_| tokio::spawn(reset_flood(addr, 20_000)))
        .collect();
    // An ordinary caller, all through the flood.
    let mut written = 1;
    while written < 4 || floods.iter().any(|f| !f.is_finished()) {
        client
            .log(event(written))
            .await
            .expect("an ordinary Log is served during a flood of reset streams");
        written += 1;
    }
    for flood in floods {
        let closed = flood.await.unwrap();
        println!("40,000 streams opened and reset; the server closed {closed} connections");
    }
    let peak = server.memory_kib("VmHWM");
    println!("peak RSS {before} KiB before the flood, {peak} KiB after");
    assert!(
        peak < before + 100 * 1024,
        "the flood took the server from {before} to {peak} KiB"
    );
    // Not one event from a call whose message never came; and writes go on.
    let last = client.log(event(written)).await.unwrap();
    assert_eq!(
        last.seq,
        written as u64 + 1,
        "seqs were taken by calls that sent no message"
    );
    let stats = client.stats(None).await.unwrap();
    assert_eq!(stats.total_events, written as u64 + 1);
    // The flood does not write the server's log a line per connection.
    let stderr = server.stderr();
    let lines: Vec<&str> = stderr.lines().skip(lines_before).collect();
    assert!(lines.len() < 5, "the flood was logged: {lines:#?}");
}
