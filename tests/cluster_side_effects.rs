//! Cluster mode (issue 16): what goes out of the cluster goes out once per
//! cluster, not once per node. Three `auditlog-server` processes on a real
//! three-server NATS cluster (`common::cluster`), sending to a real HTTP
//! receiver. Skipped without a `nats-server` binary, unless
//! `REQUIRE_NATS=1`.
//!
//! What is here: webhooks delivered by the leader alone, each event once,
//! whichever node it was written through; after the leader is killed, every
//! acknowledged event still reaches the receiver (at least once) from the
//! node that took over; a threshold crossed sends one alert, not three.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use auditlog_client::pb;
use common::cluster::{
    Acked, Node, failover_client, index_of, lease, new_leader, start_nodes_with, wait_acked,
    wait_all_at,
};
use common::endpoints::HttpEndpoint;
use common::{NatsCluster, keyed, wait_until, wait_until_within};

/// A configured signing secret: every node must sign the same way.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How long a writer retries one write while the leader is replaced.
const WRITE_RETRY: Duration = Duration::from_secs(60);

fn webhook_toml(receiver: &HttpEndpoint) -> String {
    format!(
        "[[webhooks]]\nname = \"crm\"\nurl = {:?}\nsecret = {SECRET:?}\nstart = \"beginning\"\n\
         max_backoff_secs = 1\n",
        receiver.url("/hook")
    )
}

/// How many times the receiver accepted each event id, with the seq the
/// payload gave it.
fn received(receiver: &HttpEndpoint) -> BTreeMap<String, (u64, usize)> {
    let mut seen = BTreeMap::new();
    for r in receiver.accepted() {
        let data = &r.json["data"];
        let id = data["id"].as_str().unwrap().to_owned();
        assert_eq!(r.headers.get("webhook-id"), Some(&id), "{r:?}");
        let seq = data["seq"].as_u64().unwrap();
        seen.entry(id).or_insert((seq, 0)).1 += 1;
    }
    seen
}

/// Logs `event` (which carries an idempotency key) through `node`, again
/// until it is acknowledged: a node that started a moment ago may not know
/// the leader yet.
async fn log_through(node: &Node, event: auditlog_client::NewEvent) -> pb::Receipt {
    let client = node.client().await;
    wait_until(&format!("a write through {}", node.url()), || async {
        client.log(event.clone()).await.map_err(|e| e.to_string())
    })
    .await
}

async fn webhook_status(node: &Node) -> pb::WebhookStatus {
    let all = node.client().await.webhook_status().await.unwrap();
    all.into_iter().find(|w| w.name == "crm").unwrap()
}

