//! The `auditlog` command-line tool as a user runs it: the built binary
//! against a real server on 127.0.0.1, checked through its exit code, its
//! stdout (text and `--json`, parsed back) and its stderr.
//!
//! Covered: every subcommand's happy path (`log`, `query`, `history`,
//! `stats`, `errors`, `integrity`, `export`, `tail`, `health`, `bench`,
//! `track`);
//! filters, ordering and pagination; exports of 10,000 events checked line
//! by line against the log on disk; tampering found by `integrity`; `tail`
//! ending on Ctrl-C and when the server stops, and with `--reconnect` going
//! on through a restart and stopping at another log; exit codes; one-line errors
//! without panics; a reader that closes the pipe early (`| head`); the
//! documented `--limit` range and paging past 1,000 events; `stats` and
//! `errors` filters and timelines; `AUDITLOG_SERVER` and a `--server`
//! without a scheme; times without a zone; usage errors and a token that
//! cannot be sent on one line; exports that fail before their first event
//! printing nothing; no NaN, inf or 300-digit number in `bench`,
//! `integrity` or `performance`; and `--help` with an example for every
//! subcommand the top-level help lists.
//!
//! Every run of the binary has a generous deadline, so a hang fails the test
//! instead of blocking it. This file holds how the binary is run and the
//! helpers the subcommands' files share; each of those files covers one
//! subcommand (or, `usage.rs`, what users type wrong).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

mod bench;
mod export;
mod health;
mod history;
mod integrity;
mod log;
mod performance;
mod query;
mod stats;
mod tail;
mod usage;

use std::time::Duration;

use auditlog_client::{Client, NewEvent, pb};
use common::{
    Finished as Output, TestServer, cli_bin, piped_command, read_all, read_lines, run_to_end,
    wait_or_kill,
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
