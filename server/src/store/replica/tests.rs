//! A replica fed the groups of a writer store: byte-identical records, a
//! clean verification and the same Merkle tree, restarts; and every group
//! that does not continue its chain refused whole.

use std::path::Path;

use serde_json::{Map, Value};

use crate::keys::Keyring;
use crate::store::record::{NewEvent, Record};
use crate::store::{Durability, Store, StoreConfig, StoreError};

fn keyring() -> Keyring {
    Keyring::new("k1", vec![3; 32])
}

fn open(dir: &Path, replica: bool, max_segment_bytes: u64) -> Store {
    let config = StoreConfig {
        data_dir: dir.to_path_buf(),
        durability: Durability::Fsync,
        max_segment_bytes,
        max_segment_age: None,
        lead_copies: true,
        replica,
    };
    Store::open(config, keyring()).unwrap()
}

fn event(n: u64) -> NewEvent {
    let mut details = Map::new();
    details.insert("n".into(), Value::from(n));
    NewEvent {
        event_type: "email_sent".into(),
        actor: "test".into(),
        caller: Some("crm-sync".into()),
        lead_id: Some(format!("L{}", n % 5).into()),
        workflow: None,
        details: details.into(),
        idempotency_key: n.is_multiple_of(3).then(|| format!("key-{n}").into()),
    }
}

/// A writer store holding `n` events across a rotation: seq 1 alone, then
/// batches of three (2-4, 5-7, ...), so a group from 2 + 3k to 1 + 3j holds
/// whole batches.
async fn writer(dir: &Path, n: u64) -> Store {
    let store = open(dir, false, u64::MAX);
    let mut next = 1;
    while next <= n {
        let size = if next == 1 { 1 } else { 3.min(n - next + 1) };
        store
            .append((next..next + size).map(event).collect())
            .await
            .unwrap();
        next += size;
        if next > n / 2 && next <= n / 2 + 3 {
            store.rotate(true).await.unwrap();
        }
    }
    store
}

/// The stored lines of seqs `from..=to`, each with its newline, as one
/// group.
fn group(store: &Store, from: u64, to: u64) -> Vec<u8> {
    let mut lines = Vec::new();
    for seq in from..=to {
        lines.extend(store.stored_line(seq).unwrap().unwrap());
        lines.push(b'\n');
    }
    lines
}

