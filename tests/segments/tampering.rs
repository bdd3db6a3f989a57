//! Tampering with segments: each change to a compressed segment or the
//! manifest is reported at the right place, and an untouched log is clean.

use std::ops::Range;
use std::path::PathBuf;

use auditlog_client::Client;
use auditlog_client::pb::{self, ProblemKind};
use serde_json::Value;

use crate::common::{TestServer, all_events};
use crate::segments::data_dir::{Entry, gzip, idx_of, manifest, wait_compressed, zcat};
use crate::segments::writing::{varied, write};

use ProblemKind::{
    BadSignature, ChainBreak, ManifestModified, SegmentMissing, SegmentModified, SegmentUnlisted,
    SegmentUnreadable, SeqGap,
};

/// Events per segment of [`Segmented`].
const PER_SEGMENT: u64 = 40;
/// Compressed segments of [`Segmented`].
const SEGMENTS: usize = 6;
/// Events in `audit.log` after them.
const TAIL: u64 = 5;
const HEAD: u64 = PER_SEGMENT * SEGMENTS as u64 + TAIL;

/// A running server whose log is [`SEGMENTS`] compressed segments of
/// [`PER_SEGMENT`] events each, then [`TAIL`] events in `audit.log`.
struct Segmented {
    server: TestServer,
    client: Client,
    segments: Vec<Entry>,
}

impl Segmented {
    async fn new() -> Segmented {
        let server = TestServer::start().await;
        let client = server.client().await;
        let mut segments = Vec::new();
        for s in 0..SEGMENTS as u64 {
            let first = s * PER_SEGMENT + 1;
            write(
                &client,
                &[first..first + 30, first + 30..first + PER_SEGMENT],
            )
            .await;
            let r = client.rotate(true).await.unwrap();
            assert!(r.rotated && r.file.ends_with(".log.gz"), "{r:?}");
            assert_eq!((r.first_seq, r.last_seq), (first, first + PER_SEGMENT - 1));
            segments.push(Entry {
                file: r.file,
                first: r.first_seq,
                last: r.last_seq,
            });
        }
        let tail = SEGMENTS as u64 * PER_SEGMENT + 1;
        let singles: Vec<Range<u64>> = (tail..tail + TAIL).map(|i| i..i + 1).collect();
        write(&client, &singles).await;
        wait_compressed(&server.data_dir).await;
        assert_eq!(manifest(&server.data_dir), segments);
        Segmented {
            server,
            client,
            segments,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.server.data_dir.join(name)
    }

    /// Verifies and returns `(kind, file, seq)` of each problem.
    async fn problems(&self) -> Vec<(ProblemKind, String, u64)> {
        located(&self.client.verify().await.unwrap())
    }
}

pub(crate) fn located(report: &pb::VerifyIntegrityResponse) -> Vec<(ProblemKind, String, u64)> {
    assert_eq!(report.ok, report.problems.is_empty(), "{report:?}");
    report
        .problems
        .iter()
        .map(|p| (p.kind(), p.file.clone(), p.seq))
        .collect()
}

#[track_caller]
fn assert_has(found: &[(ProblemKind, String, u64)], kind: ProblemKind, file: &str, seq: u64) {
    let want = (kind, file.to_owned(), seq);
    assert!(found.contains(&want), "expected {want:?} in {found:?}");
}

#[track_caller]
fn assert_only_in(found: &[(ProblemKind, String, u64)], files: &[&str]) {
    assert!(
        found.iter().all(|(_, f, _)| files.contains(&f.as_str())),
        "a problem outside {files:?}: {found:?}"
    );
}

#[tokio::test]
async fn an_untouched_segmented_log_is_clean() {
    let s = Segmented::new().await;
    let report = s.client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, HEAD);
    assert_eq!(report.head_seq, HEAD);
    assert_eq!(report.segments_checked, SEGMENTS as u64 + 1, "{report:?}");
}

