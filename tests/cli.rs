//! The `auditlog` command-line tool as a user runs it: the built binary
//! against a real server on 127.0.0.1, checked through its exit code, its
//! stdout (text and `--json`, parsed back) and its stderr.
//!
//! Covered: every subcommand's happy path (`log`, `query`, `history`,
//! `stats`, `errors`, `integrity`, `export`, `tail`, `health`, `bench`,
//! `track`);
//! filters, ordering and pagination; exports of 10,000 events checked line
//! by line against the log on disk; tampering found by `integrity`; `tail`
//! ending on Ctrl-C and when the server stops; exit codes; one-line errors
//! without panics; a reader that closes the pipe early (`| head`); the
//! documented `--limit` range and paging past 1,000 events; `stats` and
//! `errors` filters and timelines; `AUDITLOG_SERVER` and a `--server`
//! without a scheme; times without a zone; and `--help` with an example
//! for every subcommand the top-level help lists.
//!
//! Every run of the binary has a generous deadline, so a hang fails the test
//! instead of blocking it.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use auditlog_client::{Client, NewEvent, pb};
use common::{
    Finished as Output, TestServer, cli_bin, edit_line, piped_command, read_all, read_lines,
    run_to_end, tamper, wait_or_kill,
};
use serde_json::{Value, json};

/// How long one run of the CLI may take before the test fails as a hang.
const RUN_DEADLINE: Duration = Duration::from_secs(90);
/// How long `tail` may take to print an expected line.
const LINE_DEADLINE: Duration = Duration::from_secs(20);
/// A URL where nothing listens.
const DEAD_URL: &str = "http://127.0.0.1:1";

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

impl Output {
    /// Asserts success and parses stdout as one JSON value.
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "{self:?}");
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts success and returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:?}");
        &self.stdout
    }

    /// Asserts a failure reported as exactly one line on stderr, with no
    /// panic or backtrace text, and returns that line.
    fn one_line_error(&self) -> &str {
        assert_ne!(self.code, 0, "expected a failure: {self:?}");
        assert_no_panic(self);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {self:?}");
        lines[0]
    }
}

/// Panic or backtrace text, which a user should never see.
const PANIC_TEXT: [&str; 3] = ["panicked", "RUST_BACKTRACE", "stack backtrace"];

fn has_panic_text(out: &Output) -> bool {
    PANIC_TEXT
        .iter()
        .any(|t| out.stderr.contains(t) || out.stdout.contains(t))
}

fn assert_no_panic(out: &Output) {
    assert!(!has_panic_text(out), "panic text in the output: {out:?}");
}

/// Runs `auditlog --server <server> ARGS`.
async fn auditlog(server: &TestServer, args: &[&str]) -> Output {
    auditlog_at(&server.url, args).await
}

/// Runs `auditlog --server <url> ARGS`.
async fn auditlog_at(url: &str, args: &[&str]) -> Output {
    let mut all = vec!["--server".to_owned(), url.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run_cli(all, Vec::new()).await
}

/// Runs the binary with exactly `args` and the extra `env`, in a blocking
/// task so the in-process server keeps serving.
async fn run_cli(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    run_to_end(cli_bin().to_path_buf(), args, env, RUN_DEADLINE).await
}

/// Runs `auditlog --server <server> ARGS | head -c 100`: reads the first
/// bytes of stdout, then closes the pipe, as `head` or `grep -q` do.
async fn auditlog_into_closed_pipe(server: &TestServer, args: &[&str]) -> Output {
    let bin = cli_bin();
    let mut all = vec!["--server".to_owned(), server.url.clone()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    tokio::task::spawn_blocking(move || {
        let mut child = piped_command(bin).args(&all).spawn().unwrap();
        let stderr = read_all(child.stderr.take().unwrap());
        let mut head = [0u8; 100];
        std::io::Read::read_exact(&mut child.stdout.take().unwrap(), &mut head).unwrap();
        // The pipe is closed here, with most of the output unread.
        let status = wait_or_kill(
            &mut child,
            RUN_DEADLINE,
            format!("auditlog {all:?}, its reader gone,"),
        );
        Output {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&head).into_owned(),
            stderr: stderr.join().unwrap(),
        }
    })
    .await
    .unwrap()
}

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

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `2026-02-04T20:30:45.123456Z`: RFC 3339, UTC, microseconds.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 27
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && s.ends_with('Z')
        && s[..4].bytes().all(|c| c.is_ascii_digit())
}

/// The `seq`s of a JSON array of events.
fn seqs(events: &Value) -> Vec<u64> {
    events
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {events}"))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

/// The seqs of `query --json` output.
fn query_seqs(out: &Output) -> Vec<u64> {
    seqs(&out.json()["events"])
}

/// The word after `key` in `text` (`seq 3  id …` → `3` for `"seq"`).
fn word_after<'a>(text: &'a str, key: &str) -> &'a str {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next().unwrap_or("");
        }
    }
    panic!("{key:?} is not in {text:?}")
}

/// The data rows of a text table (without its header), split on
/// whitespace.
fn table_rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// The records of the log file, parsed.
fn disk_records(server: &TestServer) -> Vec<Value> {
    read_lines(&server.log_path())
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Checks that the exported `got` (shaped like the CLI's JSON events) is
/// the on-disk `record`, field by field.
fn assert_same_event(record: &Value, got: &Value, context: &str) {
    for field in [
        "seq",
        "id",
        "timestamp",
        "event_type",
        "actor",
        "caller",
        "lead_id",
        "workflow",
        "details",
        "idempotency_key",
        "key_id",
        "prev",
        "signature",
    ] {
        let want = record.get(field).unwrap_or(&Value::Null);
        assert_eq!(
            got.get(field).unwrap_or(&Value::Null),
            want,
            "{context}: field {field} differs for seq {}",
            record["seq"]
        );
    }
}

/// A row of the CSV export as the JSON shape of an event (empty optional
/// fields become null, `details` is parsed).
fn csv_row_json(headers: &csv::StringRecord, row: &csv::StringRecord) -> Value {
    let mut map = serde_json::Map::new();
    for (name, value) in headers.iter().zip(row.iter()) {
        let v = match name {
            "seq" => json!(value.parse::<u64>().unwrap()),
            "details" => serde_json::from_str(value)
                .unwrap_or_else(|e| panic!("details column is not JSON ({e}): {value:?}")),
            "caller" | "lead_id" | "workflow" | "idempotency_key" if value.is_empty() => {
                Value::Null
            }
            _ => json!(value),
        };
        map.insert(name.to_owned(), v);
    }
    Value::Object(map)
}

/// One sample event, logged through the client, with what the CLI should
/// show for it.
#[derive(Debug, Clone)]
struct Sample {
    event_type: &'static str,
    lead: &'static str,
    workflow: &'static str,
    actor: &'static str,
}

/// A small varied log: single `Log` calls, so every event has its own
/// timestamp. Returns the receipts, seqs 1..=n in order.
async fn log_samples(client: &Client, samples: &[Sample]) -> Vec<pb::Receipt> {
    let mut receipts = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let mut e = NewEvent::new(s.event_type)
            .actor(s.actor)
            .details(json!({ "n": i + 1, "note": format!("sample {}", i + 1) }));
        if !s.lead.is_empty() {
            e = e.lead(s.lead);
        }
        if !s.workflow.is_empty() {
            e = e.workflow(s.workflow);
        }
        receipts.push(client.log(e).await.unwrap());
    }
    receipts
}

fn sample(
    event_type: &'static str,
    lead: &'static str,
    workflow: &'static str,
    actor: &'static str,
) -> Sample {
    Sample {
        event_type,
        lead,
        workflow,
        actor,
    }
}

/// The query test's log.
fn query_samples() -> Vec<Sample> {
    vec![
        sample("lead_ingested", "L1", "sales", "web"),
        sample("email_sent", "L1", "sales", "mailer"),
        sample("crm_update", "L2", "onboarding", "crm"),
        sample("error", "L2", "sales", "system"),
        sample("email_sent", "L3", "onboarding", "mailer"),
        sample("lead_ingested", "L3", "", "web"),
        sample("error", "L1", "onboarding", "system"),
        sample("crm_update", "L2", "sales", "crm"),
    ]
}

/// Seqs (1-based) of the samples matching `pred`, newest first.
fn expect_newest_first(samples: &[Sample], pred: impl Fn(&Sample) -> bool) -> Vec<u64> {
    let mut v: Vec<u64> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| pred(s))
        .map(|(i, _)| i as u64 + 1)
        .collect();
    v.reverse();
    v
}

