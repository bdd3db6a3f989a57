//! VerifyIntegrity finds tampering and says where it is.
//!
//! Each test logs a sample of 30 events (single `Log` calls and `LogBatch`es),
//! then edits `<data_dir>/audit.log` while the server runs, the way someone
//! with write access to the disk would, and checks the problems
//! `VerifyIntegrity` reports by kind, seq and line. Lines are 1-based and, in
//! the untouched log, line `n` holds seq `n`.
//!
//! Covered: a clean log; a modified record (bad signature, and refused by
//! queries rather than served) or a corrupted one (malformed); deleted, inserted, forged and swapped lines; a cut tail;
//! checkpoints (kept receipts); range verification; the HMAC rule itself,
//! rewrites without and with the key; the generated key surviving a restart;
//! and a start under a different key id beside the old records, refused (a
//! different key under the same id is refused too: `tests/startup.rs`; a
//! rotation that keeps the old key: `tests/hmac_rotation.rs`).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::ops::RangeInclusive;
use std::os::unix::fs::PermissionsExt as _;

use auditlog_client::pb::{self, ProblemKind};
use auditlog_client::{Client, NewEvent, Query};
use common::{
    TEST_KEY, TestServer, all_events, edit_line, field, hmac_hex, problems, read_lines,
    record_line, resign, tamper, unsigned_part, with_signature, with_test_key,
};
use sha2::Digest as _;

use ProblemKind::{
    BadSignature, ChainBreak, CheckpointMismatch, Malformed, SeqGap, SeqOutOfOrder, Truncated,
};

/// How many events the sample log holds.
const N: u64 = 30;
/// A second valid key, for records signed by someone else.
const OTHER_KEY: &str = "another-key-0123456789abcdef01234567";
/// `prev` of the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `(kind, seq, line)` of each problem found.
type Found = Vec<(ProblemKind, u64, u64)>;

/// Sample event `i`; its details are `{"source":"webform"}`.
fn event(i: u64) -> NewEvent {
    NewEvent::lead_ingested(format!("LEAD-{i:03}"), "webform").workflow("sales")
}

/// Logs seqs 1..=30: ten single calls, a batch of ten, a batch of five, five
/// single calls.
async fn log_sample(client: &Client) -> Vec<pb::Receipt> {
    let mut receipts = Vec::new();
    for i in 1..=10 {
        receipts.push(client.log(event(i)).await.unwrap());
    }
    receipts.extend(client.log_batch((11..=20).map(event)).await.unwrap());
    receipts.extend(client.log_batch((21..=25).map(event)).await.unwrap());
    for i in 26..=N {
        receipts.push(client.log(event(i)).await.unwrap());
    }
    let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>());
    receipts
}

/// The index of seq `seq` in the lines of an untouched log.
fn at(seq: u64) -> usize {
    usize::try_from(seq - 1).unwrap()
}

/// The record changed the way an editor would: one letter of its details.
fn modified(line: &str) -> String {
    edit_line(line, "webform", "webfarm")
}

/// The receipt as a checkpoint.
fn checkpoint(receipt: &pb::Receipt) -> pb::Checkpoint {
    pb::Checkpoint {
        seq: receipt.seq,
        signature: receipt.signature.clone(),
    }
}

fn checkpoints(receipts: &[&pb::Receipt]) -> pb::VerifyIntegrityRequest {
    pb::VerifyIntegrityRequest {
        checkpoints: receipts.iter().map(|r| checkpoint(r)).collect(),
        ..Default::default()
    }
}

fn range(from_seq: u64, to_seq: u64) -> pb::VerifyIntegrityRequest {
    pb::VerifyIntegrityRequest {
        from_seq,
        to_seq,
        ..Default::default()
    }
}

