//! Faults on the write path while the server runs: a seal that fails part
//! way, the active file deleted or cut under the server, and what health
//! says meanwhile. Faults are injected through files in the data directory (the
//! `fault-injection` feature, on for tests) or made for real.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use auditlog_client::NewEvent;
use auditlog_client::pb::ProblemKind;
use common::{
    TestServer, assert_whole, field, health_of, plain_sealed, problems, read_lines, wait_for_health,
};
use tonic_health::pb::health_check_response::ServingStatus;

/// The service name a load balancer probes for writes.
const AUDIT_SERVICE: &str = "auditlog.v1.AuditService";

fn event(i: u64) -> NewEvent {
    NewEvent::email_sent(format!("LEAD-{i}"), "someone@example.com", "hello")
}

/// A seal whose new active file cannot be created, or cannot be put in
/// place, changes nothing on disk: writes go on into the file at
/// `audit.log`, verification stays clean, and once the fault is gone the
/// next rotation seals everything written meanwhile, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_failing_part_way_leaves_audit_log_in_place_and_a_later_one_succeeds() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(client.log(event(i)).await.unwrap());
    }
    let trigger = server.data_dir.join("FAIL_SEALING");
    for step in ["create", "install"] {
        std::fs::write(&trigger, step).unwrap();
        let e = client.rotate(false).await.unwrap_err();
        assert!(e.to_string().contains("injected failure"), "{step}: {e}");
        for i in 0..5 {
            acked.push(client.log(event(i)).await.unwrap());
        }
        // The writer wrote where the disk says the active file is.
        let lines = read_lines(&server.log_path());
        assert_eq!(lines.len(), acked.len(), "{step}");
        assert_eq!(
            field(lines.last().unwrap(), "signature"),
            acked.last().unwrap().signature,
            "{step}"
        );
        assert!(plain_sealed(&server.data_dir).is_empty(), "{step}");
        let report = client.verify().await.unwrap();
        assert!(report.ok, "{step}: {:?}", report.problems);
        let channel = server.channel().await;
        assert_eq!(
            health_of(&channel, AUDIT_SERVICE).await.unwrap(),
            ServingStatus::Serving,
            "{step}: nothing stops writes"
        );
    }

    std::fs::remove_file(&trigger).unwrap();
    let sealed = client.rotate(true).await.unwrap();
    assert!(sealed.rotated, "{sealed:?}");
    assert_eq!((sealed.first_seq, sealed.last_seq), (1, 15));
    acked.push(client.log(event(99)).await.unwrap());
    assert_eq!(read_lines(&server.log_path()).len(), 1);
    assert_whole(&client, &acked).await;
}

/// `audit.log` deleted under a running server: what is written after it
/// would only be in a file no longer on disk, so nothing is acknowledged,
/// every write fails with a status that says what happened and what to do,
/// and health of writes turns NOT_SERVING while reads go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_active_file_stops_acknowledgements_and_health_of_writes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for i in 0..5 {
        client.log(event(i)).await.unwrap();
    }
    let channel = server.channel().await;
    assert_eq!(
        health_of(&channel, AUDIT_SERVICE).await.unwrap(),
        ServingStatus::Serving
    );
    std::fs::remove_file(server.log_path()).unwrap();

    for i in 5..10 {
        let e = client.log(event(i)).await.unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::FailedPrecondition), "{e}");
        let message = e.to_string();
        assert!(
            message.contains("audit.log was deleted") && message.contains("restart"),
            "{message}"
        );
    }
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::NotServing).await;
    assert_eq!(
        health_of(&channel, "").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(client.stats(None).await.unwrap().head_seq, 5);
    let e = client.rotate(false).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::FailedPrecondition), "{e}");
}

