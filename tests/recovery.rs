//! Crash recovery: what the server does with the log it finds on start.
//!
//! - SIGKILL under concurrent load, several times over, loses no acknowledged
//!   event, leaves no gap and no half batch, and retries with the same
//!   idempotency key never write twice (the real `auditlog-server` binary).
//! - A torn last line, and a batch cut in the middle by a crash, are moved to
//!   `audit.log.quarantine` and the chain continues from the last complete
//!   write; a complete last record is kept even though no caller was told of
//!   it (the files are edited while the server is stopped).
//! - An idempotency key returns the original receipt after a clean restart
//!   and after SIGKILL.
//! - The zeros the writer keeps ahead of the log's end: after SIGKILL
//!   mid-ingest no zero byte reaches a reader, and a write torn into them
//!   (even one with a later block past a stretch of zeros) is quarantined.
//! - A forged copy of a record edited into the log is reported on its own
//!   lines; the server's next record, chained to the line before it, is not;
//!   likewise after a line that reads as no record, in the active file or at
//!   the end of a sealed segment still waiting for its compression.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use auditlog_client::pb;
use auditlog_client::{Client, NewEvent};
use common::{
    ServerProcess, TEST_KEY, TestServer, Writers, all_events, assert_whole, field, keyed,
    log_bytes, problems, read_lines, record_line, send, with_test_key,
};

const LOG: &str = "audit.log";
const QUARANTINE: &str = "audit.log.quarantine";

// ---------------------------------------------------------------------------
// kill -9 under load

/// Every idempotency key appears once, and every batch of `keys` (named
/// `<writer>-<call>-<k>`) is either wholly in the log, on consecutive seqs,
/// or not at all.
fn assert_keys_once_and_batches_whole(events: &[pb::Event]) {
    let mut seen = HashSet::new();
    let mut calls: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in events {
        assert!(
            seen.insert(&e.idempotency_key),
            "key {} written twice",
            e.idempotency_key
        );
        let (call, _) = e.idempotency_key.rsplit_once('-').unwrap();
        calls.entry(call).or_default().push(e.seq);
    }
    for (call, seqs) in calls {
        if call.starts_with("batch") {
            let first = seqs[0];
            assert_eq!(seqs, (first..first + 3).collect::<Vec<_>>(), "batch {call}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_repeated_kill_9() {
    const ROUNDS: usize = 20;
    /// At least this many events per round; the kill comes after a random
    /// number more, so it lands at a different point of the write each time.
    const PER_ROUND: usize = 50;
    /// Writers by name and events per call.
    const WRITERS: [(&str, usize); 4] = [
        ("single-a", 1),
        ("single-b", 1),
        ("batch-a", 3),
        ("batch-b", 3),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<pb::Receipt> = Vec::new();
    let mut pending: Vec<Vec<String>> = Vec::new();
    for round in 0..ROUNDS {
        let mut server = ServerProcess::spawn(dir.path()).await;
        let client = Client::connect(&server.url).await.unwrap();
        assert_whole(&client, &acked).await;
        // Retrying what was in flight at the crash writes it at most once.
        for keys in pending.drain(..) {
            acked.extend(send(&client, &keys).await.unwrap());
        }

        let names = WRITERS.map(|(name, size)| (format!("{name}{round}"), size));
        let writers = Writers::start(&server.url, names).await;
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as usize
            % 200;
        writers.wait_for(PER_ROUND + jitter).await;
        server.kill9();
        let (more, in_flight) = writers.finish().await;
        acked.extend(more);
        pending.extend(in_flight);
    }
    let server = ServerProcess::spawn(dir.path()).await;
    let client = Client::connect(&server.url).await.unwrap();
    for keys in pending.drain(..) {
        acked.extend(send(&client, &keys).await.unwrap());
    }
    let events = assert_whole(&client, &acked).await;
    assert!(events.len() >= ROUNDS * PER_ROUND);
    assert_keys_once_and_batches_whole(&events);
}

// ---------------------------------------------------------------------------
// Torn writes, edited in while the server is stopped

/// Appends `bytes` to the log in `dir`.
fn append(dir: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(LOG))
        .unwrap();
    file.write_all(bytes).unwrap();
}

/// Cuts the log in `dir` to its first `keep` bytes.
fn cut(dir: &Path, keep: usize) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(LOG))
        .unwrap();
    file.set_len(keep as u64).unwrap();
}

/// Logs `n` single events.
async fn log_singles(client: &Client, n: u64) -> Vec<pb::Receipt> {
    let mut receipts = Vec::new();
    for i in 0..n {
        receipts.push(
            client
                .log(NewEvent::lead_ingested(format!("L{i}"), "web"))
                .await
                .unwrap(),
        );
    }
    receipts
}

/// Logs one more event and asserts it continues the chain after `last`.
async fn assert_chain_continues(client: &Client, last: &pb::Receipt) {
    let next = client
        .log(NewEvent::workflow_started("after"))
        .await
        .unwrap();
    assert_eq!(next.seq, last.seq + 1);
    let events = all_events(client).await;
    assert_eq!(events.last().unwrap().prev, last.signature);
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.head_seq, next.seq);
}