/// Asserts `found` holds every problem of `expected` and no problem on a
/// line outside `lines` (line 0 is "no line": a truncation or checkpoint).
#[track_caller]
fn assert_located(found: &Found, expected: &[(ProblemKind, u64, u64)], lines: RangeInclusive<u64>) {
    for e in expected {
        assert!(found.contains(e), "expected {e:?} in {found:?}");
    }
    assert!(
        found.iter().all(|f| lines.contains(&f.2)),
        "a problem outside lines {lines:?}: {found:?}"
    );
}

/// A server holding [`TEST_KEY`] with the sample log written.
struct Logged {
    server: TestServer,
    client: Client,
    receipts: Vec<pb::Receipt>,
    /// The log's lines as the server wrote them.
    original: Vec<String>,
}

impl Logged {
    async fn new() -> Logged {
        let server = TestServer::start_with(with_test_key).await;
        let client = server.client().await;
        let receipts = log_sample(&client).await;
        let original = read_lines(&server.log_path());
        assert_eq!(original.len(), at(N) + 1);
        Logged {
            server,
            client,
            receipts,
            original,
        }
    }

    /// The line of seq `seq` as the server wrote it.
    fn line(&self, seq: u64) -> &str {
        &self.original[at(seq)]
    }

    fn receipt(&self, seq: u64) -> &pb::Receipt {
        &self.receipts[at(seq)]
    }

    /// Puts the log back as written, lets `edit` change its lines, and
    /// verifies with `request`.
    async fn verify_after(
        &self,
        request: pb::VerifyIntegrityRequest,
        edit: impl FnOnce(&mut Vec<String>),
    ) -> pb::VerifyIntegrityResponse {
        tamper(&self.server.log_path(), |lines| {
            lines.clone_from(&self.original);
            edit(lines);
        });
        let report = self.client.verify_with(request).await.unwrap();
        assert_eq!(report.ok, report.problems.is_empty(), "{report:?}");
        report
    }

    /// The problems a whole-log verification finds after `edit`.
    async fn problems_after(&self, edit: impl FnOnce(&mut Vec<String>)) -> Found {
        problems(&self.verify_after(Default::default(), edit).await)
    }
}

#[tokio::test]
async fn untouched_log_verifies_clean() {
    let log = Logged::new().await;
    let report = log.client.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(problems(&report), vec![]);
    assert_eq!(report.events_checked, N);
    assert_eq!(report.head_seq, N);
    assert_eq!(report.head_signature, log.receipt(N).signature);
}

#[tokio::test]
async fn a_modified_record_is_a_bad_signature_at_its_seq_and_line() {
    let log = Logged::new().await;
    // The first record, one inside a batch, and the head.
    for seq in [1, 12, N] {
        let found = log
            .problems_after(|lines| lines[at(seq)] = modified(&lines[at(seq)]))
            .await;
        assert_eq!(found, vec![(BadSignature, seq, seq)], "modified seq {seq}");
    }
}

/// A record edited on disk is never answered as if the server wrote it:
/// Query and a lead's history refuse it with DATA_LOSS naming its seq (the
/// records before it in the same page are not served in its place either),
/// and a query that does not reach it still answers.
#[tokio::test]
async fn a_modified_record_is_refused_by_queries_not_served() {
    let log = Logged::new().await;
    let seq = 3;
    tamper(&log.server.log_path(), |lines| {
        lines[at(seq)] = modified(&lines[at(seq)]);
    });
    let lead = format!("LEAD-{seq:03}");
    for query in [Query::new().lead(&lead), Query::new().limit(50)] {
        let e = log.client.query(query).await.unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::DataLoss), "{e}");
        let message = e.to_string();
        assert!(
            message.contains(&format!("seq {seq}")) && message.contains("MAC"),
            "{message}"
        );
    }
    let e = log.client.lead_history(&lead).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::DataLoss), "{e}");
    let other = log.client.query(Query::new().lead("LEAD-005")).await;
    assert!(other.is_ok_and(|page| !page.events.is_empty()));
}

