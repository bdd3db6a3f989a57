//! `tail`: following new events, replaying from a seq, filtering, and
//! ending on Ctrl-C, with the server, or when its reader goes away; with
//! `--reconnect`, going on through a restart and stopping at another log.

use super::*;
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command};
use std::time::Instant;

/// A long-running `auditlog` (tail): its stdout and stderr arrive line by
/// line; dropping it kills the process.
struct Running {
    child: Child,
    stdout: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Running {
    fn spawn(server: &TestServer, args: &[&str]) -> Running {
        let mut child = piped_command(cli_bin())
            .arg("--server")
            .arg(&server.url)
            .args(args)
            .spawn()
            .unwrap();
        Running {
            stdout: lines_of(child.stdout.take().unwrap()),
            stderr: lines_of(child.stderr.take().unwrap()),
            child,
        }
    }

    /// The next stdout line; fails the test when none comes in time.
    async fn next_line(&mut self) -> String {
        next_of(&mut self.stdout, "stdout").await
    }

    /// The next stderr line; fails the test when none comes in time.
    async fn next_err_line(&mut self) -> String {
        next_of(&mut self.stderr, "stderr").await
    }

    /// Waits for the process to exit; fails the test when it does not.
    async fn exit_code(&mut self) -> i32 {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                started.elapsed() < LINE_DEADLINE,
                "auditlog did not exit within {LINE_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The next stdout line if one comes within `wait`.
    async fn try_line(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, self.stdout.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn next_of(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, what: &str) -> String {
    match tokio::time::timeout(LINE_DEADLINE, rx.recv()).await {
        Ok(Some(line)) => line,
        Ok(None) => panic!("auditlog closed its {what} before the expected line"),
        Err(_) => panic!("auditlog printed no line on {what} within {LINE_DEADLINE:?}"),
    }
}

fn lines_of(
    pipe: impl std::io::Read + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_new_events_as_json() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for i in 1..=3 {
        client
            .log(NewEvent::new("crm_update").lead(format!("OLD-{i}")))
            .await
            .unwrap();
    }
    let mut tail = Running::spawn(&server, &["--json", "tail"]);

    // tail starts at the next new event, so log probes until it shows one.
    let mut first = None;
    for _ in 0..100 {
        client
            .log(NewEvent::new("workflow_started").workflow("probe"))
            .await
            .unwrap();
        if let Some(line) = tail.try_line(Duration::from_millis(200)).await {
            first = Some(line);
            break;
        }
    }
    let first: Value = serde_json::from_str(&first.expect("tail printed nothing")).unwrap();
    let first_seq = first["seq"].as_u64().unwrap();
    assert!(first_seq >= 4, "tail replayed history: {first}");
    assert_eq!(first["event_type"], "workflow_started");

    let mut receipts = Vec::new();
    for i in 1..=3 {
        let e = NewEvent::email_sent(format!("LIVE-{i}"), "ana@example.com", "Hello, \"you\"\n")
            .workflow("sales");
        receipts.push(client.log(e).await.unwrap());
    }
    receipts.push(
        client
            .log_batch((4..=5).map(|i| NewEvent::new("crm_update").lead(format!("LIVE-{i}"))))
            .await
            .unwrap()[1]
            .clone(),
    );
    let last = receipts.last().unwrap().seq;
    let mut got = vec![first_seq];
    let mut events = BTreeMap::new();
    while *got.last().unwrap() < last {
        let line = tail.next_line().await;
        let e: Value =
            serde_json::from_str(&line).unwrap_or_else(|err| panic!("not JSON ({err}): {line:?}"));
        got.push(e["seq"].as_u64().unwrap());
        events.insert(e["seq"].as_u64().unwrap(), e);
    }
    let want: Vec<u64> = (first_seq..=last).collect();
    assert_eq!(got, want, "every event once, in seq order");
    for r in &receipts[..3] {
        let e = &events[&r.seq];
        assert_eq!(e["id"], r.id.as_str());
        assert_eq!(e["signature"], r.signature.as_str());
        assert_eq!(e["event_type"], "email_sent");
        assert_eq!(e["details"]["subject"], "Hello, \"you\"\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_from_seq_replays_history_then_follows() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut receipts = client
        .log_batch((1..=3).map(|i| NewEvent::new("lead_ingested").lead(format!("L{i}"))))
        .await
        .unwrap();
    let mut tail = Running::spawn(&server, &["--json", "tail", "--from-seq", "1"]);
    for r in &receipts {
        let e: Value = serde_json::from_str(&tail.next_line().await).unwrap();
        assert_eq!(e["seq"], r.seq, "{e}");
        assert_eq!(e["signature"], r.signature.as_str(), "{e}");
    }
    receipts = vec![
        client
            .log(NewEvent::new("crm_update").lead("L4"))
            .await
            .unwrap(),
        client
            .log(NewEvent::new("crm_update").lead("L5"))
            .await
            .unwrap(),
    ];
    for r in &receipts {
        let e: Value = serde_json::from_str(&tail.next_line().await).unwrap();
        assert_eq!(e["seq"], r.seq, "{e}");
        assert_eq!(e["id"], r.id.as_str(), "{e}");
    }
}

/// `--stored` prints each record byte for byte as the log holds it, history
/// and live alike, filtered like the other shapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_stored_prints_the_records_as_the_log_holds_them() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let odd = "tab\there, quote \", newline\n, é, \u{1}, 😀";
    client
        .log_batch((1..=3).map(|i| {
            NewEvent::new("lead_ingested")
                .lead(format!("S{i}"))
                .details(json!({ "note": odd, "n": i }))
        }))
        .await
        .unwrap();
    client
        .log(NewEvent::new("crm_update").lead("S1"))
        .await
        .unwrap();
    let mut tail = Running::spawn(
        &server,
        &[
            "tail",
            "--stored",
            "--from-seq",
            "1",
            "--type",
            "lead_ingested",
        ],
    );
    let mut printed = Vec::new();
    for _ in 0..3 {
        printed.push(tail.next_line().await);
    }
    // Live: one that matches after one that does not.
    client
        .log(NewEvent::new("crm_update").lead("S2"))
        .await
        .unwrap();
    let live = client
        .log(
            NewEvent::new("lead_ingested")
                .lead("S4")
                .details(json!({ "note": odd })),
        )
        .await
        .unwrap();
    printed.push(tail.next_line().await);

    let log = read_lines(&server.data_dir.join("audit.log"));
    let expected: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("\"event_type\":\"lead_ingested\""))
        .collect();
    assert_eq!(expected.len(), 4);
    for (got, want) in printed.iter().zip(&expected) {
        assert_eq!(got, *want, "not the stored line");
    }
    assert!(printed[3].contains(&live.signature), "{}", printed[3]);
    assert!(tail.try_line(Duration::from_millis(300)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_text_shows_only_matching_events() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .log(NewEvent::new("email_sent").lead("OLD"))
        .await
        .unwrap();
    let mut tail = Running::spawn(&server, &["tail", "--type", "email_sent"]);
    // Text mode says where it starts once it is following.
    let note = tail.next_err_line().await;
    assert!(note.contains("from seq 2"), "{note:?}");

    client
        .log(NewEvent::new("crm_update").lead("T-1"))
        .await
        .unwrap();
    let sent = client
        .log(
            NewEvent::new("email_sent")
                .lead("T-2")
                .workflow("sales")
                .actor("mailer"),
        )
        .await
        .unwrap();
    client
        .log(NewEvent::new("error").lead("T-3"))
        .await
        .unwrap();
    let sent2 = client
        .log(NewEvent::new("email_sent").lead("T-4"))
        .await
        .unwrap();

    let line = tail.next_line().await;
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[1], sent.seq.to_string(), "{line:?}");
    assert_eq!(words[2], "email_sent", "{line:?}");
    assert!(
        line.contains("lead=T-2") && line.contains("workflow=sales"),
        "{line:?}"
    );
    assert!(line.contains("actor=mailer"), "{line:?}");
    let line = tail.next_line().await;
    assert!(line.contains(&format!(" {} ", sent2.seq)), "{line:?}");
    assert!(line.contains("lead=T-4"), "{line:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_ends_with_ctrl_c_and_with_the_server() {
    let mut server = TestServer::start().await;
    let client = server.client().await;

    // Ctrl-C: a clean stop, exit 0.
    let mut tail = Running::spawn(&server, &["tail"]);
    let note = tail.next_err_line().await;
    assert!(note.contains("Ctrl-C"), "{note:?}");
    client
        .log(NewEvent::new("crm_update").lead("C-1"))
        .await
        .unwrap();
    assert!(tail.next_line().await.contains("lead=C-1"));
    // Let it get back to waiting for the next event.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = Command::new("kill")
        .arg("-INT")
        .arg(tail.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let code = tail.exit_code().await;
    assert_eq!(code, 0, "Ctrl-C ends tail cleanly");

    // The server going away ends the stream: non-zero, one line saying so.
    let mut tail = Running::spawn(&server, &["tail"]);
    tail.next_err_line().await;
    tokio::time::timeout(LINE_DEADLINE, server.stop())
        .await
        .expect("the server did not stop with a tail following it");
    let code = tail.exit_code().await;
    assert_ne!(code, 0, "a lost server is an error for scripts");
    let line = tail.next_err_line().await;
    assert!(line.starts_with("auditlog: "), "{line:?}");
    assert!(!line.contains("panicked"), "{line:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_goes_away_is_not_an_error() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let padding = "x".repeat(400);
    for start in (0..2000u64).step_by(1000) {
        let events = (start..start + 1000).map(|i| {
            NewEvent::error("Timeout", &format!("call {i} timed out"))
                .lead(format!("PIPE-{}", i % 3))
                .traceback(&padding)
        });
        client.log_batch(events).await.unwrap();
    }
    // Each of these writes far more than a pipe holds (64 KiB).
    let commands: &[&[&str]] = &[
        &["export", "--format", "jsonl"],
        &["export", "--format", "csv"],
        &["export", "--format", "json"],
        &["query", "--limit", "1000", "--verbose"],
        &["history", "PIPE-1", "--verbose"],
        &["errors", "--limit", "1000", "--verbose"],
        &["--json", "query", "--limit", "1000"],
        &["--json", "history", "PIPE-1"],
        &["--json", "errors", "--limit", "1000"],
    ];
    let mut failures = Vec::new();
    for args in commands {
        let out = auditlog_into_closed_pipe(&server, args).await;
        if out.code != 0 || !out.stderr.is_empty() || has_panic_text(&out) {
            failures.push(format!(
                "`auditlog {args:?} | head -c 100` should exit 0 quietly: code {}, stderr {:?}",
                out.code, out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reconnect_goes_on_through_a_restart_and_stops_at_another_log() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for i in 1..=2 {
        client
            .log(NewEvent::new("crm_update").lead(format!("R-{i}")))
            .await
            .unwrap();
    }
    let mut tail = Running::spawn(
        &server,
        &["--json", "tail", "--reconnect", "--from-seq", "1"],
    );
    let seq_of = |line: String| -> u64 {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["seq"].as_u64().unwrap()
    };
    assert_eq!(seq_of(tail.next_line().await), 1);
    assert_eq!(seq_of(tail.next_line().await), 2);

    // The same log back on the same port: told on stderr, and the events
    // go on from seq 3, none shown twice.
    let mut server = server.restart_on_same_port().await;
    let client = server.client().await;
    client
        .log(NewEvent::new("crm_update").lead("R-3"))
        .await
        .unwrap();
    assert_eq!(seq_of(tail.next_line().await), 3);
    let lost = tail.next_err_line().await;
    assert!(lost.starts_with("auditlog: lost the stream ("), "{lost:?}");
    let resumed = tail.next_err_line().await;
    assert!(
        resumed.starts_with("auditlog: resumed on http://") && resumed.ends_with("after seq 2"),
        "{resumed:?}"
    );

    // Another log on that port: tail stops with one line saying so.
    let addr = server.addr;
    server.stop().await;
    let other_dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let config = auditlog_server::config::Config {
        data_dir: other_dir.path().to_owned(),
        ..Default::default()
    };
    let other = TestServer::start_on(listener, config).await;
    let other_client = other.client().await;
    for i in 1..=4 {
        other_client
            .log(NewEvent::new("crm_update").lead(format!("Z-{i}")))
            .await
            .unwrap();
    }
    assert_ne!(tail.exit_code().await, 0);
    let mut last = tail.next_err_line().await;
    while last.starts_with("auditlog: lost the stream") {
        last = tail.next_err_line().await;
    }
    assert!(
        last.starts_with("auditlog: the log at http://")
            && last.contains("not the one being followed"),
        "{last:?}"
    );
    assert!(
        tail.try_line(Duration::from_millis(200)).await.is_none(),
        "no Z event shown"
    );
}