// ---------------------------------------------------------------------------
// log
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_prints_the_receipt_as_text_and_as_json() {
    let server = TestServer::start().await;
    let details = r#"{"source":"webform","score":87,"tags":["a","b"],"ok":true}"#;

    // Text: seq, id, time and signature.
    let text = auditlog(
        &server,
        &[
            "log",
            "lead_ingested",
            "--lead",
            "LEAD-001",
            "--workflow",
            "sales",
            "--actor",
            "webhook",
            "--details",
            details,
            "--idempotency-key",
            "key-text",
        ],
    )
    .await;
    let stdout = text.ok();
    assert_eq!(word_after(stdout, "seq"), "1", "{text:?}");
    let id1 = word_after(stdout, "id").to_owned();
    assert_eq!(id1.len(), 36, "{text:?}");
    let sig1 = word_after(stdout, "signature").to_owned();
    assert!(is_hex64(&sig1), "{text:?}");
    assert!(is_timestamp(word_after(stdout, "time")), "{text:?}");
    assert!(!stdout.contains("duplicate"), "{text:?}");

    // JSON: a receipt object.
    let args = [
        "--json",
        "log",
        "email_sent",
        "--lead",
        "LEAD-001",
        "--details",
        r#"{"to":"ana@example.com"}"#,
        "--idempotency-key",
        "key-json",
    ];
    let receipt = auditlog(&server, &args).await.json();
    assert_eq!(receipt["seq"], 2, "{receipt}");
    assert_eq!(receipt["duplicate"], false, "{receipt}");
    let sig2 = receipt["signature"].as_str().unwrap().to_owned();
    assert!(is_hex64(&sig2), "{receipt}");
    assert_eq!(receipt["id"].as_str().unwrap().len(), 36, "{receipt}");
    assert!(
        is_timestamp(receipt["timestamp"].as_str().unwrap()),
        "{receipt}"
    );

    // The same idempotency key again: the original receipt, marked duplicate.
    let again = auditlog(&server, &args).await.json();
    assert_eq!(again["duplicate"], true, "{again}");
    for field in ["seq", "id", "signature", "timestamp"] {
        assert_eq!(again[field], receipt[field], "{field}: {again}");
    }
    let text_again = auditlog(
        &server,
        &[
            "log",
            "lead_ingested",
            "--lead",
            "LEAD-001",
            "--idempotency-key",
            "key-text",
        ],
    )
    .await;
    assert_eq!(word_after(text_again.ok(), "seq"), "1", "{text_again:?}");
    assert!(text_again.stdout.contains("duplicate"), "{text_again:?}");
    assert_eq!(word_after(&text_again.stdout, "signature"), sig1);

    // What was stored is what was given; the receipts match the log.
    let records = disk_records(&server);
    assert_eq!(records.len(), 2, "duplicates wrote nothing");
    let r1 = &records[0];
    assert_eq!(r1["event_type"], "lead_ingested");
    assert_eq!(r1["lead_id"], "LEAD-001");
    assert_eq!(r1["workflow"], "sales");
    assert_eq!(r1["actor"], "webhook");
    assert_eq!(r1["idempotency_key"], "key-text");
    assert_eq!(
        r1["details"],
        serde_json::from_str::<Value>(details).unwrap()
    );
    assert_eq!(r1["id"], id1.as_str());
    assert_eq!(r1["signature"], sig1.as_str());
    let r2 = &records[1];
    assert_eq!(r2["actor"], "system", "the default actor");
    assert_eq!(r2["workflow"], Value::Null);
    assert_eq!(r2["signature"], sig2.as_str());
    assert_eq!(r2["timestamp"], receipt["timestamp"]);
    assert_eq!(r2["id"], receipt["id"]);
}

