//! Proofs anyone can check: the signed checkpoint and the inclusion and
//! consistency proofs, over gRPC and through the CLI, checked with the
//! verifier key alone against leaf hashes computed here from the lines in
//! `audit.log`.
//!
//! Covered: a checkpoint verifies with the key `--print-verifier-key`
//! gives and names the log's size and root, which match the RFC 6962 root
//! of the file's lines; every record's inclusion proof verifies; a
//! consistency proof between two checkpoints verifies; a wrong key, another
//! log's checkpoint, a changed proof are refused; the statuses of bad
//! requests; the kept checkpoint and the tree across a restart; the CLI;
//! proofs across seqs cut from the log (the tree's kept leaves, or the
//! documented gap leaf); the benchmarks' server without a tree, which only
//! code can start.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use auditlog_client::pb::ProblemKind;
use auditlog_client::proof::{
    NoteError, VerifierKey, leaf_hash, root_of, verify_consistency, verify_inclusion,
};
use auditlog_client::{Client, VerifiedCheckpoint};
use common::witness::{
    checkpoint_of, file_leaves, log_leads, mirror_round, other_logs_key, proof_hashes, trusted_key,
    verifier_key,
};
use common::{
    TEST_KEY, TestServer, cli, edit_line, problems, read_lines, resign, tamper, wait_until,
    with_test_key, workspace_bin,
};
use tonic::Code;

#[tokio::test]
async fn records_are_proved_with_the_verifier_key_alone() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let key = trusted_key(&server.data_dir);
    log_leads(&client, "LEAD", 1, 10).await;
    let old = checkpoint_of(&client, &key, 10).await;
    log_leads(&client, "LEAD", 11, 23).await;
    let new = checkpoint_of(&client, &key, 23).await;

    let leaves = file_leaves(&server);
    assert_eq!(leaves.len(), 23);
    assert_eq!(old.checkpoint.root, root_of(&leaves[..10]));
    assert_eq!(new.checkpoint.root, root_of(&leaves));
    assert!(new.note.starts_with(&format!("{}\n23\n", key.name)));

    for seq in 1..=23u64 {
        let proven = client.prove_inclusion(seq, &key).await.unwrap();
        assert_eq!(leaf_hash(&proven.line), leaves[seq as usize - 1]);
        let proof = client.inclusion_proof(seq, 23).await.unwrap();
        let hashes = proof_hashes(&proof.hashes);
        verify_inclusion(
            seq - 1,
            23,
            &leaves[seq as usize - 1],
            &hashes,
            &new.checkpoint.root,
        )
        .unwrap();
        // Another record's line does not verify with this proof.
        let other = leaves[(seq as usize) % 23];
        assert!(verify_inclusion(seq - 1, 23, &other, &hashes, &new.checkpoint.root).is_err());
    }

    let proof = client.consistency_proof(10, 0).await.unwrap();
    assert_eq!(proof.second_size, 23);
    let hashes = proof_hashes(&proof.hashes);
    verify_consistency(10, 23, &old.checkpoint.root, &new.checkpoint.root, &hashes).unwrap();
    let mut bad = hashes.clone();
    bad[0][0] ^= 1;
    assert!(verify_consistency(10, 23, &old.checkpoint.root, &new.checkpoint.root, &bad).is_err());
}

/// A fresh checkpoint asked for right after a write covers it: the tree
/// follows the log about 100 ms behind, and the server waits for it
/// instead of answering with the checkpoint before (or, on a new log, with
/// none), which broke `auditlog bundle export` right after the first events.
#[tokio::test]
async fn a_fresh_checkpoint_covers_what_was_just_written() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let key = trusted_key(&server.data_dir);
    for round in 1..=3u64 {
        log_leads(&client, "LEAD", round * 10 - 9, round * 10).await;
        let fresh = client.verified_checkpoint(&key, true).await.unwrap();
        assert_eq!(fresh.checkpoint.size, round * 10, "round {round}");
        assert_eq!(fresh.checkpoint.root, root_of(&file_leaves(&server)));
    }
}

