//! Files of the log damaged or written to by someone else while the server
//! runs, and what callers are told: a read through `audit.log` cut short is
//! DATA_LOSS naming the file, the seqs it lost and where to read on, after
//! everything before them; verification with the data directory gone says
//! so; bytes someone else appends to `audit.log` are kept in
//! `audit.log.quarantine` before the server cuts or overwrites them; and
//! VerifyIntegrity past the head is OUT_OF_RANGE naming it. Each case was
//! found by an outside attack (2026-12-06).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use auditlog_client::{Client, NewEvent, Query, pb};
use common::{
    ServerProcess, TestServer, all_events, export_from, log_bytes, problems, read_lines, seqs,
};
use tonic::Code;

/// The line someone else appends to `audit.log` in these tests.
const FOREIGN: &[u8] = b"{\"seq\":99,\"garbage\":1}";

fn event(i: u64) -> NewEvent {
    NewEvent::email_sent(format!("LEAD-{i}"), "someone@example.com", "hello")
}

/// Appends `bytes` to the file at `path`, as `>>` in a shell does.
fn append(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

fn range(from_seq: u64, to_seq: u64) -> pb::VerifyIntegrityRequest {
    pb::VerifyIntegrityRequest {
        from_seq,
        to_seq,
        checkpoints: Vec::new(),
    }
}

/// `audit.log` cut inside a record under the running server: a read that
/// reaches the records it lost is DATA_LOSS naming the file, those seqs
/// and where to read on, and an export first sends every event before them
/// (the sealed segment's and the active file's that are whole). Before, each
/// such read was INTERNAL "failed to fill whole buffer", with no event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_through_a_log_cut_under_the_server_is_data_loss_after_what_came_before() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for i in 0..10 {
        client.log(event(i)).await.unwrap();
    }
    let sealed = client.rotate(true).await.unwrap();
    assert_eq!((sealed.first_seq, sealed.last_seq), (1, 10));
    for i in 10..15 {
        client.log(event(i)).await.unwrap();
    }
    // Seqs 11 and 12 stay whole; the cut is inside seq 13's line.
    let lines = read_lines(&server.log_path());
    let cut = lines[..2].iter().map(|l| l.len() as u64 + 1).sum::<u64>() + 10;
    std::fs::OpenOptions::new()
        .write(true)
        .open(server.log_path())
        .unwrap()
        .set_len(cut)
        .unwrap();

    let named = |message: &str| {
        assert!(
            message.contains("active file audit.log")
                && message.contains("seqs 13 to 15")
                && message.contains("from seq 16")
                && message.contains(&format!("{cut} bytes long")),
            "{message}"
        );
    };
    let e = client
        .query(Query::new().oldest_first().limit(100))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::DataLoss), "{e}");
    named(&e.to_string());

    let (before, status) = export_from(&client, 1).await;
    assert_eq!(seqs(&before), (1..=12).collect::<Vec<_>>());
    let status = status.expect("the export ended without an error");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    named(status.message());

    // A lead's history in the lost records fails the same way; one in the
    // sealed segment, or in the whole part of the active file, reads.
    let e = client.lead_history("LEAD-13").await.unwrap_err();
    assert_eq!(e.code(), Some(Code::DataLoss), "{e}");
    assert_eq!(seqs(&client.lead_history("LEAD-3").await.unwrap()), [4]);
    assert_eq!(seqs(&client.lead_history("LEAD-11").await.unwrap()), [12]);
}

/// The data directory deleted under the running server: VerifyIntegrity
/// cannot list it, and says that it is gone and what to do, as DATA_LOSS.
/// Before, it answered INTERNAL "No such file or directory".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_with_the_data_directory_gone_is_data_loss_naming_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let server = TestServer::start_in(&dir, |_| {}).await;
    let client = server.client().await;
    for i in 0..5 {
        client.log(event(i)).await.unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let e = client.verify().await.unwrap_err();
    assert_eq!(e.code(), Some(Code::DataLoss), "{e}");
    let message = e.to_string();
    assert!(
        message.contains(&dir.display().to_string())
            && message.contains("is gone")
            && message.contains("put the directory back"),
        "{message}"
    );
    drop(server);
}

/// A range starting past the head asks about seqs never acknowledged:
/// OUT_OF_RANGE naming the head, as a Query's `min_seq` past it. From the
/// seq after the head is taken and checks nothing: a caller verifying a
/// log as it grows asks from after the last seq it verified. Before, every
/// start past the head answered `ok` with 0 events checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_from_past_the_head_is_out_of_range_naming_it() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for i in 0..5 {
        client.log(event(i)).await.unwrap();
    }
    let report = client.verify_with(range(6, 0)).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_checked, 0);
    for request in [range(7, 0), range(7, 9), range(u64::MAX, 0)] {
        let e = client.verify_with(request).await.unwrap_err();
        assert_eq!(e.code(), Some(Code::OutOfRange), "{e}");
        assert!(e.to_string().contains("past this log's head 5"), "{e}");
    }
}