#[tokio::test]
async fn a_line_that_is_no_longer_json_is_malformed_at_its_line() {
    let log = Logged::new().await;
    for seq in [1, 12, N] {
        let found = log
            .problems_after(|lines| {
                lines[at(seq)] = edit_line(&lines[at(seq)], "\"details\":{", "\"details\":[");
            })
            .await;
        // The record after it cannot be chained to the unreadable one, so it
        // may show there too, but nowhere else.
        assert_located(&found, &[(Malformed, seq, seq)], seq..=seq + 1);
    }
}

#[tokio::test]
async fn a_deleted_record_is_located_at_the_seq_after_it() {
    let log = Logged::new().await;
    for seq in [1, 15, N - 1] {
        let found = log
            .problems_after(|lines| {
                lines.remove(at(seq));
            })
            .await;
        // The next record now sits on the deleted one's line.
        assert!(
            found.contains(&(SeqGap, seq + 1, seq)),
            "deleted seq {seq}: {found:?}"
        );
        assert!(
            found
                .iter()
                .all(|&(kind, s, l)| [SeqGap, ChainBreak].contains(&kind)
                    && (s, l) == (seq + 1, seq)),
            "deleted seq {seq}: {found:?}"
        );
    }
}

/// Zero bytes are the space the writer keeps past the log's end
/// (docs/log-format.md); inside the log they are damage like any other,
/// found at their line, and verification reads on past them.
#[tokio::test]
async fn a_record_zeroed_inside_the_log_is_malformed_at_its_line() {
    let log = Logged::new().await;
    for seq in [1, 12] {
        let found = log
            .problems_after(|lines| lines[at(seq)] = "\0".repeat(lines[at(seq)].len()))
            .await;
        // No seq can be read from the line: it is the one expected there
        // (none before the first record). The record after it cannot be
        // chained to it, so it shows there too, but nowhere else.
        let expected = if seq == 1 { 0 } else { seq };
        assert_located(&found, &[(Malformed, expected, seq)], seq..=seq + 1);
    }
}

#[tokio::test]
async fn an_inserted_copy_is_located_at_the_insertion_point() {
    let log = Logged::new().await;
    // A copy of seq 5 between seqs 20 and 21: it becomes line 21.
    let copy = log.line(5).to_owned();
    let found = log.problems_after(|lines| lines.insert(at(21), copy)).await;
    assert_located(&found, &[(SeqOutOfOrder, 5, 21)], 21..=22);
}

#[tokio::test]
async fn an_inserted_forgery_is_located_at_the_insertion_point() {
    let log = Logged::new().await;
    // A record claiming seq 21, chained to seq 20, with a made-up signature,
    // inserted before the real seq 21.
    let forged = with_signature(&modified(log.line(21)), &"ab".repeat(32));
    let found = log
        .problems_after(|lines| lines.insert(at(21), forged))
        .await;
    assert_located(&found, &[(BadSignature, 21, 21)], 21..=22);
}

#[tokio::test]
async fn swapped_records_are_reported_at_their_seqs() {
    let log = Logged::new().await;
    let found = log.problems_after(|lines| lines.swap(at(10), at(11))).await;
    // Line 10 now holds seq 11, line 11 holds seq 10.
    assert_located(
        &found,
        &[(SeqGap, 11, 10), (SeqOutOfOrder, 10, 11)],
        10..=12,
    );
    assert!(found.iter().all(|f| (10..=12).contains(&f.1)), "{found:?}");
}

#[tokio::test]
async fn a_cut_tail_is_truncated_from_the_first_missing_seq() {
    let log = Logged::new().await;
    for kept in [25, N - 1, 0] {
        let report = log
            .verify_after(Default::default(), |lines| lines.truncate(at(kept + 1)))
            .await;
        assert_eq!(
            problems(&report),
            vec![(Truncated, kept + 1, 0)],
            "kept {kept}"
        );
        assert_eq!(report.events_checked, kept);
    }
    // Cut inside the line of seq 28: the torn line and the truncation show.
    let mut cut: String = log.original[..at(28)]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    cut.push_str(&log.line(28)[..40]);
    std::fs::write(log.server.log_path(), cut).unwrap();
    let found = problems(&log.client.verify().await.unwrap());
    assert_located(&found, &[(Truncated, 28, 0), (Malformed, 28, 28)], 0..=28);
}

