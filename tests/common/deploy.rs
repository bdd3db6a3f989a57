//! What `deploy/` asks of the metrics: every expression of the Grafana
//! dashboard and the Prometheus alert rules, and the metric names in them.
//! `tests/metrics.rs` holds a single server's exposition to them, and
//! `tests/cluster_attack.rs` a cluster node's to the `auditlog_cluster_`
//! ones.

use std::path::Path;

/// The dashboard's query expressions and the alert rules' text, one after
/// the other.
pub(crate) fn deploy_exprs() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/auditlog.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs = Vec::new();
    for panel in parsed["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    format!("{}\n{rules}", exprs.join("\n"))
}

/// Every `auditlog_` metric an expression names, with a histogram's
/// `_bucket`, `_sum` or `_count` taken as the family.
pub(crate) fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("auditlog_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names.sort();
    names.dedup();
    names
}

/// Whether the exposition's names `exposed` hold `name`, or its family.
pub(crate) fn is_exposed(exposed: &[String], name: &str) -> bool {
    let family = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    exposed.iter().any(|e| e == name || e == family)
}
