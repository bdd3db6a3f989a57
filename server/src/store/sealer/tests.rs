use std::time::Duration;

use super::*;
use crate::keys::Keyring;
use crate::store::manifest::Manifest;
use crate::store::{Filter, NewEvent, Order, Record, Store, StoreConfig};
use serde_json::{Map, Value};

const N: u64 = 300;

fn keyring() -> Keyring {
    Keyring::new("k1", vec![5; 32])
}

fn open(dir: &Path) -> Store {
    open_with(dir, true)
}

fn open_with(dir: &Path, lead_copies: bool) -> Store {
    Store::open(StoreConfig::for_test(dir, lead_copies), keyring()).unwrap()
}

/// A store holding `N` events in `audit.log`, closed.
async fn build() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for chunk in (1..=N).collect::<Vec<_>>().chunks(50) {
        let events = chunk
            .iter()
            .map(|i| NewEvent {
                event_type: "email_sent".into(),
                actor: "test".into(),
                caller: None,
                lead_id: Some(format!("L{}", i % 9).into()),
                workflow: None,
                details: Default::default(),
                idempotency_key: None,
            })
            .collect();
        store.append(events).await.unwrap();
    }
    store.shutdown();
    dir
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Reopens the store after the "crash" and checks it: every event is
/// there and readable, verification is clean, and once the sealer has
/// finished the interrupted rotation, the segment is compressed, in the
/// manifest, and no plain or temporary file is left.
async fn check_recovers(dir: &Path) {
    let store = open(dir);
    assert_eq!(store.head(), N);
    let records = store
        .page::<Record<Map<String, Value>>>(
            &Filter::default(),
            Order::OldestFirst,
            None,
            u64::MAX,
            10_000,
        )
        .unwrap()
        .records;
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=N).collect::<Vec<_>>()
    );
    for _ in 0..200 {
        let names = files(dir);
        let settled = !names
            .iter()
            .any(|n| n.ends_with(".tmp") || (n.ends_with(".log") && n != LOG_FILE));
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let names = files(dir);
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".tmp") || (n.ends_with(".log") && n != LOG_FILE)),
        "left over: {names:?}"
    );
    let manifest = Manifest::load(dir, &keyring()).unwrap();
    assert!(manifest.authentic);
    assert_eq!(manifest.manifest.segments.len(), 1, "{names:?}");
    assert_eq!(manifest.manifest.segments[0].last_seq, N);
    let report = store.verify(0, 0, &[]).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.events_checked, N);
    // The chain goes on in the new active file.
    let receipt = store.append(vec![NewEvent {
        event_type: "after".into(),
        actor: "test".into(),
        caller: None,
        lead_id: None,
        workflow: None,
        details: Default::default(),
        idempotency_key: None,
    }]);
    assert_eq!(receipt.await.unwrap()[0].seq, N + 1);
    assert!(store.verify(0, 0, &[]).unwrap().findings.is_empty());
    store.shutdown();
}

/// Step 3's manifest half, by hand.
fn record_in_manifest(dir: &Path, plain: &str, info: &segment::SealedInfo) {
    let (gz, idx) = names(plain);
    let mut manifest = Manifest::load(dir, &keyring()).unwrap().manifest;
    manifest.segments.push(SegmentEntry::new(gz, idx, info));
    manifest.store(dir, &keyring()).unwrap();
}

#[tokio::test]
async fn crash_after_the_rename_before_the_new_file() {
    let dir = build().await;
    let plain = "audit.20260101T000000.000000Z.log";
    std::fs::rename(dir.path().join(LOG_FILE), dir.path().join(plain)).unwrap();
    check_recovers(dir.path()).await;
}

#[tokio::test]
async fn crash_after_seal() {
    let dir = build().await;
    seal(dir.path()).unwrap();
    check_recovers(dir.path()).await;
}

