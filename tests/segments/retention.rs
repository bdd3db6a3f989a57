//! Retention: old segments are purged, the purge is an event, nothing
//! purged is served, and a segment deleted by hand later is still missing.

use std::time::Duration;

use auditlog_client::pb::ProblemKind::SegmentMissing;
use auditlog_client::{Query, pb};
use auditlog_server::Config;
use serde_json::json;

use crate::common::{TestServer, all_events, files, seqs};
use crate::segments::compare::{logged, same, streamed};
use crate::segments::data_dir::{gz_files, idx_of, manifest, wait_compressed};
use crate::segments::tampering::located;
use crate::segments::writing::{plan, varied, write};

/// The retention period of [`retained`].
const RETENTION: Duration = Duration::from_secs(2);

/// Tiny segments, a retention of [`RETENTION`], and a check interval long
/// enough that only the check at start and explicit calls run.
fn retained(config: &mut Config) {
    config.max_file_size_mb = 0.01;
    config.retention_days = RETENTION.as_secs_f64() / 86_400.0;
    config.retention_check_secs = 86_400;
}

#[tokio::test]
async fn retention_purges_old_segments_and_logs_the_purge() {
    let server = TestServer::start_with(retained).await;
    let client = server.client().await;
    let dir = server.data_dir.clone();
    let old = write(&client, &plan(1, 300)).await;
    client.rotate(true).await.unwrap();
    wait_compressed(&dir).await;
    let sealed = gz_files(&dir);
    assert!(sealed.len() >= 3, "{sealed:?}");
    // Each segment's lead copy and its index, which the purge removes too.
    let copies: Vec<String> = sealed
        .iter()
        .flat_map(|gz| {
            let stem = gz.strip_suffix(".log.gz").unwrap();
            [format!("{stem}.leads.zst"), format!("{stem}.leads.idx")]
        })
        .collect();
    let before = files(&dir);
    assert!(copies.iter().all(|c| before.contains(c)), "{before:?}");
    let through = old.last().unwrap();
    assert_eq!(through.seq, 300);

    tokio::time::sleep(RETENTION + Duration::from_millis(500)).await;
    write(&client, &[301..302, 302..303, 303..304]).await;
    let purge = client.apply_retention().await.unwrap();
    assert_eq!(purge.segments, sealed);
    assert_eq!((purge.first_seq, purge.through_seq), (1, 300));
    assert_eq!(purge.event_seq, 304);
    let left = files(&dir);
    for name in &sealed {
        assert!(!left.contains(name), "{name} still there: {left:?}");
        assert!(!left.contains(&idx_of(name)), "{name}'s index still there");
    }
    for copy in &copies {
        assert!(!left.contains(copy), "{copy} still there: {left:?}");
    }
    assert!(manifest(&dir).is_empty());

    // The purge is an event like any other.
    let purges = client
        .query_all(Query::new().event_type("auditlog.purge"))
        .await
        .unwrap();
    assert_eq!(seqs(&purges), vec![304]);
    let details = same(&purges[0]).details;
    assert_eq!(details["through_seq"].as_f64(), Some(300.0), "{details}");
    assert_eq!(
        details["last_signature"].as_str(),
        Some(through.signature.as_str())
    );
    assert_eq!(details["segments"], json!(sealed));

    // Verification starts after it; nothing purged is served any more.
    let check = |report: pb::VerifyIntegrityResponse| {
        assert!(report.ok, "{:?}", report.problems);
        assert_eq!((report.events_checked, report.head_seq), (4, 304));
    };
    check(client.verify().await.unwrap());
    let assert_gone = |events: &[pb::Event], what: &str| {
        assert!(
            events.iter().all(|e| e.seq > 300),
            "{what}: {:?}",
            seqs(events)
        );
    };
    let all = all_events(&client).await;
    assert_eq!(seqs(&all), vec![301, 302, 303, 304]);
    assert_gone(&client.query_all(Query::new()).await.unwrap(), "query");
    let lead = logged(5).lead_id;
    assert_gone(&client.lead_history(&lead).await.unwrap(), "history");
    assert_gone(&streamed(&client, Query::new(), 1).await, "stream");
    let s = client.stats(None).await.unwrap();
    assert_eq!((s.total_events, s.head_seq), (4, 304), "{s:?}");

    // Nothing old enough: nothing purged.
    let again = client.apply_retention().await.unwrap();
    assert!(again.segments.is_empty(), "{again:?}");
    assert_eq!(again.through_seq, 0);

    // A restart (which also runs retention once) keeps all of that.
    let server = server.restart(retained).await;
    let client = server.client().await;
    check(client.verify().await.unwrap());
    assert_eq!(seqs(&all_events(&client).await), vec![301, 302, 303, 304]);
    let next = client.log(varied(305)).await.unwrap();
    assert_eq!(next.seq, 305);

    // A purge record excuses only what it purged: a newer segment deleted by
    // hand is missing.
    for k in 0..3 {
        let first = 306 + k * 10;
        write(&client, &plan(first, 10)).await;
        client.rotate(true).await.unwrap();
    }
    wait_compressed(&dir).await;
    let segments = manifest(&dir);
    assert!(segments.len() >= 3, "{segments:?}");
    let victim = &segments[1];
    std::fs::remove_file(dir.join(&victim.file)).unwrap();
    let found = located(&client.verify().await.unwrap());
    assert_eq!(
        found,
        vec![(SegmentMissing, victim.file.clone(), victim.first)]
    );
}
