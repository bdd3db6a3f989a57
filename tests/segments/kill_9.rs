//! kill -9 while rotating: nothing acknowledged is lost, and the rotations
//! the crash interrupted are finished on start.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use auditlog_client::{Client, pb};

use crate::common::{ServerProcess, assert_whole, files};
use crate::segments::data_dir::{gz_files, manifest, wait_compressed};
use crate::segments::writing::varied;
use crate::segments::{PATIENCE, TINY_MB};

/// The server binary on `dir` with tiny segments.
async fn spawn_tiny(dir: &Path) -> ServerProcess {
    let tiny = TINY_MB.to_string();
    ServerProcess::spawn_with(dir, &[("AUDITLOG_MAX_FILE_SIZE_MB", &tiny)]).await
}

/// Logs calls of `size` events until the server stops answering; returns
/// the receipts it got.
async fn write_until_killed(
    client: Client,
    first: u64,
    size: u64,
    count: Arc<AtomicUsize>,
) -> Vec<pb::Receipt> {
    let mut acked = Vec::new();
    for call in 0.. {
        let start = first + call * size;
        let result = if size == 1 {
            client.log(varied(start)).await.map(|r| vec![r])
        } else {
            client.log_batch((start..start + size).map(varied)).await
        };
        match result {
            Ok(receipts) => {
                count.fetch_add(receipts.len(), Ordering::Relaxed);
                acked.extend(receipts);
            }
            Err(_) => break,
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_rotations_loses_nothing_and_finishes_them_on_start() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let mut server = spawn_tiny(dir).await;
    let count = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for (w, size) in [1u64, 1, 10, 40].into_iter().enumerate() {
        let client = Client::connect(&server.url).await.unwrap();
        let first = (w as u64 + 1) * 1_000_000;
        writers.push(tokio::spawn(write_until_killed(
            client,
            first,
            size,
            Arc::clone(&count),
        )));
    }
    // Kill once several segments have been sealed and writes keep coming.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while count.load(Ordering::Relaxed) < 1500 || gz_files(dir).len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writers stalled at {} events: {:?}",
            count.load(Ordering::Relaxed),
            files(dir)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() >= 1500);

    let server = spawn_tiny(dir).await;
    let client = Client::connect(&server.url).await.unwrap();
    // Contiguous seqs, every acknowledged receipt in place, verification
    // clean.
    let head = assert_whole(&client, &acked).await.len() as u64;

    // The sealer finishes what the crash interrupted, leaving no temporary
    // file behind (those of the crash are removed on start; the sealer's own
    // are renamed once written).
    wait_compressed(dir).await;
    assert!(
        files(dir).iter().all(|n| !n.ends_with(".tmp")),
        "{:?}",
        files(dir)
    );
    let segments = manifest(dir);
    assert_eq!(
        segments.iter().map(|e| e.file.clone()).collect::<Vec<_>>(),
        gz_files(dir)
    );
    for pair in segments.windows(2) {
        assert_eq!(pair[1].first, pair[0].last + 1, "{pair:?}");
    }
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, head);
    // Still writable, the chain going on.
    assert_eq!(client.log(varied(1)).await.unwrap().seq, head + 1);
}