/// A seal failing at either of its steps that can fail for want of a
/// resource leaves `audit.log` the same file, whole, and no stray file; a
/// crash between the two renames recovers.
#[tokio::test]
async fn a_failed_seal_leaves_the_active_file_in_place() {
    use std::os::unix::fs::MetadataExt as _;

    let dir = build().await;
    let active = dir.path().join(LOG_FILE);
    let before = (
        std::fs::read(&active).unwrap(),
        active.metadata().unwrap().ino(),
    );
    for step in ["create", "install"] {
        std::fs::write(dir.path().join("FAIL_SEALING"), step).unwrap();
        match seal(dir.path()) {
            Err(SealError::Unchanged(e)) => assert!(e.to_string().contains(step), "{e}"),
            other => panic!("{step}: {other:?}"),
        }
        let after = (
            std::fs::read(&active).unwrap(),
            active.metadata().unwrap().ino(),
        );
        assert!(after == before, "{step}: audit.log changed");
        assert_eq!(
            files(dir.path()),
            [
                "FAIL_SEALING",
                LOG_FILE,
                crate::store::head::HEAD_FILE,
                "tree"
            ],
            "{step}"
        );
    }
    std::fs::remove_file(dir.path().join("FAIL_SEALING")).unwrap();
    // A crash between the two renames: the new file is only a leftover.
    std::fs::write(durable::tmp_path(&active), b"").unwrap();
    std::fs::rename(
        &active,
        dir.path().join("audit.20260101T000000.000000Z.log"),
    )
    .unwrap();
    check_recovers(dir.path()).await;
}

#[tokio::test]
async fn crash_during_compression() {
    let dir = build().await;
    let (plain, _) = seal(dir.path()).unwrap();
    let (gz, idx) = names(&plain);
    // Half a gzip file and no index, under their temporary names.
    std::fs::write(dir.path().join(format!("{gz}.tmp")), [0x1f, 0x8b, 8, 0]).unwrap();
    std::fs::write(dir.path().join(format!("{idx}.tmp")), b"ALIDX").unwrap();
    check_recovers(dir.path()).await;
}

#[tokio::test]
async fn crash_after_compression_before_the_manifest() {
    let dir = build().await;
    let (plain, _) = seal(dir.path()).unwrap();
    compressed(dir.path(), &plain, true);
    check_recovers(dir.path()).await;
}

#[tokio::test]
async fn crash_during_the_manifest_write() {
    let dir = build().await;
    let (plain, _) = seal(dir.path()).unwrap();
    compressed(dir.path(), &plain, true);
    std::fs::write(
        dir.path().join("manifest.json.tmp"),
        b"{\"version\":1,\"segm",
    )
    .unwrap();
    check_recovers(dir.path()).await;
}

#[tokio::test]
async fn crash_after_the_manifest_before_the_delete() {
    let (dir, _, _) = rotated(true).await;
    check_recovers(dir.path()).await;
}

#[tokio::test]
async fn a_completed_rotation_reopens_as_it_is() {
    let (dir, plain, _) = rotated(true).await;
    delete(dir.path(), &plain).unwrap();
    check_recovers(dir.path()).await;
}

/// Step 2 on `plain`, never stopped, reading it into fresh memory.
fn compressed(dir: &Path, plain: &str, lead_copy: bool) -> (segment::SealedInfo, SegmentIndex) {
    compress(
        dir,
        plain,
        &AtomicBool::new(false),
        lead_copy,
        &mut Vec::new(),
    )
    .unwrap()
}

/// A rotation done by hand up to the manifest (steps 1 to 3, the plain
/// file still there); returns the plain name and the segment's index.
async fn rotated(lead_copy: bool) -> (tempfile::TempDir, String, SegmentIndex) {
    let dir = build().await;
    let (plain, _) = seal(dir.path()).unwrap();
    let (info, index) = compressed(dir.path(), &plain, lead_copy);
    record_in_manifest(dir.path(), &plain, &info);
    (dir, plain, index)
}

