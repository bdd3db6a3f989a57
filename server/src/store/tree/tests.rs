//! The tree against the log's files read independently: across rotation
//! and compression, after a restart, after the tree's files were deleted,
//! torn or changed, and across seqs cut from the log.

use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use auditlog_proof::{Hash, gap_leaf, leaf_hash, root_of, verify_consistency, verify_inclusion};
use serde_json::json;

use crate::keys::Keyring;
use crate::store::{FindingKind, NewEvent, Store, StoreConfig};

fn open(dir: &Path) -> Store {
    Store::open(
        StoreConfig::for_test(dir, false),
        Keyring::new("k1", vec![7; 32]),
    )
    .unwrap()
}

async fn append(store: &Store, from: u64, to: u64, rotate_at: Option<u64>) {
    for n in from..=to {
        let event = NewEvent::for_test(None, json!({"n": n}));
        store.append(vec![event]).await.unwrap();
        if Some(n) == rotate_at {
            store.rotate(true).await.unwrap();
        }
    }
}

/// Polls (without holding anything) until the tree holds `size` records.
async fn wait_for(store: &Store, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.tree().size() != size {
        assert!(
            Instant::now() < deadline,
            "the tree stayed at {} of {size}; trouble: {:?}",
            store.tree().size(),
            store.tree().trouble()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The leaf hashes of every line in the data directory, in seq order, read
/// straight from the files (plain and gzip) without the store.
fn leaves_from_files(dir: &Path) -> Vec<Hash> {
    let mut lines: Vec<(u64, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = if name.ends_with(".log.gz") {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap())
                .read_to_end(&mut out)
                .unwrap();
            out
        } else if name.ends_with(".log") {
            // The live file ends with the zeros the writer keeps ahead.
            let mut bytes = std::fs::read(&path).unwrap();
            if let Some(zero) = bytes.iter().position(|&b| b == 0) {
                bytes.truncate(zero);
            }
            bytes
        } else {
            continue;
        };
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            lines.push((v["seq"].as_u64().unwrap(), line.to_vec()));
        }
    }
    lines.sort();
    lines.iter().map(|(_, l)| leaf_hash(l)).collect()
}

#[tokio::test]
async fn the_tree_is_the_rfc_tree_of_the_stored_lines_across_rotation_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, 1, 40, Some(17)).await;
    wait_for(&store, 40).await;
    let leaves = leaves_from_files(dir.path());
    assert_eq!(leaves.len(), 40);
    let tree = store.tree();
    for size in [1, 17, 31, 40] {
        assert_eq!(tree.root(size).unwrap(), root_of(&leaves[..size as usize]));
    }
    for seq in [1, 16, 17, 18, 40] {
        let proof = tree.inclusion(seq, 40).unwrap();
        let root = root_of(&leaves);
        verify_inclusion(seq - 1, 40, &leaves[seq as usize - 1], &proof, &root).unwrap();
    }
    let proof = tree.consistency(13, 40).unwrap();
    verify_consistency(13, 40, &root_of(&leaves[..13]), &root_of(&leaves), &proof).unwrap();
    assert!(tree.inclusion(41, 40).is_err());
    assert!(tree.root(41).is_err());
    drop(store);

    // A restart keeps the tree and goes on from it.
    let store = open(dir.path());
    append(&store, 41, 45, Some(43)).await;
    wait_for(&store, 45).await;
    let leaves = leaves_from_files(dir.path());
    assert_eq!(store.tree().root(45).unwrap(), root_of(&leaves));
    // Checked against the log (three files, read on as many threads as
    // there are cores), a checkpoint of any size matches its root, and a
    // root one leaf short of it does not.
    for size in 1..=45 {
        let right = root_of(&leaves[..size]);
        let findings = store
            .check_tree(Some((size as u64, right, "checkpoint.note")))
            .unwrap();
        assert!(findings.is_empty(), "size {size}: {findings:?}");
        let wrong = root_of(&leaves[..size - 1]);
        let findings = store
            .check_tree(Some((size as u64, wrong, "checkpoint.note")))
            .unwrap();
        assert_eq!(findings.len(), 1, "size {size}: {findings:?}");
    }
    drop(store);

    // Deleted: rebuilt from the log.
    std::fs::remove_dir_all(dir.path().join("tree")).unwrap();
    let store = open(dir.path());
    wait_for(&store, 45).await;
    assert_eq!(store.tree().root(45).unwrap(), root_of(&leaves));
    drop(store);

    // A torn leaf and a changed leaf near the end: cut back and refilled.
    let level0 = dir.path().join("tree/level-00");
    let mut bytes = std::fs::read(&level0).unwrap();
    bytes[32 * 43 + 4] ^= 0xff;
    bytes.extend_from_slice(&[9; 7]);
    std::fs::write(&level0, bytes).unwrap();
    let level1 = dir.path().join("tree/level-01");
    let bytes = std::fs::read(&level1).unwrap();
    std::fs::write(&level1, &bytes[..32 * 5]).unwrap();
    let store = open(dir.path());
    wait_for(&store, 45).await;
    assert_eq!(store.tree().root(45).unwrap(), root_of(&leaves));
    for seq in 1..=45 {
        assert_eq!(store.tree().leaf(seq).unwrap(), leaves[seq as usize - 1]);
    }
}