/// `audit.log` moved away, moved away with a copy put in its place, or
/// replaced by a copy renamed over it: the server's open file is no longer
/// the log (what it wrote next would be in a file nobody reads as
/// `audit.log`, or in the copy's place behind its back), so the next write
/// is refused, saying which. Checked after every sync by inode and link
/// count (`statx`, no timestamps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_moved_away_or_replaced_under_the_server_is_refused_naming_which() {
    enum Change {
        MoveAway,
        MoveAwayAndCopyBack,
        RenameACopyOver,
    }
    for (change, says) in [
        (Change::MoveAway, "audit.log was moved away"),
        (
            Change::MoveAwayAndCopyBack,
            "audit.log was replaced by another file",
        ),
        (
            Change::RenameACopyOver,
            "audit.log was replaced by another file",
        ),
    ] {
        let server = TestServer::start().await;
        let client = server.client().await;
        for i in 0..3 {
            client.log(event(i)).await.unwrap();
        }
        let moved = server.data_dir.join("moved-away.log");
        match change {
            Change::MoveAway => std::fs::rename(server.log_path(), &moved).unwrap(),
            Change::MoveAwayAndCopyBack => {
                std::fs::rename(server.log_path(), &moved).unwrap();
                std::fs::copy(&moved, server.log_path()).unwrap();
            }
            Change::RenameACopyOver => {
                std::fs::copy(server.log_path(), &moved).unwrap();
                std::fs::rename(&moved, server.log_path()).unwrap();
            }
        }
        // The first write after the move lands in the moved file and is
        // refused at its sync; every one after it is refused at once.
        for i in 3..5 {
            let e = client.log(event(i)).await.unwrap_err();
            assert_eq!(e.code(), Some(tonic::Code::FailedPrecondition), "{e}");
            assert!(e.to_string().contains(says), "{says}: {e}");
        }
        assert_eq!(client.stats(None).await.unwrap().head_seq, 3);
    }
}

/// The head file (the last acknowledged seq, kept outside the log) is what
/// lets a start tell a cut of the log's tail; while it cannot be written
/// (here a directory sits where its temporary file goes, which no
/// permission check, root's included, lets a file replace), nothing more
/// is acknowledged and health of writes is off. Once it can, writes resume
/// by themselves, with no seq skipped, and the head catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_file_that_cannot_be_written_stops_writes_until_it_can() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for i in 0..3 {
        client.log(event(i)).await.unwrap();
    }
    let head = server.data_dir.join("head");
    let head_says = |seq: u64| {
        let head = head.clone();
        move || {
            let head = head.clone();
            async move {
                let text = std::fs::read_to_string(&head).map_err(|e| e.to_string())?;
                if text.contains(&format!("\"seq\":{seq},")) {
                    Ok(())
                } else {
                    Err(text)
                }
            }
        }
    };
    common::wait_until("the head at seq 3", head_says(3)).await;
    let blocker = server.data_dir.join("head.tmp");
    std::fs::create_dir(&blocker).unwrap();
    // Acknowledged before the head thread's next try finds it stuck.
    client.log(event(3)).await.unwrap();

    let channel = server.channel().await;
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::NotServing).await;
    let e = client.log(event(4)).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unavailable), "{e}");
    assert!(
        e.to_string().contains("head file cannot be written") && e.to_string().contains("resume"),
        "{e}"
    );
    assert_eq!(
        health_of(&channel, "").await.unwrap(),
        ServingStatus::Serving,
        "reads go on"
    );
    assert_eq!(client.stats(None).await.unwrap().head_seq, 4);

    std::fs::remove_dir(&blocker).unwrap();
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::Serving).await;
    let receipt = client.log(event(5)).await.unwrap();
    assert_eq!(receipt.seq, 5, "no seq skipped or given twice");
    common::wait_until("the head at seq 5", head_says(5)).await;
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

/// Deleted under an idle server: health of writes says so before anyone
/// writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_active_file_is_noticed_by_an_idle_server() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log(event(0)).await.unwrap();
    std::fs::remove_file(server.log_path()).unwrap();
    let channel = server.channel().await;
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::NotServing).await;
    let e = client.log(event(1)).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::FailedPrecondition), "{e}");
}

