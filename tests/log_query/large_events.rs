//! Large events: a page of events too large for one message stops short,
//! under a client's receive limit, and its token continues it; also for a
//! lead's history read through sealed segments' lead copies.

use auditlog_client::{Client, NewEvent, Query};

use crate::common::{self, TestServer, seqs, wait_until};

/// The most bytes a gRPC client receives in one message by default (tonic,
/// grpc-go, grpc-python, grpc-java alike).
const CLIENT_RECEIVE_LIMIT: usize = 4 * 1024 * 1024;

/// An event of type `big` with about 60 KiB of details: 100 of them are
/// some 6 MB, past what a client receives in one message by default.
fn big_event(lead: &str, i: u64) -> NewEvent {
    NewEvent::new("big")
        .lead(lead)
        .detail("i", i)
        .detail("blob", "x".repeat(60 * 1024))
}

/// Logs `n` [`big_event`]s of `lead`, ten a call (a batch of 600 KB, under
/// the server's own receive limit), with a small event of another lead
/// after each call; returns the big events' seqs, oldest first.
async fn log_big(client: &Client, lead: &str, n: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    for start in (0..n).step_by(10) {
        let receipts = client
            .log_batch((start..n.min(start + 10)).map(|i| big_event(lead, i)))
            .await
            .unwrap();
        seqs.extend(receipts.iter().map(|r| r.seq));
        client
            .log(NewEvent::new("small").lead("LEAD-SMALL"))
            .await
            .unwrap();
    }
    seqs
}

/// Reads `query` page by page, as a client that follows `next_page_token`
/// does, checking that each page fits a client's default receive limit, is
/// never empty, and is at most `limit` long. Returns the pages' seqs.
async fn capped_pages(client: &Client, mut query: Query) -> Vec<Vec<u64>> {
    use prost::Message as _;
    let limit = query.request.limit as usize;
    let mut out = Vec::new();
    loop {
        let page = client.query(query.clone()).await.unwrap();
        let size = page.encoded_len();
        assert!(size < CLIENT_RECEIVE_LIMIT, "a page of {size} bytes");
        assert!(!page.events.is_empty(), "an empty page");
        assert!(page.events.len() <= limit, "page longer than the limit");
        out.push(seqs(&page.events));
        if page.next_page_token.is_empty() {
            return out;
        }
        assert!(out.len() <= 100, "paging does not end");
        query = query.page_token(page.next_page_token);
    }
}

/// Events too large for `limit` of them to fit one message: the server ends
/// the page early, under a client's receive limit, with a token that
/// continues right after its last event, so paging returns every event once,
/// in order, in both orders.
#[tokio::test]
async fn a_page_of_large_events_stops_short_and_its_token_continues_it() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let logged = log_big(&client, "BIG", 100).await;
    let newest_first: Vec<u64> = logged.iter().rev().copied().collect();
    for (name, query, want) in [
        (
            "newest first",
            Query::new().event_type("big").limit(100),
            newest_first.clone(),
        ),
        (
            "oldest first",
            Query::new().event_type("big").limit(100).oldest_first(),
            logged.clone(),
        ),
        (
            "every type, newest first (the small events too)",
            Query::new().limit(1000),
            (1..=110).rev().collect::<Vec<u64>>(),
        ),
    ] {
        let pages = capped_pages(&client, query).await;
        assert!(pages.len() >= 2, "{name}: one page of {}", pages[0].len());
        assert!(pages[0].len() < 100, "{name}: a first page of 100");
        assert_eq!(pages.concat(), want, "{name}");
    }
    // The client's helper that follows tokens gets them all.
    let all = client
        .query_all(Query::new().event_type("big").limit(100))
        .await
        .unwrap();
    assert_eq!(seqs(&all), newest_first);
}

/// The same for a lead's history, read from sealed segments' lead copies
/// (a small `max_file_size_mb` seals a segment every few events) and from
/// the active file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_history_of_large_events_pages_under_the_limit_through_lead_copies() {
    let server = TestServer::start_with(|c| c.max_file_size_mb = 0.25).await;
    let client = server.client().await;
    let mut logged = log_big(&client, "BIG", 90).await;
    client.rotate(true).await.unwrap();
    let dir = server.data_dir.clone();
    wait_until("every sealed segment compressed", || {
        let dir = dir.clone();
        async move {
            let plain = common::plain_sealed(&dir);
            if plain.is_empty() {
                Ok(())
            } else {
                Err(format!("{plain:?}"))
            }
        }
    })
    .await;
    let lead_copies = common::files(&dir)
        .iter()
        .filter(|f| f.ends_with(".leads.zst"))
        .count();
    assert!(lead_copies >= 10, "{lead_copies} lead copies");
    // The last ten in the active file.
    let receipts = client
        .log_batch((90..100).map(|i| big_event("BIG", i)))
        .await
        .unwrap();
    logged.extend(receipts.iter().map(|r| r.seq));

    let reversed: Vec<u64> = logged.iter().rev().copied().collect();
    for (name, query, want) in [
        (
            "oldest first",
            Query::new().lead("BIG").limit(100).oldest_first(),
            logged.clone(),
        ),
        (
            "newest first",
            Query::new().lead("BIG").limit(100),
            reversed,
        ),
    ] {
        let pages = capped_pages(&client, query).await;
        assert!(pages.len() >= 2, "{name}: one page of {}", pages[0].len());
        assert_eq!(pages.concat(), want, "{name}");
    }
    let history = client.lead_history("BIG").await.unwrap();
    assert_eq!(seqs(&history), logged);
    assert!(history.iter().all(|e| e.lead_id == "BIG"));
}