#[tokio::test]
async fn a_purged_prefix_keeps_its_hashes_and_proofs_after_it_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, 1, 12, Some(8)).await;
    wait_for(&store, 12).await;
    let before = leaves_from_files(dir.path());
    let purge = store
        .apply_retention(Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(purge.through_seq, 8);
    wait_for(&store, 13).await;
    drop(store);
    let store = open(dir.path());
    append(&store, 14, 15, None).await;
    wait_for(&store, 15).await;
    // The files now hold seqs 9 to 15; the tree still has 1 to 8.
    let after = leaves_from_files(dir.path());
    assert_eq!(after.len(), 7);
    let leaves: Vec<Hash> = before[..8].iter().chain(&after).copied().collect();
    let root = root_of(&leaves);
    assert_eq!(store.tree().root(15).unwrap(), root);
    for seq in [3, 8, 9, 15] {
        let proof = store.tree().inclusion(seq, 15).unwrap();
        verify_inclusion(seq - 1, 15, &leaves[seq as usize - 1], &proof, &root).unwrap();
    }
    assert_eq!(store.stored_line(3).unwrap(), None);
    assert!(store.stored_line(9).unwrap().is_some());
    let findings = store
        .check_tree(Some((12, root_of(&leaves[..12]), "checkpoint.note")))
        .unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    let findings = store
        .check_tree(Some((12, root_of(&leaves[..11]), "checkpoint.note")))
        .unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    // A purged seq's leaf changed: only the tree holds it, so the node
    // above it is found at odds with it, and the tree cannot be rebuilt
    // (the root recomputed with that leaf is not the signed one either).
    flip(dir.path(), 0, 2);
    let findings = store
        .check_tree(Some((12, root_of(&leaves[..12]), "checkpoint.note")))
        .unwrap();
    assert_eq!(findings.len(), 2, "{findings:?}");
    let f = &findings[0];
    assert_eq!((f.seq, f.file.as_str()), (3, "tree/level-01"), "{f:?}");
    assert!(
        f.message.contains("alone hold seqs 3 to 4") && f.message.contains("from a backup"),
        "{f:?}"
    );
}

