//! Filters: event types and workflows deliver only matching events, and an
//! endpoint is not reported behind for the events its filters skip.

use std::time::Duration;

use auditlog_client::NewEvent;
use auditlog_server::config::Start;

use crate::common::{TestServer, wait_until_within};
use crate::webhooks::checks::{assert_complete_in_order, delivered, log_n, status_of};
use crate::webhooks::receiver::{config, receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_deliver_only_matching_events() {
    let types = receiver().await;
    let flows = receiver().await;
    let both = receiver().await;
    let server = TestServer::start_with(|c| {
        let mut t = config("types", types.url("/t"), Start::Beginning);
        t.event_types = vec!["error".into(), "crm_update".into()];
        let mut w = config("flows", flows.url("/w"), Start::Beginning);
        w.workflows = vec!["sales".into()];
        let mut b = config("both", both.url("/b"), Start::Beginning);
        b.event_types = vec!["error".into()];
        b.workflows = vec!["sales".into(), "billing".into()];
        c.webhooks = vec![t, w, b];
    })
    .await;
    let client = server.client().await;

    // A varied sample, with a model of what each endpoint should get.
    const TYPES: [&str; 4] = ["lead_ingested", "error", "crm_update", "email_sent"];
    const FLOWS: [&str; 4] = ["sales", "billing", "", "onboarding"];
    let (mut want_types, mut want_flows, mut want_both) = (vec![], vec![], vec![]);
    for i in 0..41 {
        // The last is a sentinel every filter matches.
        let (ty, flow) = if i == 40 {
            ("error", "sales")
        } else {
            (TYPES[i % 4], FLOWS[(i / 4) % 4])
        };
        let seq = client
            .log(NewEvent::new(ty).workflow(flow).detail("i", i as u64))
            .await
            .unwrap()
            .seq;
        if ty == "error" || ty == "crm_update" {
            want_types.push(seq);
        }
        if flow == "sales" {
            want_flows.push(seq);
        }
        if ty == "error" && (flow == "sales" || flow == "billing") {
            want_both.push(seq);
        }
    }
    for (endpoint, want) in [
        (&types, &want_types),
        (&flows, &want_flows),
        (&both, &want_both),
    ] {
        assert!(want.len() > 3, "the sample is too thin: {want:?}");
        let got = delivered(endpoint, want).await;
        // Delivery is in seq order, so once the sentinel (seq 41) is in,
        // every earlier event was delivered or skipped.
        assert_eq!(assert_complete_in_order(&got, want), 0);
        assert!(endpoint.rejected().is_empty(), "{:?}", endpoint.rejected());
        for r in &got {
            let data = &r.json["data"];
            let i = data["details"]["i"].as_u64().unwrap() as usize;
            assert_eq!(data["seq"], i as u64 + 1);
        }
    }
    let got = types.accepted();
    assert!(
        got.iter()
            .all(|r| ["error", "crm_update"]
                .contains(&r.json["data"]["event_type"].as_str().unwrap())),
        "other types delivered"
    );
    let got = flows.accepted();
    assert!(
        got.iter().all(|r| r.json["data"]["workflow"] == "sales"),
        "other workflows delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_endpoint_is_not_reported_behind_for_events_it_skips() {
    // GetWebhookStatus: `delivered_seq` is "the last seq delivered (or
    // skipped by its filters)". An endpoint that has delivered every
    // matching event is caught up, whatever its filter is.
    let types = receiver().await;
    let flows = receiver().await;
    let server = TestServer::start_with(|c| {
        let mut t = config("types", types.url("/t"), Start::Beginning);
        t.event_types = vec!["error".into()];
        let mut w = config("flows", flows.url("/w"), Start::Beginning);
        w.workflows = vec!["billing".into()];
        c.webhooks = vec![t, w];
    })
    .await;
    let client = server.client().await;
    let first = client
        .log(NewEvent::error("Timeout", "x").workflow("billing"))
        .await
        .unwrap()
        .seq;
    log_n(&client, 5, "skipped").await;
    delivered(&types, &[first]).await;
    delivered(&flows, &[first]).await;
    let client = &client;
    for name in ["flows", "types"] {
        let s = wait_until_within(
            Duration::from_secs(5),
            &format!("{name} caught up"),
            || async move {
                let s = status_of(client, name).await;
                if s.delivered_seq == 6 && s.behind == 0 {
                    Ok(s)
                } else {
                    Err(format!("{s:?}"))
                }
            },
        )
        .await;
        assert_eq!(s.delivered, 1, "{s:?}");
    }
}