fn lead_filter(lead: &str) -> Filter {
    Filter {
        lead_id: Some(lead.into()),
        ..Filter::default()
    }
}

/// A lead's whole history, read through `Store::page` as Query reads it.
fn lead_history(store: &Store, lead: &str, order: Order) -> Vec<Record> {
    store
        .page(&lead_filter(lead), order, None, u64::MAX, 1000)
        .unwrap()
        .records
}

fn expected_seqs(lead: u64) -> Vec<u64> {
    (1..=N).filter(|i| i % 9 == lead).collect()
}

#[tokio::test]
async fn a_lead_history_is_read_from_the_lead_copy() {
    let (dir, plain, _) = rotated(true).await;
    delete(dir.path(), &plain).unwrap();
    let (gz, _) = names(&plain);
    let (copy_zst, copy_idx) = leads::names(&plain);
    assert!(dir.path().join(&copy_zst).exists() && dir.path().join(&copy_idx).exists());
    // Spoil the segment itself, keeping its length: only reads that do
    // not touch it still work.
    let len = std::fs::metadata(dir.path().join(&gz)).unwrap().len();
    std::fs::write(dir.path().join(&gz), vec![0u8; len as usize]).unwrap();
    let store = open(dir.path());
    let history = lead_history(&store, "L3", Order::NewestFirst);
    let mut want = expected_seqs(3);
    want.reverse();
    assert_eq!(history.iter().map(|r| r.seq).collect::<Vec<_>>(), want);
    assert!(history.iter().all(|r| r.lead_id.as_deref() == Some("L3")));
    // The copy reads as `zstdcat` reads it: every line, grouped by lead.
    let copy = std::fs::read(dir.path().join(&copy_zst)).unwrap();
    let lines = zstd::decode_all(&copy[..]).unwrap();
    assert_eq!(
        lines
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64,
        N
    );
    let whole = store.page::<Record<Map<String, Value>>>(
        &Filter::default(),
        Order::OldestFirst,
        None,
        u64::MAX,
        1000,
    );
    assert!(whole.is_err(), "the segment was spoiled");
    store.shutdown();
}

#[tokio::test]
async fn without_a_lead_copy_a_history_reads_the_segment() {
    let (dir, plain, _) = rotated(false).await;
    delete(dir.path(), &plain).unwrap();
    let store = open_with(dir.path(), false);
    let history = lead_history(&store, "L4", Order::OldestFirst);
    let seqs: Vec<u64> = history.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, expected_seqs(4));
    store.shutdown();
    let names = files(dir.path());
    assert!(!names.iter().any(|n| leads::is_copy_file(n)), "{names:?}");
}

#[tokio::test]
async fn a_segment_without_a_lead_copy_gets_one_at_start() {
    let (dir, plain, _) = rotated(false).await;
    delete(dir.path(), &plain).unwrap();
    let (copy_zst, copy_idx) = leads::names(&plain);
    let store = open(dir.path());
    for _ in 0..400 {
        if dir.path().join(&copy_idx).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(dir.path().join(&copy_zst).exists() && dir.path().join(&copy_idx).exists());
    store.shutdown();
    assert!(!files(dir.path()).iter().any(|n| n.ends_with(".tmp")));
    // The copy is whole: with the segment spoiled, histories still read.
    let (gz, _) = names(&plain);
    let len = std::fs::metadata(dir.path().join(&gz)).unwrap().len();
    std::fs::write(dir.path().join(&gz), vec![0u8; len as usize]).unwrap();
    let store = open(dir.path());
    let history = lead_history(&store, "L2", Order::OldestFirst);
    let seqs: Vec<u64> = history.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, expected_seqs(2));
    store.shutdown();
}

/// An event of `lead`, as `build` writes them.
fn event_of(lead: &str) -> NewEvent {
    NewEvent {
        event_type: "email_sent".into(),
        actor: "test".into(),
        caller: None,
        lead_id: Some(lead.into()),
        workflow: None,
        details: Default::default(),
        idempotency_key: None,
    }
}

