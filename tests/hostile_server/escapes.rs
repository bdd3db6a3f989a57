//! What the server sends reaches the terminal escaped: an origin, a signer's
//! name, a stored line, an error message or a bundle's selection holding an
//! escape sequence (clear the screen, set the window title, a C1 CSI) or a
//! bidirectional override must not be printed raw by the CLI, on stdout or
//! on stderr, with `--key` or without.

use auditlog_client::pb;
use auditlog_client::proof::{Bundle, BundleRecord, Checkpoint, NoteSigner, VerifierKey};
use tonic::Status;

use crate::common::{cli_bin, run_to_end};
use crate::hostile_server::fake::{FakeServer, Forged, Scene};
use crate::hostile_server::{RUN_DEADLINE, auditlog};

/// What a hostile string holds: CSI clear screen, an OSC title, a C1 CSI,
/// a right-to-left override.
const NASTY: &str = "\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}31m\u{202e}";

/// Fails on any character a terminal acts on in `out` (but newlines).
fn assert_shown_safely(what: &str, out: &str) {
    let bad = out.chars().find(|&c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}')
    });
    assert!(bad.is_none(), "{what}: raw {bad:?} in {out:?}");
}

#[tokio::test]
async fn hostile_strings_from_the_server_are_escaped_on_stdout_and_stderr() {
    let log = Forged::new(1, 3);
    let key = log.key();
    // A note the key signed, with a second signature line by another name:
    // a verifier skips lines of other keys, so it verifies.
    let stranger = NoteSigner::new(&format!("x{NASTY}"), &[3; 32]).unwrap();
    let note = stranger.cosign(&log.note(3)).unwrap();
    let lines: Vec<Vec<u8>> = (1..=3)
        .map(|seq| {
            let mut line = crate::hostile_server::fake::record(seq, &format!("L-{seq}"));
            if seq == 2 {
                line = String::from_utf8(line)
                    .unwrap()
                    .replace("webform", &format!("web{NASTY}form"))
                    .into_bytes();
            }
            line
        })
        .collect();
    let nasty_log = Forged::of(1, lines);
    let server = FakeServer::start(Scene {
        checkpoint: Some(log.answer(note)),
        ..Scene::default()
    })
    .await;
    let run = auditlog(&server.url, &["checkpoint", "--key", &key]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_shown_safely("checkpoint", &run.stdout);

    server.script(|s| {
        s.checkpoint = Some(nasty_log.checkpoint(3));
        s.inclusion = Some(nasty_log.inclusion(2, 3));
    });
    let run = auditlog(&server.url, &["proof", "inclusion", "2", "--key", &key]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_shown_safely("proof inclusion", &run.stdout);
    assert!(run.stdout.contains(r"web\u{1b}[2J"), "{run:?}");

    // A key (and log) whose name holds the escapes, used without --key.
    let evil = NoteSigner::new(&format!("evil{NASTY}"), &[4; 32]).unwrap();
    let evil_note = evil.sign_checkpoint(&Checkpoint {
        origin: format!("evil{NASTY}"),
        size: 3,
        root: log.root(3),
    });
    let mut answer = log.answer(evil_note.clone());
    answer.verifier_key = evil.verifier_key();
    server.script(|s| s.checkpoint = Some(answer));
    let run = auditlog(&server.url, &["checkpoint"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_shown_safely("checkpoint without --key", &run.stdout);
    assert_shown_safely("checkpoint without --key", &run.stderr);
    // With the log's key: refused, naming who signed it.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("kept.note");
    let state = state.to_str().unwrap();
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
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("it is signed by evil"), "{run:?}");
    assert_shown_safely("watch", &run.stderr);

    // An error status whose message holds them.
    server.script(|s| s.fail = Some(Status::internal(format!("boom{NASTY}\nforged line"))));
    for args in [&["checkpoint", "--key", &key][..], &watch[..]] {
        let run = auditlog(&server.url, args).await;
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains("INTERNAL: boom"), "{run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {run:?}");
        assert_shown_safely("an error", &run.stderr);
    }
}

#[tokio::test]
async fn a_bundles_selection_and_origin_are_escaped() {
    let evil = NoteSigner::new(&format!("evil{NASTY}"), &[4; 32]).unwrap();
    let log = Forged::new(1, 2);
    let note = evil.sign_checkpoint(&Checkpoint {
        origin: format!("evil{NASTY}"),
        size: 2,
        root: log.root(2),
    });
    let proof = log.inclusion(1, 2);
    let hashes: Vec<[u8; 32]> = proof
        .hashes
        .iter()
        .map(|h| h[..].try_into().unwrap())
        .collect();
    let bundle = Bundle {
        format: "auditlog-bundle/1".into(),
        selection: format!("lead {NASTY}"),
        verifier_key: evil.verifier_key(),
        checkpoint: note,
        seqs: Some(vec![1]),
        records: vec![BundleRecord::new(
            1,
            String::from_utf8(log.lines[0].clone()).unwrap(),
            &proof.leaf_hash.try_into().unwrap(),
            &hashes,
        )],
    };
    // It verifies: the forger made the key too.
    let own = VerifierKey::parse(&bundle.verifier_key).unwrap();
    assert!(bundle.verify(&own).unwrap().ok());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.json");
    std::fs::write(&file, serde_json::to_vec(&bundle).unwrap()).unwrap();
    let file = file.to_str().unwrap();
    let run = auditlog("http://127.0.0.1:1", &["bundle", "verify", file]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("OK: 1 record(s) of evil"), "{run:?}");
    assert_shown_safely("bundle verify", &run.stdout);
    assert_shown_safely("bundle verify", &run.stderr);
    // With the log's own key it is another log's: refused, escaped.
    let key = format!("--key={}", log.key());
    let run = auditlog("http://127.0.0.1:1", &["bundle", "verify", file, &key]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_shown_safely("bundle verify --key", &run.stderr);
}

/// `tail --stored` writes each line exactly as the server sent it into a
/// pipe or a file (a mirror keeps the bytes the tree hashed), but on a
/// terminal (here a pseudo-terminal from `script`) shows it through the
/// same escaping as every other line: a hostile server's line, or a real
/// record's C1 and bidirectional characters, which JSON leaves raw, cannot
/// drive it.
#[tokio::test]
async fn tail_stored_is_exact_in_a_pipe_and_escaped_on_a_terminal() {
    let line = String::from_utf8(crate::hostile_server::fake::record(1, "L-1"))
        .unwrap()
        .replace("webform", &format!("web{NASTY}form"));
    let stream = vec![pb::StreamEventsResponse {
        event: None,
        lines: vec![line.clone().into_bytes()],
    }];
    let server = FakeServer::start(Scene {
        streams: [stream.clone(), stream].into(),
        ..Scene::default()
    })
    .await;
    let tail = ["tail", "--stored", "--from-seq", "1"];

    let piped = auditlog(&server.url, &tail).await;
    assert_eq!(piped.stdout, format!("{line}\n"), "{piped:?}");

    let command = format!(
        "{} --server {} {}",
        cli_bin().display(),
        server.url,
        tail.join(" ")
    );
    let args = ["-qec", &command, "/dev/null"].map(str::to_owned).to_vec();
    let shown = run_to_end("script".into(), args, Vec::new(), RUN_DEADLINE).await;
    // The terminal ends lines with CR LF; stdout and stderr both reach it.
    let screen = shown.stdout.replace("\r\n", "\n");
    assert!(
        screen.contains(r"web\u001b[2J\u001b]0;owned\u0007\u009b31m\u202eform"),
        "{shown:?}"
    );
    assert_shown_safely("tail --stored on a terminal", &screen);
}