/// The proof of a record just written, asked for against the latest
/// checkpoint (`tree_size` 0), waits for the first checkpoint covering it
/// (within the deadline, as a receipt's proof does) instead of refusing
/// with "not covered yet, retry".
#[tokio::test]
async fn the_proof_of_a_record_just_written_waits_for_its_checkpoint() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let key = trusted_key(&server.data_dir);
    for seq in 1..=3u64 {
        log_leads(&client, "LEAD", seq, seq).await;
        let proof = client.inclusion_proof(seq, 0).await.unwrap();
        assert_eq!((proof.seq, proof.tree_size), (seq, seq));
        let checkpoint = checkpoint_of(&client, &key, seq).await;
        let hashes = proof_hashes(&proof.hashes);
        let leaves = file_leaves(&server);
        verify_inclusion(
            seq - 1,
            seq,
            &leaves[seq as usize - 1],
            &hashes,
            &checkpoint.checkpoint.root,
        )
        .unwrap();
    }
}

#[tokio::test]
async fn a_wrong_key_or_another_logs_checkpoint_is_refused() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_leads(&client, "LEAD", 1, 3).await;
    let key = trusted_key(&server.data_dir);
    checkpoint_of(&client, &key, 3).await;

    // Another log with its own key, under the same origin.
    let other = TestServer::start().await;
    let other_key = trusted_key(&other.data_dir);
    assert_ne!(key, other_key);
    let err = client
        .verified_checkpoint(&other_key, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no signature by key"), "{err}");

    // Another log signing under another origin, checked with its own key
    // but as if it were ours: the origin is named.
    let renamed =
        TestServer::start_with(|c| c.checkpoint_origin = Some("auditlog/elsewhere".into())).await;
    let renamed_client = renamed.client().await;
    log_leads(&renamed_client, "LEAD", 1, 1).await;
    let note = wait_until("the renamed log's first checkpoint", || async {
        renamed_client
            .checkpoint(true)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert!(note.verifier_key.starts_with("auditlog/elsewhere+"));
    let err = key
        .open_checkpoint(&note.checkpoint.unwrap().note)
        .unwrap_err();
    assert!(matches!(err, NoteError::NoSignature { .. }), "{err}");
}

#[tokio::test]
async fn bad_requests_get_statuses_that_say_what_to_fix() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let err = client.checkpoint(false).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::FailedPrecondition), "{err}");
    log_leads(&client, "LEAD", 1, 5).await;
    let key = trusted_key(&server.data_dir);
    checkpoint_of(&client, &key, 5).await;

    let cases: [(u64, u64, Code, &str); 4] = [
        (0, 0, Code::InvalidArgument, "seq"),
        (6, 0, Code::OutOfRange, "last seq is 5"),
        (3, 9, Code::OutOfRange, "beyond the tree"),
        (4, 3, Code::InvalidArgument, "beyond tree_size 3"),
    ];
    for (seq, size, code, says) in cases {
        let err = client.inclusion_proof(seq, size).await.unwrap_err();
        assert_eq!(err.code(), Some(code), "{seq}/{size}: {err}");
        assert!(err.to_string().contains(says), "{seq}/{size}: {err}");
    }
    let err = client.consistency_proof(4, 2).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    let err = client.consistency_proof(2, 8).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::OutOfRange), "{err}");
}

#[tokio::test]
async fn the_checkpoint_and_tree_survive_a_restart_and_rotation() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let key = trusted_key(&server.data_dir);
    log_leads(&client, "LEAD", 1, 7).await;
    client.rotate(true).await.unwrap();
    log_leads(&client, "LEAD", 8, 9).await;
    let before = checkpoint_of(&client, &key, 9).await;
    let server = server.restart(|_| {}).await;
    let client = server.client().await;
    let kept = client.verified_checkpoint(&key, false).await.unwrap();
    assert_eq!(kept, before);
    log_leads(&client, "LEAD", 10, 12).await;
    let after = checkpoint_of(&client, &key, 12).await;
    for seq in [1, 7, 8, 12] {
        client.prove_inclusion(seq, &key).await.unwrap();
    }
    let proof = client.consistency_proof(9, 12).await.unwrap();
    let hashes = proof_hashes(&proof.hashes);
    verify_consistency(
        9,
        12,
        &before.checkpoint.root,
        &after.checkpoint.root,
        &hashes,
    )
    .unwrap();
}