#[tokio::test]
async fn the_lead_copy_holds_only_leads_spread_over_members() {
    let dir = build().await;
    let store = open(dir.path());
    // Events of one lead that came together, and a lead seen once, after
    // the nine leads `build` spreads over the segment.
    let together = store.append(vec![event_of("TOGETHER"); 3]).await.unwrap();
    let once = store.append(vec![event_of("ONCE")]).await.unwrap();
    store.shutdown();
    let (plain, _) = seal(dir.path()).unwrap();
    let (info, index) = compressed(dir.path(), &plain, true);
    record_in_manifest(dir.path(), &plain, &info);
    delete(dir.path(), &plain).unwrap();
    let (gz, _) = names(&plain);
    let copy = leads::open(dir.path(), &gz).expect("the segment has a lead copy");
    let mut members: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
    for row in &index.rows {
        let lead = index.opt(row.lead).expect("every event names a lead");
        members.entry(lead).or_default().push(row.chunk);
    }
    for (lead, chunks) in &members {
        let spread = chunks.iter().any(|&c| c != chunks[0]);
        assert_eq!(
            copy.spans.get(lead).is_some(),
            spread,
            "{lead} is in members {chunks:?}"
        );
    }
    assert!(
        copy.spans.get("ONCE").is_none(),
        "a lead seen once is not copied"
    );
    assert!(copy.spans.get("L0").is_some(), "a spread lead is copied");
    // Each history is whole, whichever way it is read.
    let store = open(dir.path());
    let seqs = |lead| -> Vec<u64> {
        lead_history(&store, lead, Order::OldestFirst)
            .iter()
            .map(|r| r.seq)
            .collect()
    };
    assert_eq!(seqs("ONCE"), vec![once[0].seq]);
    assert_eq!(
        seqs("TOGETHER"),
        together.iter().map(|r| r.seq).collect::<Vec<_>>()
    );
    assert_eq!(seqs("L5"), expected_seqs(5));
    store.shutdown();
}

#[tokio::test]
async fn a_forged_lead_copy_is_not_served() {
    let (dir, plain, index) = rotated(true).await;
    // A copy built from altered lines of the same lengths: well formed,
    // every member and span where the index says, every MAC wrong.
    let text = std::fs::read_to_string(dir.path().join(&plain)).unwrap();
    let forged = dir.path().join("forged.txt");
    std::fs::write(&forged, text.replace("email_sent", "email_sEnt")).unwrap();
    let (copy_zst, copy_idx) = leads::names(&plain);
    let stop = AtomicBool::new(false);
    let (to_zst, to_idx) = (dir.path().join(copy_zst), dir.path().join(copy_idx));
    durable::publish(
        leads::write(
            leads::Source::File(&forged),
            &index,
            &to_zst,
            &to_idx,
            &stop,
        )
        .unwrap(),
    )
    .unwrap();
    std::fs::remove_file(&forged).unwrap();
    delete(dir.path(), &plain).unwrap();
    let store = open(dir.path());
    let history = lead_history(&store, "L5", Order::OldestFirst);
    assert_eq!(
        history.iter().map(|r| r.seq).collect::<Vec<_>>(),
        expected_seqs(5)
    );
    assert!(history.iter().all(|r| r.event_type == "email_sent"));
    store.shutdown();
}

#[tokio::test]
async fn lead_copies_without_a_recorded_segment_are_removed() {
    let (dir, plain, _) = rotated(true).await;
    delete(dir.path(), &plain).unwrap();
    let orphan = leads::names("audit.20200101T000000.000000Z.log");
    for name in [&orphan.0, &orphan.1] {
        std::fs::write(dir.path().join(name), b"left by a crash").unwrap();
    }
    let store = open(dir.path());
    let names = files(dir.path());
    assert!(
        !names.contains(&orphan.0) && !names.contains(&orphan.1),
        "{names:?}"
    );
    assert!(names.contains(&leads::names(&plain).0), "{names:?}");
    store.shutdown();
}