#[tokio::test]
async fn a_recompressed_segment_with_one_byte_changed_is_located() {
    let s = Segmented::new().await;
    let seg = &s.segments[2];
    let target = seg.first + 7;
    let text = zcat(&s.path(&seg.file));
    // One byte: the first letter of the event type of seq `target`.
    let line_start = text.find(&format!("{{\"seq\":{target},")).unwrap();
    let field = "\"event_type\":\"";
    let at = line_start + text[line_start..].find(field).unwrap() + field.len();
    let mut bytes = text.clone().into_bytes();
    assert_ne!(bytes[at], b'x');
    bytes[at] = b'x';
    let changed = String::from_utf8(bytes).unwrap();
    std::fs::write(s.path(&seg.file), gzip(&changed)).unwrap();

    let found = s.problems().await;
    assert_has(&found, SegmentModified, &seg.file, seg.first);
    assert_has(&found, BadSignature, &seg.file, target);
    assert_only_in(&found, &[&seg.file]);
    let report = s.client.verify().await.unwrap();
    let bad = report
        .problems
        .iter()
        .find(|p| p.kind() == BadSignature)
        .unwrap();
    assert_eq!(bad.line, target - seg.first + 1, "line within the segment");
}

#[tokio::test]
async fn a_deleted_middle_segment_is_missing_not_purged() {
    let s = Segmented::new().await;
    let seg = s.segments[3].clone();
    std::fs::remove_file(s.path(&seg.file)).unwrap();
    let expect = vec![(SegmentMissing, seg.file.clone(), seg.first)];
    let report = s.client.verify().await.unwrap();
    assert_eq!(located(&report), expect);
    let message = &report.problems[0].message;
    assert!(
        message.contains(&format!("{}..={}", seg.first, seg.last)),
        "{message}"
    );

    // Also after a restart, which finds the segment gone.
    let server = s.server.restart(|_| {}).await;
    let client = server.client().await;
    assert_eq!(located(&client.verify().await.unwrap()), expect);
    let events = all_events(&client).await;
    assert!(
        events
            .iter()
            .all(|e| !(seg.first..=seg.last).contains(&e.seq))
    );
    assert_eq!(events.len() as u64, HEAD - PER_SEGMENT);
}

#[tokio::test]
async fn a_deleted_first_segment_is_missing_not_purged() {
    let s = Segmented::new().await;
    let seg = &s.segments[0];
    std::fs::remove_file(s.path(&seg.file)).unwrap();
    std::fs::remove_file(s.path(&idx_of(&seg.file))).unwrap();
    let report = s.client.verify().await.unwrap();
    assert_eq!(
        located(&report),
        vec![(SegmentMissing, seg.file.clone(), 1)]
    );
    let message = &report.problems[0].message;
    assert!(message.contains(&format!("1..={}", seg.last)), "{message}");
}

#[tokio::test]
async fn two_swapped_segments_are_reported_by_name() {
    let s = Segmented::new().await;
    let (a, b) = (&s.segments[1], &s.segments[2]);
    let swap = s.path("swap.tmp");
    std::fs::rename(s.path(&a.file), &swap).unwrap();
    std::fs::rename(s.path(&b.file), s.path(&a.file)).unwrap();
    std::fs::rename(&swap, s.path(&b.file)).unwrap();

    let found = s.problems().await;
    assert_has(&found, SegmentModified, &a.file, a.first);
    assert_has(&found, SegmentModified, &b.file, b.first);
    assert_only_in(&found, &[&a.file, &b.file]);
}