// ---------------------------------------------------------------------------
// query
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_filters_orders_and_limits() {
    let server = TestServer::start().await;
    let samples = query_samples();
    log_samples(&server.client().await, &samples).await;
    let all = expect_newest_first(&samples, |_| true);

    // Default: every event, newest first, each as the log has it.
    let out = auditlog(&server, &["--json", "query"]).await;
    let page = out.json();
    assert_eq!(seqs(&page["events"]), all, "{out:?}");
    assert_eq!(page["next_page_token"], "", "{out:?}");
    let records = disk_records(&server);
    let events = page["events"].as_array().unwrap();
    for (e, record) in events.iter().rev().zip(&records) {
        assert_same_event(record, e, "query --json");
    }
    // Timestamps, oldest first, for the time filters below.
    let ts: Vec<String> = records
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap().to_owned())
        .collect();

    let cases: Vec<(Vec<&str>, Vec<u64>)> = vec![
        (
            vec!["--type", "email_sent"],
            expect_newest_first(&samples, |s| s.event_type == "email_sent"),
        ),
        (
            vec!["--type", "email_sent", "--type", "error"],
            expect_newest_first(&samples, |s| {
                s.event_type == "email_sent" || s.event_type == "error"
            }),
        ),
        (
            vec!["--lead", "L2"],
            expect_newest_first(&samples, |s| s.lead == "L2"),
        ),
        (
            vec!["--workflow", "onboarding"],
            expect_newest_first(&samples, |s| s.workflow == "onboarding"),
        ),
        (
            vec!["--actor", "mailer"],
            expect_newest_first(&samples, |s| s.actor == "mailer"),
        ),
        (
            vec!["--type", "error", "--workflow", "sales"],
            expect_newest_first(&samples, |s| {
                s.event_type == "error" && s.workflow == "sales"
            }),
        ),
        (vec!["--limit", "3"], all[..3].to_vec()),
        (vec!["--oldest-first", "--limit", "3"], vec![1, 2, 3]),
        (
            vec!["--oldest-first", "--lead", "L1"],
            expect_newest_first(&samples, |s| s.lead == "L1")
                .into_iter()
                .rev()
                .collect(),
        ),
        // Dates (midnight UTC) and RFC 3339.
        (
            vec!["--since", "2000-01-01", "--until", "2999-12-31"],
            all.clone(),
        ),
        (vec!["--since", "2999-01-01"], vec![]),
        (vec!["--until", "2000-01-01"], vec![]),
        (vec!["--since", "2000-01-01T00:00:00Z"], all.clone()),
        (vec!["--last", "1h"], all.clone()),
        (
            vec!["--last", "1h", "--type", "error"],
            expect_newest_first(&samples, |s| s.event_type == "error"),
        ),
    ];
    for (args, want) in cases {
        let mut full = vec!["--json", "query"];
        full.extend(&args);
        let out = auditlog(&server, &full).await;
        assert_eq!(query_seqs(&out), want, "query {args:?}: {out:?}");
    }

    // --since is inclusive and --until exclusive, at the events' own times.
    let (since, until) = (&ts[2], &ts[5]);
    let want: Vec<u64> = (1..=ts.len() as u64)
        .rev()
        .filter(|&s| {
            let t = &ts[s as usize - 1];
            t >= since && t < until
        })
        .collect();
    assert!(want.contains(&3) && !want.contains(&6), "{ts:?}");
    let out = auditlog(
        &server,
        &["--json", "query", "--since", since, "--until", until],
    )
    .await;
    assert_eq!(query_seqs(&out), want, "{out:?}");

    // A date is midnight UTC: --since DATE keeps that day on, --until DATE
    // the days before it (computed from the events' own times, so the test
    // holds across midnight).
    for date in [&ts[0][..10], &ts[ts.len() - 1][..10]] {
        let on_or_after: Vec<u64> = (1..=ts.len() as u64)
            .rev()
            .filter(|&s| ts[s as usize - 1].as_str() >= date)
            .collect();
        let before: Vec<u64> = (1..=ts.len() as u64)
            .rev()
            .filter(|&s| ts[s as usize - 1].as_str() < date)
            .collect();
        let out = auditlog(&server, &["--json", "query", "--since", date]).await;
        assert_eq!(query_seqs(&out), on_or_after, "--since {date}: {out:?}");
        let out = auditlog(&server, &["--json", "query", "--until", date]).await;
        assert_eq!(query_seqs(&out), before, "--until {date}: {out:?}");
    }

    // Text: a table, newest first; --verbose adds the details column.
    let out = auditlog(&server, &["query", "--limit", "3"]).await;
    let header = out.ok().lines().next().unwrap();
    for col in ["TIME", "SEQ", "TYPE", "LEAD", "WORKFLOW", "ACTOR"] {
        assert!(header.contains(col), "{out:?}");
    }
    assert!(!header.contains("DETAILS"), "{out:?}");
    let rows = table_rows(&out.stdout);
    let seq_col: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    assert_eq!(seq_col, ["8", "7", "6"], "{out:?}");
    assert_eq!(
        rows[0][2..],
        ["crm_update", "L2", "sales", "crm"],
        "{out:?}"
    );
    assert!(!out.stdout.contains("sample 8"), "{out:?}");

    let out = auditlog(
        &server,
        &["query", "--oldest-first", "--verbose", "--lead", "L1"],
    )
    .await;
    assert!(
        out.ok().lines().next().unwrap().contains("DETAILS"),
        "{out:?}"
    );
    let rows = table_rows(&out.stdout);
    assert_eq!(rows.len(), 3, "{out:?}");
    let first = out.stdout.lines().nth(1).unwrap();
    assert!(first.contains(r#""note":"sample 1""#), "{out:?}");
    assert!(first.contains(r#""n":1"#), "{out:?}");

    // No match: success, nothing on stdout but a note.
    let out = auditlog(&server, &["query", "--lead", "NOBODY"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(table_rows(&out.stdout).is_empty(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pages_through_next_page_token() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let events = (1..=7).map(|i| NewEvent::new("crm_update").lead(format!("P-{i}")));
    client.log_batch(events).await.unwrap();

    // JSON: follow next_page_token to the end.
    let mut got = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let mut args = vec!["--json", "query", "--limit", "3"];
        if !token.is_empty() {
            args.extend(["--page-token", token.as_str()]);
        }
        let page = auditlog(&server, &args).await.json();
        let page_seqs = seqs(&page["events"]);
        assert!(page_seqs.len() <= 3, "{page}");
        got.extend(page_seqs);
        token = page["next_page_token"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert!(token.is_empty(), "pagination did not end");
    assert_eq!(got, [7, 6, 5, 4, 3, 2, 1]);

    // Oldest first, pages too.
    let first = auditlog(
        &server,
        &["--json", "query", "--limit", "4", "--oldest-first"],
    )
    .await
    .json();
    assert_eq!(seqs(&first["events"]), [1, 2, 3, 4]);
    let token = first["next_page_token"].as_str().unwrap();
    assert!(!token.is_empty(), "{first}");
    let second = auditlog(
        &server,
        &[
            "--json",
            "query",
            "--limit",
            "4",
            "--oldest-first",
            "--page-token",
            token,
        ],
    )
    .await
    .json();
    assert_eq!(seqs(&second["events"]), [5, 6, 7]);

    // Text: the next page's token is printed on stderr, and works.
    let out = auditlog(&server, &["query", "--limit", "5"]).await;
    let rows = table_rows(out.ok());
    assert_eq!(
        rows.iter().map(|r| r[1]).collect::<Vec<_>>(),
        ["7", "6", "5", "4", "3"]
    );
    let token = word_after(&out.stderr, "--page-token").to_owned();
    let out = auditlog(&server, &["query", "--limit", "5", "--page-token", &token]).await;
    let rows = table_rows(out.ok());
    assert_eq!(rows.iter().map(|r| r[1]).collect::<Vec<_>>(), ["2", "1"]);
    assert!(!out.stderr.contains("--page-token"), "{out:?}");
}

/// `--limit` past the server's page of 1,000: the CLI pages by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pages_by_itself_up_to_the_limit() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for part in 0..5u64 {
        let events = (0..500).map(|i| NewEvent::new("crm_update").detail("i", part * 500 + i));
        client.log_batch(events).await.unwrap();
    }

    let page = auditlog(&server, &["--json", "query", "--limit", "2200"])
        .await
        .json();
    let got = seqs(&page["events"]);
    assert_eq!(got, (301..=2500).rev().collect::<Vec<u64>>());
    // The token continues right after the last event shown.
    let token = page["next_page_token"].as_str().unwrap();
    assert!(!token.is_empty(), "{}", page["next_page_token"]);
    let rest = auditlog(
        &server,
        &["--json", "query", "--limit", "10000", "--page-token", token],
    )
    .await;
    assert_eq!(query_seqs(&rest), (1..=300).rev().collect::<Vec<u64>>());

    // Text: one table of every event, and no next page to offer.
    let out = auditlog(&server, &["query", "--limit", "10000", "--oldest-first"]).await;
    let rows = table_rows(out.ok());
    assert_eq!(rows.len(), 2500, "{}", out.stderr);
    assert_eq!(rows[0][1], "1");
    assert_eq!(rows[2499][1], "2500");
    assert!(!out.stderr.contains("--page-token"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// history, stats, errors
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_one_lead_oldest_first() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut want = Vec::new();
    for i in 0..12u64 {
        let lead = if i % 3 == 0 { "LEAD-A" } else { "LEAD-B" };
        let r = client
            .log(
                NewEvent::new(["lead_ingested", "email_sent", "crm_update"][i as usize % 3])
                    .lead(lead)
                    .workflow("sales")
                    .actor("svc")
                    .detail("i", i),
            )
            .await
            .unwrap();
        if lead == "LEAD-A" {
            want.push(r.seq);
        }
    }
    // Another lead whose id starts the same must not match.
    client
        .log(
            NewEvent::new("crm_update")
                .lead("LEAD-AB")
                .workflow("sales"),
        )
        .await
        .unwrap();

    let history = auditlog(&server, &["--json", "history", "LEAD-A"])
        .await
        .json();
    assert_eq!(seqs(&history["events"]), want, "{history}");
    assert_eq!(history["next_page_token"], "", "{history}");
    for e in history["events"].as_array().unwrap() {
        assert_eq!(e["lead_id"], "LEAD-A", "{e}");
    }

    let out = auditlog(&server, &["history", "LEAD-A"]).await;
    let rows = table_rows(out.ok());
    let got: Vec<u64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
    assert_eq!(got, want, "{out:?}");
    for row in &rows {
        assert_eq!(row[3], "LEAD-A", "{out:?}");
    }

    let out = auditlog(&server, &["history", "LEAD-A", "--verbose"]).await;
    assert!(out.ok().contains(r#"{"i":0}"#), "{out:?}");

    // A long timeline spans several query pages; history shows all of it.
    for part in 0..2 {
        let events = (0..750).map(|i| {
            NewEvent::new("crm_update")
                .lead("BIG")
                .detail("i", part * 750 + i)
        });
        client.log_batch(events).await.unwrap();
    }
    let big = auditlog(&server, &["--json", "history", "BIG"])
        .await
        .json();
    let big = &big["events"];
    let big_seqs = seqs(big);
    assert_eq!(big_seqs.len(), 1500);
    assert!(big_seqs.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert_eq!(big[0]["details"]["i"], 0);
    assert_eq!(big[1499]["details"]["i"], 1499);

    // A lead with no events: success, a note on stderr and no empty table,
    // and no events in JSON.
    let out = auditlog(&server, &["history", "NOBODY"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("NOBODY"), "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
    let empty = auditlog(&server, &["--json", "history", "NOBODY"])
        .await
        .json();
    assert_eq!(empty, json!({ "events": [], "next_page_token": "" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_match_what_was_logged() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let samples = query_samples();
    let receipts = log_samples(&client, &samples).await;
    let records = disk_records(&server);

    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_workflow: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &samples {
        *by_type.entry(s.event_type).or_default() += 1;
        if !s.workflow.is_empty() {
            *by_workflow.entry(s.workflow).or_default() += 1;
        }
    }
    let leads: BTreeSet<&str> = samples.iter().map(|s| s.lead).collect();
    let errors = samples.iter().filter(|s| s.event_type == "error").count() as u64;

    let stats = auditlog(&server, &["--json", "stats"]).await.json();
    assert_eq!(stats["total_events"], samples.len() as u64, "{stats}");
    assert_eq!(stats["head_seq"], receipts.last().unwrap().seq, "{stats}");
    assert_eq!(stats["leads_processed"], leads.len() as u64, "{stats}");
    assert_eq!(stats["error_count"], errors, "{stats}");
    assert_eq!(stats["by_type"], json!(by_type), "{stats}");
    assert_eq!(stats["by_workflow"], json!(by_workflow), "{stats}");
    assert_eq!(stats["first_event"], records[0]["timestamp"], "{stats}");
    assert_eq!(
        stats["last_event"],
        records.last().unwrap()["timestamp"],
        "{stats}"
    );

    // One workflow.
    let sales: Vec<(usize, &Sample)> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| s.workflow == "sales")
        .collect();
    let stats = auditlog(&server, &["--json", "stats", "--workflow", "sales"])
        .await
        .json();
    assert_eq!(stats["total_events"], sales.len() as u64, "{stats}");
    let mut sales_types: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, s) in &sales {
        *sales_types.entry(s.event_type).or_default() += 1;
    }
    assert_eq!(stats["by_type"], json!(sales_types), "{stats}");
    assert_eq!(
        stats["by_workflow"],
        json!({ "sales": sales.len() }),
        "{stats}"
    );
    let sales_leads: BTreeSet<&str> = sales.iter().map(|(_, s)| s.lead).collect();
    assert_eq!(
        stats["leads_processed"],
        sales_leads.len() as u64,
        "{stats}"
    );
    let sales_errors = sales
        .iter()
        .filter(|(_, s)| s.event_type == "error")
        .count();
    assert_eq!(stats["error_count"], sales_errors as u64, "{stats}");
    let (first, last) = (sales[0].0, sales.last().unwrap().0);
    assert_eq!(stats["first_event"], records[first]["timestamp"], "{stats}");
    assert_eq!(stats["last_event"], records[last]["timestamp"], "{stats}");

    // Text: the same numbers.
    let out = auditlog(&server, &["stats"]).await;
    let text = out.ok();
    let value = |label: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} line: {text}"))
            .trim()
            .to_owned()
    };
    assert_eq!(value("events:"), samples.len().to_string(), "{text}");
    assert_eq!(value("leads processed:"), leads.len().to_string(), "{text}");
    assert_eq!(value("errors:"), errors.to_string(), "{text}");
    assert_eq!(value("head seq:"), samples.len().to_string(), "{text}");
    assert_eq!(
        value("first event:"),
        records[0]["timestamp"].as_str().unwrap(),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for (name, n) in by_type.iter().chain(&by_workflow) {
        let row = format!("{name} {n}");
        assert!(
            rows.iter().any(|r| r.join(" ") == row),
            "no row {row:?}: {text}"
        );
    }

    let out = auditlog(&server, &["stats", "--workflow", "onboarding"]).await;
    let text = out.ok();
    let onboarding = samples
        .iter()
        .filter(|s| s.workflow == "onboarding")
        .count();
    assert!(text.contains("onboarding"), "{text}");
    assert_eq!(
        text.lines()
            .find_map(|l| l.strip_prefix("events:"))
            .unwrap()
            .trim(),
        onboarding.to_string(),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_show_type_message_and_traceback() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .log(
            NewEvent::error("TimeoutError", "CRM did not answer in 30 s")
                .lead("LEAD-7")
                .workflow("sales")
                .traceback("Traceback (most recent call last):\n  File \"crm.py\", line 42, in push\nTimeoutError"),
        )
        .await
        .unwrap();
    client
        .log(NewEvent::lead_ingested("LEAD-8", "webform"))
        .await
        .unwrap();
    // An error logged from the CLI, the way a shell script would.
    let out = auditlog(
        &server,
        &[
            "log",
            "error",
            "--lead",
            "LEAD-9",
            "--details",
            r#"{"error_type":"ValueError","error_message":"bad phone number","traceback":"File \"parse.py\", line 7\nValueError: +00"}"#,
        ],
    )
    .await;
    out.ok();

    let out = auditlog(&server, &["errors"]).await;
    let text = out.ok();
    assert!(
        text.lines().next().unwrap().contains("ERROR TYPE"),
        "{out:?}"
    );
    let rows = table_rows(text);
    assert_eq!(rows.len(), 2, "only error events: {out:?}");
    assert_eq!(rows[0][1], "3", "newest first: {out:?}");
    assert_eq!(rows[1][1], "1", "{out:?}");
    for want in [
        "ValueError",
        "bad phone number",
        "TimeoutError",
        "CRM did not answer in 30 s",
        "LEAD-7",
    ] {
        assert!(text.contains(want), "{want:?} missing: {out:?}");
    }
    assert!(
        !text.contains("crm.py"),
        "traceback only with --verbose: {out:?}"
    );
    assert!(!text.contains("LEAD-8"), "{out:?}");

    let out = auditlog(&server, &["errors", "--verbose"]).await;
    let text = out.ok();
    for want in [
        "TimeoutError",
        "CRM did not answer in 30 s",
        "Traceback (most recent call last):",
        "  File \"crm.py\", line 42, in push",
        "File \"parse.py\", line 7",
        "ValueError: +00",
    ] {
        assert!(text.contains(want), "{want:?} missing: {out:?}");
    }

    // The same JSON shape as query's: events, then the token to go on.
    let out = auditlog(&server, &["--json", "errors", "--limit", "1"]).await;
    let errors = out.json();
    assert_eq!(seqs(&errors["events"]), [3], "{out:?}");
    assert_eq!(errors["events"][0]["details"]["error_type"], "ValueError");
    assert_eq!(errors["events"][0]["event_type"], "error");
    let token = errors["next_page_token"].as_str().unwrap();
    let rest = auditlog(
        &server,
        &["--json", "query", "--type", "error", "--page-token", token],
    )
    .await
    .json();
    assert_eq!(seqs(&rest["events"]), [1], "{rest}");
}

/// A receipt's time as a user types it: no fraction, no zone (read as UTC),
/// rounded up to the next whole second.
fn zoneless_after(receipt: &pb::Receipt) -> String {
    let t = receipt.timestamp.as_ref().unwrap();
    let secs = t.seconds + i64::from(t.nanos > 0);
    let text = time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    text.strip_suffix('Z').unwrap().to_owned()
}

/// Waits until the server's clock has passed the second after `receipt`.
async fn next_second(receipt: &pb::Receipt) {
    let t = receipt.timestamp.as_ref().unwrap();
    let next = std::time::UNIX_EPOCH + Duration::from_secs(t.seconds as u64 + 1);
    if let Ok(wait) = next.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait + Duration::from_millis(20)).await;
    }
}

/// `auditlog --json CMD ARGS`, parsed.
async fn json_of(server: &TestServer, cmd: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json", cmd];
    all.extend(args);
    auditlog(server, &all).await.json()
}

/// `stats` and `errors` take the time range, workflow and type filters,
/// `stats` a timeline; `stats` shows timings apart from the business
/// events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_errors_take_filters_and_a_timeline() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ingest =
        |lead: &str, workflow: &str| NewEvent::lead_ingested(lead, "webform").workflow(workflow);
    // Before: 3 leads, 1 error and 2 timings.
    client
        .log_batch([
            ingest("A1", "sales"),
            ingest("A2", "sales"),
            ingest("A3", "sales"),
            NewEvent::error("TimeoutError", "CRM slow").workflow("sales"),
        ])
        .await
        .unwrap();
    client
        .track_performance("crm.push", Duration::from_millis(120), Some("sales"))
        .await
        .unwrap();
    let last_before = client
        .track_performance("crm.push", Duration::from_millis(80), None)
        .await
        .unwrap();
    next_second(&last_before).await;
    let cut = zoneless_after(&last_before);
    // After: 3 leads, 2 errors and 1 timing.
    client
        .log_batch([
            ingest("B1", "sales"),
            ingest("B2", "sales"),
            ingest("B3", "support"),
            NewEvent::error("ValueError", "bad phone").workflow("support"),
            NewEvent::error("TimeoutError", "CRM slow").workflow("sales"),
        ])
        .await
        .unwrap();
    client
        .track_performance("crm.push", Duration::from_millis(90), Some("sales"))
        .await
        .unwrap();

    let s = json_of(&server, "stats", &["--type", "lead_ingested"]).await;
    assert_eq!(s["total_events"], 6, "{s}");
    assert_eq!(s["by_type"], json!({ "lead_ingested": 6 }), "{s}");
    let s = json_of(
        &server,
        "stats",
        &["--type", "lead_ingested", "--type", "error"],
    )
    .await;
    assert_eq!(s["total_events"], 9, "{s}");
    assert_eq!(s["error_count"], 3, "{s}");
    // A time without a zone is UTC.
    let s = json_of(&server, "stats", &["--since", &cut]).await;
    assert_eq!(s["total_events"], 6, "{s}");
    let s = json_of(&server, "stats", &["--until", &cut]).await;
    assert_eq!(s["total_events"], 6, "{s}");
    let s = json_of(&server, "stats", &["--last", "1h", "--workflow", "support"]).await;
    assert_eq!(s["total_events"], 2, "{s}");
    let s = json_of(
        &server,
        "stats",
        &["--last", "1h", "--workflow", "sales", "--type", "error"],
    )
    .await;
    assert_eq!(s["total_events"], 2, "{s}");

    // Daily lead volume: one command.
    let s = json_of(
        &server,
        "stats",
        &["--type", "lead_ingested", "--by", "day"],
    )
    .await;
    let timeline = s["timeline"].as_array().unwrap();
    assert!(!timeline.is_empty(), "{s}");
    let total: u64 = timeline.iter().map(|b| b["events"].as_u64().unwrap()).sum();
    assert_eq!(total, 6, "{s}");
    for b in timeline {
        assert!(
            b["start"].as_str().unwrap().ends_with("T00:00:00.000000Z"),
            "{s}"
        );
    }
    let out = auditlog(&server, &["stats", "--last", "2h", "--by", "hour"]).await;
    let text = out.ok();
    let section = text
        .split("per hour (UTC):")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    let rows = table_rows(section.trim_start());
    assert!((2..=3).contains(&rows.len()), "{text}");
    // Timings are not among the hourly business events.
    let hourly: u64 = rows.iter().map(|r| r[1].parse::<u64>().unwrap()).sum();
    assert_eq!(hourly, 9, "{text}");
    let out = auditlog(&server, &["stats", "--by", "week"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("week"), "{out:?}");

    // Timings apart from the business figures.
    let out = auditlog(&server, &["stats"]).await;
    let text = out.ok();
    let value = |label: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} line: {text}"))
            .trim()
            .to_owned()
    };
    assert_eq!(value("events:"), "9", "{text}");
    assert!(
        value("performance:").starts_with("3 timing events"),
        "{text}"
    );
    let by_type = text
        .split("by type:")
        .nth(1)
        .unwrap()
        .split("by workflow:")
        .next()
        .unwrap();
    assert!(!by_type.contains("performance"), "{text}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // sales: 5 leads and 2 errors, without its 2 timings.
    assert!(rows.iter().any(|r| r.join(" ") == "sales 7"), "{text}");
    let s = json_of(&server, "stats", &[]).await;
    assert_eq!(s["total_events"], 12, "{s}");
    assert_eq!(s["by_type"]["performance"], 3, "{s}");

    // errors: by error type, workflow and time.
    let types = |v: &Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["details"]["error_type"].as_str().unwrap().to_owned())
            .collect()
    };
    let e = json_of(&server, "errors", &["--type", "TimeoutError"]).await;
    assert_eq!(types(&e), ["TimeoutError", "TimeoutError"], "{e}");
    let e = json_of(&server, "errors", &["--workflow", "support"]).await;
    assert_eq!(types(&e), ["ValueError"], "{e}");
    let e = json_of(&server, "errors", &["--since", &cut]).await;
    assert_eq!(types(&e), ["TimeoutError", "ValueError"], "{e}");
    let e = json_of(&server, "errors", &["--until", &cut, "--last", "1h"]).await;
    assert_eq!(types(&e), ["TimeoutError"], "{e}");
    let e = json_of(
        &server,
        "errors",
        &["--type", "TimeoutError", "--limit", "1"],
    )
    .await;
    assert_eq!(seqs(&e["events"]).len(), 1, "{e}");
    let out = auditlog(&server, &["errors", "--type", "KeyError"]).await;
    assert_eq!(out.ok(), "", "{out:?}");
}

// ---------------------------------------------------------------------------
// integrity
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity_is_ok_on_a_clean_log_and_locates_tampering() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut receipts = Vec::new();
    for i in 1..=5 {
        let e = NewEvent::lead_ingested(format!("LEAD-00{i}"), "webform").workflow("sales");
        receipts.push(client.log(e).await.unwrap());
    }
    let head = receipts.last().unwrap();

    let out = auditlog(&server, &["integrity"]).await;
    let text = out.ok();
    assert!(text.starts_with("OK"), "{out:?}");
    assert!(text.contains("5 events"), "{out:?}");
    assert!(text.contains(&head.signature), "{out:?}");

    let report = auditlog(&server, &["--json", "integrity"]).await.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events_checked"], 5, "{report}");
    assert_eq!(report["head_seq"], 5, "{report}");
    assert_eq!(
        report["head_signature"],
        head.signature.as_str(),
        "{report}"
    );
    assert_eq!(report["problems"], json!([]), "{report}");

    // A range: the records from 2 to 3 only.
    let report = auditlog(
        &server,
        &["--json", "integrity", "--from-seq", "2", "--to-seq", "3"],
    )
    .await
    .json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events_checked"], 2, "{report}");
    assert_eq!(report["head_seq"], 3, "{report}");
    assert_eq!(
        report["head_signature"],
        receipts[2].signature.as_str(),
        "{report}"
    );

    // A kept receipt proves its event is still there...
    let good = format!("3:{}", receipts[2].signature);
    let out = auditlog(&server, &["integrity", "--checkpoint", &good]).await;
    assert!(out.ok().starts_with("OK"), "{out:?}");
    // ...and a wrong one fails, naming the checkpoint's seq.
    let bad = format!("3:{}", receipts[3].signature);
    let out = auditlog(&server, &["integrity", "--checkpoint", &bad]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert_no_panic(&out);
    assert!(out.stdout.contains("CHECKPOINT_MISMATCH"), "{out:?}");
    assert_eq!(
        word_after(&out.stdout, "CHECKPOINT_MISMATCH"),
        "seq",
        "{out:?}"
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("CHECKPOINT_MISMATCH"))
        .unwrap();
    assert_eq!(word_after(line, "seq"), "3", "{out:?}");
    let report = auditlog(&server, &["--json", "integrity", "--checkpoint", &bad]).await;
    assert_ne!(report.code, 0, "{report:?}");
    let value: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(value["ok"], false, "{report:?}");
    assert_eq!(
        value["problems"][0]["kind"], "CHECKPOINT_MISMATCH",
        "{report:?}"
    );
    assert_eq!(value["problems"][0]["seq"], 3, "{report:?}");
    // A malformed checkpoint is a usage error naming the flag.
    let out = auditlog(&server, &["integrity", "--checkpoint", "three"]).await;
    assert!(out.one_line_error().contains("--checkpoint"), "{out:?}");

    // Someone changes a lead id in record 2; the line stays valid JSON.
    tamper(&server.log_path(), |lines| {
        lines[1] = edit_line(&lines[1], "\"LEAD-002\"", "\"LEAD-00X\"");
    });
    serde_json::from_str::<Value>(&read_lines(&server.log_path())[1]).unwrap();

    let out = auditlog(&server, &["integrity"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert_no_panic(&out);
    assert!(out.stdout.contains("FAILED"), "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("BAD_SIGNATURE"))
        .unwrap_or_else(|| panic!("no BAD_SIGNATURE line: {out:?}"));
    assert_eq!(word_after(line, "seq"), "2", "{out:?}");
    assert_eq!(word_after(line, "line"), "2", "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");

    let out = auditlog(&server, &["--json", "integrity"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out:?}"));
    assert_eq!(report["ok"], false, "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "BAD_SIGNATURE" && p["seq"] == 2 && p["line"] == 2),
        "{report}"
    );
    for p in problems {
        assert!(!p["message"].as_str().unwrap().is_empty(), "{report}");
    }
}

// ---------------------------------------------------------------------------
// export
// ---------------------------------------------------------------------------

const EXPORT_N: u64 = 10_000;

/// Event `i` of the export log: varied types, leads and workflows, some
/// without lead, workflow or actor, and details full of commas, quotes,
/// newlines and non-ASCII text.
fn export_event(i: u64) -> NewEvent {
    let types = [
        "lead_ingested",
        "crm_update",
        "email_sent",
        "error",
        "workflow_started",
        "custom_type_7",
    ];
    let mut e = NewEvent::new(types[(i % types.len() as u64) as usize]).details(json!({
        "i": i,
        "note": format!("a, \"quoted\" value\nline two, #{i}; 'single'"),
        "csv": "x,y,\"z\"\r\n",
        "nested": { "list": [1, 2.5, "a,b", null], "flag": i.is_multiple_of(2) },
        "unicode": "héllo ✓ 日本",
    }));
    if !i.is_multiple_of(7) {
        e = e.lead(format!("LEAD-{:04}", i % 250));
    }
    if !i.is_multiple_of(5) {
        e = e.workflow(["sales", "onboarding", "renewals"][(i % 3) as usize]);
    }
    if !i.is_multiple_of(4) {
        e = e.actor(format!("svc-{}", i % 4));
    }
    if i.is_multiple_of(100) {
        e = e.idempotency_key(format!("export-{i}"));
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_every_event_as_the_log_has_it() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for start in (0..EXPORT_N).step_by(1000) {
        let receipts = client
            .log_batch((start..start + 1000).map(export_event))
            .await
            .unwrap();
        assert_eq!(receipts.len(), 1000);
    }
    let records = disk_records(&server);
    assert_eq!(records.len() as u64, EXPORT_N);

    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("audit.csv");
    let json_path = dir.path().join("audit.json");
    let csv_arg = csv_path.to_str().unwrap();
    let json_arg = json_path.to_str().unwrap();
    let csv_args = ["export", "--format", "csv", "--output", csv_arg];
    let json_args = ["export", "--format", "json", "--output", json_arg];
    let lead_args = ["export", "--format", "jsonl", "--lead", "LEAD-0042"];
    let none_args = ["export", "--format", "json", "--lead", "NOBODY"];
    // Five exports at once, as several operators might run them.
    let (csv_out, json_out, jsonl_out, lead_out, none_out) = tokio::join!(
        auditlog(&server, &csv_args),
        auditlog(&server, &json_args),
        auditlog(&server, &["export", "--format", "jsonl"]),
        auditlog(&server, &lead_args),
        auditlog(&server, &none_args),
    );

    // Files: a summary line at most on stderr, no progress bar garbage in a
    // pipe, nothing on stdout, no .partial left over.
    for (out, path) in [(&csv_out, &csv_path), (&json_out, &json_path)] {
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert!(lines.len() <= 1, "{out:?}");
        if let Some(line) = lines.first() {
            assert!(line.contains(&EXPORT_N.to_string()), "{out:?}");
            assert!(line.contains(path.to_str().unwrap()), "{out:?}");
        }
        assert!(
            !out.stderr.contains('\r') && !out.stderr.contains('\u{1b}'),
            "{out:?}"
        );
    }
    for out in [&jsonl_out, &lead_out, &none_out] {
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stderr.trim().is_empty()
                || (out.stderr.lines().count() == 1 && out.stderr.starts_with("exported")),
            "only a summary line, if anything, on stderr: {out:?}"
        );
        assert!(
            !out.stderr.contains('\r') && !out.stderr.contains('\u{1b}'),
            "{out:?}"
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["audit.csv", "audit.json"], "no .partial left");

    // CSV: a header, then one row per event in seq order.
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "seq",
            "id",
            "timestamp",
            "event_type",
            "actor",
            "caller",
            "lead_id",
            "workflow",
            "details",
            "idempotency_key",
            "key_id",
            "prev",
            "signature"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len() as u64, EXPORT_N, "CSV rows");
    for (record, row) in records.iter().zip(&rows) {
        assert_same_event(record, &csv_row_json(&headers, row), "CSV");
    }

    // JSON: one array.
    let text = std::fs::read_to_string(&json_path).unwrap();
    let array: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(array.len() as u64, EXPORT_N, "JSON events");
    for (record, event) in records.iter().zip(&array) {
        assert_same_event(record, event, "JSON");
    }

    // JSON Lines on stdout: one object per line.
    let lines: Vec<&str> = jsonl_out.stdout.lines().collect();
    assert_eq!(lines.len() as u64, EXPORT_N, "JSONL lines");
    for (record, line) in records.iter().zip(&lines) {
        assert_same_event(record, &serde_json::from_str(line).unwrap(), "JSONL");
    }

    // A filter exports exactly that lead's events.
    let want: Vec<&Value> = records
        .iter()
        .filter(|r| r["lead_id"] == "LEAD-0042")
        .collect();
    assert!(want.len() > 10);
    let lines: Vec<&str> = lead_out.stdout.lines().collect();
    assert_eq!(lines.len(), want.len(), "--lead export");
    for (record, line) in want.iter().zip(&lines) {
        assert_same_event(record, &serde_json::from_str(line).unwrap(), "JSONL --lead");
    }

    // Nothing matching: still valid JSON.
    let empty: Value = serde_json::from_str(&none_out.stdout).unwrap();
    assert_eq!(empty, json!([]));
}

/// An export that fails leaves nothing behind: not the file, and not its
/// `.partial` twin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_leaves_no_partial_file() {
    let server = TestServer::start().await;
    server
        .client()
        .await
        .log(NewEvent::new("lead_created").lead("LEAD-1"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let as_dir = format!("{}/", dir.path().display());
    for (cmd, output) in [
        (vec!["export", "--format", "json"], as_dir.as_str()),
        (vec!["subject", "export", "LEAD-1"], as_dir.as_str()),
        (
            vec!["export", "--format", "csv"],
            dir.path().to_str().unwrap(),
        ),
    ] {
        let mut args = cmd.clone();
        args.extend(["--output", output]);
        let out = auditlog(&server, &args).await;
        let line = out.one_line_error();
        assert!(
            line.contains("is a directory") && line.contains("name a file"),
            "{args:?}: {line}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_applies_type_workflow_and_from_seq_filters() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log_batch((0..300).map(export_event)).await.unwrap();
    let records = disk_records(&server);

    let out = auditlog(
        &server,
        &[
            "export",
            "--format",
            "csv",
            "--type",
            "error",
            "--workflow",
            "sales",
        ],
    )
    .await;
    let mut reader = csv::Reader::from_reader(out.ok().as_bytes());
    let headers = reader.headers().unwrap().clone();
    let got: Vec<Value> = reader
        .records()
        .map(|r| csv_row_json(&headers, &r.unwrap()))
        .collect();
    let want: Vec<&Value> = records
        .iter()
        .filter(|r| r["event_type"] == "error" && r["workflow"] == "sales")
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "{out:?}");
    for (record, row) in want.iter().zip(&got) {
        assert_same_event(record, row, "CSV --type --workflow");
    }

    let out = auditlog(
        &server,
        &["export", "--format", "jsonl", "--from-seq", "251"],
    )
    .await;
    let got: Vec<Value> = out
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 50, "{out:?}");
    for (record, event) in records[250..].iter().zip(&got) {
        assert_same_event(record, event, "JSONL --from-seq");
    }

    // An empty CSV export is just the header.
    let out = auditlog(&server, &["export", "--format", "csv", "--lead", "NOBODY"]).await;
    assert_eq!(out.ok().lines().count(), 1, "{out:?}");
    assert!(out.stdout.starts_with("seq,id,timestamp,"), "{out:?}");
}

// ---------------------------------------------------------------------------
// tail
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// health
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_uses_grpc_health_probe_exit_codes() {
    let server = TestServer::start().await;

    let out = auditlog(&server, &["health"]).await;
    assert!(out.ok().contains("SERVING"), "{out:?}");

    let out = auditlog(
        &server,
        &["health", "--service", "auditlog.v1.AuditService"],
    )
    .await;
    assert!(out.ok().contains("SERVING"), "{out:?}");

    let value = auditlog(
        &server,
        &["--json", "health", "--service", "auditlog.v1.AuditService"],
    )
    .await
    .json();
    assert_eq!(value["status"], "SERVING", "{value}");
    assert_eq!(value["service"], "auditlog.v1.AuditService", "{value}");
    let value = auditlog(&server, &["--json", "health"]).await.json();
    assert_eq!(value["status"], "SERVING", "{value}");

    // An unknown service: the RPC fails (NOT_FOUND), exit 3.
    let out = auditlog(&server, &["health", "--service", "no.such.Service"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.one_line_error().contains("NotFound") || out.stderr.contains("NOT_FOUND"),
        "{out:?}"
    );

    // Nothing listening: exit 2, naming the URL.
    let out = auditlog_at(DEAD_URL, &["health", "--connect-timeout", "2s"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.one_line_error().contains("127.0.0.1:1"), "{out:?}");

    // A URL that is not one: bad arguments, exit 1.
    let out = auditlog_at("not a url", &["health"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_no_panic(&out);
}

// ---------------------------------------------------------------------------
// bench
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_rates_and_ordered_percentiles() {
    let server = TestServer::start().await;
    let client = server.client().await;

    let out = auditlog(
        &server,
        &[
            "bench",
            "--concurrency",
            "4",
            "--duration",
            "1s",
            "--warmup",
            "0s",
        ],
    )
    .await;
    let text = out.ok();
    let events_line = text
        .lines()
        .find(|l| l.starts_with("events:"))
        .unwrap_or_else(|| panic!("no events line: {out:?}"));
    let events: u64 = word_after(events_line, "events:").parse().unwrap();
    assert!(events > 0, "{out:?}");
    assert!(text.contains("latency ms: p50"), "{out:?}");
    assert_eq!(word_after(text, "errors:"), "0", "{out:?}");
    // With no warm-up, every event written is an event counted.
    let total = client.stats(None).await.unwrap().total_events;
    assert_eq!(total, events, "{out:?}");

    let out = auditlog(
        &server,
        &[
            "--json",
            "bench",
            "--concurrency",
            "4",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--batch",
            "10",
        ],
    )
    .await;
    let report = out.json();
    assert_eq!(report["concurrency"], 4, "{report}");
    assert_eq!(report["batch"], 10, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let calls = report["calls"].as_u64().unwrap();
    let events = report["events"].as_u64().unwrap();
    assert!(calls > 0, "{report}");
    assert_eq!(events, calls * 10, "{report}");
    assert!(report["events_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    let latency = &report["latency_ms"];
    let p = |k: &str| {
        latency[k]
            .as_f64()
            .unwrap_or_else(|| panic!("no latency_ms.{k}: {report}"))
    };
    assert!(p("p50") > 0.0, "{report}");
    assert!(p("p50") <= p("p95"), "{report}");
    assert!(p("p95") <= p("p99"), "{report}");
    assert!(p("p99") <= p("max"), "{report}");
    let after = client.stats(None).await.unwrap().total_events;
    assert_eq!(after - total, events, "{report}");
    // What bench wrote is a valid log like any other.
    assert!(client.verify().await.unwrap().ok);
}

// ---------------------------------------------------------------------------
// errors, the server URL, help
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_one_line_naming_the_url() {
    cli_bin();
    let commands: &[&[&str]] = &[
        &["stats"],
        &["query"],
        &["log", "lead_ingested", "--lead", "L1"],
        &["history", "L1"],
        &["errors"],
        &["integrity"],
        &["export", "--format", "csv"],
        &["tail"],
        &["bench", "--duration", "1s", "--warmup", "0s"],
        &["--json", "stats"],
    ];
    let runs = commands.iter().map(|args| auditlog_at(DEAD_URL, args));
    for (args, out) in commands.iter().zip(futures::future::join_all(runs).await) {
        let line = out.one_line_error();
        assert!(line.contains("127.0.0.1:1"), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_line_naming_what_is_wrong() {
    let server = TestServer::start().await;
    let cases: &[(&[&str], &str)] = &[
        (&["log", "Not-Snake"], "event_type"),
        (
            &["log", "lead_ingested", "--details", "{not json"],
            "--details",
        ),
        (
            &["log", "lead_ingested", "--details", "[1, 2]"],
            "--details",
        ),
        (&["query", "--since", "yesterday"], "--since"),
        (&["query", "--until", "tomorrow"], "--until"),
        (&["query", "--last", "forever"], "--last"),
        (
            &["export", "--format", "jsonl", "--since", "yesterday"],
            "--since",
        ),
        (&["tail", "--since", "yesterday"], "--since"),
        (&["bench", "--batch", "0", "--duration", "1s"], "--batch"),
        (&["integrity", "--checkpoint", "3"], "--checkpoint"),
    ];
    let runs = cases.iter().map(|(args, _)| auditlog(&server, args));
    let mut failures = Vec::new();
    for ((args, word), out) in cases.iter().zip(futures::future::join_all(runs).await) {
        let ok = out.code != 0
            && out.stderr.lines().count() == 1
            && out.stderr.contains(word)
            && out.stdout.is_empty()
            && !has_panic_text(&out);
        if !ok {
            failures.push(format!(
                "auditlog {args:?} should fail with one line naming {word}: {out:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The server's answer names the field; nothing was written.
    let out = auditlog(&server, &["log", "Not-Snake"]).await;
    assert!(out.stderr.contains("INVALID_ARGUMENT"), "{out:?}");
    let stats = server.client().await.stats(None).await.unwrap();
    assert_eq!(stats.total_events, 0);

    // A usage error from the argument parser: non-zero, no panic.
    let out = auditlog(&server, &["export", "--format", "xml"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert_no_panic(&out);
    assert!(out.stderr.contains("xml"), "{out:?}");
}

/// `--limit` is at least 1: 0 is an error naming the limit, not some other
/// number of events; a limit past the server's page of 1,000 works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_0_is_rejected_and_any_other_works() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .log_batch((0..120).map(|i| NewEvent::error("E", &format!("error {i}"))))
        .await
        .unwrap();
    let cases: &[&[&str]] = &[&["query", "--limit", "0"], &["errors", "--limit", "0"]];
    let runs = cases.iter().map(|args| auditlog(&server, args));
    let mut failures = Vec::new();
    for (args, out) in cases.iter().zip(futures::future::join_all(runs).await) {
        // A usage error from the argument parser may take a few lines.
        let ok = out.code != 0
            && out.stderr.contains("limit")
            && out.stdout.is_empty()
            && !has_panic_text(&out);
        if !ok {
            let rows = table_rows(&out.stdout).len();
            failures.push(format!(
                "auditlog {args:?} should fail naming the limit; got code {}, {rows} rows, stderr {:?}",
                out.code, out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The ends of the range work.
    let out = auditlog(&server, &["--json", "query", "--limit", "1"]).await;
    assert_eq!(query_seqs(&out), [120]);
    let out = auditlog(&server, &["--json", "query", "--limit", "1000"]).await;
    assert_eq!(query_seqs(&out).len(), 120);
    let out = auditlog(&server, &["--json", "errors", "--limit", "5000"]).await;
    assert_eq!(seqs(&out.json()["events"]).len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_url_comes_from_auditlog_server() {
    let server = TestServer::start().await;
    server
        .client()
        .await
        .log(NewEvent::new("crm_update"))
        .await
        .unwrap();

    let env = vec![("AUDITLOG_SERVER".to_owned(), server.url.clone())];
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let stats = run_cli(args(&["--json", "stats"]), env.clone())
        .await
        .json();
    assert_eq!(stats["total_events"], 1, "{stats}");
    let out = run_cli(args(&["log", "email_sent"]), env.clone()).await;
    assert_eq!(word_after(out.ok(), "seq"), "2", "{out:?}");
    let out = run_cli(args(&["health"]), env).await;
    assert!(out.ok().contains("SERVING"), "{out:?}");

    // --server wins over the environment.
    let dead = vec![("AUDITLOG_SERVER".to_owned(), DEAD_URL.to_owned())];
    let out = run_cli(
        args(&["--server", &server.url, "--json", "stats"]),
        dead.clone(),
    )
    .await;
    assert_eq!(out.json()["total_events"], 2, "{out:?}");
    // And a dead server from the environment is the one reported.
    let out = run_cli(args(&["stats"]), dead).await;
    assert!(out.one_line_error().contains("127.0.0.1:1"), "{out:?}");
}

/// `--server HOST:PORT` without a scheme is http://, and `--help` says
/// how times without a zone are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_and_times_as_people_type_them() {
    let server = TestServer::start().await;
    server
        .client()
        .await
        .log(NewEvent::new("crm_update"))
        .await
        .unwrap();
    let bare = server.url.strip_prefix("http://").unwrap();
    let out = auditlog_at(bare, &["--json", "stats"]).await;
    assert_eq!(out.json()["total_events"], 1, "{out:?}");
    let out = auditlog_at(bare, &["health"]).await;
    assert!(out.ok().contains("SERVING"), "{out:?}");

    let out = auditlog_at(bare, &["--json", "query", "--since", "2000-01-01T00:00:00"]).await;
    assert_eq!(query_seqs(&out), [1]);
    let out = auditlog_at(bare, &["--json", "query", "--until", "2000-01-01 00:00:00"]).await;
    assert_eq!(query_seqs(&out), Vec::<u64>::new());

    let help = run_cli(vec!["--help".to_owned()], Vec::new()).await;
    assert!(help.ok().contains("without a zone"), "{help:?}");
    for sub in ["query", "stats", "errors"] {
        let help = run_cli(vec![sub.to_owned(), "--help".to_owned()], Vec::new()).await;
        assert!(help.ok().contains("read as UTC"), "{sub}: {help:?}");
    }
}

/// `log error` without `error_type` or `error_message` is logged, with a
/// warning saying what `errors` will miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_without_type_or_message_is_logged_with_a_warning() {
    let server = TestServer::start().await;
    let out = auditlog(
        &server,
        &["log", "error", "--details", r#"{"error_type":"Timeout"}"#],
    )
    .await;
    out.ok();
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("error_message"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("error_type or"), "{out:?}");
    let out = auditlog(&server, &["log", "error"]).await;
    out.ok();
    assert!(
        out.stderr.contains("error_type or error_message"),
        "{out:?}"
    );
    let out = auditlog(
        &server,
        &[
            "log",
            "error",
            "--details",
            r#"{"error_type":"T","error_message":"m"}"#,
        ],
    )
    .await;
    assert_eq!(out.ok().lines().count(), 2, "{out:?}");
    assert_eq!(out.stderr, "", "{out:?}");
    let all = auditlog(&server, &["--json", "query"]).await;
    assert_eq!(query_seqs(&all), [3, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_has_help_with_its_own_options_first_and_an_example() {
    // The subcommands the top-level help lists, so new ones are covered too.
    let out = run_cli(vec!["--help".to_owned()], Vec::new()).await;
    let listed: Vec<String> = out
        .ok()
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect();
    for cmd in [
        "log",
        "query",
        "history",
        "stats",
        "errors",
        "integrity",
        "export",
        "tail",
        "health",
        "bench",
    ] {
        assert!(listed.iter().any(|c| c == cmd), "{cmd} not listed: {out:?}");
    }
    let runs = listed
        .iter()
        .map(|cmd| run_cli(vec![cmd.clone(), "--help".to_owned()], Vec::new()));
    let mut failures = Vec::new();
    for (cmd, out) in listed.iter().zip(futures::future::join_all(runs).await) {
        // Its own options first, the connection flags every command takes
        // after them under their own heading.
        let own_first = match (
            out.stdout.find("Options:"),
            out.stdout.find("Global options:"),
        ) {
            (Some(own), Some(global)) => {
                own < global && out.stdout.find("--server").is_some_and(|s| s > global)
            }
            _ => false,
        };
        if out.code != 0
            || !out.stdout.contains("Example")
            || !out.stdout.contains(&format!("Usage: auditlog {cmd}"))
            || !own_first
        {
            failures.push(format!("auditlog {cmd} --help: {out:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_records_a_duration_typed_in_ms_s_or_plain_seconds() {
    let server = TestServer::start().await;
    for duration in ["250ms", "0.25s", "1.5"] {
        let out = auditlog(&server, &["track", "crm.create_record", duration]).await;
        assert!(
            word_after(out.ok(), "seq").parse::<u64>().is_ok(),
            "{out:?}"
        );
    }
    let receipt = auditlog(
        &server,
        &[
            "--json",
            "track",
            "lead_scoring",
            "2m",
            "--lead",
            "LEAD-7",
            "--workflow",
            "sales",
            "--actor",
            "scorer",
            "--details",
            r#"{"model":"v2"}"#,
        ],
    )
    .await
    .json();
    assert_eq!(receipt["seq"], 4, "{receipt}");

    // Counted, in milliseconds.
    let stats = auditlog(&server, &["--json", "performance"]).await.json();
    let op = |name: &str| {
        stats["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["operation"] == name && o["source"] == "tracked")
            .unwrap_or_else(|| panic!("no {name} in {stats}"))
            .clone()
    };
    let crm = op("crm.create_record");
    assert_eq!(
        (
            crm["count"].as_u64(),
            crm["min_ms"].as_f64(),
            crm["max_ms"].as_f64()
        ),
        (Some(3), Some(250.0), Some(1500.0)),
        "{crm}"
    );
    assert_eq!(op("lead_scoring")["max_ms"].as_f64(), Some(120_000.0));
    // And written as a performance event with every field given.
    let events = server.client().await.lead_history("LEAD-7").await.unwrap();
    let event = &events[0];
    assert_eq!(event.event_type, "performance", "{event:?}");
    assert_eq!(
        (event.workflow.as_str(), event.actor.as_str()),
        ("sales", "scorer"),
        "{event:?}"
    );
    let details = auditlog_proto::json::struct_to_json(event.details.as_ref().unwrap()).unwrap();
    assert_eq!(details["duration_ms"], 120_000.0, "{details:?}");
    assert_eq!(details["model"], "v2", "{details:?}");

    // A duration that is not one, and one the server refuses: one line each.
    for (args, words) in [
        (["track", "x", "fast"], vec!["fast", "250ms"]),
        (["track", "x", "3d"], vec!["unit", "0.25s"]),
        (["track", "has space", "1"], vec!["operation"]),
        (["track", "x", "25h"], vec!["duration_ms", "a day"]),
    ] {
        let out = auditlog(&server, &args).await;
        let line = out.one_line_error();
        for word in words {
            assert!(line.contains(word), "{args:?}: {line}");
        }
    }
    let stats = auditlog(&server, &["--json", "stats"]).await.json();
    assert_eq!(stats["total_events"], 4, "{stats}");
}