/// The head is the last seq acknowledged, not the last still in the log:
/// seqs a start found cut are in range, and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_of_seqs_a_start_found_cut_reports_them() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for i in 0..10 {
        client.log(event(i)).await.unwrap();
    }
    let server = server
        .restart_after(
            |dir| common::tamper(&dir.join("audit.log"), |lines| lines.truncate(7)),
            |_| {},
        )
        .await;
    let client = server.client().await;
    let report = client.verify_with(range(9, 0)).await.unwrap();
    assert!(
        problems(&report).contains(&(pb::ProblemKind::Truncated, 8, 0)),
        "{report:?}"
    );
    let e = client.verify_with(range(12, 0)).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::OutOfRange), "{e}");
    assert!(e.to_string().contains("past this log's head 10"), "{e}");
}

/// A line someone else appends to the live `audit.log` is past the zeros
/// the server keeps ahead of the log's end. A seal cuts those zeros: the
/// line is kept in `audit.log.quarantine` first, and the sealed segment
/// holds only records. Before, it was cut without a trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_appended_to_the_live_log_are_kept_when_it_is_sealed() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for i in 0..3 {
        client.log(event(i)).await.unwrap();
    }
    append(&server.log_path(), &[FOREIGN, b"\n"].concat());
    let sealed = client.rotate(true).await.unwrap();
    assert_eq!((sealed.first_seq, sealed.last_seq), (1, 3));
    let kept = std::fs::read(server.data_dir.join("audit.log.quarantine")).unwrap();
    assert_eq!(kept, [FOREIGN, b"\n"].concat());
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(seqs(&all_events(&client).await), [1, 2, 3]);
}

/// Appended past the zeros, and then the log grows into a new chunk of
/// zeros, which is written where the appended bytes are: they are kept
/// first. Before, the zeros went over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_appended_past_the_zeros_are_kept_before_new_zeros_go_over_them() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log(event(0)).await.unwrap();
    append(&server.log_path(), FOREIGN);
    // Over half of the MiB of zeros ahead: the next chunk is due.
    let pad = "x".repeat(60_000);
    let big = (0..10).map(|i| event(i).detail("pad", pad.as_str()));
    client.log_batch(big).await.unwrap();
    let kept = std::fs::read(server.data_dir.join("audit.log.quarantine")).unwrap();
    assert_eq!(kept, [FOREIGN, b"\n"].concat());
    let file = std::fs::read(server.log_path()).unwrap();
    assert!(
        !file.windows(FOREIGN.len()).any(|w| w == FOREIGN),
        "the appended bytes are still in audit.log"
    );
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(all_events(&client).await.len(), 11);
}

/// At a clean stop the zeros past the log's end are cut too: what someone
/// else appended is kept first, and an ERROR names the file and the bytes.
/// The next start finds a log of records only, and quarantines nothing
/// more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_appended_to_the_live_log_are_kept_at_a_clean_stop_with_an_error_naming_them() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let stderr = temp.path().join("stderr.log");
    let mut server = ServerProcess::spawn_logging(&dir, [] as [&str; 0], &[], stderr).await;
    let client = Client::connect(&server.url).await.unwrap();
    for i in 0..3 {
        client.log(event(i)).await.unwrap();
    }
    let log = dir.join("audit.log");
    let from = std::fs::metadata(&log).unwrap().len();
    append(&log, FOREIGN);
    server.signal("TERM");
    assert!(
        server
            .wait_exit_within(Duration::from_secs(20))
            .await
            .success()
    );

    let quarantine = dir.join("audit.log.quarantine");
    let kept = std::fs::read(&quarantine).unwrap();
    assert_eq!(kept, [FOREIGN, b"\n"].concat());
    let to = from + FOREIGN.len() as u64;
    let logged = server.stderr();
    assert!(
        logged.contains("ERROR")
            && logged.contains("someone else wrote into audit.log")
            && logged.contains(&format!("bytes {from}..{to}"))
            && logged.contains("audit.log.quarantine"),
        "{logged}"
    );
    // Cut back to its records, with no zero left.
    assert_eq!(std::fs::read(&log).unwrap(), log_bytes(&log));
    assert_eq!(read_lines(&log).len(), 3);

    let server = TestServer::start_in(&dir, common::with_test_key).await;
    let client = server.client().await;
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(seqs(&all_events(&client).await), [1, 2, 3]);
    assert_eq!(std::fs::read(&quarantine).unwrap(), kept);
}
