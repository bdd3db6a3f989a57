//! `Client::query_all` and `lead_history` against a server whose pages do
//! not move on: each call answers the same page with a next page token, or
//! an empty page with one. Before, the client paged for ever, its memory
//! growing with every page; now it stops at the first page that does not
//! come after the one before, saying so.

use std::time::Duration;

use auditlog_client::{Client, Error, Query, pb};

use crate::hostile_server::fake::{FakeServer, Scene};

fn page(seqs: &[u64], token: &str) -> pb::QueryResponse {
    pb::QueryResponse {
        events: seqs
            .iter()
            .map(|&seq| pb::Event {
                seq,
                event_type: "lead_ingested".into(),
                lead_id: "L-1".into(),
                ..Default::default()
            })
            .collect(),
        next_page_token: token.into(),
    }
}

async fn paged(answer: pb::QueryResponse, query: Query) -> Error {
    let server = FakeServer::start(Scene {
        query: Some(answer),
        ..Scene::default()
    })
    .await;
    let client = Client::connect(server.url.clone()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.query_all(query))
        .await
        .expect("the client pages for ever")
        .unwrap_err()
}

#[tokio::test]
async fn pages_that_repeat_or_are_empty_end_the_paging_saying_so() {
    // A lead's history is this query, oldest first.
    let history = || Query::new().lead("L-1").oldest_first();
    let repeated = paged(page(&[1, 2], "again"), history()).await;
    assert!(matches!(repeated, Error::Protocol(_)), "{repeated:?}");
    assert!(
        repeated
            .to_string()
            .contains("seq 1 came after seq 2 in a query whose events each come after"),
        "{repeated}"
    );

    let empty = paged(page(&[], "again"), history()).await;
    assert!(
        empty
            .to_string()
            .contains("a page with no events and a next page token"),
        "{empty}"
    );

    // Newest first: each event before the one before it.
    let newest = paged(page(&[9, 8], "again"), Query::new()).await;
    assert!(
        newest.to_string().contains("seq 9 came after seq 8"),
        "{newest}"
    );
}
