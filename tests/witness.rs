//! `auditlog checkpoint watch`, the witness, through the CLI binary against
//! real servers: a log that grows is accepted round after round; a server
//! restarted on an older copy of its data directory (a rollback), a
//! checkpoint signed by another log's key, and a log that diverged from the
//! kept checkpoint (a fork, at the same size and at a bigger one) each end
//! the witness with exit 1 and one line that names them. A state file kept
//! by hand with an extra newline is read; one that holds no note is named
//! malformed, not another log's. With `--mirror` the witness keeps the
//! log's records too, each round's checked against its checkpoint: the
//! mirror is the server's records byte for byte (sealed ones too); a mirror
//! changed on disk, and a record the server serves other than as it was
//! signed (rewritten with the HMAC key), each end the witness with exit 1
//! and keep nothing new; a round cut short is fetched again at the next,
//! and a file that is not a mirror, or that another witness holds, is
//! left alone. A server restored from a mirror and the two key files
//! (docs/operations.md, backups) serves the log, verifies clean, and the
//! witness goes on with its note and mirror.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;

use auditlog_client::proof::VerifierKey;
use common::witness::{
    log_leads, mirror_round, other_logs_key, signed_at, verifier_key, witness_round,
};
use common::{
    TEST_KEY, TestServer, all_stored_lines, cli, copy_dir, edit_line, read_lines, resign, tamper,
    with_test_key,
};