#[tokio::test]
async fn an_older_versions_gzip_copy_is_replaced_at_start() {
    let (dir, plain, _) = rotated(true).await;
    delete(dir.path(), &plain).unwrap();
    let (gz, _) = names(&plain);
    let (copy_zst, copy_idx) = leads::names(&plain);
    // What an older version left: gzip data and an "ALLEAD01" index.
    let stem = copy_zst.strip_suffix(".zst").unwrap();
    let old_gz = format!("{stem}.gz");
    std::fs::copy(dir.path().join(&gz), dir.path().join(&old_gz)).unwrap();
    std::fs::remove_file(dir.path().join(&copy_zst)).unwrap();
    let mut old_idx = std::fs::read(dir.path().join(&copy_idx)).unwrap();
    old_idx[..8].copy_from_slice(b"ALLEAD01");
    std::fs::write(dir.path().join(&copy_idx), &old_idx).unwrap();

    let store = open(dir.path());
    let names = files(dir.path());
    assert!(!names.contains(&old_gz), "{names:?}");
    for _ in 0..400 {
        if dir.path().join(&copy_zst).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    store.shutdown();
    let names = files(dir.path());
    assert!(
        names.contains(&copy_zst) && !names.contains(&old_gz),
        "{names:?}"
    );
    let idx = std::fs::read(dir.path().join(&copy_idx)).unwrap();
    assert_eq!(&idx[..8], b"ALLEAD02");
    // The new copy serves histories: with the segment spoiled, they read.
    let len = std::fs::metadata(dir.path().join(&gz)).unwrap().len();
    std::fs::write(dir.path().join(&gz), vec![0u8; len as usize]).unwrap();
    let store = open(dir.path());
    let history = lead_history(&store, "L7", Order::OldestFirst);
    let seqs: Vec<u64> = history.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, expected_seqs(7));
    store.shutdown();
}

#[tokio::test]
async fn an_index_without_its_copy_is_removed() {
    let (dir, plain, _) = rotated(true).await;
    delete(dir.path(), &plain).unwrap();
    let (copy_zst, copy_idx) = leads::names(&plain);
    std::fs::remove_file(dir.path().join(&copy_zst)).unwrap();
    let store = open_with(dir.path(), false);
    let names = files(dir.path());
    assert!(!names.contains(&copy_idx), "{names:?}");
    assert_eq!(
        lead_history(&store, "L1", Order::OldestFirst).len(),
        expected_seqs(1).len()
    );
    store.shutdown();
}

fn one_event(n: u64) -> Vec<NewEvent> {
    vec![NewEvent {
        event_type: "email_sent".into(),
        actor: "test".into(),
        caller: None,
        lead_id: Some(format!("L{}", n % 9).into()),
        workflow: None,
        details: Default::default(),
        idempotency_key: None,
    }]
}

/// Every seq of the store, read back.
fn all_seqs(store: &Store) -> Vec<u64> {
    let page = store.page::<Record<Map<String, Value>>>(
        &Filter::default(),
        Order::OldestFirst,
        None,
        u64::MAX,
        1000,
    );
    page.unwrap().records.iter().map(|r| r.seq).collect()
}