#[tokio::test]
async fn the_cli_checks_checkpoints_and_proofs_against_the_key() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_leads(&client, "LEAD", 1, 4).await;
    let key = trusted_key(&server.data_dir);
    checkpoint_of(&client, &key, 4).await;
    let key_text = verifier_key(&server.data_dir);

    let (code, out, err) = cli(&server.url, &["checkpoint", "--key", &key_text]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK: checkpoint of"), "{out}");
    assert!(out.contains("tree size: 4"), "{out}");

    let (code, out, err) = cli(
        &server.url,
        &["proof", "inclusion", "3", "--key", &key_text],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK: seq 3 is in"), "{out}");
    assert!(out.contains("\"seq\":3"), "{out}");

    let (code, out, err) = cli(&server.url, &["checkpoint", "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let old = server.data_dir.join("old.note");
    std::fs::write(&old, json["note"].as_str().unwrap()).unwrap();
    log_leads(&client, "LEAD", 5, 6).await;
    checkpoint_of(&client, &key, 6).await;
    let old_path = old.to_str().unwrap();
    let (code, out, err) = cli(
        &server.url,
        &["proof", "consistency", old_path, "--key", &key_text],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("extends the kept checkpoint of size 4"),
        "{out}"
    );
    // Kept with `jq -r .note`, which adds a newline after the note's own:
    // read all the same from a file.
    let padded = server.data_dir.join("padded.note");
    std::fs::write(&padded, format!("{}\n", json["note"].as_str().unwrap())).unwrap();
    let (code, out, err) = cli(
        &server.url,
        &[
            "proof",
            "consistency",
            padded.to_str().unwrap(),
            "--key",
            &key_text,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("extends the kept checkpoint of size 4"),
        "{out}"
    );

    // A key of another log: one line, exit non-zero.
    let other_key = other_logs_key().await;
    let (code, out, err) = cli(
        &server.url,
        &["proof", "inclusion", "3", "--key", &other_key],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no signature by key"), "{err}");
}

/// Verifies the consistency proof the server gives between two checkpoints.
async fn assert_consistent(client: &Client, old: &VerifiedCheckpoint, new: &VerifiedCheckpoint) {
    let (first, second) = (old.checkpoint.size, new.checkpoint.size);
    let proof = client.consistency_proof(first, second).await.unwrap();
    let hashes = proof_hashes(&proof.hashes);
    verify_consistency(
        first,
        second,
        &old.checkpoint.root,
        &new.checkpoint.root,
        &hashes,
    )
    .unwrap();
}

/// Records acknowledged and then cut from the log's end while the server
/// was down: the writer goes on after the last acknowledged seq, leaving a
/// gap. Proofs go on across it: the records after it are proved, the
/// checkpoint signed before the cut is extended consistently (the tree keeps
/// its leaves of the cut seqs, whose lines are gone), and VerifyIntegrity
/// reports the cut. Rebuilt without those leaves, the tree holds the gap
/// leaf of each cut seq, SHA-256(0x00 ‖ "auditlog gap at seq N") as
/// docs/proofs.md gives it, and its proof carries the gap line.
#[tokio::test]
async fn proofs_go_on_across_seqs_cut_from_the_log() {
    let server = TestServer::start_with(with_test_key).await;
    let client = server.client().await;
    let key = trusted_key(&server.data_dir);
    log_leads(&client, "LEAD", 1, 5).await;
    let before = checkpoint_of(&client, &key, 5).await;
    // A mirror (`checkpoint watch --mirror`) taken before the cut.
    let text_key = verifier_key(&server.data_dir);
    let scratch = tempfile::tempdir().unwrap();
    let mirror = |name: &str| {
        let at = |ext: &str| scratch.path().join(format!("{name}.{ext}"));
        (at("note"), at("jsonl"))
    };
    let (kept, early) = mirror("early");
    let (code, out, err) = mirror_round(&server.url, &text_key, &kept, &early, false).await;
    assert_eq!(code, 0, "{out}{err}");
    let cut = |dir: &std::path::Path| tamper(&dir.join("audit.log"), |lines| lines.truncate(3));
    let server = server.restart_after(cut, with_test_key).await;
    let client = server.client().await;
    log_leads(&client, "LEAD", 6, 7).await;
    let after = checkpoint_of(&client, &key, 7).await;
    assert_consistent(&client, &before, &after).await;
    // The early mirror goes on, and keeps the cut records; a mirror begun
    // now cannot rebuild the tree without them, and says which are missing.
    let (code, out, err) = mirror_round(&server.url, &text_key, &kept, &early, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read_to_string(&early).unwrap().lines().count(), 7);
    let (late_state, late) = mirror("late");
    let (code, out, err) = mirror_round(&server.url, &text_key, &late_state, &late, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("MISMATCH") && err.contains("2 seqs in 4 to 5 were not sent"),
        "{err}"
    );
    let lines = read_lines(&server.log_path());
    assert_eq!(lines.len(), 5, "seqs 1 to 3, then 6 and 7");
    for (seq, line) in [(6, &lines[3]), (7, &lines[4])] {
        let proven = client.prove_inclusion(seq, &key).await.unwrap();
        assert_eq!(proven.line, line.as_bytes());
    }
    let cut_seq = client.prove_inclusion(4, &key).await.unwrap();
    assert!(cut_seq.line.is_empty(), "{:?}", cut_seq.line);
    let truncated = (ProblemKind::Truncated, 4, 0);
    assert!(problems(&client.verify().await.unwrap()).contains(&truncated));

    // The tree rebuilt from the log: gap leaves where the cut records' were,
    // so it no longer extends the checkpoint signed over them, which shows.
    let rebuild = |dir: &std::path::Path| std::fs::remove_dir_all(dir.join("tree")).unwrap();
    let server = server.restart_after(rebuild, with_test_key).await;
    let client = server.client().await;
    wait_until(
        "the rebuilt tree found at odds with the checkpoint",
        || async {
            let found = problems(&client.verify().await.unwrap());
            let mismatch = (ProblemKind::TreeMismatch, 7, 0);
            match found.contains(&truncated) && found.contains(&mismatch) {
                true => Ok(()),
                false => Err(format!("{found:?}")),
            }
        },
    )
    .await;

    // With no checkpoint kept either, the rebuilt tree is signed.
    let forget = |dir: &std::path::Path| std::fs::remove_file(dir.join("checkpoint.note")).unwrap();
    let server = server.restart_after(forget, with_test_key).await;
    let client = server.client().await;
    let rebuilt = checkpoint_of(&client, &key, 7).await;
    let leaf = |line: &str| leaf_hash(line.as_bytes());
    let leaves = [
        leaf(&lines[0]),
        leaf(&lines[1]),
        leaf(&lines[2]),
        leaf("auditlog gap at seq 4"),
        leaf("auditlog gap at seq 5"),
        leaf(&lines[3]),
        leaf(&lines[4]),
    ];
    assert_eq!(rebuilt.checkpoint.root, root_of(&leaves));
    // Gap leaves, which a mirror counts for the seqs it is not sent.
    let (state, file) = mirror("rebuilt");
    let (code, out, err) = mirror_round(&server.url, &text_key, &state, &file, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 5);
    let gap = client.prove_inclusion(5, &key).await.unwrap();
    assert_eq!(gap.line, b"auditlog gap at seq 5");
    client.prove_inclusion(6, &key).await.unwrap();
    assert!(problems(&client.verify().await.unwrap()).contains(&truncated));
    let (code, out, err) = cli(&server.url, &["proof", "inclusion", "4"]).await;
    assert_ne!(code, 0, "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("seq 4 is not in"), "{err}");
}

#[tokio::test]
async fn verification_finds_a_rewrite_the_hmac_key_holder_made_after_a_checkpoint() {
    let server = TestServer::start_with(with_test_key).await;
    let client = server.client().await;
    log_leads(&client, "LEAD", 1, 5).await;
    let key = trusted_key(&server.data_dir);
    checkpoint_of(&client, &key, 5).await;
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);

    // The last record rewritten and signed again with the HMAC key: the
    // chain still checks out, the signed checkpoint does not.
    tamper(&server.log_path(), |lines| {
        let last = lines.last_mut().unwrap();
        *last = resign(&edit_line(last, "LEAD-5", "LEAD-9"), TEST_KEY.as_bytes());
    });
    let report = client.verify().await.unwrap();
    assert!(!report.ok);
    let kinds: Vec<ProblemKind> = report.problems.iter().map(|p| p.kind()).collect();
    assert_eq!(kinds, [ProblemKind::TreeMismatch], "{:?}", report.problems);
    assert!(
        report.problems[0]
            .message
            .contains("latest signed checkpoint"),
        "{:?}",
        report.problems
    );
}

#[tokio::test]
async fn readers_and_auditors_may_ask_for_proofs_and_writers_may_not() {
    use auditlog_server::config::{Role, TokenConfig};
    use sha2::Digest as _;
    let tokens = [
        ("w", "writer-token-0123456789", Role::Writer),
        ("r", "reader-token-0123456789", Role::Reader),
        ("a", "auditor-token-0123456789", Role::Auditor),
    ];
    let server = TestServer::start_with(|c| {
        c.tokens = tokens
            .iter()
            .map(|(name, secret, role)| TokenConfig {
                name: (*name).into(),
                sha256: hex::encode(sha2::Sha256::digest(secret.as_bytes())),
                roles: vec![*role],
                rate_per_sec: None,
                burst: None,
                actors: None,
            })
            .collect();
    })
    .await;
    let as_token = |secret: &str| {
        let options = auditlog_client::Options {
            token: Some(secret.into()),
            ..auditlog_client::Options::default()
        };
        Client::connect_with(server.url.clone(), options)
    };
    let writer = as_token(tokens[0].1).await.unwrap();
    log_leads(&writer, "LEAD", 1, 2).await;
    for (_, secret, role) in tokens {
        let client = as_token(secret).await.unwrap();
        let got = wait_until("a checkpoint or a refusal", || async {
            match client.checkpoint(true).await {
                Err(e) if e.code() == Some(Code::FailedPrecondition) => Err(e.to_string()),
                other => Ok(other),
            }
        })
        .await;
        let proof = client.inclusion_proof(1, 0).await;
        if role == Role::Writer {
            assert_eq!(got.unwrap_err().code(), Some(Code::PermissionDenied));
            assert_eq!(proof.unwrap_err().code(), Some(Code::PermissionDenied));
        } else {
            assert!(got.is_ok(), "{role:?}: {got:?}");
            assert!(proof.is_ok(), "{role:?}: {proof:?}");
        }
    }
}

#[tokio::test]
async fn the_server_binary_prints_the_verifier_key_the_server_signs_with() {
    let dir = tempfile::tempdir().unwrap();
    let bin = workspace_bin("auditlog-server", "auditlog-server");
    let print = |origin: Option<&str>| {
        let mut command = std::process::Command::new(&bin);
        command
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--print-verifier-key")
            .env_remove("RUST_LOG");
        if let Some(origin) = origin {
            command.env("AUDITLOG_CHECKPOINT_ORIGIN", origin);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let printed = print(Some("auditlog/test-log"));
    assert_eq!(
        print(Some("auditlog/test-log")),
        printed,
        "generated once, then kept"
    );
    assert!(printed.starts_with("auditlog/test-log+"), "{printed}");
    let key = VerifierKey::parse(&printed).unwrap();
    let bad = std::process::Command::new(&bin)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--print-verifier-key")
        .env("AUDITLOG_CHECKPOINT_ORIGIN", "has space")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("checkpoint_origin"));

    let server = TestServer::start_in(dir.path(), |c| {
        c.checkpoint_origin = Some("auditlog/test-log".into());
    })
    .await;
    let client = server.client().await;
    log_leads(&client, "LEAD", 1, 2).await;
    let checkpoint = checkpoint_of(&client, &key, 2).await;
    assert!(checkpoint.note.starts_with("auditlog/test-log\n2\n"));
}

/// The ingest bench's `notree` server (`auditlog_server::bench::Switches`)
/// writes and reads its log but builds no tree and signs no checkpoint,
/// and says so; no configuration file can switch the tree off.
#[tokio::test]
async fn only_a_benchmark_can_switch_the_tree_off() {
    let server = TestServer::start_with(|c| {
        c.bench = auditlog_server::bench::Switches::without_tree();
    })
    .await;
    let client = server.client().await;
    log_leads(&client, "LEAD", 1, 5).await;
    assert_eq!(client.lead_history("LEAD-3").await.unwrap().len(), 1);
    let refused = client.inclusion_proof(3, 5).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::FailedPrecondition), "{refused}");
    assert!(refused.to_string().contains("switched off"), "{refused}");
    assert!(client.checkpoint(true).await.is_err());
    assert!(!server.data_dir.join("tree").exists());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auditlog.toml");
    std::fs::write(&file, "[bench]\ntree = false\n").unwrap();
    let refused =
        auditlog_server::Config::load(Some(&file), auditlog_server::config::Overrides::default())
            .unwrap_err();
    assert!(refused.to_string().contains("bench"), "{refused}");
}