#[tokio::test]
async fn webhooks_go_out_once_from_the_leader_and_at_least_once_across_its_death() {
    const FIRST: usize = 12;
    const WRITERS: usize = 4;
    const EACH: usize = 15;
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let receiver = HttpEndpoint::start().await;
    let mut nodes = start_nodes_with(&nats, 3, &webhook_toml(&receiver)).await;
    let js = jetstream::new(nats.client().await);
    let (first_leader, advertise, term) = wait_until("a leader", || lease(&js)).await;
    let leader_at = index_of(&nodes, &advertise);

    // Written through every node in turn: the followers forward.
    let mut acked = Vec::new();
    for i in 0..FIRST {
        acked.push(log_through(&nodes[i % 3], keyed(&format!("first-{i}"))).await);
    }
    wait_all_at(&nodes, FIRST as u64).await;
    wait_until("the leader to deliver everything", || async {
        let s = webhook_status(&nodes[leader_at]).await;
        if s.delivered_seq == FIRST as u64 {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    for (i, node) in nodes.iter().enumerate() {
        if i != leader_at {
            let s = webhook_status(node).await;
            assert_eq!(s.delivered, 0, "a follower delivered: {s:?}");
        }
    }
    let seen = received(&receiver);
    let want: BTreeMap<String, (u64, usize)> =
        acked.iter().map(|r| (r.id.clone(), (r.seq, 1))).collect();
    assert_eq!(seen, want, "each event once, with its seq");
    // The cluster knows how far delivery got (the leader saves it within a
    // second), so a new leader will not send these again.
    let cursors = js.get_key_value("AUDITLOG_cursors").await.unwrap();
    wait_until("the position in the cluster's bucket", || async {
        let held = cursors
            .get("webhook.crm")
            .await
            .map_err(|e| e.to_string())?;
        match held.as_deref().map(String::from_utf8_lossy) {
            Some(v) if v == FIRST.to_string() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Keyed writers through any node; the leader dies under them.
    let client = failover_client(&nodes).await;
    let more = Acked::default();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (client, more) = (client.clone(), Arc::clone(&more));
        writers.push(tokio::spawn(async move {
            for i in 0..EACH {
                let key = format!("more-{w}-{i}");
                // A call cut by the leader's death comes back as a
                // transport error: retried with the same key.
                let receipt = wait_until_within(WRITE_RETRY, "a write to be acknowledged", || {
                    let (client, key) = (client.clone(), key.clone());
                    async move { client.log(keyed(&key)).await.map_err(|e| e.to_string()) }
                })
                .await;
                more.lock().unwrap().push(receipt);
            }
        }));
    }
    wait_acked(&more, WRITERS * 2, "some writes before the kill").await;
    nodes[leader_at].process.kill9();
    let (_, advertise, _) = new_leader(&js, &first_leader, term).await;
    let new_at = index_of(&nodes, &advertise);
    for writer in writers {
        writer.await.unwrap();
    }
    acked.extend(more.lock().unwrap().iter().cloned());
    assert_eq!(acked.len(), FIRST + WRITERS * EACH);
    let ids: BTreeMap<&str, u64> = acked.iter().map(|r| (r.id.as_str(), r.seq)).collect();
    let seen = wait_until("every acknowledged event at the receiver", || async {
        let seen = received(&receiver);
        let missing: Vec<&&str> = ids.keys().filter(|id| !seen.contains_key(**id)).collect();
        if missing.is_empty() {
            Ok(seen)
        } else {
            Err(format!("{} missing, e.g. {:?}", missing.len(), missing[0]))
        }
    })
    .await;
    for (id, (seq, times)) in &seen {
        assert_eq!(
            ids.get(id.as_str()),
            Some(seq),
            "{id} is not an acknowledged event"
        );
        // Repeats only after the position the cluster held at the kill.
        assert!(
            *seq > FIRST as u64 || *times == 1,
            "seq {seq} was delivered {times} times"
        );
    }
    let s = webhook_status(&nodes[new_at]).await;
    assert!(s.delivered > 0, "the new leader delivered nothing: {s:?}");
}

#[tokio::test]
async fn a_threshold_crossed_in_a_cluster_sends_one_alert_not_one_per_node() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let receiver = HttpEndpoint::start().await;
    let alerts = format!(
        "[alerts]\nverify_interval_secs = 0\n\n[[alerts.rules]]\nname = \"errors\"\n\
         threshold = 3\nwindow_secs = 600\ncooldown_secs = 3600\n\n[alerts.webhook]\nurl = {:?}\n",
        receiver.url("/alerts")
    );
    let nodes = start_nodes_with(&nats, 3, &alerts).await;
    let js = jetstream::new(nats.client().await);
    wait_until("a leader", || lease(&js)).await;
    for (i, node) in nodes.iter().enumerate() {
        let error = auditlog_client::NewEvent::error("Timeout", &format!("call {i} timed out"))
            .idempotency_key(format!("error-{i}"));
        log_through(node, error).await;
    }
    // Every node counted the three errors and reached the threshold: each
    // decided then whether to send.
    for node in &nodes {
        let client = node.client().await;
        wait_until("the rule to fire on every node", || async {
            let status = client.alert_status().await.map_err(|e| e.to_string())?;
            match status.rules.iter().find(|r| r.name == "errors") {
                Some(r) if r.fired == 1 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    receiver.wait_for(1).await;
    let senders = wait_until("the sender to count its alert sent", || async {
        let mut senders = BTreeSet::new();
        for node in &nodes {
            let status = node.client().await.alert_status().await.unwrap();
            let webhook = status.channels.iter().find(|c| c.channel == "webhook");
            let webhook = webhook.cloned().unwrap_or_default();
            if webhook.sent + webhook.failed > 0 {
                senders.insert((node.url().to_owned(), webhook.sent, webhook.failed));
            }
        }
        if senders.is_empty() {
            Err("no node counts a sent alert".to_owned())
        } else {
            Ok(senders)
        }
    })
    .await;
    assert_eq!(senders.len(), 1, "sent by {senders:?}");
    assert!(
        senders
            .iter()
            .all(|(_, sent, failed)| (*sent, *failed) == (1, 0)),
        "{senders:?}"
    );
    let got = receiver.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].json["rule"], "errors", "{:?}", got[0].json);
}