#[tokio::test]
async fn a_torn_last_line_is_quarantined_and_the_chain_continues() {
    let server = TestServer::start_with(with_test_key).await;
    let receipts = log_singles(&server.client().await, 5).await;
    let log = server.log_path();
    let before = log_bytes(&log);
    // The first half of what would have been seq 6.
    let head = read_lines(&log).pop().unwrap();
    let next = record_line(
        6,
        &field(&head, "timestamp"),
        &field(&head, "signature"),
        TEST_KEY.as_bytes(),
    );
    let torn = &next.as_bytes()[..next.len() / 2];

    let server = server
        .restart_after(|dir| append(dir, torn), with_test_key)
        .await;
    assert_eq!(
        std::fs::read(&log).unwrap(),
        before,
        "the log keeps its complete records"
    );
    let quarantined = std::fs::read(server.data_dir.join(QUARANTINE)).unwrap();
    assert!(
        quarantined.starts_with(torn),
        "{}",
        String::from_utf8_lossy(&quarantined)
    );
    let client = server.client().await;
    assert_whole(&client, &receipts).await;
    assert_chain_continues(&client, &receipts[4]).await;
}

#[tokio::test]
async fn a_half_written_batch_is_cut_whole() {
    let server = TestServer::start_with(with_test_key).await;
    let client = server.client().await;
    let before = log_singles(&client, 3).await;
    let batch = client
        .log_batch((0..5).map(|i| NewEvent::email_sent(format!("B{i}"), "b@example.com", "Hi")))
        .await
        .unwrap();
    assert_eq!(batch[0].seq, 4);
    let lines = read_lines(&server.log_path());
    let len = |n: usize| lines[..n].iter().map(|l| l.len() + 1).sum::<usize>();
    // A crash in the middle of the batch's 4th record: seqs 4, 5, 6 complete,
    // half of 7, nothing of 8.
    let keep = len(6) + lines[6].len() / 2;

    // A real crash there comes before the batch is acknowledged, so before
    // the persisted head names it; the clean stop here wrote a head at seq 8,
    // which would report the cut as a truncation: it goes too.
    let crash = |dir: &Path| {
        cut(dir, keep);
        std::fs::remove_file(dir.join("head")).unwrap();
    };
    let server = server.restart_after(crash, with_test_key).await;
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert_eq!(
        log,
        lines[..3]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let quarantined = std::fs::read_to_string(server.data_dir.join(QUARANTINE)).unwrap();
    assert!(
        quarantined.starts_with(&format!("{}\n", lines[3])),
        "{quarantined}"
    );
    let client = server.client().await;
    assert_eq!(assert_whole(&client, &before).await.len(), 3);
    assert_chain_continues(&client, &before[2]).await;
}

#[tokio::test]
async fn a_complete_last_record_is_kept_though_never_acknowledged() {
    let server = TestServer::start_with(with_test_key).await;
    let receipts = log_singles(&server.client().await, 5).await;
    let log = server.log_path();
    // What the writer had on disk when it died before answering.
    let head = read_lines(&log).pop().unwrap();
    let last = record_line(
        6,
        &field(&head, "timestamp"),
        &field(&head, "signature"),
        TEST_KEY.as_bytes(),
    );
    let line = format!("{last}\n");
    let mut expected = log_bytes(&log);
    expected.extend_from_slice(line.as_bytes());

    let server = server
        .restart_after(|dir| append(dir, line.as_bytes()), with_test_key)
        .await;
    assert_eq!(std::fs::read(&log).unwrap(), expected);
    assert!(!server.data_dir.join(QUARANTINE).exists());
    let client = server.client().await;
    let events = assert_whole(&client, &receipts).await;
    assert_eq!(events.len(), 6);
    assert_eq!(events[5].signature, field(&last, "signature"));
    let kept = pb::Receipt {
        seq: 6,
        signature: events[5].signature.clone(),
        ..Default::default()
    };
    assert_chain_continues(&client, &kept).await;
}

// ---------------------------------------------------------------------------
// Idempotency across restarts

/// Logs a few events around one with `key`; returns its receipt and the total.
async fn log_around_key(client: &Client, key: &str) -> (pb::Receipt, u64) {
    log_singles(client, 2).await;
    let first = client.log(keyed(key)).await.unwrap();
    assert!(!first.duplicate);
    log_singles(client, 2).await;
    (first, 5)
}

/// Repeats `key` and asserts the answer is `first` again, marked duplicate,
/// with nothing written.
async fn assert_repeat_is_original(client: &Client, key: &str, first: &pb::Receipt, total: u64) {
    let again = client.log(keyed(key)).await.unwrap();
    assert!(again.duplicate, "{again:?}");
    let fields = |r: &pb::Receipt| (r.seq, r.id.clone(), r.signature.clone(), r.timestamp);
    assert_eq!(fields(&again), fields(first));
    assert_eq!(client.stats(None).await.unwrap().total_events, total);
    assert_eq!(all_events(client).await.len() as u64, total);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_original_receipt_after_a_clean_restart() {
    let server = TestServer::start().await;
    let (first, total) = log_around_key(&server.client().await, "mail-1").await;
    let server = server.restart(|_| {}).await;
    assert_repeat_is_original(&server.client().await, "mail-1", &first, total).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_original_receipt_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path()).await;
    let (first, total) =
        log_around_key(&Client::connect(&server.url).await.unwrap(), "mail-1").await;
    server.kill9();
    let server = ServerProcess::spawn(dir.path()).await;
    let client = Client::connect(&server.url).await.unwrap();
    assert_repeat_is_original(&client, "mail-1", &first, total).await;
}

// ---------------------------------------------------------------------------
// The zeros kept ahead of the log's end (docs/log-format.md)

/// Whether any event as served holds a zero byte.
fn any_zero_byte(events: &[pb::Event]) -> bool {
    events.iter().any(|e| format!("{e:?}").contains("\\0"))
}

/// kill -9 mid-ingest leaves the zeros the writer keeps ahead of the log on
/// disk past its last record; after the restart every acknowledged event is
/// there, verification is clean, and no zero byte reaches a reader: not the
/// API, not the quarantine, not the log's lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_mid_ingest_leaves_zeros_ahead_that_no_reader_sees() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path()).await;
    let names = [("single".to_owned(), 1), ("batch".to_owned(), 3)];
    let writers = Writers::start(&server.url, names).await;
    writers.wait_for(300).await;
    server.kill9();
    let (mut acked, pending) = writers.finish().await;
    let crashed = std::fs::read(dir.path().join(LOG)).unwrap();
    let end = crashed.iter().position(|&b| b == 0);
    assert!(
        end.is_some_and(|end| crashed.len() - end >= 64 << 10),
        "no zeros ahead of the log's end after the crash"
    );

    let server = ServerProcess::spawn(dir.path()).await;
    let client = Client::connect(&server.url).await.unwrap();
    for keys in pending {
        acked.extend(send(&client, &keys).await.unwrap());
    }
    let events = assert_whole(&client, &acked).await;
    assert!(!any_zero_byte(&events), "a zero byte reached StreamEvents");
    let page = client
        .query(auditlog_client::Query::new().limit(1000))
        .await
        .unwrap();
    assert_eq!(page.events.len(), events.len().min(1000));
    assert!(!any_zero_byte(&page.events), "a zero byte reached Query");
    let quarantined = std::fs::read(dir.path().join(QUARANTINE)).unwrap_or_default();
    assert!(!quarantined.contains(&0), "a zero byte was quarantined");
    // The live file: records up to its first zero byte, then only zeros.
    let live = std::fs::read(dir.path().join(LOG)).unwrap();
    let end = live.iter().position(|&b| b == 0).unwrap_or(live.len());
    assert!(live[end..].iter().all(|&b| b == 0), "bytes after the zeros");
    let lines = live[..end].split(|&b| b == b'\n').filter(|l| !l.is_empty());
    assert_eq!(lines.count(), events.len());
}

