//! Filters: each query by lead, type, workflow, actor and time range returns
//! exactly the model's matching seqs, in both orders.

use auditlog_client::Query;

use crate::common::{TestServer, seqs};
use crate::log_query::model::{Logged, expected, log_samples, micros, time_of};

#[tokio::test]
async fn filters_select_exactly_the_matching_events_in_both_orders() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let (receipts, model) = log_samples(&client, 30).await;
    let (t10, t20) = (&receipts[10], &receipts[20]);
    let (m10, m20) = (micros(&t10.timestamp), micros(&t20.timestamp));

    type Case = (&'static str, Query, Box<dyn Fn(&Logged) -> bool>);
    let cases: Vec<Case> = vec![
        ("no filter", Query::new(), Box::new(|_| true)),
        (
            "lead",
            Query::new().lead("LEAD-A"),
            Box::new(|e| e.lead == "LEAD-A"),
        ),
        (
            "one type",
            Query::new().event_type("error"),
            Box::new(|e| e.event_type == "error"),
        ),
        (
            "several types",
            Query::new().event_type("error").event_type("email_sent"),
            Box::new(|e| e.event_type == "error" || e.event_type == "email_sent"),
        ),
        (
            "a known and an unknown type",
            Query::new().event_type("error").event_type("never_logged"),
            Box::new(|e| e.event_type == "error"),
        ),
        (
            "workflow",
            Query::new().workflow("sales"),
            Box::new(|e| e.workflow == "sales"),
        ),
        (
            "actor",
            Query::new().actor("mailer"),
            Box::new(|e| e.actor == "mailer"),
        ),
        (
            "default actor",
            Query::new().actor("system"),
            Box::new(|e| e.actor == "system"),
        ),
        (
            "since (inclusive)",
            Query::new().since(time_of(t10)),
            Box::new(move |e| e.micros >= m10),
        ),
        (
            "until (exclusive)",
            Query::new().until(time_of(t20)),
            Box::new(move |e| e.micros < m20),
        ),
        (
            "since and until",
            Query::new().since(time_of(t10)).until(time_of(t20)),
            Box::new(move |e| e.micros >= m10 && e.micros < m20),
        ),
        (
            "lead, type and workflow",
            Query::new()
                .lead("LEAD-B")
                .event_type("email_sent")
                .workflow("sales"),
            Box::new(|e| {
                e.lead == "LEAD-B" && e.event_type == "email_sent" && e.workflow == "sales"
            }),
        ),
        (
            "actor, several types and a time range",
            Query::new()
                .actor("system")
                .event_type("crm_update")
                .event_type("lead_ingested")
                .since(time_of(t10)),
            Box::new(move |e| {
                e.actor == "system"
                    && (e.event_type == "crm_update" || e.event_type == "lead_ingested")
                    && e.micros >= m10
            }),
        ),
        (
            "unknown lead",
            Query::new().lead("nobody"),
            Box::new(|_| false),
        ),
        (
            "unknown workflow",
            Query::new().workflow("nowhere"),
            Box::new(|_| false),
        ),
    ];
    for (name, query, matches) in cases {
        let want = expected(&model, matches);
        // Only the unknown values may match nothing, and no filter but the
        // empty one everything; otherwise the case would prove little.
        assert_eq!(want.is_empty(), name.starts_with("unknown"), "{name}");
        assert_eq!(want.len() == model.len(), name == "no filter", "{name}");
        let oldest = client
            .query_all(query.clone().oldest_first())
            .await
            .unwrap();
        assert_eq!(seqs(&oldest), want, "{name}, oldest first");
        let newest = client.query_all(query).await.unwrap();
        let mut want_newest = want.clone();
        want_newest.reverse();
        assert_eq!(
            seqs(&newest),
            want_newest,
            "{name}, newest first (the default)"
        );
    }
    // The range ends are the receipts' own events: since takes it, until not.
    let range = client
        .query_all(Query::new().since(time_of(t10)).until(time_of(t20)))
        .await
        .unwrap();
    assert!(seqs(&range).contains(&t10.seq));
    assert!(!seqs(&range).contains(&t20.seq));
}