fn active_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("audit.log")).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_fed_a_writers_groups_holds_the_same_records_and_verifies() {
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = writer(wdir.path(), 61).await;
    // Small segments: the replica rotates and seals on its own.
    let replica = open(rdir.path(), true, 4096);
    for (from, to) in [(1, 1), (2, 10), (11, 31)] {
        assert_eq!(replica.apply(group(&source, from, to)).await.unwrap(), to);
    }
    // A re-delivered group, overlapping the head, is skipped where it overlaps.
    assert_eq!(replica.apply(group(&source, 26, 40)).await.unwrap(), 40);
    assert_eq!(replica.apply(group(&source, 5, 13)).await.unwrap(), 40);
    // A replica signs nothing itself.
    assert!(matches!(
        replica.append(vec![event(0)]).await,
        Err(StoreError::WrongRole(_))
    ));
    replica.shutdown();
    drop(replica);

    let replica = open(rdir.path(), true, 4096);
    assert_eq!(replica.head(), 40);
    assert_eq!(replica.apply(group(&source, 41, 61)).await.unwrap(), 61);
    replica.rotate(true).await.unwrap();
    for seq in 1..=61 {
        assert_eq!(
            replica.stored_line(seq).unwrap(),
            source.stored_line(seq).unwrap(),
            "seq {seq}"
        );
    }
    let head = replica.chain_head().unwrap().unwrap();
    assert_eq!(Some(head), source.chain_head().unwrap());
    // The applied groups' own bytes (a re-delivered prefix dropped) build
    // the source's tree.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while replica.tree().size() < 61 || source.tree().size() < 61 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            replica.tree().trouble()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        replica.tree().root(61).unwrap(),
        source.tree().root(61).unwrap()
    );
    assert_eq!(
        replica.idempotent_receipt("key-6").unwrap(),
        source.idempotent_receipt("key-6").unwrap()
    );
    let report = replica.verify(0, 0, &[]).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.events_checked, 61);
    let sealed = std::fs::read_dir(rdir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "audit.log" && (name.ends_with(".log") || name.ends_with(".log.gz")))
        .count();
    // Sealed by size as well as on request.
    assert!(sealed >= 2, "{sealed} sealed segments");
    // A writer store applies nothing.
    assert!(matches!(
        source.apply(group(&source, 1, 1)).await,
        Err(StoreError::WrongRole(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_does_not_continue_the_chain_is_refused_whole() {
    let (wdir, odir, rdir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let source = writer(wdir.path(), 12).await;
    // Another chain under the same key: its records verify but do not follow.
    let other = writer(odir.path(), 12).await;
    let replica = open(rdir.path(), true, u64::MAX);
    replica.apply(group(&source, 1, 4)).await.unwrap();
    let len = active_len(rdir.path());

    let mut forged = group(&source, 5, 7);
    let at = forged
        .windows(6)
        .position(|w| w == b"\"n\":6}")
        .unwrap_or(0)
        + 4;
    forged[at] = b'9';
    let swapped = [group(&source, 6, 6), group(&source, 5, 5)].concat();
    let mut torn = group(&source, 5, 6);
    torn.pop();
    let late = {
        let head = replica.chain_head().unwrap().unwrap();
        let (_, line) = Record::seal(
            event(5),
            5,
            "id".into(),
            1,
            None,
            &head.signature,
            &keyring(),
        );
        line
    };
    let foreign = Keyring::new("k2", vec![4; 32]);
    let unknown = {
        let head = replica.chain_head().unwrap().unwrap();
        let (_, line) = Record::seal(
            event(5),
            5,
            "id".into(),
            i64::MAX / 2,
            None,
            &head.signature,
            &foreign,
        );
        line
    };
    let different = {
        let mut g = group(&source, 3, 5);
        let changed = group(&other, 3, 3);
        let first = g.iter().position(|&b| b == b'\n').unwrap() + 1;
        g.splice(..first, changed);
        g
    };
    let cases: Vec<(&str, Vec<u8>, u64, &str)> = vec![
        ("forged", forged, 6, "MAC"),
        ("out of order", swapped, 6, "gap"),
        ("gapped", group(&source, 6, 8), 6, "gap"),
        (
            "not contiguous",
            [group(&source, 5, 5), group(&source, 7, 7)].concat(),
            7,
            "contiguous",
        ),
        ("another chain", group(&other, 5, 6), 5, "prev"),
        (
            "a good line, then a forged one",
            [group(&source, 5, 5), group(&other, 6, 6)].concat(),
            6,
            "prev",
        ),
        ("time going back", late, 5, "timestamp"),
        ("an unknown key", unknown, 5, "keyring"),
        ("torn", torn, 5, "newline"),
        ("ending inside a batch", group(&source, 5, 6), 6, "batch"),
        ("differs from the stored line", different, 3, "differs"),
        ("not a record", b"{\"seq\":5}\n".to_vec(), 5, "not a record"),
    ];
    for (name, lines, seq, what) in cases {
        match replica.apply(lines).await {
            Err(StoreError::Refused { seq: at, reason }) => {
                assert_eq!(at, seq, "{name}: {reason}");
                assert!(reason.contains(what), "{name}: {reason}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(replica.head(), 4, "{name}");
        assert_eq!(active_len(rdir.path()), len, "{name}");
    }
    // Still the same chain: the right group goes on.
    assert_eq!(replica.apply(group(&source, 5, 12)).await.unwrap(), 12);
    let report = replica.verify(0, 0, &[]).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_wakes_on_the_commit_or_says_how_far_behind() {
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = writer(wdir.path(), 8).await;
    let replica = std::sync::Arc::new(open(rdir.path(), true, u64::MAX));
    replica.apply(group(&source, 1, 4)).await.unwrap();
    let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
    match replica.wait_for(5, soon).await {
        Err(StoreError::Behind { head: 4, wanted: 5 }) => {}
        other => panic!("{other:?}"),
    }
    let waiting = {
        let replica = std::sync::Arc::clone(&replica);
        let later = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        tokio::spawn(async move { replica.wait_for(5, later).await })
    };
    replica.apply(group(&source, 4, 8)).await.unwrap();
    waiting.await.unwrap().unwrap();
    replica
        .wait_for(2, tokio::time::Instant::now())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_applies_a_purge_by_its_seq_range_whatever_its_own_segments() {
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The leader seals after 4 and 8 and purges both segments (1..=8); its
    // purge event is seq 11.
    let leader = open(wdir.path(), false, u64::MAX);
    for n in 1..=10 {
        leader.append(vec![event(n)]).await.unwrap();
        if n == 4 || n == 8 {
            leader.rotate(true).await.unwrap();
        }
    }
    let groups: Vec<Vec<u8>> = (1..=10).map(|n| group(&leader, n, n)).collect();
    let purge = leader
        .apply_retention(std::time::Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((purge.through_seq, purge.event_seq), (8, 11));

    // The replica sealed after 6 only: its first segment ends before the
    // purge point, its active file straddles it.
    let replica = open(rdir.path(), true, u64::MAX);
    for (n, lines) in (1..=10).zip(groups) {
        replica.apply(lines).await.unwrap();
        if n == 6 {
            replica.rotate(true).await.unwrap();
        }
    }
    assert_eq!(replica.apply(group(&leader, 11, 11)).await.unwrap(), 11);
    let served = |store: &Store| -> Vec<u64> {
        (1..=11)
            .filter(|&s| store.stored_line(s).unwrap().is_some())
            .collect()
    };
    assert_eq!(served(&replica), vec![9, 10, 11]);
    let gz = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".log.gz")
            })
            .count()
    };
    assert_eq!(gz(rdir.path()), 0, "the replica's segment 1..=6 is deleted");
    // Verification checks what the replica still holds, 7..=11, from where
    // its own files start.
    let check = |store: &Store| {
        let report = store.verify(0, 0, &[]).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.events_checked, 5);
    };
    check(&replica);
    assert_eq!(replica.chain_head().unwrap(), leader.chain_head().unwrap());
    // A re-delivered purge event changes nothing; a restart keeps it all.
    replica.apply(group(&leader, 11, 11)).await.unwrap();
    replica.shutdown();
    drop(replica);
    let replica = open(rdir.path(), true, u64::MAX);
    assert_eq!(served(&replica), vec![9, 10, 11]);
    check(&replica);
}

/// A replica's chain is the leader's: after a restart on a file with a line
/// it did not index at the end (a changed copy of its last record), it goes
/// on from its last indexed record and takes the leader's next group, where
/// a writer would continue the line verification reads last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_on_a_changed_line_takes_the_leaders_next_group() {
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = writer(wdir.path(), 7).await;
    let replica = open(rdir.path(), true, u64::MAX);
    replica.apply(group(&source, 1, 4)).await.unwrap();
    replica.shutdown();
    let path = rdir.path().join("audit.log");
    let mut log = std::fs::read(&path).unwrap();
    log.truncate(log.iter().rposition(|&b| b == b'\n').unwrap() + 1);
    let last = group(&source, 4, 4);
    // Seq 4 again with another signature (its MAC then fails).
    let sig = last.len() - 3 - 64;
    let changed = [&last[..sig], &[b'a'; 64][..], &last[sig + 64..]].concat();
    log.extend_from_slice(&changed);
    std::fs::write(&path, &log).unwrap();
    let replica = open(rdir.path(), true, u64::MAX);
    assert_eq!(replica.apply(group(&source, 5, 7)).await.unwrap(), 7);
    replica.shutdown();
}
