//! Deliveries and status: waiting for what a receiver accepted, checking it
//! is complete, in order, chained and as stored, logging events, and the
//! endpoint's status through the API and `auditlog webhooks status`.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use auditlog_client::{Client, NewEvent, pb};
use serde_json::Value;

use crate::common::endpoints::{HttpEndpoint, Request};
use crate::common::{self, TEST_KEY, cli, wait_until};
use crate::webhooks::receiver::seq_of;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Waits until every seq in `expected` was accepted; returns the accepted
/// requests in arrival order.
pub(crate) async fn delivered(endpoint: &HttpEndpoint, expected: &[u64]) -> Vec<Request> {
    let want: BTreeSet<u64> = expected.iter().copied().collect();
    let want = &want;
    wait_until(&format!("seqs {expected:?}"), || async move {
        let got = endpoint.accepted();
        let seen: BTreeSet<u64> = got.iter().map(seq_of).collect();
        if want.is_subset(&seen) {
            Ok(got)
        } else {
            Err(format!(
                "missing {:?}; {} attempts; rejected {:?}",
                want.difference(&seen).collect::<Vec<_>>(),
                endpoint.attempts(),
                endpoint.rejected()
            ))
        }
    })
    .await
}

/// The accepted deliveries cover exactly `expected`, each seq's first
/// arrival in ascending order; returns how many arrivals were repeats.
pub(crate) fn assert_complete_in_order(got: &[Request], expected: &[u64]) -> usize {
    let mut seen = HashSet::new();
    let firsts: Vec<u64> = got.iter().map(seq_of).filter(|s| seen.insert(*s)).collect();
    assert_eq!(
        firsts, expected,
        "first arrivals are not exactly the expected seqs in order"
    );
    got.len() - firsts.len()
}

/// Every delivery chains to the one before it in the log: for consecutive
/// seqs, `data.prev` is the previous `data.signature`.
pub(crate) fn assert_chained(got: &[Request]) {
    let mut by_seq = std::collections::BTreeMap::new();
    for r in got {
        by_seq.insert(seq_of(r), r.json["data"].clone());
    }
    for (seq, data) in &by_seq {
        if *seq == 1 {
            assert_eq!(data["prev"], GENESIS, "seq 1");
        }
        if let Some(before) = by_seq.get(&(seq - 1)) {
            assert_eq!(
                data["prev"], before["signature"],
                "seq {seq} does not chain"
            );
        }
    }
}

/// `data` is the record exactly as stored in the log file: every field the
/// file holds, with the same value.
pub(crate) fn assert_as_stored(got: &[Request], log_file: &Path) {
    let lines: Vec<(String, Value)> = common::read_lines(log_file)
        .into_iter()
        .map(|l| {
            let v = serde_json::from_str(&l).unwrap();
            (l, v)
        })
        .collect();
    for r in got {
        let data = &r.json["data"];
        let seq = seq_of(r);
        let (line, stored) = lines
            .iter()
            .find(|(_, v)| v["seq"] == seq)
            .unwrap_or_else(|| panic!("seq {seq} not in the log file"));
        for key in [
            "seq",
            "id",
            "timestamp",
            "event_type",
            "actor",
            "lead_id",
            "workflow",
            "details",
            "key_id",
            "prev",
            "signature",
        ] {
            assert_eq!(data[key], stored[key], "seq {seq}: {key} differs");
        }
        // The signature really is the record's MAC, recomputed from the line.
        assert_eq!(
            data["signature"],
            common::hmac_hex(TEST_KEY.as_bytes(), common::unsigned_part(line).as_bytes()),
            "seq {seq}: data.signature is not the record's MAC"
        );
    }
}

pub(crate) async fn log_n(client: &Client, n: usize, tag: &str) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        let r = client
            .log(NewEvent::lead_ingested(format!("{tag}-{i}"), "web").workflow("sales"))
            .await
            .unwrap();
        seqs.push(r.seq);
    }
    seqs
}

pub(crate) async fn status_of(client: &Client, name: &str) -> pb::WebhookStatus {
    client
        .webhook_status()
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no webhook {name}"))
}

/// Waits until endpoint `name`'s status satisfies `ready`; returns it.
pub(crate) async fn status_when(
    client: &Client,
    name: &str,
    what: &str,
    ready: impl Fn(&pb::WebhookStatus) -> bool,
) -> pb::WebhookStatus {
    let ready = &ready;
    wait_until(what, || async move {
        let s = status_of(client, name).await;
        if ready(&s) {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await
}

/// `auditlog webhooks status --json`, endpoint `name`.
pub(crate) async fn cli_status(url: &str, name: &str) -> Value {
    let (code, stdout, stderr) = cli(url, &["webhooks", "status", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let all: Value = serde_json::from_str(&stdout).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {all}"))
        .clone()
}