#[tokio::test]
async fn a_growing_log_is_accepted_round_after_round() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let key = verifier_key(&server.data_dir);
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("kept.note");

    log_leads(&client, "LEAD", 1, 3).await;
    signed_at(&client, &key, 3).await;
    let (code, out, err) = witness_round(&server.url, &[&key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("tree size 3") && out.contains("first"),
        "{out}"
    );

    let mut last = 3;
    for (round, size) in [(1, 5), (2, 9), (3, 10)] {
        log_leads(&client, "LEAD", last + 1, size).await;
        last = size;
        signed_at(&client, &key, size).await;
        let (code, out, err) = witness_round(&server.url, &[&key], &state, round == 2).await;
        assert_eq!(code, 0, "round {round}: {out}{err}");
        if round == 2 {
            let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            assert_eq!(json["accepted"], "grew", "{out}");
            assert_eq!(json["tree_size"], size, "{out}");
        } else {
            assert!(out.contains(&format!("tree size {size}")), "{out}");
            assert!(out.contains("extends the kept size"), "{out}");
        }
        // The state file is the kept signed note, readable by the key.
        let kept = std::fs::read_to_string(&state).unwrap();
        let c = VerifierKey::parse(&key)
            .unwrap()
            .open_checkpoint(&kept)
            .unwrap();
        assert_eq!(c.size, size);
    }
    let (code, out, err) = witness_round(&server.url, &[&key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("unchanged"), "{out}");
}

#[tokio::test]
async fn a_rollback_and_a_fork_end_the_witness() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let key = verifier_key(&server.data_dir);
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("kept.note");
    let older = scratch.path().join("older");

    log_leads(&client, "LEAD", 1, 3).await;
    signed_at(&client, &key, 3).await;
    // A copy of the data directory taken while the server is stopped.
    let server = server
        .restart_after(|dir| copy_dir(dir, &older), |_| {})
        .await;
    let client = server.client().await;
    log_leads(&client, "LEAD", 4, 6).await;
    signed_at(&client, &key, 6).await;
    let (code, out, err) = witness_round(&server.url, &[&key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("tree size 6"), "{out}");
    drop(client);
    let mut server = server;
    server.stop().await;

    // The server restarted on the older copy: the tree shrank.
    let rolled_back = TestServer::start_in(&older, |_| {}).await;
    let client = rolled_back.client().await;
    signed_at(&client, &key, 3).await;
    let (code, out, err) = witness_round(&rolled_back.url, &[&key], &state, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("ROLLBACK") && err.contains("shrank from 6 to 3"),
        "{err}"
    );
    let kept = std::fs::read_to_string(&state).unwrap();
    assert!(kept.contains("\n6\n"), "the evidence stays kept: {kept}");

    // Other events written after the common prefix: the same size with
    // another root, then a bigger tree that does not extend the kept one.
    log_leads(&client, "OTHER", 4, 6).await;
    signed_at(&client, &key, 6).await;
    let (code, out, err) = witness_round(&rolled_back.url, &[&key], &state, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("FORK") && err.contains("same size"), "{err}");
    assert!(
        err.contains("kept size 6") && err.contains("now size 6"),
        "{err}"
    );
    log_leads(&client, "OTHER", 7, 8).await;
    signed_at(&client, &key, 8).await;
    let (code, out, err) = witness_round(&rolled_back.url, &[&key], &state, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("FORK") && err.contains("does not extend"),
        "{err}"
    );
    assert!(
        err.contains("kept size 6") && err.contains("now size 8"),
        "{err}"
    );
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_logs_key_is_refused() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_leads(&client, "LEAD", 1, 2).await;
    signed_at(&client, &verifier_key(&server.data_dir), 2).await;
    let other_key = other_logs_key().await;
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("kept.note");

    let (code, out, err) = witness_round(&server.url, &[&other_key], &state, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no signature by key"), "{err}");
    assert!(!state.exists(), "nothing refused is kept");

    // A log under another origin, checked with our key's name.
    let renamed =
        TestServer::start_with(|c| c.checkpoint_origin = Some("auditlog/elsewhere".into())).await;
    let renamed_client = renamed.client().await;
    log_leads(&renamed_client, "LEAD", 1, 1).await;
    let renamed_key = auditlog_server::verifier_key(&auditlog_server::Config {
        data_dir: renamed.data_dir.clone(),
        checkpoint_origin: Some("auditlog/elsewhere".into()),
        ..auditlog_server::Config::default()
    })
    .unwrap();
    signed_at(&renamed_client, &renamed_key, 1).await;
    let (code, out, err) = witness_round(&renamed.url, &[&other_key], &state, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("refused the log's latest checkpoint"), "{err}");
}

#[tokio::test]
async fn a_hand_kept_state_file_is_read_and_a_malformed_one_is_named_so() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let key = verifier_key(&server.data_dir);
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("kept.note");

    log_leads(&client, "LEAD", 1, 2).await;
    signed_at(&client, &key, 2).await;
    // Kept as `auditlog checkpoint --json | jq -r .note > kept.note` does:
    // the note, then one newline more.
    let (code, out, err) = cli(&server.url, &["checkpoint", "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let note = json["note"].as_str().unwrap().to_owned();
    std::fs::write(&state, format!("{note}\n")).unwrap();
    log_leads(&client, "LEAD", 3, 4).await;
    signed_at(&client, &key, 4).await;
    let (code, out, err) = witness_round(&server.url, &[&key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("extends the kept size 2"), "{out}");
    // Kept back exactly as the server signed it.
    let kept = std::fs::read_to_string(&state).unwrap();
    assert!(kept.ends_with('\n') && !kept.ends_with("\n\n"), "{kept:?}");
    assert!(kept.contains("\n4\n"), "{kept}");

    // Not a note at all: malformed, with what to do, not a fork alarm.
    for junk in [&b"not a note\n"[..], &b""[..], &[0xff, 0xfe, b'\n'][..]] {
        std::fs::write(&state, junk).unwrap();
        let (code, out, err) = witness_round(&server.url, &[&key], &state, false).await;
        assert_eq!(code, 1, "{out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("is malformed"), "{err}");
        assert!(err.contains("move it aside"), "{err}");
        assert!(!err.contains("not this log's"), "{err}");
        assert_eq!(std::fs::read(&state).unwrap(), junk, "left as it was");
    }
}

/// The server's records as stored, sealed segments and all, as a mirror
/// file holds them.
async fn stored_records(client: &auditlog_client::Client) -> String {
    all_stored_lines(client)
        .await
        .iter()
        .map(|l| format!("{}\n", String::from_utf8_lossy(l)))
        .collect()
}

/// A server with records 1 to `records` signed, and a witness that has
/// mirrored them (one round, checked to pass).
struct Mirrored {
    server: TestServer,
    client: auditlog_client::Client,
    key: String,
    scratch: tempfile::TempDir,
    state: std::path::PathBuf,
    mirror: std::path::PathBuf,
}

impl Mirrored {
    async fn start(configure: fn(&mut auditlog_server::Config), records: u64) -> Mirrored {
        let server = TestServer::start_with(configure).await;
        let client = server.client().await;
        let key = verifier_key(&server.data_dir);
        let scratch = tempfile::tempdir().unwrap();
        let state = scratch.path().join("kept.note");
        let mirror = scratch.path().join("mirror.jsonl");
        log_leads(&client, "LEAD", 1, records).await;
        signed_at(&client, &key, records).await;
        let m = Mirrored {
            server,
            client,
            key,
            scratch,
            state,
            mirror,
        };
        let (code, out, err) = m.round(&m.state, &m.mirror, false).await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains(&format!("seqs 1 to {records} checked and mirrored")),
            "{out}"
        );
        m
    }

    /// One round of the witness keeping `state` and `mirror`.
    async fn round(&self, state: &Path, mirror: &Path, json: bool) -> (i32, String, String) {
        mirror_round(&self.server.url, &self.key, state, mirror, json).await
    }
}

#[tokio::test]
async fn a_mirror_holds_the_logs_records_checked_round_after_round() {
    let m = Mirrored::start(|_| {}, 5).await;
    let file: String = read_lines(&m.server.log_path())
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(std::fs::read_to_string(&m.mirror).unwrap(), file);

    // The first records sealed into a gzip segment, more written after.
    m.client.rotate(true).await.unwrap();
    log_leads(&m.client, "LEAD", 6, 9).await;
    signed_at(&m.client, &m.key, 9).await;
    let (code, out, err) = m.round(&m.state, &m.mirror, true).await;
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["accepted"], "grew", "{out}");
    assert_eq!(json["mirrored"]["from_seq"], 6, "{out}");
    assert_eq!(json["mirrored"]["to_seq"], 9, "{out}");
    let stored = stored_records(&m.client).await;
    assert_eq!(stored.lines().count(), 9);
    assert_eq!(std::fs::read_to_string(&m.mirror).unwrap(), stored);

    // Nothing new: nothing fetched. A new mirror beside a kept checkpoint
    // catches up to it.
    let (code, out, err) = m.round(&m.state, &m.mirror, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("unchanged") && !out.contains("mirrored"),
        "{out}"
    );
    let second = m.scratch.path().join("second.jsonl");
    let (code, out, err) = m.round(&m.state, &second, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("unchanged; seqs 1 to 9 checked"), "{out}");
    assert_eq!(std::fs::read_to_string(&second).unwrap(), stored);
}

#[tokio::test]
async fn a_changed_mirror_and_a_record_served_other_than_signed_end_the_mirror() {
    let m = Mirrored::start(with_test_key, 5).await;
    let kept = std::fs::read(&m.mirror).unwrap();

    // A byte of the mirror changed: named, and the file left as it is.
    let changed = String::from_utf8(kept.clone())
        .unwrap()
        .replacen("LEAD-2", "LEAD-7", 1);
    std::fs::write(&m.mirror, &changed).unwrap();
    let (code, out, err) = m.round(&m.state, &m.mirror, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("was changed since it was written"), "{err}");
    assert_eq!(std::fs::read_to_string(&m.mirror).unwrap(), changed);
    std::fs::write(&m.mirror, &kept).unwrap();

    // A mirror behind the kept checkpoint cannot be checked at start: a
    // changed record in it shows at the round, which names it as a cause.
    let behind = m.scratch.path().join("behind.jsonl");
    let first_three: String = changed.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&behind, &first_three).unwrap();
    let (code, out, err) = m.round(&m.state, &behind, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("MISMATCH") && err.contains("the 3 records the mirror held, not yet checked"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&behind).unwrap(), first_three);

    // The last record rewritten and signed again with the HMAC key after
    // the checkpoint signed it: its chain checks out, but a new mirror
    // finds it is not what the checkpoint signed, and keeps nothing.
    tamper(&m.server.log_path(), |lines| {
        let last = lines.last_mut().unwrap();
        *last = resign(&edit_line(last, "LEAD-5", "LEAD-9"), TEST_KEY.as_bytes());
    });
    let fresh_state = m.scratch.path().join("fresh.note");
    let fresh = m.scratch.path().join("fresh.jsonl");
    let (code, out, err) = m.round(&fresh_state, &fresh, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("MISMATCH") && err.contains("seqs 1 to 5"),
        "{err}"
    );
    assert_eq!(std::fs::read(&fresh).unwrap(), b"", "nothing kept");
    assert!(!fresh_state.exists(), "no checkpoint kept");

    // The mirror taken before holds the record as it was signed.
    let (code, out, err) = m.round(&m.state, &m.mirror, false).await;
    assert_eq!(code, 0, "{out}{err}");
    let evidence = std::fs::read_to_string(&m.mirror).unwrap();
    assert!(evidence.lines().last().unwrap().contains("LEAD-5"));
    assert!(stored_records(&m.client).await.contains("LEAD-9"));
}

#[tokio::test]
async fn a_round_cut_short_is_fetched_again_and_other_files_are_left_alone() {
    let m = Mirrored::start(|_| {}, 3).await;
    let kept = std::fs::read_to_string(&m.mirror).unwrap();

    // What a round cut short leaves: records past the kept checkpoint, the
    // last one half written. They are cut, fetched and checked again.
    log_leads(&m.client, "LEAD", 4, 6).await;
    let more = stored_records(&m.client).await;
    let (_, after) = more.split_at(kept.len());
    std::fs::write(&m.mirror, format!("{kept}{}", &after[..after.len() - 9])).unwrap();
    signed_at(&m.client, &m.key, 6).await;
    let (code, out, err) = m.round(&m.state, &m.mirror, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("cut") && err.contains("after seq 3"), "{err}");
    assert!(out.contains("seqs 4 to 6 checked"), "{out}");
    assert_eq!(std::fs::read_to_string(&m.mirror).unwrap(), more);

    // One witness to a mirror.
    let held = std::fs::File::open(&m.mirror).unwrap();
    held.lock().unwrap();
    let (code, out, err) = m.round(&m.state, &m.mirror, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("in use by another witness"), "{err}");
    drop(held);

    // A file that holds something else is not a mirror to cut.
    let notes = m.scratch.path().join("notes.txt");
    std::fs::write(&notes, "my notes\n").unwrap();
    let other_state = m.scratch.path().join("other.note");
    let (code, out, err) = m.round(&other_state, &notes, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("is not a mirror"), "{err}");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");
}

#[tokio::test]
async fn a_mirror_and_its_kept_note_are_checked_offline() {
    let m = Mirrored::start(|_| {}, 4).await;
    let kept = std::fs::read_to_string(&m.mirror).unwrap();
    // No server: a closed port, never dialled.
    let offline = |file: &Path, key: &str, json: bool| {
        let args: Vec<String> = [
            json.then_some("--json"),
            Some("bundle"),
            Some("verify-mirror"),
            file.to_str(),
            Some("--note"),
            m.state.to_str(),
            Some("--key"),
            Some(key),
        ]
        .into_iter()
        .flatten()
        .map(str::to_owned)
        .collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli("http://127.0.0.1:1", &args).await
        }
    };
    let (code, out, err) = offline(&m.mirror, &m.key, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("holds the 4 records of") && out.contains("tree size 4"),
        "{out}"
    );
    let (code, out, err) = offline(&m.mirror, &m.key, true).await;
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (json["verified"].as_bool(), json["tree_size"].as_u64()),
        (Some(true), Some(4))
    );

    let copy = m.scratch.path().join("copy.jsonl");
    let failures = [
        (
            "a changed record",
            kept.replacen("LEAD-3", "LEAD-8", 1),
            "not the records it signed",
        ),
        (
            "a record short",
            kept.lines().take(3).map(|l| format!("{l}\n")).collect(),
            "up to seq 3 only",
        ),
        (
            "not a mirror",
            "my notes\n".to_owned(),
            "is not a witness's mirror: line 1 is not a stored record after seq 0",
        ),
    ];
    for (what, text, says) in failures {
        std::fs::write(&copy, text).unwrap();
        let (code, out, err) = offline(&copy, &m.key, false).await;
        assert_eq!(code, 1, "{what}: {out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(err.contains(says), "{what}: {err}");
    }
    let (code, out, err) = offline(&m.mirror, &other_logs_key().await, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("kept.note"), "{err}");
}

#[tokio::test]
async fn a_server_restored_from_a_mirror_serves_the_log_and_the_witness_goes_on() {
    // Records 1-4 sealed into a compressed segment, 5-7 in `audit.log`,
    // all mirrored; then the machine is lost but for the mirror and the
    // two keys, kept apart from it.
    let mut m = Mirrored::start(|_| {}, 4).await;
    m.client.rotate(true).await.unwrap();
    log_leads(&m.client, "LEAD", 5, 7).await;
    signed_at(&m.client, &m.key, 7).await;
    let (code, out, err) = m.round(&m.state, &m.mirror, false).await;
    assert_eq!(code, 0, "{out}{err}");
    let kept_records = std::fs::read_to_string(&m.mirror).unwrap();
    drop(m.client);
    m.server.stop().await;

    // A fresh data directory: the mirror as `audit.log`, beside the keys.
    let restored = tempfile::tempdir().unwrap();
    for key in ["hmac.key", "checkpoint.key"] {
        std::fs::copy(m.server.data_dir.join(key), restored.path().join(key)).unwrap();
    }
    std::fs::copy(&m.mirror, restored.path().join("audit.log")).unwrap();
    let server = TestServer::start_in(restored.path(), |_| {}).await;
    let client = server.client().await;
    assert_eq!(stored_records(&client).await, kept_records);
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(verifier_key(restored.path()), m.key, "the same log's key");

    // The witness, with the note and mirror it kept, takes the restored
    // server's checkpoints as the same log's, growing.
    log_leads(&client, "LEAD", 8, 8).await;
    signed_at(&client, &m.key, 8).await;
    let (code, out, err) = mirror_round(&server.url, &m.key, &m.state, &m.mirror, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("seqs 8 to 8 checked and mirrored"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&m.mirror).unwrap(),
        stored_records(&client).await
    );
}
