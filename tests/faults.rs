//! Faults from below: a full disk (also one too full for the zeros the
//! writer keeps ahead of the log). The data directory is put on a small
//! tmpfs (mounting needs root, which CI has; elsewhere the test says why it
//! does not run and passes nothing off as tested).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use auditlog_client::pb::Receipt;
use auditlog_client::{Client, NewEvent, Query};
use common::{
    TestServer, assert_whole, health_of, plain_sealed, wait_for_health, wait_until_within,
};
use tonic_health::pb::health_check_response::ServingStatus;

/// The name health reports writes under.
const AUDIT_SERVICE: &str = "auditlog.v1.AuditService";

/// A tmpfs of `size` mounted on a temp dir, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// [`Tmpfs::mount`], or `None` after saying why `test` does not run.
    fn mount_or_skip(size: &str, test: &str) -> Option<Tmpfs> {
        Tmpfs::mount(size)
            .inspect_err(|why| println!("SKIPPED {test}: {why}"))
            .ok()
    }

    /// Mounts one, or says why it cannot.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (root is needed): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: dir.path().to_path_buf(),
            _dir: dir,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn event(i: u64) -> NewEvent {
    NewEvent::email_sent(format!("LEAD-{i}"), "someone@example.com", "hello")
        .detail("padding", "x".repeat(200))
}

/// Logs events until the server refuses one as a full disk
/// (RESOURCE_EXHAUSTED, saying so); the receipts of those it acknowledged.
async fn fill_until_refused(client: &Client) -> Vec<Receipt> {
    let mut acked = Vec::new();
    let error = loop {
        match client.log(event(acked.len() as u64)).await {
            Ok(r) => acked.push(r),
            Err(e) => break e,
        }
        assert!(acked.len() < 100_000, "the disk never filled up");
    };
    assert_eq!(
        error.code(),
        Some(tonic::Code::ResourceExhausted),
        "{error}"
    );
    assert!(error.to_string().contains("disk"), "{error}");
    acked
}

/// Logs `event` (which carries an idempotency key) once the server takes
/// writes again after space was freed. If the head file could not be
/// written while the disk was full, writes are refused as a full disk
/// (RESOURCE_EXHAUSTED, "nothing was written") until the head thread's next
/// tick, at most a second away, writes it (`store/head.rs`): the server
/// recovers by itself and a caller retries. Only that refusal is retried;
/// CI at e4f1faf failed when a head tick fell inside the full-disk window.
async fn log_once_space_is_back(client: &Client, event: NewEvent) -> Receipt {
    wait_until_within(
        std::time::Duration::from_secs(10),
        "writes to be taken again",
        || async {
            match client.log(event.clone()).await {
                Ok(receipt) => Ok(receipt),
                Err(e)
                    if e.code() == Some(tonic::Code::ResourceExhausted)
                        && e.to_string().contains("nothing was written") =>
                {
                    Err(e.to_string())
                }
                Err(e) => panic!("a write once space was back failed: {e}"),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_loses_nothing_and_recovers_by_itself() {
    let Some(fs) = Tmpfs::mount_or_skip(
        "512k",
        "a_full_disk_refuses_writes_loses_nothing_and_recovers_by_itself",
    ) else {
        return;
    };
    // Space to give back later: a file beside the data directory.
    let filler = fs.path.join("filler");
    std::fs::write(&filler, vec![0u8; 128 * 1024]).unwrap();
    let data = fs.path.join("data");
    let mut server = TestServer::start_in(&data, |_| {}).await;
    let client = server.client().await;

    let acked = fill_until_refused(&client).await;
    let head = acked.len() as u64;
    assert!(head > 100, "only {head} events fit");

    // Further writes fail the same way and use no seq; reads keep working.
    for i in 0..5 {
        let e = client.log(event(1000 + i)).await.unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::ResourceExhausted));
    }
    assert_eq!(client.stats(None).await.unwrap().head_seq, head);
    let last = client.query(Query::new().limit(1)).await.unwrap();
    assert_eq!(last.events[0].signature, acked.last().unwrap().signature);
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, head);

    // Health of writes says so, and turns back once space is freed, before
    // anyone writes again; the server as a whole serves reads throughout.
    let channel = server.channel().await;
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::NotServing).await;
    assert_eq!(
        health_of(&channel, "").await.unwrap(),
        ServingStatus::Serving
    );

    // Space comes back: writes resume by themselves, at the next seq.
    std::fs::remove_file(&filler).unwrap();
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::Serving).await;
    let receipt = client.log(event(9999)).await.unwrap();
    assert_eq!(receipt.seq, head + 1);
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, head + 1);
    drop(client);
    // Stopped before the tmpfs goes, so nothing holds it busy.
    server.stop().await;
}

