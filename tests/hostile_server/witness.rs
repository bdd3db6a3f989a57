//! `auditlog checkpoint watch` against a server that holds the signing key:
//! what it signs must still extend what the witness kept, and with
//! `--mirror` the records it serves must make the roots it signed, whatever
//! size it claims.

use auditlog_client::pb;
use auditlog_client::proof::Checkpoint;

use crate::hostile_server::fake::{FakeServer, Forged, ORIGIN, Scene};
use crate::hostile_server::{auditlog, refused};

/// One StreamEvents answer: `lines` in one message.
fn stream_of(lines: &[Vec<u8>]) -> Vec<pb::StreamEventsResponse> {
    vec![pb::StreamEventsResponse {
        event: None,
        lines: lines.to_vec(),
    }]
}

#[tokio::test]
async fn a_signed_rollback_or_fork_ends_the_witness_and_keeps_the_evidence() {
    let log = Forged::new(1, 6);
    let key = log.key();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("kept.note");
    let state = state.to_str().unwrap();
    let server = FakeServer::start(Scene {
        checkpoint: Some(log.checkpoint(6)),
        ..Scene::default()
    })
    .await;
    let watch = [
        "checkpoint",
        "watch",
        "--once",
        "--key",
        &key,
        "--state",
        state,
    ];
    let run = auditlog(&server.url, &watch).await;
    assert_eq!(run.code, 0, "{run:?}");
    let kept = std::fs::read_to_string(state).unwrap();

    let mut lines = log.lines.clone();
    lines[5] = crate::hostile_server::fake::record(6, "L-forged");
    let fork = Forged::of(1, lines);
    for (answer, want) in [
        (log.checkpoint(4), "ROLLBACK"),
        (
            fork.checkpoint(6),
            "FORK: the log has another root at the same size",
        ),
        (log.checkpoint(0), "ROLLBACK"),
    ] {
        server.script(|s| s.checkpoint = Some(answer));
        let run = auditlog(&server.url, &watch).await;
        refused(&run, want);
        assert_eq!(std::fs::read_to_string(state).unwrap(), kept);
    }

    // A bigger tree whose proof does not hold, or that the server will not
    // prove at all.
    let mut longer = fork.lines.clone();
    longer.push(crate::hostile_server::fake::record(7, "L-7"));
    let fork = Forged::of(1, longer);
    server.script(|s| {
        s.checkpoint = Some(fork.checkpoint(7));
        s.consistency = Some(fork.consistency(6, 7));
    });
    let run = auditlog(&server.url, &watch).await;
    refused(
        &run,
        "FORK: the log's new checkpoint does not extend the kept one",
    );
    server.script(|s| s.consistency = None);
    let run = auditlog(&server.url, &watch).await;
    refused(&run, "UNIMPLEMENTED");
    assert_eq!(std::fs::read_to_string(state).unwrap(), kept);
}

#[tokio::test]
async fn a_mirror_takes_only_records_that_make_the_signed_root_whatever_the_size() {
    let log = Forged::new(1, 3);
    let key = log.key();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("kept.note");
    let mirror = dir.path().join("log.jsonl");
    let (state, mirror) = (state.to_str().unwrap(), mirror.to_str().unwrap());
    let watch = [
        "checkpoint",
        "watch",
        "--once",
        "--key",
        &key,
        "--state",
        state,
        "--mirror",
        mirror,
    ];
    // Records other than those signed.
    let mut lines = log.lines.clone();
    lines[1] = crate::hostile_server::fake::record(2, "L-forged");
    let server = FakeServer::start(Scene {
        checkpoint: Some(log.checkpoint(3)),
        streams: [stream_of(&lines)].into(),
        ..Scene::default()
    })
    .await;
    let run = auditlog(&server.url, &watch).await;
    refused(
        &run,
        "MISMATCH: the records the server sent for seqs 1 to 3",
    );
    assert!(!std::path::Path::new(state).exists());
    assert_eq!(std::fs::read(mirror).unwrap(), b"");

    // A signed checkpoint of u64::MAX records (or just short of it), and
    // the 3 records the server holds.
    for size in [u64::MAX, u64::MAX - 1, 1 << 40] {
        let note = log.signer.sign_checkpoint(&Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: log.root(3),
        });
        server.script(|s| {
            s.checkpoint = Some(log.answer(note));
            s.streams = [stream_of(&log.lines)].into();
        });
        let run = auditlog(&server.url, &watch).await;
        refused(
            &run,
            "a mirror counts a seq the log does not hold as its gap leaf",
        );
        assert!(!std::path::Path::new(state).exists());
        assert_eq!(std::fs::read(mirror).unwrap(), b"", "size {size}");
    }

    // The honest answer is taken.
    server.script(|s| {
        s.checkpoint = Some(log.checkpoint(3));
        s.streams = [stream_of(&log.lines)].into();
    });
    let run = auditlog(&server.url, &watch).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("seqs 1 to 3 checked and mirrored"),
        "{run:?}"
    );
    assert_eq!(
        std::fs::read(mirror).unwrap(),
        log.lines
            .join(&b'\n')
            .iter()
            .copied()
            .chain([b'\n'])
            .collect::<Vec<u8>>()
    );
}