/// A segment whose sealing fails at `step` stays readable, is tried again
/// before each later job, and is compressed, recorded once and deleted
/// once the cause is gone, with no restart.
async fn failed_sealing_is_tried_again(step: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let trigger = dir.path().join("FAIL_SEALING");
    std::fs::write(&trigger, step).unwrap();
    store.append(one_event(1)).await.unwrap();
    let failed = store.rotate(true).await;
    assert!(
        matches!(&failed, Err(StoreError::Rotate(m)) if m.contains(step)),
        "{failed:?}"
    );
    let plain: Vec<String> = files(dir.path())
        .into_iter()
        .filter(|n| n.ends_with(".log") && n != LOG_FILE)
        .collect();
    assert_eq!(plain.len(), 1, "{:?}", files(dir.path()));
    let gz = names(&plain[0]).0;
    // Still failing: the retry before the next job fails too, and the
    // next job itself fails for the same reason.
    store.append(one_event(2)).await.unwrap();
    assert!(store.rotate(true).await.is_err());
    assert_eq!(all_seqs(&store), [1, 2]);

    std::fs::remove_file(&trigger).unwrap();
    store.append(one_event(3)).await.unwrap();
    let third = store.rotate(true).await.unwrap().unwrap();
    let left = files(dir.path());
    assert!(
        !left
            .iter()
            .any(|n| n.ends_with(".tmp") || (n.ends_with(".log") && n != LOG_FILE)),
        "left over: {left:?}"
    );
    let manifest = Manifest::load(dir.path(), &keyring()).unwrap().manifest;
    let recorded: Vec<&str> = manifest.segments.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    assert_eq!(recorded[0], gz);
    assert_eq!(recorded[2], third.file);
    assert_eq!(all_seqs(&store), [1, 2, 3]);
    let report = store.verify(0, 0, &[]).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    // Three compressed segments and the active file, none twice.
    assert_eq!(store.shared.segments().len(), 4);
    store.shutdown();
    // And a restart finds the same.
    let store = open(dir.path());
    assert_eq!(all_seqs(&store), [1, 2, 3]);
    assert!(store.verify(0, 0, &[]).unwrap().findings.is_empty());
    assert_eq!(store.shared.segments().len(), 4);
    store.shutdown();
}

#[tokio::test]
async fn a_failed_compression_is_tried_again_without_a_restart() {
    failed_sealing_is_tried_again("compress").await;
}

#[tokio::test]
async fn a_failed_delete_is_tried_again_alone() {
    failed_sealing_is_tried_again("delete").await;
}

#[tokio::test]
async fn a_damaged_index_file_is_rebuilt_from_the_segment() {
    let (dir, plain, _) = rotated(true).await;
    delete(dir.path(), &plain).unwrap();
    let (_, idx) = names(&plain);
    let original = std::fs::read(dir.path().join(&idx)).unwrap();
    std::fs::write(dir.path().join(&idx), b"garbage").unwrap();
    check_recovers(dir.path()).await;
    // Rebuilt byte for byte.
    assert_eq!(std::fs::read(dir.path().join(&idx)).unwrap(), original);
}

/// A copy written at start (for a segment sealed without one) is the
/// same, byte for byte, whether the segment's lines are read into memory
/// or, past the size compression holds whole, inflated into a temp file
/// first; and it is the copy compression writes. The temp file is gone.
#[tokio::test]
async fn a_copy_written_at_start_is_the_same_from_memory_or_a_temp_file() {
    let (dir, plain, _) = rotated(true).await;
    delete(dir.path(), &plain).unwrap();
    let (gz, _) = names(&plain);
    let (copy_zst, copy_idx) = leads::names(&plain);
    let read = || {
        (
            std::fs::read(dir.path().join(&copy_zst)).unwrap(),
            std::fs::read(dir.path().join(&copy_idx)).unwrap(),
        )
    };
    let sealed = read();
    let stop = AtomicBool::new(false);
    for whole_max in [u64::MAX, 0] {
        std::fs::remove_file(dir.path().join(&copy_zst)).unwrap();
        std::fs::remove_file(dir.path().join(&copy_idx)).unwrap();
        durable::publish(stage_lead_copy(dir.path(), &gz, &stop, whole_max).unwrap()).unwrap();
        assert!(read() == sealed, "whole_max {whole_max}");
        let names = files(dir.path());
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".lines") || n.ends_with(".tmp")),
            "{names:?}"
        );
    }
}