/// Groups handed over in memory and groups read back from the log (a batch
/// too large for the hand-over queue) give the same tree as the files.
#[tokio::test]
async fn handed_over_and_read_back_groups_build_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, 1, 5, None).await;
    wait_for(&store, 5).await;
    // One group of 200 records, larger than the queue holds in tests.
    let batch = (0..200)
        .map(|n| {
            NewEvent::for_test(
                Some(format!("L{n}")),
                json!({"n": n, "pad": "x".repeat(100)}),
            )
        })
        .collect();
    store.append(batch).await.unwrap();
    append(&store, 206, 210, None).await;
    wait_for(&store, 210).await;
    let leaves = leaves_from_files(dir.path());
    assert_eq!(leaves.len(), 210);
    for seq in 1..=210 {
        assert_eq!(store.tree().leaf(seq).unwrap(), leaves[seq as usize - 1]);
    }
    assert_eq!(store.tree().root(210).unwrap(), root_of(&leaves));
}

/// Small groups from many callers at once, with groups too large for the
/// hand-over queue among them: the builder hashes what it is handed as it
/// takes it, reads the dropped ones back between, and appends both in seq
/// order, giving the tree of the files.
#[tokio::test]
async fn groups_handed_over_and_dropped_among_many_callers_build_the_tree_of_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path()));
    let event =
        |n: usize, pad: usize| NewEvent::for_test(None, json!({"n": n, "pad": "x".repeat(pad)}));
    let mut callers = Vec::new();
    for caller in 0..8 {
        let store = std::sync::Arc::clone(&store);
        callers.push(tokio::spawn(async move {
            let mut written = 0;
            for round in 0..20 {
                // Every fifth group of some callers overflows the queue.
                let (count, pad) = if caller % 3 == 0 && round % 5 == 4 {
                    (150, 100)
                } else {
                    (1 + round % 3, 10)
                };
                let batch = (0..count).map(|n| event(n, pad)).collect();
                written += store.append(batch).await.unwrap().len() as u64;
            }
            written
        }));
    }
    let mut total = 0;
    for caller in callers {
        total += caller.await.unwrap();
    }
    wait_for(&store, total).await;
    let leaves = leaves_from_files(dir.path());
    assert_eq!(leaves.len() as u64, total);
    for seq in 1..=total {
        assert_eq!(
            store.tree().leaf(seq).unwrap(),
            leaves[seq as usize - 1],
            "seq {seq}"
        );
    }
    assert_eq!(store.tree().root(total).unwrap(), root_of(&leaves));
}

/// Keeps the first `keep` lines of the data directory's `audit.log`, as a
/// cut made while the server was down.
fn cut_log(dir: &Path, keep: usize) {
    let path = dir.join("audit.log");
    let bytes = std::fs::read(&path).unwrap();
    let end = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(keep - 1)
        .map_or(bytes.len(), |(i, _)| i + 1);
    std::fs::write(&path, &bytes[..end]).unwrap();
}

/// Acknowledged records cut from the log's end while the server was down:
/// the writer goes on after the last seq acknowledged, and the tree goes on
/// across the gap with the leaves it held for the cut seqs (so what was
/// signed before stays consistent), or with gap leaves when rebuilt.
#[tokio::test]
async fn the_tree_goes_on_across_seqs_cut_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, 1, 5, None).await;
    wait_for(&store, 5).await;
    let before = leaves_from_files(dir.path());
    drop(store);
    cut_log(dir.path(), 3);
    let store = open(dir.path());
    append(&store, 6, 7, None).await;
    wait_for(&store, 7).await;
    let after = leaves_from_files(dir.path());
    assert_eq!(after.len(), 5, "seqs 1 to 3, then 6 and 7");
    let mut leaves: Vec<Hash> = before.iter().chain(&after[3..]).copied().collect();
    let tree = store.tree();
    for seq in 1..=7 {
        assert_eq!(
            tree.leaf(seq).unwrap(),
            leaves[seq as usize - 1],
            "seq {seq}"
        );
    }
    let (old, root) = (root_of(&before), root_of(&leaves));
    assert_eq!(tree.root(5).unwrap(), old);
    verify_consistency(5, 7, &old, &root, &tree.consistency(5, 7).unwrap()).unwrap();
    for seq in [3, 4, 6, 7] {
        let proof = tree.inclusion(seq, 7).unwrap();
        verify_inclusion(seq - 1, 7, &leaves[seq as usize - 1], &proof, &root).unwrap();
    }
    assert_eq!(store.stored_line(4).unwrap(), None);
    let findings = store.check_tree(Some((5, old, "checkpoint.note"))).unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    drop(store);

    // Rebuilt from the log: the cut seqs get gap leaves.
    std::fs::remove_dir_all(dir.path().join("tree")).unwrap();
    let store = open(dir.path());
    wait_for(&store, 7).await;
    leaves[3] = gap_leaf(4);
    leaves[4] = gap_leaf(5);
    let root = root_of(&leaves);
    assert_eq!(store.tree().root(7).unwrap(), root);
    let proof = store.tree().inclusion(5, 7).unwrap();
    verify_inclusion(4, 7, &gap_leaf(5), &proof, &root).unwrap();
    // The tree checked against the log recomputes the gap leaves; a
    // checkpoint signed before over the cut records no longer matches.
    let findings = store
        .check_tree(Some((7, root, "checkpoint.note")))
        .unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    let findings = store.check_tree(Some((5, old, "checkpoint.note"))).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
}

