//! Control characters and values no event could hold: in the short fields
//! of events written, and in the filters of Query, StreamEvents and GetStats.

use auditlog_client::{NewEvent, pb};
use tonic::Code;

use crate::bad_input::raw::refused;
use crate::common::TestServer;

#[tokio::test]
async fn control_characters_in_short_fields_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for (event, field) in [
        (
            NewEvent::new("lead_ingested").actor("crm\nFORGED"),
            "event.actor",
        ),
        (
            NewEvent::new("lead_ingested").lead("L-1\r"),
            "event.lead_id",
        ),
        (
            NewEvent::new("lead_ingested").workflow("a\u{1b}[2J"),
            "event.workflow",
        ),
        (NewEvent::new("lead_ingested").lead("L\0"), "event.lead_id"),
        (
            NewEvent::new("lead_ingested").actor("crm\u{7f}"),
            "event.actor",
        ),
        (
            NewEvent::new("lead_ingested").idempotency_key("k\u{9b}"),
            "event.idempotency_key",
        ),
    ] {
        let err = client.log(event).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::InvalidArgument), "{field}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(field) && text.contains("control character"),
            "{text}"
        );
    }
    let err = client
        .log_batch([
            NewEvent::new("lead_ingested"),
            NewEvent::new("lead_ingested").actor("a\tb"),
        ])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("events[1].actor"), "{err}");
    // Nothing was written; text with accents and spaces still is.
    client
        .log(
            NewEvent::new("lead_ingested")
                .actor("Zoë O'Brien")
                .lead("LEAD 1"),
        )
        .await
        .unwrap();
    assert_eq!(client.stats(None).await.unwrap().total_events, 1);
}

/// A filter value no event could hold, by the rules events are checked
/// with, is INVALID_ARGUMENT naming the field and the rule, for Query,
/// StreamEvents and GetStats alike (as ExportSubject refuses such an
/// identifier). Before, `event_types=["Bad Type\n"]`, `lead_id="\x1b"` and
/// a 10,000-character `lead_id` were accepted and answered nothing, as an
/// empty log would. Every value an event can hold still matches it.
#[tokio::test]
async fn filter_values_no_event_could_hold_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let longest = "L".repeat(256);
    client
        .log(
            NewEvent::new("lead_ingested")
                .lead(&longest)
                .actor("Zoë O'Brien")
                .workflow("wf 1"),
        )
        .await
        .unwrap();
    let mut audit = pb::audit_service_client::AuditServiceClient::new(server.channel().await);
    let filter = |f: pb::EventFilter| Some(f);
    let bad = [
        (
            pb::EventFilter {
                event_types: vec!["lead_ingested".into(), "Bad Type\n".into()],
                ..Default::default()
            },
            "filter.event_types[1] \"Bad Type\\n\" is not lower_snake_case",
        ),
        (
            pb::EventFilter {
                lead_id: "\x1b".into(),
                ..Default::default()
            },
            "filter.lead_id holds the control character U+001B",
        ),
        (
            pb::EventFilter {
                lead_id: "x".repeat(10_000),
                ..Default::default()
            },
            "filter.lead_id is 10000 characters; an event's lead_id is at most 256",
        ),
        (
            pb::EventFilter {
                actor: "crm\nFORGED".into(),
                ..Default::default()
            },
            "filter.actor holds the control character U+000A",
        ),
        (
            pb::EventFilter {
                workflow: "w".repeat(257),
                ..Default::default()
            },
            "filter.workflow is 257 characters",
        ),
    ];
    for (f, says) in bad {
        let query = audit
            .query(pb::QueryRequest {
                filter: filter(f.clone()),
                ..Default::default()
            })
            .await
            .map(|_| ());
        let stream = audit
            .stream_events(pb::StreamEventsRequest {
                filter: filter(f),
                ..Default::default()
            })
            .await
            .map(|_| ());
        for (rpc, answer) in [("Query", query), ("StreamEvents", stream)] {
            let status = refused(rpc, answer);
            assert_eq!(status.code(), Code::InvalidArgument, "{rpc}: {status:?}");
            assert!(
                status.message().contains(says)
                    && status.message().ends_with("so no event could match"),
                "{rpc}: {says}\n{}",
                status.message()
            );
        }
    }
    for (event_types, workflow, says) in [
        (
            vec!["Bad Type\n".to_owned()],
            "",
            "event_types[0] \"Bad Type\\n\"",
        ),
        (
            vec![],
            "\x1b",
            "workflow holds the control character U+001B",
        ),
    ] {
        let status = refused(
            "GetStats",
            audit
                .get_stats(pb::GetStatsRequest {
                    event_types,
                    workflow: workflow.into(),
                    ..Default::default()
                })
                .await,
        );
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(says), "{status:?}");
    }

    // What an event can hold is still asked for, and found.
    let can = pb::EventFilter {
        event_types: vec![
            "lead_ingested".into(),
            "auditlog.purge".into(),
            String::new(),
        ],
        lead_id: longest.clone(),
        actor: "Zoë O'Brien".into(),
        workflow: "wf 1".into(),
        ..Default::default()
    };
    let page = audit
        .query(pb::QueryRequest {
            filter: filter(can.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].lead_id, longest);
    let mut stream = audit
        .stream_events(pb::StreamEventsRequest {
            filter: filter(can),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let stats = audit
        .get_stats(pb::GetStatsRequest {
            event_types: vec!["lead_ingested".into(), "auditlog.purge".into()],
            workflow: "wf 1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.total_events, 1);
}
