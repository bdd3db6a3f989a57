//! `auditlog backup DIR` against a server taking writes and sealing
//! segments meanwhile: the copy holds every event acknowledged before the
//! call, byte for byte, and a server started on it with the two keys beside
//! it verifies clean and signs checkpoints as the same log. An existing
//! directory that is not empty is refused before anything is asked of the
//! server. One backup runs at a time, and a caller that leaves frees it.
//! A backup taken `--from` an earlier one links the sealed segments the
//! log still has, unchanged, from there, and restores as a whole one.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auditlog_client::{Client, NewEvent};
use common::witness::verifier_key;
use common::{TestServer, all_stored_lines, cli};

#[tokio::test]
async fn a_backup_taken_under_load_holds_every_acknowledged_event_and_restores() {
    // Small segments: several seals while the backup opens the files.
    let server = TestServer::start_with(|c| c.max_file_size_mb = 0.1).await;
    let client = server.client().await;
    let batch = |n: u64| (0..20).map(move |i| NewEvent::lead_ingested(format!("L-{n}-{i}"), "web"));
    client.log_batch(batch(0)).await.unwrap();
    client.rotate(true).await.unwrap();

    // Two writers until told to stop; the highest seq acknowledged so far.
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let (client, acknowledged, stop) = (
            server.client().await,
            Arc::clone(&acknowledged),
            Arc::clone(&stop),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 1 + w * 100_000;
            while !stop.load(Ordering::Relaxed) {
                let receipts = client.log_batch(batch(n)).await.unwrap();
                acknowledged.fetch_max(receipts.last().unwrap().seq, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    // Sealed segments, compressed or still waiting for the sealer (at the
    // lowest CPU priority, it falls behind on a busy machine).
    // A segment being compressed has both files for a moment: one name each.
    let sealed = |dir: &std::path::Path| -> std::collections::BTreeSet<String> {
        let names = common::files(dir).into_iter();
        names
            .filter(|n| n != "audit.log" && (n.ends_with(".log.gz") || n.ends_with(".log")))
            .map(|n| n.trim_end_matches(".gz").to_owned())
            .collect()
    };
    common::wait_until("segments sealed under the writers", || async {
        match sealed(&server.data_dir).len() {
            n if n >= 3 => Ok(()),
            n => Err(format!("{n} sealed segments")),
        }
    })
    .await;
    let before = acknowledged.load(Ordering::Relaxed);
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("copy");
    let (code, out, err) = cli(&server.url, &["--json", "backup", copy.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let done: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let head_seq = done["head_seq"].as_u64().unwrap();
    assert!(
        head_seq >= before,
        "the backup's head {head_seq} is behind {before}: {out}"
    );
    let in_copy = sealed(&copy);
    assert!(
        in_copy.len() >= 3,
        "sealed segments in the copy: {in_copy:?}"
    );
    for key in ["hmac.key", "checkpoint.key"] {
        assert!(!copy.join(key).exists(), "{key} was copied");
        std::fs::copy(server.data_dir.join(key), copy.join(key)).unwrap();
    }

    let original = all_stored_lines(&client).await;
    let restored = TestServer::start_in(&copy, |c| c.max_file_size_mb = 0.1).await;
    let restored_client = restored.client().await;
    let report = restored_client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    let lines = all_stored_lines(&restored_client).await;
    let held = usize::try_from(head_seq).unwrap();
    assert!(
        lines.len() >= held,
        "{} records, the backup's head is {head_seq}",
        lines.len()
    );
    assert!(
        lines[..held] == original[..held],
        "the copy's records 1..={head_seq} are not the log's"
    );
    assert_eq!(verifier_key(&copy), verifier_key(&server.data_dir));
}

#[tokio::test]
async fn a_backup_into_a_directory_that_holds_files_is_refused() {
    let server = TestServer::start().await;
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(scratch.path().join("notes.txt"), "mine").unwrap();
    let (code, out, err) = cli(&server.url, &["backup", scratch.path().to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("notes.txt")).unwrap(),
        "mine"
    );
}

/// What the CLI can check itself it checks before it connects: with no
/// server there, the line names the directory, not the connection.
#[tokio::test]
async fn local_arguments_are_checked_before_the_server_is_asked() {
    let url = format!("http://127.0.0.1:{}", common::endpoints::closed_port());
    let scratch = tempfile::tempdir().unwrap();
    let new = scratch.path().join("new");
    let missing = scratch.path().join("missing");
    let (code, out, err) = cli(
        &url,
        &[
            "backup",
            "--from",
            missing.to_str().unwrap(),
            new.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("cannot read {}", missing.display())),
        "{err}"
    );
    assert!(!new.exists());

    std::fs::write(scratch.path().join("notes.txt"), "mine").unwrap();
    let (code, out, err) = cli(&url, &["backup", scratch.path().to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("is not empty"), "{err}");
}

/// A server holding a log of some 24 MB, far more than a backup stream's
/// buffer and HTTP/2's windows hold while its caller does not read.
async fn server_with_large_log() -> (TestServer, Client) {
    let server = TestServer::start().await;
    let client = server.client().await;
    let big = "x".repeat(60_000);
    for n in 0..8 {
        let events = (0..50).map(|i| {
            NewEvent::lead_ingested(format!("L-{n}-{i}"), "web").detail("note", big.as_str())
        });
        client.log_batch(events).await.unwrap();
    }
    (server, client)
}

/// Asserts that a backup is refused because another one runs.
async fn refused_while_one_runs(client: &Client) {
    let second = client.backup().await.unwrap_err();
    let auditlog_client::Error::Rpc(status) = second else {
        panic!("{second}")
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("already running"), "{status:?}");
}

/// A whole backup, read to its `done`.
async fn whole_backup(client: &Client) -> Result<(), String> {
    let mut stream = client.backup().await.map_err(|e| e.to_string())?;
    while let Some(m) = stream.message().await.map_err(|e| format!("{e}"))? {
        if matches!(
            m.part,
            Some(auditlog_client::pb::backup_response::Part::Done(_))
        ) {
            return Ok(());
        }
    }
    Err("the stream ended without done".to_owned())
}

#[tokio::test]
async fn one_backup_runs_at_a_time_and_a_caller_that_leaves_frees_it() {
    let (_server, client) = server_with_large_log().await;
    let mut first = client.backup().await.unwrap();
    first.message().await.unwrap().unwrap();
    refused_while_one_runs(&client).await;

    drop(first);
    common::wait_until("the backup freed by its caller leaving", || {
        whole_backup(&client)
    })
    .await;
}

/// A caller that stays connected but takes nothing more has its backup
/// ended after a minute (the server's `STALLED`), which frees the files it
/// held open and lets the next backup run; until then it is only slow.
#[tokio::test]
async fn a_caller_that_stops_reading_has_its_backup_ended_after_a_minute() {
    let (_server, client) = server_with_large_log().await;
    let mut first = client.backup().await.unwrap();
    first.message().await.unwrap().unwrap();
    let stalled = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    refused_while_one_runs(&client).await;

    common::wait_until_within(Duration::from_secs(120), "the stalled backup ended", || {
        whole_backup(&client)
    })
    .await;
    assert!(
        stalled.elapsed() >= Duration::from_secs(55),
        "the stalled backup ended after {:?}, before its minute",
        stalled.elapsed()
    );
    drop(first);
}

/// `auditlog backup --from EARLIER DIR`: the sealed segments the earlier
/// backup holds and the log still has are not sent again but hard-linked
/// from it; a file there changed since is sent whole; and the new
/// directory restores on its own.
#[tokio::test]
async fn a_backup_from_an_earlier_one_takes_its_unchanged_segments_from_there() {
    let server = TestServer::start_with(|c| c.max_file_size_mb = 0.05).await;
    let client = server.client().await;
    let batch = |n: u64| (0..40).map(move |i| NewEvent::lead_ingested(format!("L-{n}-{i}"), "web"));
    for n in 0..12 {
        client.log_batch(batch(n)).await.unwrap();
    }
    client.rotate(true).await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (first, second) = (scratch.path().join("first"), scratch.path().join("second"));
    let (code, out, err) = cli(&server.url, &["--json", "backup", first.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    let whole: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(whole["held_files"], 0, "{out}");
    let segments: Vec<String> = common::files(&first)
        .into_iter()
        .filter(|n| n.ends_with(".log.gz"))
        .collect();
    assert!(segments.len() >= 2, "{segments:?}");
    // The earlier backup's first segment damaged since, one byte changed
    // in place: it must be sent again, not linked.
    let damaged = first.join(&segments[0]);
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&damaged, &bytes).unwrap();

    for n in 12..16 {
        client.log_batch(batch(n)).await.unwrap();
    }
    client.rotate(true).await.unwrap();
    let (code, out, err) = cli(
        &server.url,
        &[
            "--json",
            "backup",
            "--from",
            first.to_str().unwrap(),
            second.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let done: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let inode = |path: &std::path::Path| {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(path).unwrap().ino()
    };
    for name in &segments[1..] {
        assert_eq!(
            inode(&first.join(name)),
            inode(&second.join(name)),
            "{name} was not taken from the earlier backup"
        );
    }
    assert_ne!(inode(&damaged), inode(&second.join(&segments[0])));
    let newer: Vec<String> = common::files(&second)
        .into_iter()
        .filter(|n| n.ends_with(".log.gz") && !segments.contains(n))
        .collect();
    assert!(
        !newer.is_empty(),
        "no segment sealed after the first backup"
    );
    let held = done["held_files"].as_u64().unwrap();
    assert!(held >= segments.len() as u64 - 1, "{out}");
    let on_disk: u64 = common::files(&second)
        .iter()
        .map(|n| std::fs::metadata(second.join(n)).unwrap().len())
        .sum();
    assert_eq!(
        done["bytes"].as_u64().unwrap() + done["held_bytes"].as_u64().unwrap(),
        on_disk,
        "{out}"
    );

    for key in ["hmac.key", "checkpoint.key"] {
        std::fs::copy(server.data_dir.join(key), second.join(key)).unwrap();
    }
    let original = all_stored_lines(&client).await;
    let restored = TestServer::start_in(&second, |c| c.max_file_size_mb = 0.05).await;
    let restored_client = restored.client().await;
    let report = restored_client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    let head_seq = usize::try_from(done["head_seq"].as_u64().unwrap()).unwrap();
    let lines = all_stored_lines(&restored_client).await;
    assert_eq!(lines[..head_seq], original[..head_seq]);
}

/// Only what the manifest vouches for is held: a segment named with another
/// SHA-256, or a file of no sealed segment, is sent whole.
#[tokio::test]
async fn a_held_file_named_with_another_hash_is_sent_whole() {
    let server = TestServer::start_with(|c| c.max_file_size_mb = 0.05).await;
    let client = server.client().await;
    for n in 0..2 {
        let events = (0..40).map(move |i| NewEvent::lead_ingested(format!("L-{n}-{i}"), "web"));
        client.log_batch(events).await.unwrap();
        client.rotate(true).await.unwrap();
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.data_dir.join("manifest.json")).unwrap())
            .unwrap();
    let segments = manifest["segments"].as_array().unwrap();
    assert!(segments.len() >= 2, "{manifest}");
    let named = |i: usize, sha256: &str| auditlog_client::pb::HeldFile {
        path: segments[i]["file"].as_str().unwrap().to_owned(),
        sha256: sha256.to_owned(),
        size: segments[i]["bytes"].as_u64().unwrap(),
    };
    let held = vec![
        named(0, segments[0]["sha256"].as_str().unwrap()),
        named(1, &"0".repeat(64)),
        auditlog_client::pb::HeldFile {
            path: "audit.log".to_owned(),
            sha256: String::new(),
            size: 0,
        },
    ];
    let mut stream = client.backup_holding(held).await.unwrap();
    let mut marked = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        if let Some(auditlog_client::pb::backup_response::Part::File(f)) = m.part
            && f.held
        {
            marked.push(f.path);
        }
    }
    assert_eq!(
        marked,
        vec![segments[0]["file"].as_str().unwrap().to_owned()]
    );
}