/// A crash tore a write into the zeros, and a later block of the same write
/// reached the disk past a stretch of them: neither was acknowledged, so
/// both are quarantined (without zeros) and the chain goes on from the last
/// synced record.
#[tokio::test]
async fn a_torn_write_into_the_zeros_is_quarantined_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path()).await;
    let receipts = log_singles(&Client::connect(&server.url).await.unwrap(), 5).await;
    server.kill9();
    let log = dir.path().join(LOG);
    let crashed = std::fs::read(&log).unwrap();
    let end = crashed
        .iter()
        .position(|&b| b == 0)
        .expect("zeros ahead of the log");
    let kept = crashed[..end].to_vec();
    let head = String::from_utf8(kept.clone()).unwrap();
    let head = head.lines().last().unwrap();
    let next = record_line(
        6,
        &field(head, "timestamp"),
        &field(head, "signature"),
        TEST_KEY.as_bytes(),
    );
    let torn = &next.as_bytes()[..next.len() / 2];
    let later = format!("{next}\n");
    {
        use std::os::unix::fs::FileExt as _;
        let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        file.write_all_at(torn, end as u64).unwrap();
        file.write_all_at(later.as_bytes(), end as u64 + 8192)
            .unwrap();
    }

    let server = ServerProcess::spawn(dir.path()).await;
    assert_eq!(
        std::fs::read(&log).unwrap(),
        kept,
        "the synced records stay"
    );
    let quarantined = std::fs::read(dir.path().join(QUARANTINE)).unwrap();
    assert_eq!(
        String::from_utf8(quarantined).unwrap(),
        format!("{}\n{later}", String::from_utf8_lossy(torn))
    );
    let client = Client::connect(&server.url).await.unwrap();
    assert_whole(&client, &receipts).await;
    assert_chain_continues(&client, &receipts[4]).await;
}