#[tokio::test]
async fn every_damaged_place_is_reported() {
    let log = Logged::new().await;
    let found = log
        .problems_after(|lines| {
            lines[at(25)] = modified(&lines[at(25)]);
            lines.remove(at(15));
            lines[at(3)] = modified(&lines[at(3)]);
        })
        .await;
    // With seq 15 gone, seq 25 is on line 24.
    let expected = [
        (BadSignature, 3, 3),
        (SeqGap, 16, 15),
        (BadSignature, 25, 24),
    ];
    for e in expected {
        assert!(found.contains(&e), "expected {e:?} in {found:?}");
    }
    assert!(
        found.iter().all(|f| [3, 15, 24].contains(&f.2)),
        "{found:?}"
    );
}

#[tokio::test]
async fn a_copy_of_the_head_early_in_the_log_does_not_hide_later_damage() {
    let log = Logged::new().await;
    let head = log.line(N).to_owned();
    let found = log
        .problems_after(|lines| {
            lines[at(20)] = modified(&lines[at(20)]);
            lines.insert(at(5), head);
        })
        .await;
    // The copy is line 5, which moves seq 20 to line 21.
    assert!(found.iter().any(|f| f.2 == 5), "{found:?}");
    assert!(found.contains(&(BadSignature, 20, 21)), "{found:?}");
}

#[tokio::test]
async fn checkpoints_of_real_receipts_pass() {
    let log = Logged::new().await;
    let request = checkpoints(&[log.receipt(7), log.receipt(12), log.receipt(N)]);
    let report = log.client.verify_with(request).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_checked, N);
}

#[tokio::test]
async fn an_altered_receipt_is_a_checkpoint_mismatch() {
    let log = Logged::new().await;
    let mut altered = checkpoint(log.receipt(7));
    let last = if altered.signature.ends_with('0') {
        "1"
    } else {
        "0"
    };
    altered.signature.replace_range(63.., last);
    // And a real signature presented for the wrong seq.
    let moved = pb::Checkpoint {
        seq: 8,
        ..checkpoint(log.receipt(7))
    };
    let request = pb::VerifyIntegrityRequest {
        checkpoints: vec![altered, checkpoint(log.receipt(9)), moved],
        ..Default::default()
    };
    let report = log.client.verify_with(request).await.unwrap();
    assert_eq!(
        problems(&report),
        vec![(CheckpointMismatch, 7, 0), (CheckpointMismatch, 8, 0)]
    );
}

#[tokio::test]
async fn a_checkpoint_on_a_deleted_record_is_a_mismatch() {
    let log = Logged::new().await;
    let request = checkpoints(&[log.receipt(7)]);
    let found = problems(
        &log.verify_after(request, |lines| {
            lines.remove(at(7));
        })
        .await,
    );
    assert_located(&found, &[(CheckpointMismatch, 7, 0), (SeqGap, 8, 7)], 0..=7);
}

#[tokio::test]
async fn a_checkpoint_on_a_modified_record_is_a_mismatch() {
    let log = Logged::new().await;
    // The record at seq 7 still shows the receipt's signature, but it is no
    // longer the event the receipt was given for.
    let request = checkpoints(&[log.receipt(7)]);
    let found = problems(
        &log.verify_after(request, |lines| lines[at(7)] = modified(&lines[at(7)]))
            .await,
    );
    assert_located(
        &found,
        &[(BadSignature, 7, 7), (CheckpointMismatch, 7, 0)],
        0..=7,
    );
}

