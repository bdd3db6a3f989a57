//! Pages and order: page tokens visit every match once, in order; the
//! default page size; a token continues only its own query; a lead's whole
//! history across pages.

use auditlog_client::{Client, NewEvent, Query};

use crate::common::{TestServer, seqs};
use crate::log_query::model::{assert_invalid_argument, expected, log_samples};

/// Reads `query` page by page, checking the token rules: every page but the
/// last is full and has a token, the last has none. Returns the pages' seqs.
async fn pages(client: &Client, mut query: Query) -> Vec<Vec<u64>> {
    let limit = query.request.limit as usize;
    let mut out = Vec::new();
    loop {
        let page = client.query(query.clone()).await.unwrap();
        assert!(page.events.len() <= limit, "page longer than the limit");
        let done = page.next_page_token.is_empty();
        if !done {
            assert_eq!(page.events.len(), limit, "a page before the last is short");
        }
        out.push(seqs(&page.events));
        if done {
            return out;
        }
        query = query.page_token(page.next_page_token);
    }
}

#[tokio::test]
async fn pages_visit_every_match_once_in_order() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let (_, model) = log_samples(&client, 30).await;
    let all = expected(&model, |_| true);
    let lead_a = expected(&model, |e| e.lead == "LEAD-A");
    let reversed = |v: &[u64]| v.iter().rev().copied().collect::<Vec<_>>();

    let cases = [
        ("newest first by 7", Query::new().limit(7), reversed(&all)),
        (
            "oldest first by 7",
            Query::new().limit(7).oldest_first(),
            all.clone(),
        ),
        (
            "a multiple of the limit",
            Query::new().limit(10).oldest_first(),
            all.clone(),
        ),
        ("a page of one", Query::new().limit(1), reversed(&all)),
        (
            "one lead by 3",
            Query::new().lead("LEAD-A").limit(3).oldest_first(),
            lead_a.clone(),
        ),
        (
            "one lead newest first by 4",
            Query::new().lead("LEAD-A").limit(4),
            reversed(&lead_a),
        ),
        (
            "everything on one page",
            Query::new().limit(1000),
            reversed(&all),
        ),
    ];
    for (name, query, want) in cases {
        let limit = query.request.limit as usize;
        let got = pages(&client, query).await;
        assert_eq!(got.concat(), want, "{name}");
        assert_eq!(
            got.len(),
            want.len().div_ceil(limit).max(1),
            "{name}: page count"
        );
    }
}

#[tokio::test]
async fn limit_zero_means_a_page_of_one_hundred() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .log_batch((0..150).map(|i| NewEvent::new("email_sent").detail("i", i)))
        .await
        .unwrap();
    let page = client.query(Query::new()).await.unwrap();
    assert_eq!(page.events.len(), 100);
    assert_eq!(page.events[0].seq, 150);
    assert!(!page.next_page_token.is_empty());
    let rest = client
        .query(Query::new().page_token(page.next_page_token))
        .await
        .unwrap();
    assert_eq!(seqs(&rest.events), (1..=50).rev().collect::<Vec<_>>());
    assert!(rest.next_page_token.is_empty());
}

#[tokio::test]
async fn a_page_token_only_continues_its_own_query() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_samples(&client, 30).await;
    let first = client.query(Query::new().limit(5)).await.unwrap();
    let token = first.next_page_token;
    assert!(!token.is_empty());

    let misuses = [
        ("another filter", Query::new().lead("LEAD-A").limit(5)),
        (
            "another type filter",
            Query::new().event_type("error").limit(5),
        ),
        ("the other order", Query::new().limit(5).oldest_first()),
    ];
    for (name, query) in misuses {
        let err = client.query(query.page_token(&token)).await.unwrap_err();
        assert_invalid_argument(&err, "page_token");
        assert!(err.to_string().contains("page_token"), "{name}: {err}");
    }
    for garbage in [
        "garbage",
        "p1",
        "p1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        &token[..token.len() - 1],
    ] {
        let err = client
            .query(Query::new().limit(5).page_token(garbage))
            .await
            .unwrap_err();
        assert_invalid_argument(&err, "page_token");
    }
    // The same filter and order may continue with another page size.
    let next = client
        .query(Query::new().limit(10).page_token(&token))
        .await
        .unwrap();
    assert_eq!(seqs(&next.events), (16..=25).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn lead_history_is_the_whole_timeline_oldest_first_across_pages() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // Four batches of 500; three events in four are LEAD-BIG's: 1,500 in all.
    let mut want = Vec::new();
    for batch in 0..4u64 {
        let events = (0..500u64).map(|i| {
            let n = batch * 500 + i;
            let lead = if n % 4 == 3 { "LEAD-OTHER" } else { "LEAD-BIG" };
            NewEvent::crm_update(lead, "hubspot", &n.to_string(), &["stage"]).detail("n", n)
        });
        let receipts = client.log_batch(events).await.unwrap();
        want.extend(
            receipts
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 4 != 3)
                .map(|(_, r)| r.seq),
        );
    }
    let history = client.lead_history("LEAD-BIG").await.unwrap();
    assert_eq!(history.len(), 1500);
    assert_eq!(seqs(&history), want);
    assert!(history.iter().all(|e| e.lead_id == "LEAD-BIG"));
    let other = client.lead_history("LEAD-OTHER").await.unwrap();
    assert_eq!(other.len(), 500);
    assert!(client.lead_history("LEAD-NONE").await.unwrap().is_empty());
    // An empty id would be no filter at all: every event, not a history.
    for empty in ["", "  "] {
        let e = client.lead_history(empty).await.unwrap_err();
        assert!(
            matches!(e, auditlog_client::Error::EmptyLeadId),
            "{empty:?}: {e}"
        );
    }
}