#[tokio::test]
async fn a_manifest_edited_to_hide_a_deleted_segment_is_caught() {
    let s = Segmented::new().await;
    let (gone, next) = (&s.segments[3], &s.segments[4]);
    std::fs::remove_file(s.path(&gone.file)).unwrap();
    std::fs::remove_file(s.path(&idx_of(&gone.file))).unwrap();
    let path = s.path("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut value: Value = serde_json::from_str(&text).unwrap();
    value["segments"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["file"] != gone.file.as_str());
    let edited = format!("{}\n", serde_json::to_string(&value).unwrap());
    assert!(edited.len() < text.len() && edited.ends_with("\"}\n"));
    std::fs::write(&path, edited).unwrap();

    let found = s.problems().await;
    assert!(
        found
            .iter()
            .any(|(k, f, _)| *k == ManifestModified && f == "manifest.json"),
        "{found:?}"
    );
    assert_has(&found, SeqGap, &next.file, next.first);
    assert_has(&found, ChainBreak, &next.file, next.first);
    assert_only_in(&found, &["manifest.json", &next.file]);
    assert!(
        !found.iter().any(|(k, ..)| *k == SegmentMissing),
        "the edited manifest no longer lists it: {found:?}"
    );
}

#[tokio::test]
async fn a_truncated_segment_is_unreadable() {
    let s = Segmented::new().await;
    let (seg, next) = (&s.segments[2], &s.segments[3]);
    let path = s.path(&seg.file);
    let bytes = std::fs::read(&path).unwrap();
    // Half, moved off a gzip member boundary if it falls on one, so the
    // cut really ends inside compressed data.
    let mut cut = bytes.len() / 2;
    while bytes[cut..].starts_with(&[0x1f, 0x8b]) {
        cut -= 1;
    }
    std::fs::write(&path, &bytes[..cut]).unwrap();

    let found = s.problems().await;
    let unreadable: Vec<_> = found
        .iter()
        .filter(|(k, ..)| *k == SegmentUnreadable)
        .collect();
    assert_eq!(unreadable.len(), 1, "{found:?}");
    let (_, file, seq) = unreadable[0];
    assert_eq!(file, &seg.file);
    assert!(
        (seg.first..=seg.last).contains(seq),
        "unreadable at seq {seq}, outside {}..={}",
        seg.first,
        seg.last
    );
    // What could not be read is missing before the next segment.
    assert_only_in(&found, &[&seg.file, &next.file]);
    assert!(
        found
            .iter()
            .all(|(_, f, q)| f == &seg.file || *q == next.first),
        "{found:?}"
    );
}

/// A change that leaves every line readable (a member header's time field,
/// which no reader uses) is still a changed file: reported as modified, and
/// nothing else.
#[tokio::test]
async fn a_segment_changed_where_no_line_is_is_still_modified() {
    let s = Segmented::new().await;
    let seg = &s.segments[1];
    let path = s.path(&seg.file);
    let lines = zcat(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    // The server writes every member with this header (no time, no name).
    let header = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let second = bytes[1..]
        .windows(header.len())
        .position(|w| w == header)
        .expect("a second gzip member")
        + 1;
    bytes[second + 4] = 1;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(zcat(&path), lines, "the same lines, in a changed file");

    let found = s.problems().await;
    assert_eq!(found, vec![(SegmentModified, seg.file.clone(), seg.first)]);
}

#[tokio::test]
async fn an_unlisted_segment_file_is_reported() {
    let s = Segmented::new().await;
    let extra = "audit.20000101T000000.000000Z.log.gz";
    std::fs::copy(s.path(&s.segments[1].file), s.path(extra)).unwrap();
    assert_eq!(
        s.problems().await,
        vec![(SegmentUnlisted, extra.to_owned(), 0)]
    );
}

/// The live log empty after a rotation, the newest compressed segment is
/// deleted, or rewritten with its last record's signature changed, while
/// the server is stopped: the next record continues the chain from the
/// segment's manifest entry (what verification joins it to), so the
/// segment is reported and the server's own record is not.
#[tokio::test]
async fn the_record_after_a_deleted_or_rewritten_newest_segment_is_not_reported() {
    for delete in [true, false] {
        let server = TestServer::start().await;
        let client = server.client().await;
        write(&client, &[1..11, 11..21]).await;
        let file = client.rotate(true).await.unwrap().file;
        wait_compressed(&server.data_dir).await;
        let server = server
            .restart_after(
                |dir| {
                    let path = dir.join(&file);
                    if delete {
                        std::fs::remove_file(path).unwrap();
                    } else {
                        let text = zcat(&path);
                        let at = text.trim_end().len() - 2 - 64;
                        let changed = format!("{}{}\"}}\n", &text[..at], "f".repeat(64));
                        std::fs::write(path, gzip(&changed)).unwrap();
                    }
                },
                |_| {},
            )
            .await;
        let client = server.client().await;
        let next = client.log(varied(21)).await.unwrap();
        assert_eq!(next.seq, 21);
        let found = located(&client.verify().await.unwrap());
        let kind = if delete {
            SegmentMissing
        } else {
            SegmentModified
        };
        assert_has(&found, kind, &file, 1);
        assert!(
            found.iter().all(|&(_, _, seq)| seq < next.seq),
            "the server's own record is reported: {found:?}"
        );
    }
}