/// `audit.log` moved away under a running server: VerifyIntegrity answers
/// a report, not an error. The sealed segment is checked as usual, and one
/// problem names the missing file, the acknowledged seqs that went with it
/// and what to do. Before, the call failed `INTERNAL: reading the log
/// failed: No such file or directory (os error 2)`. Put back and
/// restarted, the log is whole and clean; moved away when it holds no event
/// (right after a seal), the file alone is named, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_with_audit_log_moved_away_names_it_in_a_report() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(client.log(event(i)).await.unwrap());
    }
    assert!(client.rotate(true).await.unwrap().rotated);
    for i in 5..8 {
        acked.push(client.log(event(i)).await.unwrap());
    }
    // Outside the names the server gives its files.
    let moved = server.data_dir.join("moved-away.log");
    std::fs::rename(server.log_path(), &moved).unwrap();

    let report = client.verify().await.unwrap();
    assert!(!report.ok, "{report:?}");
    assert_eq!(
        problems(&report),
        [(ProblemKind::Truncated, 6, 0)],
        "{report:?}"
    );
    let problem = &report.problems[0];
    assert_eq!(problem.file, "audit.log");
    for says in [
        "audit.log is missing from the data directory",
        "seqs 6..=8, which the server acknowledged",
        "restore it",
        "restart the server",
    ] {
        assert!(
            problem.message.contains(says),
            "{says}: {}",
            problem.message
        );
    }
    assert_eq!((report.events_checked, report.head_seq), (5, 5));

    let server = server
        .restart_after(
            |dir| std::fs::rename(dir.join("moved-away.log"), dir.join("audit.log")).unwrap(),
            |_| {},
        )
        .await;
    let client = server.client().await;
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_whole(&client, &acked).await;

    // Nothing in it: only the file is missing.
    assert!(client.rotate(true).await.unwrap().rotated);
    std::fs::rename(server.log_path(), &moved).unwrap();
    let report = client.verify().await.unwrap();
    assert_eq!(
        problems(&report),
        [(ProblemKind::SegmentMissing, 0, 0)],
        "{report:?}"
    );
    assert!(
        report.problems[0].message.contains("none is lost"),
        "{report:?}"
    );
    assert_eq!(report.head_seq, 8);
}

/// `audit.log` cut short under a running server (`truncate`): nothing more
/// is acknowledged, health of writes says so, and after a clean stop the
/// next start reports every acknowledged seq the cut took and hands none of
/// them out again. Before, the head file was written from the log's last
/// record, which could no longer be read, so the start found nothing
/// missing, verification said OK and new events got seqs 1, 2, ... again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_cut_under_the_server_is_refused_and_reported_after_a_restart() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for i in 0..10 {
        client.log(event(i)).await.unwrap();
    }
    let channel = server.channel().await;
    std::fs::OpenOptions::new()
        .write(true)
        .open(server.log_path())
        .unwrap()
        .set_len(0)
        .unwrap();
    // Noticed by the idle writer, before anyone writes.
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::NotServing).await;
    let e = client.log(event(10)).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::FailedPrecondition), "{e}");
    assert!(e.to_string().contains("audit.log was cut"), "{e}");

    let server = server.restart(|_| {}).await;
    let client = server.client().await;
    let report = client.verify().await.unwrap();
    assert!(!report.ok, "{report:?}");
    assert!(
        problems(&report).contains(&(ProblemKind::Truncated, 1, 0)),
        "{report:?}"
    );
    assert_eq!(client.log(event(11)).await.unwrap().seq, 11);
}

/// Cut and then written again before the idle writer looked: the write
/// lands past a hole where the cut records were, and is not acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_a_cut_lands_past_a_hole_and_is_refused() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // Enough bytes that the cut frees whole blocks (a hole is block-sized).
    for i in 0..100 {
        client.log(event(i)).await.unwrap();
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(server.log_path())
        .unwrap();
    file.set_len(0).unwrap();
    // The writer's zeros ahead went with the cut: refill the file to well
    // past the log's end, as if nothing happened but for a hole at its
    // start, so only the hole tells.
    file.set_len(4 << 20).unwrap();
    let e = client.log(event(100)).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::FailedPrecondition), "{e}");
    assert!(e.to_string().contains("audit.log was cut"), "{e}");
}
