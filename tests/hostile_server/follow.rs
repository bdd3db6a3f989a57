//! `Client::follow` against a server that, on the stream it reopened after
//! a loss, sends the last record shown with its signature (so the resume
//! checks out) and then records the follow already showed: each record is
//! yielded once, in seq order, or the follow ends saying why.

use auditlog_client::{Client, Followed, Query, pb};
use futures::StreamExt as _;

use crate::hostile_server::fake::{FakeServer, Scene};

fn event(seq: u64) -> pb::StreamEventsResponse {
    pb::StreamEventsResponse {
        event: Some(pb::Event {
            seq,
            event_type: "lead_ingested".into(),
            signature: format!("{seq:064x}"),
            ..Default::default()
        }),
        lines: Vec::new(),
    }
}

#[tokio::test]
async fn a_resumed_stream_that_replays_what_was_shown_ends_the_follow() {
    // The first stream ends after seq 2; the second resumes at seq 2, then
    // sends seq 1 again, then seq 3.
    let server = FakeServer::start(Scene {
        streams: [vec![event(1), event(2)], vec![event(2), event(1), event(3)]].into(),
        ..Scene::default()
    })
    .await;
    let client = Client::connect(server.url.clone()).await.unwrap();
    let mut follow = client.follow(Query::new(), 1);
    let mut shown = Vec::new();
    let end = loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), follow.next())
            .await
            .expect("the follow waits for ever");
        match next {
            Some(Ok(Followed::Item(e))) => shown.push(e.seq),
            Some(Ok(Followed::Lost { .. } | Followed::Resumed { .. })) => {}
            Some(Err(e)) => break e.to_string(),
            None => panic!("the follow ended without an error after {shown:?}"),
        }
    };
    assert_eq!(shown, [1, 2], "{end}");
    assert!(end.contains("sent seq 1 after seq 2"), "{end}");
}
