//! `auditlog backup DIR` against a server that sends what it likes: a path
//! outside DIR, more bytes than a file declared, a stream that ends before
//! its last message or says another count, a file marked held that the
//! caller named no earlier backup for. Each is refused with exit 1 and one
//! line, and nothing is written outside DIR.

use auditlog_client::pb;
use pb::backup_response::Part;

use crate::hostile_server::fake::{FakeServer, Scene};
use crate::hostile_server::{auditlog, refused};

fn file(path: &str, size: u64) -> pb::BackupResponse {
    file_marked(path, size, false)
}

/// A `file` message, `held` as given.
fn file_marked(path: &str, size: u64, held: bool) -> pb::BackupResponse {
    let file = pb::BackupFile {
        path: path.to_owned(),
        size,
        held,
    };
    pb::BackupResponse {
        part: Some(Part::File(file)),
    }
}

fn data(bytes: &[u8]) -> pb::BackupResponse {
    pb::BackupResponse {
        part: Some(Part::Data(bytes.to_vec())),
    }
}

fn done(files: u64, bytes: u64) -> pb::BackupResponse {
    let done = pb::BackupDone {
        files,
        bytes,
        head_seq: 1,
        ..Default::default()
    };
    pb::BackupResponse {
        part: Some(Part::Done(done)),
    }
}

#[tokio::test]
async fn a_backup_stream_that_is_not_a_data_directory_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let cases = [
        (
            "a path out of the directory",
            vec![file("../outside", 3), data(b"abc"), done(1, 3)],
            "a file named \"../outside\"",
        ),
        (
            "an absolute path",
            vec![
                file(&scratch.path().join("abs").display().to_string(), 3),
                data(b"abc"),
                done(1, 3),
            ],
            "a file named",
        ),
        (
            "more bytes than declared",
            vec![file("audit.log", 2), data(b"abc"), done(1, 2)],
            "more bytes than",
        ),
        (
            "a file cut short",
            vec![file("audit.log", 5), data(b"abc"), done(1, 5)],
            "is 2 bytes short",
        ),
        (
            "no last message",
            vec![file("audit.log", 3), data(b"abc")],
            "ended before its last message",
        ),
        (
            "another count of files",
            vec![file("audit.log", 3), data(b"abc"), done(2, 3)],
            "1 files came, its last message says 2",
        ),
        (
            "a file held, unasked",
            vec![
                file_marked("audit.20261207T000000.000000Z.log.gz", 3, true),
                done(1, 0),
            ],
            "came as held, unasked",
        ),
    ];
    for (n, (what, messages, says)) in cases.into_iter().enumerate() {
        let server = FakeServer::start(Scene {
            backup: Some(messages),
            ..Scene::default()
        })
        .await;
        let dir = scratch.path().join(format!("copy-{n}"));
        let run = auditlog(&server.url, &["backup", dir.to_str().unwrap()]).await;
        refused(&run, says);
        let outside: Vec<String> = std::fs::read_dir(scratch.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with("copy-"))
            .collect();
        assert!(
            outside.is_empty(),
            "{what}: written outside DIR: {outside:?}"
        );
    }
}

/// With `--from`, a file marked held that the CLI did not name (a server
/// that would have it link whatever the earlier backup holds) is refused
/// the same way, and the earlier backup is left as it was.
#[tokio::test]
async fn a_held_file_the_cli_did_not_name_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let earlier = scratch.path().join("earlier");
    std::fs::create_dir(&earlier).unwrap();
    std::fs::write(earlier.join("manifest.json"), "{}").unwrap();
    std::fs::write(earlier.join("head"), "mine").unwrap();
    let server = FakeServer::start(Scene {
        backup: Some(vec![file_marked("head", 4, true), done(1, 0)]),
        ..Scene::default()
    })
    .await;
    let dir = scratch.path().join("copy");
    let run = auditlog(
        &server.url,
        &[
            "backup",
            "--from",
            earlier.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    )
    .await;
    refused(&run, "came as held, unasked");
    assert!(!dir.join("head").exists());
    assert_eq!(
        std::fs::read_to_string(earlier.join("head")).unwrap(),
        "mine"
    );
}