#[tokio::test]
async fn a_range_is_verified_and_counted_alone() {
    let log = Logged::new().await;
    let report = log.client.verify_with(range(11, 20)).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_checked, 10);
    assert_eq!(report.head_seq, 20);
    assert_eq!(report.head_signature, log.receipt(20).signature);

    // Damage at seq 25 is outside 11..=20, inside 21..=30 and 21..=head.
    let tampered = |lines: &mut Vec<String>| lines[at(25)] = modified(&lines[at(25)]);
    let report = log.verify_after(range(11, 20), tampered).await;
    assert!(report.ok, "{report:?}");
    for request in [range(21, N), range(21, 0)] {
        let report = log.verify_after(request, tampered).await;
        assert_eq!(problems(&report), vec![(BadSignature, 25, 25)]);
        assert_eq!(report.events_checked, 10);
    }
}

/// From the seq after the head: clean, nothing checked, not truncated.
/// Further on: OUT_OF_RANGE (tests/damaged_files.rs has more).
#[tokio::test]
async fn a_range_from_the_seq_after_the_head_is_clean_not_truncated() {
    let log = Logged::new().await;
    let report = log.client.verify_with(range(N + 1, 0)).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_checked, 0);
    let e = log
        .client
        .verify_with(range(N + 5, N + 10))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::OutOfRange), "{e}");
}

#[tokio::test]
async fn a_range_is_chained_to_the_record_before_it() {
    let log = Logged::new().await;
    // Seq 20 now shows another signature than the one seq 21 chains to.
    let report = log
        .verify_after(range(21, N), |lines| {
            lines[at(20)] = with_signature(&lines[at(20)], &"cd".repeat(32));
        })
        .await;
    assert_eq!(problems(&report), vec![(ChainBreak, 21, 21)]);
}

#[tokio::test]
async fn a_range_after_damage_earlier_in_the_log_is_a_report_not_an_error() {
    let log = Logged::new().await;
    // `verify_after` fails the test if the call answers with an error status.
    let report = log
        .verify_after(range(21, N), |lines| {
            lines.remove(at(5));
        })
        .await;
    assert!(!report.ok || report.events_checked == 10, "{report:?}");
}

#[tokio::test]
async fn signatures_are_the_documented_hmac_of_the_line() {
    let log = Logged::new().await;
    let mut prev = GENESIS.to_owned();
    for (line, receipt) in log.original.iter().zip(&log.receipts) {
        let signature = field(line, "signature");
        assert_eq!(signature, receipt.signature);
        assert_eq!(
            hmac_hex(TEST_KEY.as_bytes(), unsigned_part(line).as_bytes()),
            signature,
            "{line}"
        );
        assert_eq!(field(line, "prev"), prev);
        prev = signature;
    }
}

#[tokio::test]
async fn a_rewrite_without_the_key_is_a_bad_signature() {
    let log = Logged::new().await;
    let sha256 = |unsigned: &str| hex::encode(sha2::Sha256::digest(unsigned.as_bytes()));
    let other_key = |unsigned: &str| hmac_hex(OTHER_KEY.as_bytes(), unsigned.as_bytes());
    for sign in [&sha256 as &dyn Fn(&str) -> String, &other_key] {
        let rewritten = modified(log.line(12));
        let rewritten = with_signature(&rewritten, &sign(&unsigned_part(&rewritten)));
        let found = log.problems_after(|lines| lines[at(12)] = rewritten).await;
        // The new signature also breaks seq 13's link to it.
        assert_located(&found, &[(BadSignature, 12, 12)], 12..=13);
    }
}

/// Sets each record's `prev` from `first` on to the signature of the line
/// before it and re-signs it with `key`: a rewrite of history by someone
/// holding the key.
fn rechain(lines: &mut [String], first: usize, key: &str) {
    for i in first..lines.len() {
        let want = field(&lines[i - 1], "signature");
        let have = field(&lines[i], "prev");
        let line = edit_line(&lines[i], &have, &want);
        lines[i] = resign(&line, key.as_bytes());
    }
}