#[tokio::test]
async fn a_zeroed_record_inside_the_log_is_damage_and_the_records_after_it_stay() {
    let server = TestServer::start().await;
    let receipts = log_singles(&server.client().await, 5).await;
    // Stopped cleanly, the head file names seq 5. Then a block of the log
    // reads back as zeros (record 3), with zeros ahead as a crash leaves
    // them: those zeros are damage, not the log's end.
    let server = server
        .restart_after(
            |dir| {
                let log = dir.join(LOG);
                let mut bytes = std::fs::read(&log).unwrap();
                let lines: Vec<usize> = bytes
                    .split_inclusive(|&b| b == b'\n')
                    .map(<[u8]>::len)
                    .collect();
                let start: usize = lines[..2].iter().sum();
                bytes[start..start + lines[2]].fill(0);
                bytes.extend_from_slice(&[0; 4096]);
                std::fs::write(&log, bytes).unwrap();
            },
            |_| {},
        )
        .await;
    assert!(
        !server.data_dir.join(QUARANTINE).exists(),
        "acknowledged records were quarantined"
    );
    let client = server.client().await;
    let seqs: Vec<u64> = all_events(&client).await.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 4, 5], "the records after the zeros are served");
    let next = client
        .log(NewEvent::workflow_started("after"))
        .await
        .unwrap();
    assert_eq!(next.seq, 6);
    assert_eq!(
        all_events(&client).await.last().unwrap().prev,
        receipts[4].signature
    );
    let report = client.verify().await.unwrap();
    // The record after it cannot be chained to the unreadable one, so it
    // may show too, on the same line (the zeros swallowed its newline).
    let found = problems(&report);
    assert!(
        found.contains(&(pb::ProblemKind::Malformed, 3, 3)) && found.iter().all(|p| p.2 == 3),
        "the zeroed record is reported at its line, and only there: {:?}",
        report.problems
    );
}