/// Flips a byte of entry `index` of the tree's level file `level`.
fn flip(dir: &Path, level: u32, index: u64) {
    use std::os::unix::fs::FileExt as _;
    let path = dir.join(format!("tree/level-{level:02}"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, index * 32 + 5).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], index * 32 + 5)
        .unwrap();
}

/// Every hash in the tree's files changed in turn, the log in three files
/// (read apart, their compact ranges joined): the check finds each, at the
/// first seq it covers and in its level file, and nothing else; the tree's
/// roots, read from a few of them, would miss most.
#[tokio::test]
async fn every_changed_hash_of_the_tree_is_found_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, 1, 6, Some(6)).await;
    append(&store, 7, 13, Some(13)).await;
    append(&store, 14, 21, None).await;
    wait_for(&store, 21).await;
    let leaves = leaves_from_files(dir.path());
    let signed = Some((21, root_of(&leaves), "checkpoint.note"));
    assert!(store.check_tree(signed).unwrap().is_empty());
    for level in 0..5u32 {
        for index in 0..21u64 >> level {
            flip(dir.path(), level, index);
            let found: Vec<_> = store
                .check_tree(signed)
                .unwrap()
                .into_iter()
                .map(|f| (f.kind, f.seq, f.file))
                .collect();
            let file = format!("tree/level-{level:02}");
            let want = (FindingKind::TreeMismatch, (index << level) + 1, file);
            assert_eq!(found, [want], "level {level} entry {index}");
            flip(dir.path(), level, index);
        }
    }
    assert!(store.check_tree(signed).unwrap().is_empty());
    // The leaves' file cut short under the server: found where it ends.
    let level0 = dir.path().join("tree/level-00");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(level0)
        .unwrap();
    file.set_len(10 * 32).unwrap();
    let findings = store.check_tree(signed).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    let f = &findings[0];
    assert_eq!((f.seq, f.file.as_str()), (11, "tree/level-00"), "{f:?}");
    assert!(f.message.contains("cannot be read"), "{f:?}");
}

#[tokio::test]
async fn a_wait_for_the_tree_ends_once_it_holds_the_size_or_stops() {
    use std::sync::Arc;
    let tree = Arc::new(super::Tree::new());
    let wait = |size: u64| {
        let tree = Arc::clone(&tree);
        tokio::spawn(async move { tree.reaches(size).await })
    };
    let waiting = wait(3);
    tree.publish_size(2);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "ended with the tree at 2 of 3");
    tree.publish_size(3);
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("still waiting with the tree at 3")
        .unwrap();
    // A tree that stops growing ends the wait: it will not get there.
    let waiting = wait(10);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    tree.set_trouble(Some("the level files cannot be written".into()));
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("still waiting on a stuck tree")
        .unwrap();
}