/// The writer keeps a MiB of zeros ahead of the log's end; on a disk too
/// full for the next MiB, the log is written on without them while records
/// fit (past where the zeros ran out), then writes are refused as a full
/// disk: nothing refused is acknowledged, nothing acknowledged is lost, and
/// the stopped server's log holds no zero byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_too_full_for_the_zeros_ahead_writes_on_until_full_and_loses_nothing() {
    let Some(fs) = Tmpfs::mount_or_skip(
        "1600k",
        "a_disk_too_full_for_the_zeros_ahead_writes_on_until_full_and_loses_nothing",
    ) else {
        return;
    };
    // Freed before the restart, which needs some space of its own.
    let filler = fs.path.join("filler");
    std::fs::write(&filler, vec![0u8; 128 * 1024]).unwrap();
    let data = fs.path.join("data");
    let mut server = TestServer::start_in(&data, |_| {}).await;
    let client = server.client().await;
    let mut acked = fill_until_refused(&client).await;
    // A page can come free for a moment after a refusal (the head and the
    // checkpoint are replaced beside the log, a temporary file each), so a
    // later write may still fit: it must then be kept like any other. One
    // failed under CI's load that way (2026-12-05).
    let mut refused = 0;
    for i in 0..5 {
        match client.log(event(9999 + i)).await {
            Ok(r) => acked.push(r),
            Err(e) => {
                assert_eq!(e.code(), Some(tonic::Code::ResourceExhausted), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "a full disk took five more events");
    drop(client);
    server.stop().await;

    let log = std::fs::read(data.join("audit.log")).unwrap();
    assert!(!log.contains(&0), "the stopped server's log holds zeros");
    // The first MiB of zeros fitted; the next did not, from half way on.
    assert!(
        log.len() > 1 << 20,
        "writes stopped at {} bytes, where the zeros ran out",
        log.len()
    );
    std::fs::remove_file(&filler).unwrap();
    let server = TestServer::start_in(&data, |_| {}).await;
    let client = server.client().await;
    let events = assert_whole(&client, &acked).await;
    assert_eq!(events.len(), acked.len(), "a refused write is in the log");
    drop(client);
    let mut server = server;
    server.stop().await;
}

/// The log writes into zeros it allocated ahead, so on a disk that fills
/// up beside it the first file to find no space is the head file (written
/// beside the log once a second): writes are then refused as a full disk,
/// RESOURCE_EXHAUSTED, as when the log itself finds none (it was
/// UNAVAILABLE, "the head file cannot be written", which CI met once when
/// the timing went that way), and resume once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filled_beside_the_log_refuses_writes_as_a_full_disk() {
    let Some(fs) = Tmpfs::mount_or_skip(
        "4m",
        "a_disk_filled_beside_the_log_refuses_writes_as_a_full_disk",
    ) else {
        return;
    };
    let data = fs.path.join("data");
    let mut server = TestServer::start_in(&data, |_| {}).await;
    let client = server.client().await;
    client.log(event(0)).await.unwrap();
    // Everything left taken by another file.
    let filler = fs.path.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut file, &[0u8; 4096]).is_ok() {}
    drop(file);

    let mut acked = 1u64;
    let refused = loop {
        match client.log(event(acked)).await {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 2_000, "writes went on with the disk full");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(
        refused.code(),
        Some(tonic::Code::ResourceExhausted),
        "{refused}"
    );
    assert!(refused.to_string().contains("disk"), "{refused}");
    let channel = server.channel().await;
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::NotServing).await;

    std::fs::remove_file(&filler).unwrap();
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::Serving).await;
    let receipt = client.log(event(9999)).await.unwrap();
    assert_eq!(receipt.seq, acked + 1);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_writes_turns_write_health_off_and_a_restart_recovers() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(client.log(event(i)).await.unwrap());
    }
    // The fault-injection feature (on for tests) fails the next fdatasync.
    std::fs::write(server.data_dir.join("FAIL_NEXT_FSYNC"), b"").unwrap();
    let e = client.log(event(10)).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unavailable), "{e}");
    assert!(e.to_string().contains("fsync"), "{e}");
    // Never retried as if nothing happened: every later write is refused.
    let e = client.log(event(11)).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unavailable), "{e}");

    // Writes are off in health; the server as a whole still serves reads.
    let channel = server.channel().await;
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::NotServing).await;
    assert_eq!(
        health_of(&channel, "").await.unwrap(),
        ServingStatus::Serving
    );
    // Reads still work.
    assert_eq!(client.stats(None).await.unwrap().head_seq, 10);

    // A restart recovers from what is on disk: every acknowledged event, and
    // the chain verifies; writes work again.
    let server = server.restart(|_| {}).await;
    let client = server.client().await;
    for r in &acked {
        let page = client
            .query(Query::new().oldest_first().limit(1000))
            .await
            .unwrap();
        assert!(
            page.events
                .iter()
                .any(|e| e.seq == r.seq && e.signature == r.signature),
            "acknowledged seq {} lost",
            r.seq
        );
    }
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    client.log(event(99)).await.unwrap();
}

/// A full disk while a rotation compresses its segment: the rotation fails
/// with a clear status, every event stays readable and verifiable from the
/// sealed file, and once space comes back the segment is compressed by the
/// server itself, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compression_a_full_disk_stopped_finishes_once_space_is_back() {
    let Some(fs) = Tmpfs::mount_or_skip(
        "1m",
        "a_compression_a_full_disk_stopped_finishes_once_space_is_back",
    ) else {
        return;
    };
    let data = fs.path.join("data");
    let mut server = TestServer::start_in(&data, |_| {}).await;
    let client = server.client().await;
    for i in 0..300 {
        client.log(event(i)).await.unwrap();
    }
    // Take every byte left, then rotate: the seal (a rename and an empty
    // file) fits, the compressed copy does not.
    let filler = fs.path.join("filler");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    let error = client.rotate(true).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("No space left") && message.contains("compressed again later"),
        "{message}"
    );
    assert_eq!(
        plain_sealed(&data).len(),
        1,
        "the sealed file stays as it is"
    );
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, 300);
    assert_eq!(
        client.lead_history("LEAD-7").await.unwrap().len(),
        1,
        "a lead's history reads the sealed file"
    );

    // Space comes back; the next rotation first finishes the one that failed.
    std::fs::remove_file(&filler).unwrap();
    let receipt = log_once_space_is_back(&client, event(300).idempotency_key("after-space")).await;
    assert_eq!(receipt.seq, 301);
    client.rotate(true).await.unwrap();
    assert!(plain_sealed(&data).is_empty(), "{:?}", plain_sealed(&data));
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, 301);
    assert_eq!(report.segments_checked, 3);
    drop(client);
    server.stop().await;
}