#[tokio::test]
async fn a_record_re_signed_with_the_key_still_breaks_the_chain() {
    let log = Logged::new().await;
    let found = log
        .problems_after(|lines| {
            lines[at(12)] = resign(&modified(&lines[at(12)]), TEST_KEY.as_bytes())
        })
        .await;
    assert_eq!(found, vec![(ChainBreak, 13, 13)]);
}

#[tokio::test]
async fn a_history_rewritten_with_the_key_is_caught_by_a_kept_receipt() {
    let log = Logged::new().await;
    let rewrite = |lines: &mut Vec<String>| {
        lines[at(12)] = resign(&modified(&lines[at(12)]), TEST_KEY.as_bytes());
        rechain(lines, at(13), TEST_KEY);
    };
    // Whoever holds the key can forge a consistent log; the receipt a caller
    // kept from before is what proves it was changed.
    let report = log
        .verify_after(checkpoints(&[log.receipt(N)]), rewrite)
        .await;
    assert_eq!(problems(&report), vec![(CheckpointMismatch, N, 0)]);
    assert_ne!(report.head_signature, log.receipt(N).signature);
}

#[tokio::test]
async fn a_forged_record_appended_while_the_server_was_down_is_caught() {
    let log = Logged::new().await;
    // A record for the next seq, chained to the head, with a made-up signature.
    let head = log.line(N);
    let valid = record_line(
        N + 1,
        &field(head, "timestamp"),
        &field(head, "signature"),
        TEST_KEY.as_bytes(),
    );
    let forged = with_signature(&valid, &"ef".repeat(32));
    let server = log
        .server
        .restart_after(
            |dir| tamper(&dir.join("audit.log"), |lines| lines.push(forged)),
            with_test_key,
        )
        .await;
    let report = server.client().await.verify().await.unwrap();
    assert_eq!(problems(&report), vec![(BadSignature, N + 1, N + 1)]);
}

#[tokio::test]
async fn the_generated_key_and_the_chain_survive_a_restart() {
    let server = TestServer::start().await;
    let key_path = server.data_dir.join("hmac.key");
    let key = std::fs::read(&key_path).unwrap();
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "hmac.key has mode {mode:o}");
    let mut receipts = log_sample(&server.client().await).await;

    let server = server.restart(|_| {}).await;
    assert_eq!(std::fs::read(&key_path).unwrap(), key);
    let client = server.client().await;
    for i in N + 1..=N + 5 {
        receipts.push(client.log(event(i)).await.unwrap());
    }
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_checked, N + 5);
    assert_eq!(report.head_signature, receipts[at(N + 5)].signature);
    let events = all_events(&client).await;
    assert_eq!(events[at(N + 1)].seq, N + 1);
    assert_eq!(events[at(N + 1)].prev, receipts[at(N)].signature);
    // The key file holds the key itself: its bytes sign the new records.
    let line = &read_lines(&server.log_path())[at(N + 1)];
    assert_eq!(
        hmac_hex(&key, unsigned_part(line).as_bytes()),
        receipts[at(N + 1)].signature
    );
}

/// A server that would sign under `k2` beside records of `k1` it holds no
/// key for is refused, naming `k1`; until 2026-12-08 it started and every
/// record was UNKNOWN_KEY for good. (Records under a key dropped after
/// newer ones were written are UNKNOWN_KEY: `hmac_rotation.rs`.)
#[tokio::test]
async fn a_start_beside_records_of_a_key_id_it_does_not_hold_is_refused_naming_it() {
    let mut log = Logged::new().await;
    log.server.stop().await;
    let mut config = auditlog_server::Config {
        data_dir: log.server.data_dir.clone(),
        ..auditlog_server::Config::default()
    };
    with_test_key(&mut config);
    config.hmac_key_id = "k2".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = auditlog_server::run(config, listener, async {}).await;
    let err = refused.unwrap_err().to_string();
    assert!(
        err.contains("signed with key \"k1\", which this server does not hold")
            && err.contains("retired_hmac_keys"),
        "{err}"
    );
}
