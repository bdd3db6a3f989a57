//! `auditlog checkpoint`, `proof inclusion` and `proof consistency` with
//! the log's real verifier key, against a server that holds the signing
//! key (or another) and lies about everything else.

use auditlog_client::proof::{Checkpoint, NoteSigner};

use crate::hostile_server::fake::{FakeServer, Forged, ORIGIN, Scene};
use crate::hostile_server::{auditlog, refused};

/// A fake serving `log`'s checkpoint at `size`.
async fn serving(log: &Forged, size: u64) -> FakeServer {
    FakeServer::start(Scene {
        checkpoint: Some(log.checkpoint(size)),
        ..Scene::default()
    })
    .await
}

#[tokio::test]
async fn checkpoints_signed_otherwise_than_by_the_key_given_are_refused() {
    let log = Forged::new(1, 4);
    let key = log.key();
    let other = Forged::new(2, 4);
    let server = serving(&other, 4).await;
    let run = auditlog(&server.url, &["checkpoint", "--key", &key]).await;
    refused(&run, "the note has no signature by key hostile/log+");

    // Two signature lines by the key: one good, one over another body.
    let good = log.note(4);
    let forged_line = other_body_signature(&log.signer, 3);
    let two = format!("{good}{forged_line}");
    server.script(|s| s.checkpoint = Some(log.answer(two)));
    let run = auditlog(&server.url, &["checkpoint", "--key", &key]).await;
    refused(&run, "does not match the note");

    // Bytes after the last signature line, and a note cut short.
    for bad in [
        format!("{good}garbage\n"),
        good[..good.len() - 1].to_owned(),
    ] {
        server.script(|s| s.checkpoint = Some(log.answer(bad)));
        let run = auditlog(&server.url, &["checkpoint", "--key", &key]).await;
        refused(&run, "malformed signed note");
    }

    // The origin differs from the key's name by an invisible character.
    let lookalike = NoteSigner::new("hostile/log\u{200b}", &[1; 32]).unwrap();
    let note = lookalike.sign_checkpoint(&Checkpoint {
        origin: format!("{ORIGIN}\u{200b}"),
        size: 4,
        root: log.root(4),
    });
    server.script(|s| s.checkpoint = Some(log.answer(note)));
    let run = auditlog(&server.url, &["checkpoint", "--key", &key]).await;
    refused(&run, "the note has no signature by key hostile/log+");
}

/// A signature line by `signer` over the checkpoint at another size: a
/// well-formed line that does not sign the note it is put under.
fn other_body_signature(signer: &NoteSigner, size: u64) -> String {
    let note = signer.sign_checkpoint(&Checkpoint {
        origin: ORIGIN.into(),
        size,
        root: [9; 32],
    });
    note.rsplit_once("\n\n").unwrap().1.to_owned()
}

#[tokio::test]
async fn inclusion_proofs_that_do_not_lead_to_the_signed_root_are_refused() {
    let log = Forged::new(1, 7);
    let key = log.key();
    let server = serving(&log, 7).await;
    let good = log.inclusion(3, 7);
    server.script(|s| s.inclusion = Some(good.clone()));
    let run = auditlog(&server.url, &["proof", "inclusion", "3", "--key", &key]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with("OK: seq 3 is in hostile/log"),
        "{run:?}"
    );

    let mut extra = good.clone();
    extra.hashes.push(vec![0; 32]);
    let mut missing = good.clone();
    missing.hashes.pop();
    let mut short_hash = good.clone();
    short_hash.hashes[0].pop();
    let mut other_leaf = log.inclusion(4, 7);
    other_leaf.seq = 3;
    let mut changed_line = good.clone();
    changed_line.line = crate::hostile_server::fake::record(3, "L-forged");
    let mut purged_wrong_leaf = good.clone();
    purged_wrong_leaf.line.clear();
    purged_wrong_leaf.leaf_hash = vec![7; 32];
    for (what, answer, want) in [
        ("a hash too many", extra, "the proof has"),
        ("a hash too few", missing, "the proof has"),
        ("a hash of 31 bytes", short_hash, "not 32 bytes"),
        ("seq 4's line and proof", other_leaf, "does not verify"),
        ("another line", changed_line, "does not verify"),
        ("another leaf hash", purged_wrong_leaf, "does not verify"),
    ] {
        server.script(|s| s.inclusion = Some(answer));
        let run = auditlog(&server.url, &["proof", "inclusion", "3", "--key", &key]).await;
        assert_eq!(run.code, 1, "{what}: {run:?}");
        assert!(run.stderr.contains(want), "{what}: {run:?}");
        assert!(run.stdout.is_empty(), "{what}: {run:?}");
    }
}

#[tokio::test]
async fn absurd_and_empty_tree_sizes_are_refused_without_a_panic() {
    let log = Forged::new(1, 3);
    let key = log.key();
    // A checkpoint of u64::MAX records, and a proof for seq 2 in it.
    let huge = log.signer.sign_checkpoint(&Checkpoint {
        origin: ORIGIN.into(),
        size: u64::MAX,
        root: log.root(3),
    });
    let server = FakeServer::start(Scene {
        checkpoint: Some(log.answer(huge)),
        inclusion: Some(log.inclusion(2, 3)),
        ..Scene::default()
    })
    .await;
    let run = auditlog(&server.url, &["proof", "inclusion", "2", "--key", &key]).await;
    refused(&run, "the proof has");
    let run = auditlog(&server.url, &["checkpoint", "--key", &key]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("tree size: 18446744073709551615"),
        "{run:?}"
    );

    // The empty tree: no seq is in it.
    server.script(|s| s.checkpoint = Some(log.checkpoint(0)));
    let run = auditlog(&server.url, &["proof", "inclusion", "1", "--key", &key]).await;
    refused(&run, "holds seqs 1 to 0");
}

#[tokio::test]
async fn consistency_with_a_kept_checkpoint_is_proved_or_refused() {
    let log = Forged::new(1, 8);
    let key = log.key();
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept.note");
    std::fs::write(&kept, log.note(5)).unwrap();
    let kept = kept.to_str().unwrap();
    let server = FakeServer::start(Scene {
        checkpoint: Some(log.checkpoint(8)),
        consistency: Some(log.consistency(5, 8)),
        ..Scene::default()
    })
    .await;
    let run = auditlog(&server.url, &["proof", "consistency", kept, "--key", &key]).await;
    assert_eq!(run.code, 0, "{run:?}");

    // A log rewritten after seq 5: its proof cannot lead from the kept root.
    let mut lines = log.lines.clone();
    lines[1] = crate::hostile_server::fake::record(2, "L-rewritten");
    let fork = Forged::of(1, lines);
    let mut extra = fork.consistency(5, 8);
    extra.hashes.push(vec![1; 32]);
    for (answer, proof) in [
        (fork.checkpoint(8), fork.consistency(5, 8)),
        (log.checkpoint(8), extra),
        (log.checkpoint(8), log.consistency(4, 8)),
    ] {
        server.script(|s| {
            s.checkpoint = Some(answer);
            s.consistency = Some(proof);
        });
        let run = auditlog(&server.url, &["proof", "consistency", kept, "--key", &key]).await;
        refused(&run, "does not extend the checkpoint of size 5");
    }

    // Smaller than the kept one: a rollback, whatever proof comes.
    server.script(|s| {
        s.checkpoint = Some(log.checkpoint(3));
        s.consistency = Some(log.consistency(3, 5));
    });
    let run = auditlog(&server.url, &["proof", "consistency", kept, "--key", &key]).await;
    refused(&run, "the log was rolled back");
}