/// Three records, the file holding them edited by `edit` with the server
/// down, then the server's own seq 4: what verification then finds. The
/// file is `audit.log`, or with `sealed` the segment the records were
/// sealed into, left plain by a failing compression (`audit.log` is then
/// empty, and the server's record chains to that segment's last record).
async fn findings_after_a_change_and_a_record(
    sealed: bool,
    edit: impl FnOnce(&mut Vec<String>),
) -> Vec<(pb::ProblemKind, u64, u64)> {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_singles(&client, 3).await;
    if sealed {
        std::fs::write(server.data_dir.join("FAIL_SEALING"), "compress").unwrap();
        // Without waiting for the compression, which fails.
        client.rotate(false).await.unwrap();
    }
    let server = server
        .restart_after(
            |dir| {
                let file = if sealed {
                    let plain = common::plain_sealed(dir);
                    assert_eq!(plain.len(), 1, "one sealed plain segment: {plain:?}");
                    assert_eq!(std::fs::metadata(dir.join(LOG)).unwrap().len(), 0);
                    dir.join(&plain[0])
                } else {
                    dir.join(LOG)
                };
                common::tamper(&file, edit);
            },
            |_| {},
        )
        .await;
    let client = server.client().await;
    let next = client
        .log(NewEvent::workflow_started("after"))
        .await
        .unwrap();
    assert_eq!(next.seq, 4);
    if sealed {
        let plain = common::plain_sealed(&server.data_dir);
        assert_eq!(plain.len(), 1, "the segment is still plain: {plain:?}");
    }
    problems(&client.verify().await.unwrap())
}

#[tokio::test]
async fn a_forged_copy_of_a_record_is_reported_where_it_is_and_not_at_the_next_record() {
    // A copy of seq 3 put before it, carrying seq 2's signature (so its
    // MAC fails): recovery indexes the first copy of a seq.
    let found = findings_after_a_change_and_a_record(false, |lines| {
        let signature = field(&lines[1], "signature");
        let forged = common::edit_line(&lines[2], &field(&lines[2], "signature"), &signature);
        lines.insert(2, forged);
    })
    .await;
    assert!(
        !found.is_empty() && found.iter().all(|&(_, seq, line)| seq == 3 && line <= 4),
        "the copy is reported on its lines, and the server's own record (seq 4, \
         line 5) is not: {found:?}"
    );
}

#[tokio::test]
async fn a_line_that_is_no_record_is_reported_alone_and_not_the_servers_next_record() {
    // A whole line after the last record that reads as no record at all.
    let found =
        findings_after_a_change_and_a_record(false, |lines| lines.push("{\"seq\":".into())).await;
    // The line is where seq 4 was expected; the server's seq 4 (line 5)
    // follows it unreported, whether the line took a record's place or not.
    assert_eq!(found, vec![(pb::ProblemKind::Malformed, 4, 4)]);
}

#[tokio::test]
async fn after_a_seal_the_chain_goes_on_from_the_sealed_files_last_record_past_a_bad_line() {
    // A line that reads as no record put at the end of the sealed segment
    // while the server is down, `audit.log` empty: the server's next
    // record chains to the segment's last record, as verification joins
    // the files, so the line (line 4 of the segment) is the only finding.
    let found =
        findings_after_a_change_and_a_record(true, |lines| lines.push("{\"seq\":".into())).await;
    assert_eq!(found, vec![(pb::ProblemKind::Malformed, 4, 4)]);
}
