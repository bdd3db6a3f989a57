//! Same answers as one file: a log of dozens of segments answers like a
//! single file, through follow streams, restarts and verification.

use auditlog_client::Query;

use crate::common::{TestServer, all_events, plain_sealed, seqs};
use crate::segments::compare::{Same, assert_same, assert_same_answers, logged, next_n, same};
use crate::segments::data_dir::{gz_files, manifest, wait_compressed};
use crate::segments::tiny;
use crate::segments::writing::{plan, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segmented_log_answers_like_a_single_file() {
    const N: u64 = 3000;
    const MORE: u64 = 400;
    let segmented = TestServer::start_with(tiny).await;
    let single = TestServer::start().await;
    let (seg, one) = (segmented.client().await, single.client().await);
    let calls = plan(1, N);
    let (receipts, _) = tokio::join!(write(&seg, &calls), write(&one, &calls));
    assert_eq!(receipts.len() as u64, N);

    // Dozens of segments, all compressed. (The last batch may have filled a
    // segment and left nothing to rotate.)
    let last = seg.rotate(true).await.unwrap();
    if last.rotated {
        assert!(last.file.ends_with(".log.gz"), "{last:?}");
        assert_eq!(last.last_seq, N);
    }
    let dir = segmented.data_dir.clone();
    wait_compressed(&dir).await;
    let gz = gz_files(&dir);
    assert!(gz.len() >= 20, "only {} segments: {gz:?}", gz.len());
    let listed = manifest(&dir);
    assert_eq!(
        listed.iter().map(|e| e.file.clone()).collect::<Vec<_>>(),
        gz
    );
    assert_eq!(listed.last().unwrap().last, N);
    assert!(plain_sealed(&single.data_dir).is_empty() && gz_files(&single.data_dir).is_empty());
    assert_same_answers(&seg, &one, N, &calls).await;

    // A follow stream from before the rotation sees what is written after
    // it, through further rotations.
    let mut follow = seg.stream(Query::new(), N - 4, true).await.unwrap();
    let history = next_n(&mut follow, 5).await;
    assert_eq!(seqs(&history), (N - 4..=N).collect::<Vec<_>>());
    let more = plan(N + 1, MORE);
    tokio::join!(write(&seg, &more), write(&one, &more));
    let live = next_n(&mut follow, MORE as usize).await;
    assert_eq!(seqs(&live), (N + 1..=N + MORE).collect::<Vec<_>>());
    let want: Vec<Same> = (N + 1..=N + MORE).map(logged).collect();
    assert_same("follow", &live.iter().map(same).collect::<Vec<_>>(), &want);
    assert_eq!(live[0].prev, history[4].signature);
    drop(follow);
    wait_compressed(&dir).await;
    assert!(
        gz_files(&dir).len() > gz.len(),
        "no rotation while following"
    );
    let mut all_calls = calls.clone();
    all_calls.extend(more);
    assert_same_answers(&seg, &one, N + MORE, &all_calls).await;

    // After a restart the index comes from the .idx files.
    seg.rotate(true).await.unwrap();
    wait_compressed(&dir).await;
    let segmented = segmented.restart(tiny).await;
    let seg = segmented.client().await;
    assert_same_answers(&seg, &one, N + MORE, &all_calls).await;

    let report = seg.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, N + MORE);
    assert_eq!(report.head_seq, N + MORE);
    assert!(report.segments_checked > 20, "{report:?}");
    assert!(report.events_per_second > 0.0, "{report:?}");
    let plain = one.verify().await.unwrap();
    assert!(plain.ok, "{:?}", plain.problems);
    assert_eq!(plain.events_checked, N + MORE);
    assert_eq!(
        plain.head_signature,
        all_events(&one).await.last().unwrap().signature
    );
}
