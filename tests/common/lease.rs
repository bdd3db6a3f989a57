//! Who holds the leader lease of a cluster, as its bucket says: the node's
//! name, its advertised URL and the term.
//!
//! Included by the cluster tests (`common/cluster.rs`) and the cluster
//! benchmark with `#[path = "../tests/common/lease.rs"]`.

use async_nats::jetstream;

/// The lease bucket of the default stream `AUDITLOG`, as
/// `server/src/cluster/stream.rs` names it; its one key is `leader`.
const BUCKET: &str = "AUDITLOG_leader";

/// The lease as the bucket holds it: (node, advertise, term).
pub(crate) async fn lease(js: &jetstream::Context) -> Result<(String, String, u64), String> {
    let kv = js.get_key_value(BUCKET).await.map_err(|e| e.to_string())?;
    let entry = kv
        .get("leader")
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no leader")?;
    let v: serde_json::Value = serde_json::from_slice(&entry).map_err(|e| e.to_string())?;
    match (
        v["node"].as_str(),
        v["advertise"].as_str(),
        v["term"].as_u64(),
    ) {
        (Some(n), Some(a), Some(t)) if t > 0 => Ok((n.to_owned(), a.to_owned(), t)),
        _ => Err(format!("lease {v}")),
    }
}
